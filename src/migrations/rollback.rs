//! `dhctl rollback`: run down sections of the newest applied migrations, each with the removal
//! of its history row in one transaction. Every target is checked (file present, unmodified,
//! has a down section) before any SQL runs.

use std::time::Instant;

use serde::Serialize;

use super::catalog::{Catalog, Migration};
use super::execute::{self, Bookkeeping};
use super::history::{self, HistoryRow, Use};
use super::migrate::statement_location;
use crate::db::ident::TableName;
use crate::db::retry::is_lock_timeout;
use crate::db::{DbConfig, Locked};
use crate::error::{Error, Result, SqlDetail};
use crate::progress::Progress;
use crate::report::{ms, Failed, Mode, Sql};

/// Which applied migrations to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// The newest N.
    Steps(u32),
    /// Everything applied after this version, which must be applied (a typo in a destructive
    /// command must not pick the nearest version).
    To(i64),
    /// Every applied migration (`--all`).
    All,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub version: i64,
    pub name: String,
    pub file: String,
    pub duration_ms: Option<f64>,
    pub sql: Option<String>,
    /// It was applied out of order: after this newer version. Rolling it back is named in the
    /// plan; null for a migration applied in version order.
    pub predates: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub database: String,
    pub dry_run: bool,
    /// What this run undid, or would undo (docs/json.md: `steps`, as migrate's).
    #[serde(rename = "steps")]
    pub rolled_back: Vec<RolledBack>,
    /// What the reader should know: the plan follows version order because some `applied_on`
    /// is unreadable (docs/history.md).
    pub notes: Vec<String>,
    pub duration_ms: f64,
}

/// How `rollback` runs: what to undo, whether to change anything, whether a dry run's plan
/// carries the SQL.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub target: Undo,
    pub mode: Mode,
    pub sql: Sql,
}

/// Undoes the chosen migrations on a session that holds the lock. A failed down section leaves
/// the ones undone before it undone: the error carries them.
pub async fn run(
    locked: &mut Locked,
    cfg: &DbConfig,
    catalog: &Catalog,
    options: Options,
    progress: &dyn Progress,
) -> Result<RollbackReport, Box<Failed<RollbackReport>>> {
    let started = Instant::now();
    let history = history::read(
        &locked.session.client,
        cfg.history_table.as_ref(),
        Use::Write,
    )
    .await?;
    let table = history.located.table;
    let history = history.rows;
    let targets = select(catalog, &history, options.target)?;
    let apply = options.mode == Mode::Apply;
    let notes = match history::applied_order(&history).note() {
        Some(note) if !targets.is_empty() => vec![note],
        _ => Vec::new(),
    };
    let mut report = RollbackReport {
        database: cfg.display_target(),
        dry_run: !apply,
        rolled_back: Vec::with_capacity(targets.len()),
        notes,
        duration_ms: 0.0,
    };
    if apply {
        progress.planned(targets.len());
    }
    for (m, predates) in targets {
        let down = m.down.as_ref().expect("select checked every down section");
        let mut took = None;
        if apply {
            progress.started(&m.file);
            let began = Instant::now();
            if let Err(error) = undo(locked, cfg, &table, m, progress).await {
                report.duration_ms = ms(started.elapsed());
                return Err(Box::new(Failed {
                    error,
                    report: (!report.rolled_back.is_empty()).then_some(report),
                }));
            }
            took = Some(began.elapsed());
            progress.finished(&m.file, began.elapsed());
        }
        report.rolled_back.push(RolledBack {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
            duration_ms: took.map(ms),
            sql: (options.sql == Sql::Shown).then(|| down.sql.clone()),
            predates,
        });
    }
    if apply {
        progress.done();
    }
    report.duration_ms = ms(started.elapsed());
    Ok(report)
}

