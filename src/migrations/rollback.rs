//! `dhctl rollback`: run down sections of the newest applied migrations, each with the removal
//! of its history row in one transaction. Every target is checked (file present, unmodified,
//! has a down section) before any SQL runs.

use std::time::Instant;

use serde::Serialize;

use super::catalog::{Catalog, Migration, Transaction};
use super::history::{self, HistoryRow};
use super::migrate::{ms, Mode};
use super::{split, Locked, Progress};
use crate::config::DbConfig;
use crate::db::retry::{self, is_lock_timeout};
use crate::error::{Error, Result, SqlDetail};

/// Which applied migrations to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest N.
    Steps(u32),
    /// Everything newer than this version.
    To(i64),
}

#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub version: i64,
    pub name: String,
    pub file: String,
    pub duration_ms: Option<f64>,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub database: String,
    pub dry_run: bool,
    /// What this run undid, or would undo (docs/json.md: `steps`, as migrate's).
    #[serde(rename = "steps")]
    pub rolled_back: Vec<RolledBack>,
    pub duration_ms: f64,
}

/// `dhctl rollback` from start to end: connect (never creating the database), take the lock,
/// undo, release.
pub async fn command(
    cfg: &DbConfig,
    catalog: &Catalog,
    target: Target,
    mode: Mode,
    show_sql: bool,
    progress: &dyn Progress,
) -> Result<RollbackReport> {
    let mut locked = Locked::open(cfg, crate::db::CreateDatabase::Never).await?;
    let result = run(&mut locked, cfg, catalog, target, mode, show_sql, progress).await;
    locked.finish(result).await
}

pub async fn run(
    locked: &mut Locked,
    cfg: &DbConfig,
    catalog: &Catalog,
    target: Target,
    mode: Mode,
    show_sql: bool,
    progress: &dyn Progress,
) -> Result<RollbackReport> {
    let started = Instant::now();
    let history = history::read(&locked.session.client)
        .await?
        .unwrap_or_default();
    let targets = select(catalog, &history, target)?;
    let mut report = RollbackReport {
        database: cfg.display_target(),
        dry_run: mode == Mode::DryRun,
        rolled_back: Vec::with_capacity(targets.len()),
        duration_ms: 0.0,
    };
    if mode == Mode::Apply {
        progress.planned(targets.len());
    }
    for m in targets {
        let down = m.down.as_ref().expect("select checked every down section");
        let mut took = None;
        if mode == Mode::Apply {
            progress.started(&m.file);
            let began = Instant::now();
            undo(locked, cfg, m, progress).await?;
            took = Some(began.elapsed());
            progress.finished(&m.file, began.elapsed());
        }
        report.rolled_back.push(RolledBack {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms: took.map(ms),
            sql: show_sql.then(|| down.sql.clone()),
        });
    }
    if mode == Mode::Apply {
        progress.done();
    }
    report.duration_ms = ms(started.elapsed());
    Ok(report)
}

/// The migrations to undo, newest first, after checking every one of them.
pub fn select<'c>(
    catalog: &'c Catalog,
    history: &[HistoryRow],
    target: Target,
) -> Result<Vec<&'c Migration>> {
    let mut applied: Vec<&HistoryRow> = history.iter().collect();
    applied.sort_by_key(|h| std::cmp::Reverse(h.version));
    let chosen: Vec<&HistoryRow> = match target {
        Target::Steps(n) => {
            if n as usize > applied.len() {
                return Err(Error::usage(format!(
                    "--steps {n}: only {} migration(s) are applied",
                    applied.len()
                )));
            }
            applied.into_iter().take(n as usize).collect()
        }
        Target::To(version) => applied
            .into_iter()
            .filter(|h| h.version > version)
            .collect(),
    };
    let mut migrations = Vec::with_capacity(chosen.len());
    for row in chosen {
        let Some(m) = catalog.get(row.version) else {
            return Err(Error::Drift {
                message: format!(
                    "cannot roll back {}_{}: its file is missing, so its down section is unknown; nothing was changed",
                    row.version, row.name
                ),
            });
        };
        if row.checksum != m.checksum.to_string() || row.name != m.name {
            return Err(Error::Drift {
                message: format!(
                    "cannot roll back {}: the file was modified after it was applied, so its down section may not undo what ran; nothing was changed",
                    m.file
                ),
            });
        }
        if m.down.is_none() {
            return Err(Error::usage_hint(
                format!("cannot roll back {}: it has no `-- migrate:down` section; nothing was changed", m.file),
                "add a down section that undoes the up section (its up section must stay byte-for-byte as applied)",
            ));
        }
        migrations.push(m);
    }
    Ok(migrations)
}

