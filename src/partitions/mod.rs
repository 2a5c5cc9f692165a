//! Partition maintenance: policies (toml), the catalog's view of each table, the pure plan, and
//! the commands `partition create | prune | status` (also run at the end of `migrate`).
//!
//! Every command reads the catalog once, plans every table, and refuses before changing anything
//! when a policy does not fit its table or a plan conflicts with a foreign partition. Changes run
//! under the dhctl advisory lock, one partition at a time; a table whose change fails does not
//! stop the others, and the report says which failed.

pub mod apply;
pub mod catalog;
pub mod period;
pub mod plan;
pub mod policy;
mod status;
mod tables;

use std::time::Instant;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use tokio_postgres::Client;

pub use period::{Interval, Retention};
pub use plan::{Action, Coverage, Existing};
pub use policy::{Policy, RetentionMode, Source};
pub use status::{inspect, Inspection, TableStatus};

use crate::config::DbConfig;
use crate::db::{connect, CreateDatabase};
use crate::error::{Error, Result};
use crate::migrations::migrate::{ms, Mode};
use crate::migrations::{Locked, Progress};
use catalog::Partitions;
use tables::{expected_names, plan_create, plan_prune, TablePlan};

/// Parses a `--now` value (RFC 3339). Limited to 1970–9000 so names keep four-digit years.
pub fn parse_now(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        Error::usage_hint(
            format!("{flag} `{text}` is not an RFC 3339 time ({e})"),
            "write e.g. 2026-11-15T10:00:00Z",
        )
    })?;
    let now = parsed.with_timezone(&Utc);
    if !(1970..=9000).contains(&now.year()) {
        return Err(Error::usage(format!(
            "{flag} `{text}` is out of range; use a time between 1970 and 9000"
        )));
    }
    Ok(now)
}

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
    #[serde(flatten)]
    pub action: Action,
    pub attempts: Option<u32>,
    pub duration_ms: Option<f64>,
}

/// One table's part of a create or prune run.
#[derive(Debug, Clone, Serialize)]
pub struct TableRun {
    pub table: String,
    /// Done (or, in a dry run, planned), in order.
    pub steps: Vec<Step>,
    /// Steps planned but not reached because an earlier step of this table failed.
    pub not_done: Vec<Action>,
    pub error: Option<String>,
}

/// What `partition create` or `partition prune` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub database: String,
    pub now: DateTime<Utc>,
    pub dry_run: bool,
    pub tables: Vec<TableRun>,
    pub duration_ms: f64,
}

impl RunReport {
    /// Whether anything was (or would be) done.
    pub fn is_noop(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.steps.is_empty() && t.error.is_none())
    }
}

/// A report with the errors of the tables that failed (exit 2 when there are any).
pub struct Outcome {
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
) -> Result<Outcome> {
    let started = Instant::now();
    let session = connect(cfg, CreateDatabase::Never).await?;
    let shapes = catalog::parents(&session.client, policies).await?;
    let now = options.now.unwrap_or(shapes.server_now);
    // The steady state: the partitions the plan wants, by name, already hold exactly the wanted
    // bounds. Only they are read (see catalog), however many partitions the tables have.
    let expected = expected_names(policies, &shapes, now, options.ahead);
    let named = catalog::partitions(
        &session.client,
        shapes.clone(),
        Partitions::Named(&expected),
    );
    if let Ok(plans) = plan_create(policies, &named.await?, now, options.ahead) {
        if plans.iter().all(|(_, _, a)| a.is_empty()) {
            let report = planned_report(cfg, now, options.mode, plans, started);
            return Ok(Outcome {
                report,
                failures: Vec::new(),
            });
        }
    }
    let snapshot = catalog::partitions(&session.client, shapes, Partitions::All).await?;
    let plans = plan_create(policies, &snapshot, now, options.ahead)?;
    if options.mode == Mode::DryRun || plans.iter().all(|(_, _, a)| a.is_empty()) {
        let report = planned_report(cfg, now, options.mode, plans, started);
        return Ok(Outcome {
            report,
            failures: Vec::new(),
        });
    }
    let locked = Locked::lock(session, cfg).await?;
    let result = ensure(&locked, cfg, policies, options, progress).await;
    locked.finish(result).await
}