/// The migrations to undo, newest-applied first (history order: a stack, so nothing applied
/// after a migration stays when it is undone), after checking every one of them; each with
/// the newer version it was applied after, when it was applied out of order.
pub fn select<'c>(
    catalog: &'c Catalog,
    history: &[HistoryRow],
    target: Undo,
) -> Result<Vec<(&'c Migration, Option<i64>)>> {
    let mut ordered = history::applied_order(history).rows;
    ordered.reverse();
    let applied: Vec<&HistoryRow> = ordered.iter().map(|(h, _)| *h).collect();
    let predates_of = |version: i64| {
        ordered
            .iter()
            .find(|(h, _)| h.version == version)
            .and_then(|(_, p)| *p)
    };
    let chosen: Vec<&HistoryRow> = match target {
        // Nothing applied: nothing to undo, whatever the count (as `--steps 0` and `--all` say).
        Undo::Steps(_) if applied.is_empty() => Vec::new(),
        Undo::Steps(n) => {
            if n as usize > applied.len() {
                return Err(Error::usage_hint(
                    format!(
                        "--steps {n}: only {} migration(s) are applied; nothing was changed",
                        applied.len()
                    ),
                    format!(
                        "--steps {} (or --all) undoes every applied migration; `dhctl status` lists them",
                        applied.len()
                    ),
                ));
            }
            applied.into_iter().take(n as usize).collect()
        }
        Undo::To(version) => {
            if !applied.iter().any(|h| h.version == version) {
                return Err(not_applied(version, &applied));
            }
            applied
                .into_iter()
                .take_while(|h| h.version != version)
                .collect()
        }
        Undo::All => applied,
    };
    let mut migrations = Vec::with_capacity(chosen.len());
    let newest_file = catalog.migrations.iter().map(|m| m.version).max();
    for row in chosen {
        if newest_file.is_some_and(|newest| row.version > newest) {
            return Err(Error::usage_hint(
                format!(
                    "cannot roll back {}_{}: it is newer than every migration this release knows (the database is ahead of this release), so its down section is unknown; nothing was changed",
                    row.version, row.name
                ),
                "roll it back with the release that applied it (its dhctl has the file)",
            ));
        }
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
        migrations.push((m, predates_of(row.version)));
    }
    Ok(migrations)
}

async fn undo(
    locked: &mut Locked,
    cfg: &DbConfig,
    table: &TableName,
    m: &Migration,
    progress: &dyn Progress,
) -> Result<()> {
    let down = m.down.as_ref().expect("checked");
    let on_retry = |attempt| progress.retrying(&m.file, attempt, "lock_timeout");
    let runner = execute::Run {
        client: &locked.session.client,
        table,
        lock_timeout: cfg.lock_timeout,
        retries: cfg.lock_retries,
    };
    let book = Bookkeeping::Erase { version: m.version };
    let Err(failure) = runner.section(down, &book, &on_retry).await else {
        return Ok(());
    };
    let pg = &failure.error;
    let location = failure
        .statement
        .map(|offset| statement_location(m, down, offset, pg));
    let mut detail = SqlDetail::from_pg(pg, location);
    if is_lock_timeout(pg) {
        detail.message = format!(
            "{} (gave up after {} attempts; a session holds a conflicting lock)",
            detail.message, failure.attempts
        );
    }
    if failure.statement.is_none() && !is_lock_timeout(pg) {
        let account = execute::account(
            failure.stage,
            pg.code(),
            down.transaction,
            false,
            &m.file,
            table,
        );
        detail.hint = Some(match detail.hint.take() {
            Some(server_hint) => format!("{server_hint}\n{}; {}", account.kept, account.advice),
            None => format!("{}; {}", account.kept, account.advice),
        });
        return Err(Error::Sql {
            context: account.context,
            detail,
        });
    }
    Err(Error::Sql {
        context: format!("rolling back {} failed", m.file),
        detail,
    })
}

