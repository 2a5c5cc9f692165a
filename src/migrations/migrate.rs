//! `dhctl migrate`: apply pending migrations under the advisory lock.
//!
//! dhctl runs each migration itself (src/migrations/execute.rs) and records it in refinery's
//! history format with refinery's checksum: a transactional one in one transaction with its
//! history row, a `transaction:false` one statement by statement. A transaction or statement
//! that hits lock_timeout is rolled back and retried (db::retry).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::catalog::{Catalog, Migration, Transaction};
use super::execute::{self, Bookkeeping};
use super::history::{self, HistoryRow, Use};
use super::status::{self, State};
use crate::db::ident::TableName;
use crate::db::retry::is_lock_timeout;
use crate::db::{CreateDatabase, DbConfig, Locked};
use crate::error::{Error, Result, SqlDetail};
use crate::progress::Progress;
use crate::report::{ms, Failed, Mode, Sql};

/// What migrate does with out-of-order migrations (not applied, older than the newest applied
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Refuse them (exit 2), naming each, before anything is applied.
    Strict,
    /// `--allow-out-of-order`: apply them with the others, in version order.
    AllowOutOfOrder,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub to: Option<i64>,
    pub order: Order,
    pub mode: Mode,
    pub create: CreateDatabase,
    /// Whether the plan carries each migration's SQL (dry runs with --verbose).
    pub sql: Sql,
}

/// A check of the migrations a run is about to apply, made under the lock before any of them is
/// applied (the command layer passes dhctl lint's gate). `client` is None for the plan of a
/// database that does not exist yet; an error stops the run with nothing applied.
pub trait Gate: Sync {
    fn check<'a>(
        &'a self,
        client: Option<&'a tokio_postgres::Client>,
        catalog: &'a Catalog,
        pending: &'a [&'a Migration],
        mode: Mode,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;
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
    /// An out-of-order migration: the newest applied version it is older than; null otherwise.
    pub predates: Option<i64>,
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
    /// Applied migrations newer than every file this release knows: the database is ahead of
    /// this release (a rolling deploy or a release rollback). Not an error.
    pub ahead: Vec<status::Entry>,
    /// Pending migrations older than the newest applied one (status entries, state
    /// `out-of-order`). Refused unless `allow_out_of_order`.
    pub out_of_order: Vec<status::Entry>,
    /// `--allow-out-of-order`: out-of-order migrations are applied in version order.
    pub allow_out_of_order: bool,
    /// Applied by this run, or planned in a dry run.
    pub steps: Vec<Step>,
    pub duration_ms: f64,
}

/// The plan of a dry run against a database that does not exist yet: migrate would create it and
/// apply everything.
pub async fn plan_for_new_database(
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &Options,
    gate: Option<&dyn Gate>,
) -> Result<MigrateReport> {
    let started = Instant::now();
    let planned = plan(catalog, &[], options.to)?;
    let pending: Vec<&Migration> = planned.iter().map(|p| p.migration).collect();
    gate_pending(gate, None, catalog, &pending, options.mode).await?;
    let steps = planned
        .iter()
        .map(|p| step(p, None, None, options.sql))
        .collect();
    Ok(MigrateReport {
        database: cfg.display_target(),
        dry_run: true,
        creates_database: true,
        already_applied: 0,
        ahead: Vec::new(),
        out_of_order: Vec::new(),
        allow_out_of_order: options.order == Order::AllowOutOfOrder,
        steps,
        duration_ms: ms(started.elapsed()),
    })
}

/// Runs the gate on the pending migrations; nothing when none is pending (an up-to-date
/// database pays nothing).
async fn gate_pending(
    gate: Option<&dyn Gate>,
    client: Option<&tokio_postgres::Client>,
    catalog: &Catalog,
    pending: &[&Migration],
    mode: Mode,
) -> Result<()> {
    match gate {
        Some(gate) if !pending.is_empty() => gate.check(client, catalog, pending, mode).await,
        _ => Ok(()),
    }
}

