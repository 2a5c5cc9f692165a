//! `dhctl partition status` and the data `dhctl verify` checks: each policy's partitions with
//! their bounds, the runway, gaps and odd partitions, and what create and prune would do.
//! Reads only; takes no lock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::live::{self, DefaultPartition, Other, Unusable};
use super::period::{Interval, Retention};
use super::plan::{self, Action, Clocks, Coverage, Existing, Kept};
use super::policy::{Policy, RetentionMode};
use crate::error::Result;

/// Everything known about one policy's table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// The table's schema; None when it was not found.
    pub schema: Option<String>,
    /// The policy file it came from.
    pub policy: String,
    pub column: String,
    pub interval: Interval,
    pub premake: u32,
    pub retention: Option<Retention>,
    pub retention_mode: RetentionMode,
    /// Partitions ordered by lower bound, as the catalog shows them.
    pub partitions: Vec<Existing>,
    /// Runway, gaps and odd partitions; None when the table cannot be read as the policy says.
    pub coverage: Option<Coverage>,
    /// What `partition create` (with the policy's premake) would do.
    pub would_create: Vec<Action>,
    /// What `partition prune` (with the policy's retention) would do.
    pub would_prune: Vec<Action>,
    /// Partitions past retention that prune would leave in place, and why.
    pub would_keep: Vec<Kept>,
    /// Relations named like the table's partitions that are not partitions of it: tables prune
    /// detached and kept (or could not drop) stay listed here until they are gone.
    pub others: Vec<Other>,
    /// The DEFAULT partition with its rows per period, if there is one.
    pub default_partition: Option<DefaultPartition>,
    /// Why the table cannot be maintained as it is (policy does not fit the table, a DEFAULT
    /// partition, a foreign partition in the way). Empty when all is well.
    pub problems: Vec<String>,
}

/// The status of every policy's table at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The instant the coverage and plans refer to.
    pub now: DateTime<Utc>,
    pub tables: Vec<TableStatus>,
}

/// Reads every policy's table (one catalog query) and describes it. `now`: None for the
/// server's clock. Problems are returned as data, not errors, so a checker can report them.
///
/// `verify` uses this for its partition check: for each table, `problems` must be empty,
/// `coverage.gaps` and `coverage.odd` empty and `coverage.runway >= 1`.
pub async fn inspect(
    client: &Client,
    policies: &[Policy],
    now: Option<DateTime<Utc>>,
) -> Result<Inspection> {
    let snapshot = live::read(client, policies).await?;
    let clocks = Clocks::at(now, snapshot.server_now);
    let now = clocks.now;
    let tables = policies
        .iter()
        .zip(snapshot.tables)
        .map(|(policy, found)| describe(policy, found, clocks))
        .collect();
    Ok(Inspection { now, tables })
}

fn describe(
    policy: &Policy,
    found: std::result::Result<live::Parent, Unusable>,
    clocks: Clocks,
) -> TableStatus {
    let now = clocks.now;
    let mut status = TableStatus {
        table: policy.table.clone(),
        schema: None,
        policy: policy.file.clone(),
        column: policy.column.clone(),
        interval: policy.interval,
        premake: policy.premake,
        retention: policy.retention,
        retention_mode: policy.retention_mode,
        partitions: Vec::new(),
        coverage: None,
        would_create: Vec::new(),
        would_prune: Vec::new(),
        would_keep: Vec::new(),
        others: Vec::new(),
        default_partition: None,
        problems: Vec::new(),
    };
    let parent = match found {
        Ok(parent) => parent,
        Err(problem) => {
            status.problems.push(problem.problem().problem.clone());
            return status;
        }
    };
    if let Some(default) = &parent.default_partition {
        // Per period, so `verify` (which reports these lines) shows them too.
        let periods: Vec<String> = default
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.from.format(policy.interval.label_format()),
                    r.rows
                )
            })
            .collect();
        let mut rows = match (&default.unreadable, periods.is_empty()) {
            (Some(why), _) => format!("rows not countable: {why}"),
            (None, true) if default.is_empty() => "empty".to_string(),
            (None, true) => "no rows in any period".to_string(),
            (None, false) => format!("rows per period: {}", periods.join(", ")),
        };
        if let Some(stranded) = default.stranded() {
            rows.push_str(&format!(
                "; and {stranded}, which no partition dhctl makes can hold (drain-default \
                 leaves them; move or delete them by hand before dropping the default)"
            ));
        }
        status.problems.push(format!(
            "{} has a DEFAULT partition ({}.{}, {rows}): prune cannot detach next to it, and \
             create refuses a period whose rows sit in it; `dhctl partition drain-default \
             --table {}` moves them out",
            policy.table, default.schema, default.name, policy.table
        ));
    }
    status.schema = Some(parent.schema.clone());
    status.coverage = plan::coverage(policy, &parent.partitions, now);
    match plan::create(policy, &parent.partitions, now, policy.premake)
        .and_then(|actions| super::tables::check_create(policy, &parent, actions))
    {
        Ok(actions) => status.would_create = actions,
        Err(e) => status.problems.push(e.message),
    }
    match plan::prune(
        policy,
        &parent.partitions,
        clocks,
        policy.retention,
        policy.retention_mode,
        None,
    ) {
        Ok(plan) => {
            (status.would_prune, status.would_keep) =
                super::tables::keep_foreign(&parent, plan.actions, plan.kept);
        }
        Err(e) => status.problems.push(e.message),
    }
    status.partitions = parent.partitions;
    status.others = parent.others;
    status.default_partition = parent.default_partition;
    status
}
