//! Partition maintenance: policies (toml), the catalog's view of each table, the pure plan, and
//! the commands `partition create | prune | status` (also run at the end of `migrate`).
//!
//! Every command reads the catalog once and plans every table on its own: a table whose policy
//! does not fit, or whose plan conflicts with a foreign partition or a DEFAULT partition, is
//! refused before anything changes in it, with what is wrong and how to fix it, and the other
//! tables are still done. Changes run under the dhctl advisory lock, one partition at a time; the
//! report gives each table's outcome and the worst exit code.

pub mod apply;
mod child;
mod drain;
pub mod live;
pub mod period;
pub mod plan;
pub mod policy;
mod status;
mod tables;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

pub use drain::{drain_default, DrainOptions, DEFAULT_BATCH};
pub use period::{Interval, Retention};
pub use plan::{Action, Clocks, Coverage, Existing, Kept};
pub use policy::{Policy, RetentionMode};
pub use status::{inspect, Inspection, TableStatus};

use crate::db::{connect, CreateDatabase, DbConfig, Locked};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::report::{ms, Mode};
use live::Which;
use tables::{expected_names, plan_create, plan_prune, MissingTable, Newest, TablePlan};

/// Refuses an `--ahead` past the per-run cap before anything connects.
pub fn check_ahead(ahead: u32) -> Result<()> {
    if ahead >= plan::MAX_PERIODS_PER_RUN {
        return Err(Error::usage_hint(
            format!(
                "--ahead {ahead} asks for {} periods per table; dhctl creates at most {} per run",
                u64::from(ahead) + 1,
                plan::MAX_PERIODS_PER_RUN
            ),
            "use a smaller --ahead (the policies' premake is the default), or create a far \
             range in several runs with --now",
        ));
    }
    Ok(())
}

/// Options of `partition create` (and the partition step of `migrate`).
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// None: the server's clock.
    pub now: Option<DateTime<Utc>>,
    /// Periods after the current one; None: each policy's premake.
    pub ahead: Option<u32>,
    pub mode: Mode,
}

/// Options of `partition prune`.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub now: Option<DateTime<Utc>>,
    /// Overrides every policy's retention.
    pub retention: Option<Retention>,
    /// `--keep-table`: detach only, whatever the policy's retention_mode says.
    pub keep: Option<RetentionMode>,
    pub mode: Mode,
}

/// An action and, unless a dry run, how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was done (or, in a dry run, what would be): after a failed DROP this is the detach
    /// that happened, with `then: keep`, not the detach-and-drop that was planned.
    #[serde(flatten)]
    pub action: Action,
    pub attempts: Option<u32>,
    pub duration_ms: Option<f64>,
}

/// One table's part of a create or prune run: its own outcome, whatever the other tables' are.
#[derive(Debug, Clone, Serialize)]
pub struct TableRun {
    pub table: String,
    /// The table's schema; None when it was not found.
    pub schema: Option<String>,
    /// Done (or, in a dry run, planned), in order.
    pub steps: Vec<Step>,
    /// Steps planned but not done because of `error`.
    pub not_done: Vec<Action>,
    /// Partitions past retention that prune leaves in place, and why.
    pub kept: Vec<Kept>,
    /// What else to know: a table skipped, a property of the parent not copied.
    pub notes: Vec<String>,
    pub error: Option<String>,
    /// How to fix `error`, when there is a way.
    pub hint: Option<String>,
    /// This table's exit code: 0, or the code its error maps to.
    pub exit_code: i32,
}

/// What `partition create` or `partition prune` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub database: String,
    pub now: DateTime<Utc>,
    /// The server's clock when it differs from `now` (`--now` was given).
    pub server_now: DateTime<Utc>,
    pub dry_run: bool,
    pub tables: Vec<TableRun>,
    /// The worst of the tables' exit codes.
    pub exit_code: i32,
    pub duration_ms: f64,
}

impl RunReport {
    /// Whether anything was (or would be) done, or needs saying.
    pub fn is_noop(&self) -> bool {
        self.tables.iter().all(|t| {
            t.steps.is_empty() && t.error.is_none() && t.kept.is_empty() && t.notes.is_empty()
        })
    }
}

/// What a partition run did: its report, and the errors of the tables that failed (the worst
/// exit code wins).
pub struct Maintenance {
    pub report: RunReport,
    pub failures: Vec<Error>,
}