/// Applies the pending migrations on a session that holds the lock (the command layer then
/// ensures partitions under the same lock). History is read once, under the lock; each
/// migration then runs in its own transaction with its history row (see [`execute`]), so the
/// cost is linear in the number of migrations. A failing migration's error carries the report
/// of those applied before it.
pub async fn run(
    locked: &mut Locked,
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &Options,
    gate: Option<&dyn Gate>,
    progress: &dyn Progress,
) -> Result<MigrateReport, Box<Failed<MigrateReport>>> {
    let started = Instant::now();
    let client = &locked.session.client;
    let history::History {
        mut located,
        rows: history,
    } = history::read(client, cfg.history_table.as_ref(), Use::Write).await?;
    if let Some(table) = super::dbmate::detect(client, located.exists, &catalog.versions()).await? {
        return Err(super::dbmate::adopt_first(&table).into());
    }
    let plan = plan(catalog, &history, options.to)?;
    let entries = status::diff(catalog, &history);
    let out_of_order: Vec<status::Entry> = entries
        .iter()
        .filter(|e| e.state == State::OutOfOrder)
        .cloned()
        .collect();
    // Refused before the lint gate and before anything runs; a dry run shows the plan with
    // them marked (as it shows lint findings a real run would refuse).
    let refused: Vec<status::Entry> = out_of_order
        .iter()
        .filter(|e| plan.iter().any(|p| p.migration.version == e.version))
        .cloned()
        .collect();
    if options.mode == Mode::Apply && options.order == Order::Strict && !refused.is_empty() {
        return Err(out_of_order_refusal(&refused).into());
    }
    let pending: Vec<&Migration> = plan.iter().map(|p| p.migration).collect();
    gate_pending(gate, Some(client), catalog, &pending, options.mode).await?;
    let mut report = MigrateReport {
        database: cfg.display_target(),
        dry_run: options.mode == Mode::DryRun,
        creates_database: locked.session.created_database,
        already_applied: history.len(),
        ahead: status::ahead(&entries),
        out_of_order,
        allow_out_of_order: options.order == Order::AllowOutOfOrder,
        steps: Vec::with_capacity(plan.len()),
        duration_ms: 0.0,
    };
    if options.mode == Mode::DryRun {
        report.steps = plan
            .iter()
            .map(|p| step(p, None, None, options.sql))
            .collect();
        report.duration_ms = ms(started.elapsed());
        return Ok(report);
    }
    if !plan.is_empty() {
        history::create(client, &mut located).await?;
    }
    progress.planned(plan.len());
    let runner = execute::Run {
        client,
        table: &located.table,
        lock_timeout: cfg.lock_timeout,
        retries: cfg.lock_retries,
    };
    for planned in &plan {
        let m = planned.migration;
        progress.started(&m.file);
        let began = Instant::now();
        let on_retry = |attempt| progress.retrying(&m.file, attempt, "lock_timeout");
        let book = Bookkeeping::Record {
            version: m.version,
            name: &m.name,
            checksum: m.checksum,
        };
        let attempts = match runner.section(&m.up, &book, &on_retry).await {
            Ok(attempts) => attempts,
            Err(f) => {
                // The migrations before this one stay applied: the error carries them.
                report.duration_ms = ms(started.elapsed());
                return Err(Box::new(Failed {
                    error: migration_error(m, &f, &located.table),
                    report: (!report.steps.is_empty()).then_some(report),
                }));
            }
        };
        let took = began.elapsed();
        progress.finished(&m.file, took);
        report
            .steps
            .push(step(planned, Some(took), Some(attempts), Sql::Hidden));
    }
    progress.done();
    report.duration_ms = ms(started.elapsed());
    Ok(report)
}

/// A migration a run applies, or would apply.
#[derive(Debug)]
struct Planned<'c> {
    migration: &'c Migration,
    /// Out-of-order: the newest applied version it is older than.
    predates: Option<i64>,
}

/// The migrations not yet applied (pending and out-of-order), in version order up to `to`,
/// after refusing on drift. Applied migrations newer than every file (the database is ahead of
/// this release, in a rolling deploy) are neither drift nor a reason to stop. Whether the
/// out-of-order ones may run is the caller's decision ([`Order`]).
fn plan<'c>(
    catalog: &'c Catalog,
    history: &[HistoryRow],
    to: Option<i64>,
) -> Result<Vec<Planned<'c>>> {
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
    Ok(entries
        .iter()
        .filter(|e| matches!(e.state, State::Pending | State::OutOfOrder))
        .take_while(|e| to.is_none_or(|to| e.version <= to))
        .filter_map(|e| {
            catalog.get(e.version).map(|migration| Planned {
                migration,
                predates: e.predates,
            })
        })
        .collect())
}

/// migrate without `--allow-out-of-order`: exit 2, each out-of-order migration named.
pub fn out_of_order_refusal(out_of_order: &[status::Entry]) -> Error {
    let lines: Vec<String> = out_of_order.iter().map(status::out_of_order_line).collect();
    Error::usage_hint(
        format!(
            "{} out-of-order migration(s), nothing was applied:\n{}",
            lines.len(),
            lines.join("\n")
        ),
        status::OUT_OF_ORDER_ADVICE,
    )
}