/// `--to V` names no applied version: say which applied versions are nearest.
fn not_applied(version: i64, applied: &[&HistoryRow]) -> Error {
    let mut near: Vec<i64> = applied.iter().map(|h| h.version).collect();
    near.sort_by_key(|v| v.abs_diff(version));
    near.truncate(3);
    near.sort_unstable();
    let hint = if near.is_empty() {
        "no migration is applied; there is nothing to roll back".to_string()
    } else {
        format!(
            "VERSION must be an applied version, which stays applied; the nearest applied: {}; \
             to roll back every migration, use --all",
            near.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Error::usage_hint(
        format!("--to {version}: no applied migration has that version; nothing was changed"),
        hint,
    )
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
        let t = select(&c, &h, Undo::Steps(1)).unwrap();
        assert_eq!(t[0].0.version, 20240101000003);
    }

    #[test]
    fn refuses_when_down_section_is_missing() {
        let c = catalog();
        let h = rows(&c, &[20240101000001, 20240101000002, 20240101000003]);
        let err = select(&c, &h, Undo::To(20240101000001)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("20240101000002_b.sql"), "{err}");
    }

    #[test]
    fn refuses_a_modified_target_with_exit_4() {
        let c = catalog();
        let mut h = rows(&c, &[20240101000001]);
        h[0].checksum = "1".into();
        assert_eq!(select(&c, &h, Undo::Steps(1)).unwrap_err().exit_code(), 4);
    }

    #[test]
    fn to_must_name_an_applied_version_and_all_takes_everything() {
        let c = catalog();
        let h = rows(&c, &[20240101000001, 20240101000003]);
        let err = select(&c, &h, Undo::To(20240101000009)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hint().unwrap().contains("20240101000003"), "{err:?}");
        assert!(select(&c, &h, Undo::To(0)).is_err());
        let t = select(&c, &h, Undo::To(20240101000001)).unwrap();
        assert_eq!(t.len(), 1);
        let all = select(&c, &rows(&c, &[20240101000001]), Undo::All).unwrap();
        assert_eq!(all[0].0.version, 20240101000001);
    }

    #[test]
    fn refuses_to_roll_back_what_is_ahead_of_this_release() {
        let c = catalog();
        let mut h = rows(&c, &[20240101000001, 20240101000003]);
        h.push(HistoryRow {
            version: 20250101000000,
            name: "newer".into(),
            applied_on: String::new(),
            checksum: "1".into(),
        });
        let err = select(&c, &h, Undo::Steps(1)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("ahead of this release"), "{err}");
    }

    #[test]
    fn undoes_in_history_order_and_names_what_was_applied_out_of_order() {
        let c = parse_files(
            [1, 2, 3]
                .iter()
                .map(|v| {
                    (
                        format!("2024010100000{v}_m{v}.sql"),
                        format!("-- migrate:up\nSELECT {v};\n-- migrate:down\nSELECT -{v};")
                            .into_bytes(),
                    )
                })
                .collect(),
        )
        .unwrap();
        // Applied 1, 3, then 2 (out of order, after 3).
        let mut h = rows(&c, &[20240101000001, 20240101000003, 20240101000002]);
        for (row, at) in h.iter_mut().zip(["01", "02", "03"]) {
            row.applied_on = format!("2026-01-01T00:00:{at}Z");
        }
        let plan = |undo| {
            select(&c, &h, undo)
                .unwrap()
                .iter()
                .map(|(m, p)| (m.version, *p))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            plan(Undo::Steps(1)),
            vec![(20240101000002, Some(20240101000003))]
        );
        assert_eq!(
            plan(Undo::To(20240101000003)),
            vec![(20240101000002, Some(20240101000003))],
            "--to V undoes what was applied after V, the out-of-order one named"
        );
        assert_eq!(
            plan(Undo::To(20240101000001)),
            vec![
                (20240101000002, Some(20240101000003)),
                (20240101000003, None)
            ]
        );
        assert!(plan(Undo::To(20240101000002)).is_empty());
    }

    #[test]
    fn refuses_more_steps_than_applied() {
        let c = catalog();
        let h = rows(&c, &[20240101000001]);
        assert_eq!(select(&c, &h, Undo::Steps(2)).unwrap_err().exit_code(), 2);
    }
}