/// `dhctl partition create`. The steady state (cron, nothing to do) costs two small catalog
/// queries and takes no lock: a complete set cannot become incomplete through another runner
/// (only a human dropping partitions by hand could), so "nothing to do" read without the lock
/// is true. When there is work, the plan is made again after taking the lock (sqitch#579).
pub async fn create(
    cfg: &DbConfig,
    policies: &[Policy],
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Maintenance> {
    let started = Instant::now();
    let session = connect(cfg, CreateDatabase::Never).await?;
    let shapes = live::parents(&session.client, policies).await?;
    let clocks = Clocks::at(options.now, shapes.server_now);
    // The steady state: the partitions the plan wants, by name, already hold exactly the wanted
    // bounds. Only they are read (see live), however many partitions the tables have.
    let expected = expected_names(policies, &shapes, clocks.now, options.ahead);
    let named = live::partitions(&session.client, shapes.clone(), Which::Named(&expected)).await?;
    let plans = plan_create(
        policies,
        &named,
        clocks.now,
        options.ahead,
        MissingTable::Refuse,
    );
    let header = Header {
        cfg,
        clocks,
        mode: options.mode,
        started,
    };
    if plans.iter().all(TablePlan::is_quiet) {
        return Ok(header.planned(plans));
    }
    let snapshot = live::partitions(&session.client, shapes, Which::All).await?;
    let plans = plan_create(
        policies,
        &snapshot,
        clocks.now,
        options.ahead,
        MissingTable::Refuse,
    );
    if options.mode == Mode::DryRun || plans.iter().all(|p| p.actions.is_empty()) {
        return Ok(header.planned(plans));
    }
    let locked = Locked::lock(session, cfg).await?;
    let result = ensure_with(
        &locked,
        cfg,
        policies,
        options,
        MissingTable::Refuse,
        progress,
    )
    .await;
    locked.finish(result).await
}

/// Creates what every policy wants on a session that holds the lock (`migrate`). A policy whose
/// table does not exist yet (`migrate --to` an earlier version) is skipped with a note; a table
/// that cannot be maintained is reported on its own and does not stop the others.
pub async fn ensure(
    locked: &Locked,
    cfg: &DbConfig,
    policies: &[Policy],
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Maintenance> {
    ensure_with(locked, cfg, policies, options, MissingTable::Skip, progress).await
}

async fn ensure_with(
    locked: &Locked,
    cfg: &DbConfig,
    policies: &[Policy],
    options: &CreateOptions,
    missing: MissingTable,
    progress: &dyn Progress,
) -> Result<Maintenance> {
    let started = Instant::now();
    let client = &locked.session.client;
    let snapshot = live::read(client, policies).await?;
    let clocks = Clocks::at(options.now, snapshot.server_now);
    let plans = plan_create(policies, &snapshot, clocks.now, options.ahead, missing);
    let header = Header {
        cfg,
        clocks,
        mode: options.mode,
        started,
    };
    if options.mode == Mode::DryRun {
        return Ok(header.planned(plans));
    }
    Ok(execute(client, header, plans, progress).await)
}

/// `dhctl partition prune`.
pub async fn prune(
    cfg: &DbConfig,
    policies: &[Policy],
    options: &PruneOptions,
    progress: &dyn Progress,
) -> Result<Maintenance> {
    let started = Instant::now();
    let session = connect(cfg, CreateDatabase::Never).await?;
    let first = live::read(&session.client, policies).await?;
    let clocks = Clocks::at(options.now, first.server_now);
    let plans = prune_plans(&session.client, policies, &first, clocks, options).await?;
    let header = Header {
        cfg,
        clocks,
        mode: options.mode,
        started,
    };
    if options.mode == Mode::DryRun || plans.iter().all(|p| p.actions.is_empty()) {
        return Ok(header.planned(plans));
    }
    drop(plans);
    let locked = Locked::lock(session, cfg).await?;
    let result = async {
        let client = &locked.session.client;
        let snapshot = live::read(client, policies).await?;
        // The server's clock read again under the lock; a --now stays as given.
        let clocks = Clocks::at(options.now, snapshot.server_now);
        let plans = prune_plans(client, policies, &snapshot, clocks, options).await?;
        Ok(execute(client, Header { clocks, ..header }, plans, progress).await)
    }
    .await;
    locked.finish(result).await
}

/// Plans prune; when a table would be left without a live partition, finds the partition that
/// holds its newest rows (one indexed read, only then) and plans again keeping it.
async fn prune_plans<'p>(
    client: &Client,
    policies: &'p [Policy],
    snapshot: &live::Snapshot,
    clocks: Clocks,
    options: &PruneOptions,
) -> Result<Vec<TablePlan<'p>>> {
    let (plans, needs_newest) = plan_prune(policies, snapshot, clocks, options, &Newest::new());
    if !needs_newest {
        return Ok(plans);
    }
    let mut newest = Newest::new();
    for plan in &plans {
        if let (Some(parent), false) = (&plan.parent, plan.kept.is_empty()) {
            // Unreadable (no SELECT on a partition): the highest partition is kept instead.
            if let Ok(Some(found)) = live::newest_rows(client, parent, &plan.policy.column).await {
                newest.insert(plan.policy.table.clone(), found);
            }
        }
    }
    Ok(plan_prune(policies, snapshot, clocks, options, &newest).0)
}