/// "migration X failed: X.sql:3: syntax error … (SQLSTATE 42601)". The line is the server's
/// error position within the failing statement, or, when the server gives none (a GRANT to a
/// missing role), the line on which that statement starts; never the section's first line for
/// a statement further down.
fn migration_error(m: &Migration, failure: &execute::Failure, table: &TableName) -> Error {
    let pg = &failure.error;
    let location = failure
        .statement
        .map(|offset| statement_location(m, &m.up, offset, pg));
    let mut detail = SqlDetail::from_pg(pg, location);
    let lock_timeout = is_lock_timeout(pg);
    if lock_timeout {
        detail.message = format!(
            "{} (gave up after {} attempts; a session holds a conflicting lock)",
            detail.message, failure.attempts
        );
    }
    if failure.statement.is_none() && !lock_timeout {
        let account = execute::account(
            failure.stage,
            pg.code(),
            m.up.transaction,
            true,
            &m.file,
            table,
        );
        detail.hint = Some(match detail.hint.take() {
            Some(server_hint) => format!("{server_hint}\n{}; {}", account.kept, account.advice),
            None => format!("{}; {}", account.kept, account.advice),
        });
        return Error::Sql {
            context: account.context,
            detail,
        };
    }
    let escaped = pg.code() == Some(&tokio_postgres::error::SqlState::INVALID_TRANSACTION_STATE);
    let kept = match m.up.transaction {
        Transaction::Wrapped if escaped => {
            "it left dhctl's transaction, so part of it may have been kept; it was not recorded"
        }
        Transaction::Wrapped => "nothing of it was kept; earlier migrations stay applied",
        Transaction::None => "it runs outside a transaction (transaction:false): statements before the failing one were kept",
    };
    // The server ended the session (a terminated backend, a restart, a broken connection):
    // the statement it was running when that happened is not what to fix.
    let session_ended = pg.is_closed()
        || pg
            .code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
    let advice = if lock_timeout {
        "the file is not at fault: find the session holding the lock (pg_locks, pg_stat_activity), \
         then run dhctl migrate again, or raise --lock-timeout / --lock-retries"
    } else if session_ended {
        "the server ended dhctl's session (a terminated backend, a restart, a lost connection), \
         not necessarily because of the file: run dhctl migrate again once the server answers"
    } else if pg.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
        "the transaction was read-only: unless the file makes it so (SET TRANSACTION READ ONLY), \
         the server turned read-only during the run (demoted in a failover, or \
         default_transaction_read_only turned on) and the file is not at fault: run dhctl \
         migrate --wait 60s again once a writable primary answers"
    } else if failure.statement.is_none() {
        "dhctl could not record it in the history table; check the role's privileges on it, then run dhctl migrate again"
    } else {
        "fix the file and run dhctl migrate again"
    };
    detail.hint = Some(match detail.hint.take() {
        Some(server_hint) => format!("{server_hint}\n{kept}; {advice}"),
        None => format!("{kept}; {advice}"),
    });
    let context = match failure.statement {
        Some(_) => format!("migration {} failed", m.file),
        None => format!("migration {} failed while recording it in {table}", m.file),
    };
    Error::Sql { context, detail }
}

/// `file:line` of a failure in the statement that starts at byte `offset` of `section`.
pub(crate) fn statement_location(
    m: &Migration,
    section: &super::catalog::Section,
    offset: usize,
    pg: &tokio_postgres::Error,
) -> String {
    let before = section.sql[..offset].chars().count();
    let within = match crate::error::error_position(pg) {
        Some(position) => position,
        None => {
            section.sql[offset..][..execute::code_start(&section.sql[offset..])]
                .chars()
                .count()
                + 1
        }
    };
    m.location(section, before + within)
}

fn step(planned: &Planned<'_>, took: Option<Duration>, attempts: Option<u32>, sql: Sql) -> Step {
    let m = planned.migration;
    Step {
        version: m.version,
        name: m.name.clone(),
        file: m.file.clone(),
        transaction: m.up.transaction,
        duration_ms: took.map(ms),
        attempts,
        sql: (sql == Sql::Shown).then(|| m.up.sql.clone()),
        predates: planned.predates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::three_selects as catalog;

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
            p.iter().map(|p| p.migration.version).collect::<Vec<_>>(),
            vec![20240101000002]
        );
    }

    #[test]
    fn plan_keeps_out_of_order_files_in_version_order_and_marks_them() {
        let c = catalog();
        let p = plan(&c, &[applied(&c, 20240101000003)], None).unwrap();
        let planned: Vec<_> = p
            .iter()
            .map(|p| (p.migration.version, p.predates))
            .collect();
        assert_eq!(
            planned,
            vec![
                (20240101000001, Some(20240101000003)),
                (20240101000002, Some(20240101000003)),
            ]
        );
        let to = plan(&c, &[applied(&c, 20240101000003)], Some(20240101000001)).unwrap();
        assert_eq!(to.len(), 1);
        let entries = status::diff(&c, &[applied(&c, 20240101000003)]);
        let err = out_of_order_refusal(&entries[..2]);
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("20240101000001_a.sql is out-of-order"),
            "{text}"
        );
        assert!(
            text.contains("20240101000002_b.sql is out-of-order"),
            "{text}"
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
    fn plan_treats_rows_newer_than_every_file_as_ahead_not_drift() {
        let c = catalog();
        let mut history: Vec<HistoryRow> = [20240101000001, 20240101000002, 20240101000003]
            .iter()
            .map(|v| applied(&c, *v))
            .collect();
        history.push(HistoryRow {
            version: 20250101000000,
            name: "newer".into(),
            applied_on: String::new(),
            checksum: "7".into(),
        });
        assert!(plan(&c, &history, None).unwrap().is_empty());
        history.push(HistoryRow {
            version: 20230101000000,
            name: "older".into(),
            applied_on: String::new(),
            checksum: "7".into(),
        });
        assert_eq!(plan(&c, &history, None).unwrap_err().exit_code(), 4);
    }

    #[test]
    fn plan_rejects_an_unknown_to() {
        assert_eq!(plan(&catalog(), &[], Some(7)).unwrap_err().exit_code(), 2);
    }
}
