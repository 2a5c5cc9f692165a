//! `dhctl partition status` and the data `dhctl verify` checks: each policy's partitions with
//! their bounds, the runway, gaps and odd partitions, and what create and prune would do.
//! Reads only; takes no lock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::catalog;
use super::period::{Interval, Retention};
use super::plan::{self, Action, Coverage, Existing};
use super::policy::{Policy, RetentionMode};
use crate::error::Result;

/// Everything known about one policy's table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub table: String,
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
    let snapshot = catalog::read(client, policies).await?;
    let now = now.unwrap_or(snapshot.server_now);
    let tables = policies
        .iter()
        .zip(snapshot.tables)
        .map(|(policy, found)| describe(policy, found, now))
        .collect();
    Ok(Inspection { now, tables })
}

fn describe(
    policy: &Policy,
    found: std::result::Result<catalog::Parent, crate::error::FileProblem>,
    now: DateTime<Utc>,
) -> TableStatus {
    let mut status = TableStatus {
        table: policy.table.clone(),
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
        problems: Vec::new(),
    };
    let parent = match found {
        Ok(parent) => parent,
        Err(problem) => {
            status.problems.push(problem.problem);
            return status;
        }
    };
    if let Some(default) = &parent.default_partition {
        status.problems.push(format!(
            "{} has a DEFAULT partition ({default}); dhctl does not maintain tables with one",
            policy.table
        ));
    }
    status.coverage = plan::coverage(policy, &parent.partitions, now);
    match plan::create(policy, &parent.partitions, now, policy.premake) {
        Ok(actions) => status.would_create = actions,
        Err(e) => status.problems.push(e.message),
    }
    if let Some(retention) = policy.retention {
        match plan::prune(
            policy,
            &parent.partitions,
            now,
            retention,
            policy.retention_mode,
        ) {
            Ok(actions) => status.would_prune = actions,
            Err(e) => status.problems.push(e.message),
        }
    }
    status.partitions = parent.partitions;
    status
}