fn table_run(plan: &TablePlan<'_>) -> TableRun {
    TableRun {
        table: plan.policy.table.clone(),
        schema: plan.parent.as_ref().map(|p| p.schema.clone()),
        steps: Vec::new(),
        not_done: Vec::new(),
        kept: plan.kept.clone(),
        notes: plan.notes.clone(),
        error: None,
        hint: None,
        exit_code: 0,
    }
}

/// What a run's report says whatever its tables: the database, the clocks, whether it is a dry
/// run, and when it started (for `duration_ms`).
#[derive(Clone, Copy)]
struct Header<'a> {
    cfg: &'a DbConfig,
    clocks: Clocks,
    mode: Mode,
    started: Instant,
}

impl Header<'_> {
    fn report(&self, tables: Vec<TableRun>) -> RunReport {
        RunReport {
            database: self.cfg.display_target(),
            now: self.clocks.now,
            server_now: self.clocks.server_now,
            dry_run: self.mode == Mode::DryRun,
            exit_code: tables.iter().map(|t| t.exit_code).max().unwrap_or(0),
            tables,
            duration_ms: ms(self.started.elapsed()),
        }
    }

    /// The outcome of a plan (a dry run, or nothing to do): refused tables are its failures.
    fn planned(&self, plans: Vec<TablePlan<'_>>) -> Maintenance {
        let mut failures = Vec::new();
        let mut tables = Vec::with_capacity(plans.len());
        for plan in plans {
            let mut run = table_run(&plan);
            run.steps = plan
                .actions
                .into_iter()
                .map(|action| Step {
                    action,
                    attempts: None,
                    duration_ms: None,
                })
                .collect();
            if let Some(e) = plan.refusal {
                run.error = Some(e.to_string());
                run.hint = e.hint();
                run.exit_code = e.exit_code();
                failures.push(e);
            }
            tables.push(run);
        }
        Maintenance {
            report: self.report(tables),
            failures,
        }
    }
}

/// Runs every table's actions in order. A failed action ends its table (a partition whose drop
/// would fail only skips that partition), never the run.
async fn execute(
    client: &Client,
    header: Header<'_>,
    plans: Vec<TablePlan<'_>>,
    progress: &dyn Progress,
) -> Maintenance {
    let mut tables = Vec::with_capacity(plans.len());
    let mut failures = Vec::new();
    for plan in plans {
        let mut run = table_run(&plan);
        let mut errors = Vec::new();
        match (plan.refusal, &plan.parent) {
            (Some(e), _) => errors.push(e),
            (None, None) => {}
            (None, Some(parent)) => {
                let target = apply::Partitioned {
                    schema: &parent.schema,
                    table: &parent.table,
                    oid: parent.oid,
                    column: &plan.policy.column,
                };
                let mut actions = plan.actions.into_iter();
                for action in actions.by_ref() {
                    match apply::run(client, &target, &action, header.cfg.lock_retries, progress)
                        .await
                    {
                        Ok(done) => {
                            run.notes.extend(done.notes);
                            run.steps.push(Step {
                                action: done.action,
                                attempts: Some(done.attempts),
                                duration_ms: Some(ms(done.took)),
                            });
                        }
                        Err(failed) => {
                            match failed.done {
                                Some(done) => run.steps.push(Step {
                                    action: done,
                                    attempts: None,
                                    duration_ms: None,
                                }),
                                None => run.not_done.push(action),
                            }
                            errors.push(failed.error);
                            if failed.next == apply::Next::StopTable {
                                break;
                            }
                        }
                    }
                }
                run.not_done.extend(actions);
            }
        }
        if !errors.is_empty() {
            run.error = Some(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            run.hint = errors.iter().find_map(Error::hint);
            run.exit_code = errors.iter().map(Error::exit_code).max().unwrap_or(2);
            failures.extend(errors);
        }
        tables.push(run);
    }
    Maintenance {
        report: Header {
            mode: Mode::Apply,
            ..header
        }
        .report(tables),
        failures,
    }
}