async fn undo(
    locked: &mut Locked,
    cfg: &DbConfig,
    m: &Migration,
    progress: &dyn Progress,
) -> Result<()> {
    let down = m.down.as_ref().expect("checked");
    let on_retry = |attempt| progress.retrying(&m.file, attempt, "lock_timeout");
    let lock_timeout = |(e, _): &Failure| is_lock_timeout(e);
    let outcome = retry::retrying(
        cfg.lock_retries,
        lock_timeout,
        &on_retry,
        async || match down.transaction {
            Transaction::Wrapped => undo_wrapped(locked, m).await,
            Transaction::None => undo_unwrapped(locked, m).await,
        },
    )
    .await;
    let Err(((e, offset), _)) = outcome else {
        return Ok(());
    };
    let position = crate::error::error_position(&e).unwrap_or(1);
    let location = Some(m.location(down, offset + position));
    Err(Error::Sql {
        context: format!("rolling back {} failed", m.file),
        detail: SqlDetail::from_pg(&e, location),
    })
}

type Failure = (tokio_postgres::Error, usize);

async fn undo_wrapped(locked: &mut Locked, m: &Migration) -> std::result::Result<(), Failure> {
    let down = m.down.as_ref().expect("checked");
    let tx = locked
        .session
        .client
        .transaction()
        .await
        .map_err(|e| (e, 0))?;
    tx.batch_execute(&down.sql).await.map_err(|e| (e, 0))?;
    history::delete(&tx, m.version).await.map_err(|e| (e, 0))?;
    tx.commit().await.map_err(|e| (e, 0))
}

async fn undo_unwrapped(locked: &mut Locked, m: &Migration) -> std::result::Result<(), Failure> {
    let down = m.down.as_ref().expect("checked");
    let client = &locked.session.client;
    for statement in split::split(&down.sql) {
        let offset = down.sql[..statement.offset].chars().count();
        client
            .batch_execute(statement.sql)
            .await
            .map_err(|e| (e, offset))?;
    }
    history::delete(client, m.version)
        .await
        .map_err(|e| (e, 0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::parse_files;

    fn catalog() -> Catalog {
        parse_files(vec![
            (
                "20240101000001_a.sql".into(),
                b"-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT -1;".to_vec(),
            ),
            (
                "20240101000002_b.sql".into(),
                b"-- migrate:up\nSELECT 2;\n".to_vec(),
            ),
            (
                "20240101000003_c.sql".into(),
                b"-- migrate:up\nSELECT 3;\n-- migrate:down\nSELECT -3;".to_vec(),
            ),
        ])
        .unwrap()
    }

    fn rows(c: &Catalog, versions: &[i64]) -> Vec<HistoryRow> {
        versions
            .iter()
            .map(|v| {
                let m = c.get(*v).unwrap();
                HistoryRow {
                    version: *v,
                    name: m.name.clone(),
                    applied_on: String::new(),
                    checksum: m.checksum.to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn steps_take_the_newest() {
        let c = catalog();
        let h = rows(&c, &[20240101000001, 20240101000003]);
        let t = select(&c, &h, Target::Steps(1)).unwrap();
        assert_eq!(t[0].version, 20240101000003);
    }

    #[test]
    fn refuses_when_down_section_is_missing() {
        let c = catalog();
        let h = rows(&c, &[20240101000001, 20240101000002, 20240101000003]);
        let err = select(&c, &h, Target::To(20240101000001)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("20240101000002_b.sql"), "{err}");
    }

    #[test]
    fn refuses_a_modified_target_with_exit_4() {
        let c = catalog();
        let mut h = rows(&c, &[20240101000001]);
        h[0].checksum = "1".into();
        assert_eq!(select(&c, &h, Target::Steps(1)).unwrap_err().exit_code(), 4);
    }

    #[test]
    fn refuses_more_steps_than_applied() {
        let c = catalog();
        let h = rows(&c, &[20240101000001]);
        assert_eq!(select(&c, &h, Target::Steps(2)).unwrap_err().exit_code(), 2);
    }
}
