//! Per-table plans from the policies and a catalog snapshot: every problem (a policy that does
//! not fit its table, a DEFAULT partition, a foreign partition in the way) is collected and
//! refused at once, before anything changes.

use chrono::{DateTime, Utc};

use super::catalog::{Parent, Snapshot};
use super::plan::{self, Action};
use super::policy::{self, Policy};
use super::{PruneOptions, Retention, RetentionMode};
use crate::error::{Error, FileProblem, Result};

/// The names `create` gives the periods it wants (for the no-op check).
pub(super) fn expected_names(
    policies: &[Policy],
    shapes: &Snapshot,
    now: DateTime<Utc>,
    ahead: Option<u32>,
) -> Vec<String> {
    let mut names = Vec::new();
    for (policy, table) in policies.iter().zip(&shapes.tables) {
        if table.is_err() {
            continue;
        }
        let periods = ahead
            .unwrap_or(policy.premake)
            .min(plan::MAX_PERIODS_PER_RUN);
        let mut from = policy.interval.floor(now);
        for _ in 0..=periods {
            names.push(policy.interval.child_name(&policy.table, from));
            match policy.interval.next(from) {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    names
}

pub(super) type TablePlan<'p> = (&'p Policy, Parent, Vec<Action>);

/// The tables of a snapshot, or every problem at once (exit 2, nothing changed).
fn parents(policies: &[Policy], snapshot: &Snapshot) -> Result<Vec<(usize, Parent)>> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (i, table) in snapshot.tables.iter().enumerate() {
        match table {
            Ok(parent) => match &parent.default_partition {
                Some(default) => problems.push(FileProblem {
                    file: policies[i].file.clone(),
                    problem: format!(
                        "key `table`: {} has a DEFAULT partition ({default}); every ATTACH would \
                         scan it and DETACH CONCURRENTLY refuses to run; move its rows into \
                         proper partitions and drop it (docs/partitions.md)",
                        parent.table
                    ),
                }),
                None => found.push((i, parent.clone())),
            },
            Err(problem) => problems.push(problem.clone()),
        }
    }
    if !problems.is_empty() {
        return Err(policy::problems_error(problems));
    }
    Ok(found)
}

pub(super) fn plan_create<'p>(
    policies: &'p [Policy],
    snapshot: &Snapshot,
    now: DateTime<Utc>,
    ahead: Option<u32>,
) -> Result<Vec<TablePlan<'p>>> {
    let mut plans = Vec::new();
    let mut conflicts = Vec::new();
    for (i, parent) in parents(policies, snapshot)? {
        let policy = &policies[i];
        match plan::create(
            policy,
            &parent.partitions,
            now,
            ahead.unwrap_or(policy.premake),
        ) {
            Ok(actions) => plans.push((policy, parent, actions)),
            Err(e) => conflicts.push(e),
        }
    }
    refuse_conflicts(conflicts)?;
    Ok(plans)
}

pub(super) fn plan_prune<'p>(
    policies: &'p [Policy],
    snapshot: &Snapshot,
    now: DateTime<Utc>,
    options: &PruneOptions,
) -> Result<Vec<TablePlan<'p>>> {
    let mut plans = Vec::new();
    let mut conflicts = Vec::new();
    for (i, parent) in parents(policies, snapshot)? {
        let policy = &policies[i];
        // A table without a retention keeps everything; pending detaches are still finished.
        let Some(retention) = options.retention.or(policy.retention) else {
            let pending: Vec<_> = parent
                .partitions
                .iter()
                .filter(|p| p.detach_pending)
                .cloned()
                .collect();
            let far = Retention::parse("100 years").expect("a valid retention");
            match plan::prune(policy, &pending, now, far, RetentionMode::Detach) {
                Ok(actions) => plans.push((policy, parent, actions)),
                Err(e) => conflicts.push(e),
            }
            continue;
        };
        let mode = options.keep.unwrap_or(policy.retention_mode);
        match plan::prune(policy, &parent.partitions, now, retention, mode) {
            Ok(actions) => plans.push((policy, parent, actions)),
            Err(e) => conflicts.push(e),
        }
    }
    refuse_conflicts(conflicts)?;
    Ok(plans)
}

/// Plans that cannot be carried out, as one error; no table was touched yet.
fn refuse_conflicts(conflicts: Vec<plan::PlanError>) -> Result<()> {
    match conflicts.first() {
        None => Ok(()),
        Some(first) => Err(Error::usage_hint(
            conflicts
                .iter()
                .map(|c| c.message.as_str())
                .chain(["no partition was created, detached or dropped"])
                .collect::<Vec<_>>()
                .join("\n"),
            first.hint.clone(),
        )),
    }
}
