//! `dhctl migrate`: apply pending migrations under the advisory lock.
//!
//! Transactional migrations go through refinery's runner, one at a time (`Target::Version`), so
//! each gets its own transaction with its history row, progress and a timing. `transaction:false`
//! migrations are run by dhctl statement by statement and recorded with refinery's checksum.
//! A statement that hits lock_timeout is rolled back and retried (db::retry).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::catalog::{Catalog, Migration, Transaction};
use super::history::{self, HistoryRow};
use super::status::{self, State};
use super::{split, Locked, Progress};
use crate::config::DbConfig;
use crate::db::retry::{self, is_lock_timeout};
use crate::db::CreateDatabase;
use crate::error::{Error, Result, SqlDetail};

/// Whether to change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub to: Option<i64>,
    pub mode: Mode,
    pub create: CreateDatabase,
    /// Include each migration's SQL in the plan (dry runs with --verbose).
    pub show_sql: bool,
}

/// One migration applied, or planned by a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub version: i64,
    pub name: String,
    pub file: String,
    pub transaction: Transaction,
    /// Wall time of the migration, absent in a dry run.
    pub duration_ms: Option<f64>,
    /// 1, or more when lock_timeout made dhctl retry.
    pub attempts: Option<u32>,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub database: String,
    pub dry_run: bool,
    /// The database did not exist: migrate created it, or (dry run) would create it.
    pub creates_database: bool,
    /// Applied before this run (docs/json.md: `applied_before`).
    #[serde(rename = "applied_before")]
    pub already_applied: usize,
    /// Applied by this run, or planned in a dry run.
    pub steps: Vec<Step>,
    pub duration_ms: f64,
    /// The partitions ensured after migrating (null with --no-partitions or --dry-run); named
    /// apart from partition status's list of partitions (docs/json.md).
    #[serde(rename = "partition_create")]
    pub partitions: Option<crate::partitions::RunReport>,
}

/// `dhctl migrate` from start to end: connect (creating the database when `options.create`
/// allows), take the lock, apply the pending migrations, then, when `partitions` is given, create
/// what the policies want under the same lock, so the gateway can write today's rows at once.
/// Returns the report and the partition failures it already describes (one table failing does
/// not undo the migrations or stop the other tables).
pub async fn command(
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &Options,
    partitions: Option<&Partitions<'_>>,
    progress: &dyn Progress,
) -> Result<(MigrateReport, Vec<Error>)> {
    let mut locked = match Locked::open(cfg, options.create).await {
        // A dry run against a database that does not exist yet: migrate would create it and
        // apply everything, which is the plan to show.
        Err(Error::MissingDatabase { .. }) if options.mode == Mode::DryRun => {
            return Ok((plan_for_new_database(cfg, catalog, options)?, Vec::new()));
        }
        other => other?,
    };
    let mut failures = Vec::new();
    let mut result = run(&mut locked, cfg, catalog, options, progress).await;
    if let (Ok(report), Some(wanted)) = (&mut result, partitions) {
        let create = crate::partitions::CreateOptions {
            now: wanted.now,
            ahead: None,
            mode: Mode::Apply,
        };
        match crate::partitions::ensure(&locked, cfg, wanted.policies, &create, progress).await {
            Ok(outcome) => {
                report.partitions = Some(outcome.report);
                failures = outcome.failures;
            }
            Err(e) => result = Err(e),
        }
    }
    let report = locked.finish(result).await?;
    Ok((report, failures))
}

fn plan_for_new_database(
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &Options,
) -> Result<MigrateReport> {
    let started = Instant::now();
    let steps = plan(catalog, &[], options.to)?
        .into_iter()
        .map(|m| step(m, None, None, options.show_sql))
        .collect();
    Ok(MigrateReport {
        database: cfg.display_target(),
        dry_run: true,
        creates_database: true,
        already_applied: 0,
        steps,
        duration_ms: ms(started.elapsed()),
        partitions: None,
    })
}

/// The partitions `migrate` ensures after migrating.
pub struct Partitions<'a> {
    pub policies: &'a [crate::partitions::Policy],
    /// "Now" for the partition plan; None for the server's clock.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// Runs `dhctl migrate` up to and excluding partitions (the caller ensures those under the same