/// Creates what every policy wants on a session that holds the lock (`create`, `migrate`).
pub async fn ensure(
    locked: &Locked,
    cfg: &DbConfig,
    policies: &[Policy],
    options: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let started = Instant::now();
    let client = &locked.session.client;
    let snapshot = catalog::read(client, policies).await?;
    let now = options.now.unwrap_or(snapshot.server_now);
    let plans = plan_create(policies, &snapshot, now, options.ahead)?;
    if options.mode == Mode::DryRun {
        return Ok(Outcome {
            report: planned_report(cfg, now, options.mode, plans, started),
            failures: Vec::new(),
        });
    }
    Ok(execute(client, cfg, now, plans, progress, started).await)
}

/// `dhctl partition prune`.
pub async fn prune(
    cfg: &DbConfig,
    policies: &[Policy],
    options: &PruneOptions,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let started = Instant::now();
    let session = connect(cfg, CreateDatabase::Never).await?;
    let first = catalog::read(&session.client, policies).await?;
    let now = options.now.unwrap_or(first.server_now);
    let plans = plan_prune(policies, &first, now, options)?;
    if options.mode == Mode::DryRun || plans.iter().all(|(_, _, a)| a.is_empty()) {
        let report = planned_report(cfg, now, options.mode, plans, started);
        return Ok(Outcome {
            report,
            failures: Vec::new(),
        });
    }
    let locked = Locked::lock(session, cfg).await?;
    let result = async {
        let client = &locked.session.client;
        let snapshot = catalog::read(client, policies).await?;
        let plans = plan_prune(policies, &snapshot, now, options)?;
        Ok(execute(client, cfg, now, plans, progress, started).await)
    }
    .await;
    locked.finish(result).await
}

fn planned_report(
    cfg: &DbConfig,
    now: DateTime<Utc>,
    mode: Mode,
    plans: Vec<TablePlan<'_>>,
    started: Instant,
) -> RunReport {
    RunReport {
        database: cfg.display_target(),
        now,
        dry_run: mode == Mode::DryRun,
        tables: plans
            .into_iter()
            .map(|(policy, _, actions)| TableRun {
                table: policy.table.clone(),
                steps: actions
                    .into_iter()
                    .map(|action| Step {
                        action,
                        attempts: None,
                        duration_ms: None,
                    })
                    .collect(),
                not_done: Vec::new(),
                error: None,
            })
            .collect(),
        duration_ms: ms(started.elapsed()),
    }
}

/// Runs every table's actions in order; a failed action ends its table, not the run.
async fn execute(
    client: &Client,
    cfg: &DbConfig,
    now: DateTime<Utc>,
    plans: Vec<TablePlan<'_>>,
    progress: &dyn Progress,
    started: Instant,
) -> Outcome {
    let mut tables = Vec::with_capacity(plans.len());
    let mut failures = Vec::new();
    for (policy, parent, actions) in plans {
        let target = apply::Target {
            schema: &parent.schema,
            table: &parent.table,
            column: &policy.column,
        };
        let mut run = TableRun {
            table: policy.table.clone(),
            steps: Vec::new(),
            not_done: Vec::new(),
            error: None,
        };
        let mut actions = actions.into_iter();
        for action in actions.by_ref() {
            match apply::run(client, &target, &action, cfg.lock_retries, progress).await {
                Ok(done) => run.steps.push(Step {
                    action,
                    attempts: Some(done.attempts),
                    duration_ms: Some(ms(done.took)),
                }),
                Err(e) => {
                    run.error = Some(e.to_string());
                    run.not_done.push(action);
                    failures.push(e);
                    break;
                }
            }
        }
        run.not_done.extend(actions);
        tables.push(run);
    }
    Outcome {
        report: RunReport {
            database: cfg.display_target(),
            now,
            dry_run: false,
            tables,
            duration_ms: ms(started.elapsed()),
        },
        failures,
    }
}