/// lock, through [`Locked`]).
pub async fn run(
    locked: &mut Locked,
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &Options,
    progress: &dyn Progress,
) -> Result<MigrateReport> {
    let started = Instant::now();
    let client = &locked.session.client;
    if options.mode == Mode::Apply {
        history::ensure(client).await?;
    }
    let history = history::read(client).await?.unwrap_or_default();
    let plan = plan(catalog, &history, options.to)?;
    let mut report = MigrateReport {
        database: cfg.display_target(),
        dry_run: options.mode == Mode::DryRun,
        creates_database: locked.session.created_database,
        already_applied: history.len(),
        steps: Vec::with_capacity(plan.len()),
        duration_ms: 0.0,
        partitions: None,
    };
    if options.mode == Mode::DryRun {
        report.steps = plan
            .iter()
            .map(|m| step(m, None, None, options.show_sql))
            .collect();
        report.duration_ms = ms(started.elapsed());
        return Ok(report);
    }
    progress.planned(plan.len());
    let refinery_set: Vec<refinery::Migration> = catalog
        .migrations
        .iter()
        .map(Migration::to_refinery)
        .collect();
    for m in plan {
        progress.started(&m.file);
        let began = Instant::now();
        let attempts = match m.up.transaction {
            Transaction::Wrapped => apply_wrapped(locked, cfg, &refinery_set, m, progress).await?,
            Transaction::None => apply_unwrapped(locked, cfg, m, progress).await?,
        };
        let took = began.elapsed();
        progress.finished(&m.file, took);
        report
            .steps
            .push(step(m, Some(took), Some(attempts), false));
    }
    progress.done();
    report.duration_ms = ms(started.elapsed());
    Ok(report)
}

/// The pending migrations to apply, in order, after refusing on drift or an out-of-order file.
fn plan<'c>(
    catalog: &'c Catalog,
    history: &[HistoryRow],
    to: Option<i64>,
) -> Result<Vec<&'c Migration>> {
    let entries = status::diff(catalog, history);
    if let Some(message) = status::drift_message(&entries) {
        return Err(Error::Drift {
            message: format!("{message}; refusing to migrate"),
        });
    }
    if let Some(to) = to {
        if catalog.get(to).is_none() {
            return Err(Error::usage_hint(
                format!("--to {to}: no migration has that version"),
                "run `dhctl status` to list the versions",
            ));
        }
    }
    let newest_applied = history.iter().map(|h| h.version).max();
    let mut pending = Vec::new();
    for entry in entries.iter().filter(|e| e.state == State::Pending) {
        let m = catalog
            .get(entry.version)
            .expect("pending entries come from the catalog");
        if let Some(newest) = newest_applied.filter(|n| *n > m.version) {
            return Err(Error::usage_hint(
                format!("migration {} is older than the newest applied migration ({newest}); migrations apply in version order only", m.file),
                "give the file a timestamp newer than the newest applied one (`dhctl new` writes one)",
            ));
        }
        if to.is_some_and(|to| m.version > to) {
            break;
        }
        pending.push(m);
    }
    Ok(pending)
}

async fn apply_wrapped(
    locked: &mut Locked,
    cfg: &DbConfig,
    all: &[refinery::Migration],
    m: &Migration,
    progress: &dyn Progress,
) -> Result<u32> {
    let on_retry = |attempt| progress.retrying(&m.file, attempt, "lock_timeout");
    let lock_timeout = |err: &refinery::Error| find_pg_error(err).is_some_and(is_lock_timeout);
    let outcome = retry::retrying(cfg.lock_retries, lock_timeout, &on_retry, async || {
        refinery::Runner::new(all)
            .set_target(refinery::Target::Version(m.version))
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .run_async(&mut locked.session.client)
            .await
    })
    .await;
    match outcome {
        Ok((_, attempts)) => Ok(attempts),
        Err((err, attempts)) => Err(migration_error(
            m,
            find_pg_error(&err),
            &err.to_string(),
            0,
            attempts,
        )),
    }
}

async fn apply_unwrapped(
    locked: &mut Locked,
    cfg: &DbConfig,
    m: &Migration,
    progress: &dyn Progress,
) -> Result<u32> {
    let client = &locked.session.client;
    let mut attempts = 1;
    for statement in split::split(&m.up.sql) {
        let on_retry = |attempt| progress.retrying(&m.file, attempt, "lock_timeout");
        match retry::batch_execute(client, statement.sql, cfg.lock_retries, &on_retry).await {
            Ok(made) => attempts = attempts.max(made),
            Err((e, made)) => {
                let chars = m.up.sql[..statement.offset].chars().count();
                return Err(migration_error(m, Some(&e), "", chars, made));
            }
        }
    }
    history::insert(client, m.version, &m.name, m.checksum).await?;
    Ok(attempts)
}

/// The driver error behind a refinery error, if any.
fn find_pg_error<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e tokio_postgres::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(s) = source {
        if let Some(pg) = s.downcast_ref::<tokio_postgres::Error>() {
            return Some(pg);
        }
        source = s.source();
    }
    None
}

/// "migration X failed: X.sql:3: syntax error … (SQLSTATE 42601)". `offset_chars` is where the
/// failing statement starts within the up section (0 when the whole section was sent at once).
fn migration_error(
    m: &Migration,
    pg: Option<&tokio_postgres::Error>,
    fallback: &str,
    offset_chars: usize,
    attempts: u32,
) -> Error {
    let Some(pg) = pg else {
        return Error::Sql {
            context: format!("migration {} failed", m.file),
            detail: SqlDetail {
                sqlstate: "XX000".into(),
                message: fallback.into(),
                location: None,
                hint: None,
            },
        };
    };
    let position = crate::error::error_position(pg).unwrap_or(1);
    let location = Some(m.location(&m.up, offset_chars + position));
    let mut detail = SqlDetail::from_pg(pg, location);
    if is_lock_timeout(pg) {
        detail.message = format!(
            "{} (gave up after {attempts} attempts; a session holds a conflicting lock)",
            detail.message
        );
    }
    let kept = match m.up.transaction {
        Transaction::Wrapped => "nothing of it was kept; earlier migrations stay applied",
        Transaction::None => "it runs outside a transaction (transaction:false): statements before the failing one were kept",
    };
    detail.hint = Some(match detail.hint.take() {
        Some(server_hint) => {
            format!("{server_hint}\n{kept}; fix the file and run dhctl migrate again")
        }
        None => format!("{kept}; fix the file and run dhctl migrate again"),
    });
    Error::Sql {
        context: format!("migration {} failed", m.file),
        detail,
    }
}

fn step(m: &Migration, took: Option<Duration>, attempts: Option<u32>, show_sql: bool) -> Step {
    Step {
        version: m.version,
        name: m.name.clone(),
        file: m.file.clone(),
        transaction: m.up.transaction,
        duration_ms: took.map(ms),
        attempts,
        sql: show_sql.then(|| m.up.sql.clone()),
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::parse_files;

    fn catalog() -> Catalog {
        parse_files(vec![
            ("20240101000001_a.sql".into(), b"SELECT 1;".to_vec()),
            ("20240101000002_b.sql".into(), b"SELECT 2;".to_vec()),
            ("20240101000003_c.sql".into(), b"SELECT 3;".to_vec()),
        ])
        .unwrap()
    }

    fn applied(c: &Catalog, v: i64) -> HistoryRow {
        let m = c.get(v).unwrap();
        HistoryRow {
            version: v,
            name: m.name.clone(),
            applied_on: String::new(),
            checksum: m.checksum.to_string(),
        }
    }

    #[test]
    fn plan_stops_at_to() {
        let c = catalog();
        let p = plan(&c, &[applied(&c, 20240101000001)], Some(20240101000002)).unwrap();
        assert_eq!(
            p.iter().map(|m| m.version).collect::<Vec<_>>(),
            vec![20240101000002]
        );
    }

    #[test]
    fn plan_refuses_an_out_of_order_file() {
        let c = catalog();
        let err = plan(
            &c,
            &[applied(&c, 20240101000001), applied(&c, 20240101000003)],
            None,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("20240101000002_b.sql is older"),
            "{err}"
        );
    }

    #[test]
    fn plan_refuses_drift_with_exit_4() {
        let c = catalog();
        let mut row = applied(&c, 20240101000001);
        row.checksum = "0".into();
        assert_eq!(plan(&c, &[row], None).unwrap_err().exit_code(), 4);
    }

    #[test]
    fn plan_rejects_an_unknown_to() {
        assert_eq!(plan(&catalog(), &[], Some(7)).unwrap_err().exit_code(), 2);
    }
}
