//! Per-table plans from the policies and a catalog snapshot. A table that cannot be maintained (a
//! policy that does not fit it, a foreign partition in the way, a DEFAULT partition holding rows
//! for a wanted period) is refused on its own, with what is wrong and how to fix it; the other
//! tables are still planned and done (DESIGN.md: one table's problem never stops another's).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::live::{Parent, Snapshot, Unusable};
use super::period::sql_timestamp;
use super::plan::{self, Action, Clocks, Kept};
use super::policy::Policy;
use super::PruneOptions;
use crate::error::Error;

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

/// What to do about a policy whose table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MissingTable {
    /// `migrate --to V`: a later migration creates it; skip it with a note.
    Skip,
    /// `partition create | prune`: an error for that table.
    Refuse,
}

/// One table's plan: its actions, or why nothing is done to it.
pub(super) struct TablePlan<'p> {
    pub policy: &'p Policy,
    pub parent: Option<Parent>,
    pub actions: Vec<Action>,
    /// Partitions prune leaves in place although past retention, and why.
    pub kept: Vec<Kept>,
    pub notes: Vec<String>,
    /// Why this table is refused (nothing is changed in it); None when it is planned.
    pub refusal: Option<Error>,
}

impl<'p> TablePlan<'p> {
    pub fn new(policy: &'p Policy, parent: Option<Parent>) -> TablePlan<'p> {
        TablePlan {
            policy,
            parent,
            actions: Vec::new(),
            kept: Vec::new(),
            notes: Vec::new(),
            refusal: None,
        }
    }

    /// Nothing to do and nothing to say.
    pub fn is_quiet(&self) -> bool {
        self.actions.is_empty()
            && self.refusal.is_none()
            && self.notes.is_empty()
            && self.kept.is_empty()
    }
}

/// The table of policy `i`, or a plan that says why there is none.
pub(super) fn parent<'p>(
    policy: &'p Policy,
    found: &Result<Parent, Unusable>,
    missing: MissingTable,
) -> Result<Parent, Box<TablePlan<'p>>> {
    let mut refused = TablePlan::new(policy, None);
    match found {
        Ok(parent) => return Ok(parent.clone()),
        Err(Unusable::Missing(_)) if missing == MissingTable::Skip => refused.notes.push(format!(
            "skipped {}: the table does not exist yet (a later migration creates it)",
            policy.table
        )),
        Err(Unusable::Missing(p)) => {
            refused.refusal = Some(Error::usage_hint(
                format!("{}: {}", p.file, p.problem),
                format!(
                    "run `dhctl migrate` to create {}, or remove {} if the table is gone for good",
                    policy.table, p.file
                ),
            ))
        }
        Err(Unusable::Misfit(p)) => {
            refused.refusal = Some(Error::usage_hint(
                format!("{}: {}", p.file, p.problem),
                "make the policy describe the table (docs/partitions.md lists the keys), or \
                 re-create the table as the policy says",
            ))
        }
    }
    Err(Box::new(refused))
}

pub(super) fn plan_create<'p>(
    policies: &'p [Policy],
    snapshot: &Snapshot,
    now: DateTime<Utc>,
    ahead: Option<u32>,
    missing: MissingTable,
) -> Vec<TablePlan<'p>> {
    policies
        .iter()
        .zip(&snapshot.tables)
        .map(|(policy, found)| {
            let parent = match parent(policy, found, missing) {
                Ok(parent) => parent,
                Err(refused) => return *refused,
            };
            let wanted = plan::create(
                policy,
                &parent.partitions,
                now,
                ahead.unwrap_or(policy.premake),
            );
            let mut plan = TablePlan::new(policy, None);
            match wanted.and_then(|actions| check_create(policy, &parent, actions)) {
                Ok(actions) => plan.actions = actions,
                Err(e) => plan.refusal = Some(refused(policy, e)),
            }
            plan.parent = Some(parent);
            plan
        })
        .collect()
}

/// What only the catalog can tell about a create: a taken name, a DEFAULT partition holding rows
/// of a wanted period (ATTACH would fail: "updated partition constraint for default partition
/// would be violated").
pub(super) fn check_create(
    policy: &Policy,
    parent: &Parent,
    actions: Vec<Action>,
) -> Result<Vec<Action>, plan::PlanError> {
    for action in &actions {
        let Action::Create { name, from, to } = action else {
            continue;
        };
        if let Some(other) = parent
            .others
            .iter()
            .find(|o| o.schema == parent.schema && &o.name == name)
        {
            let (message, hint) = if other.what == "interrupted drain" {
                (
                    format!(
                        "{}: wanted partition {name} [{}, {}) has its name taken by the table \
                         {}.{name}, which an interrupted drain-default left before attaching it \
                         (it carries drain's bounds CHECK and holds the rows moved so far)",
                        policy.table,
                        sql_timestamp(*from),
                        sql_timestamp(*to),
                        other.schema
                    ),
                    format!(
                        "re-run `dhctl partition drain-default --table {}` to finish it (it \
                         moves the rest and attaches {}.{name}); then run create again",
                        policy.table, other.schema
                    ),
                )
            } else if other.what == "detached" {
                (
                    format!(
                        "{}: wanted partition {name} [{}, {}) has its name taken by the table \
                         {}.{name}, which is not a partition (kept by prune --keep-table or \
                         retention_mode = \"detach\", or a prune whose DROP failed)",
                        policy.table,
                        sql_timestamp(*from),
                        sql_timestamp(*to),
                        other.schema
                    ),
                    format!(
                        "archive and drop {}.{name}, or rename it; then run create again",
                        other.schema
                    ),
                )
            } else {
                (
                    format!(
                        "{}: wanted partition {name} [{}, {}) has its name taken by {}.{name}, \
                         {}",
                        policy.table,
                        sql_timestamp(*from),
                        sql_timestamp(*to),
                        other.schema,
                        other.what
                    ),
                    format!(
                        "rename {}.{name} (dhctl names {}'s partitions <table>_YYYY_MM[_DD]); \
                         then run create again",
                        other.schema, policy.table
                    ),
                )
            };
            return Err(plan::PlanError { message, hint });
        }
        if let Some(default) = &parent.default_partition {
            if let Some(why) = &default.unreadable {
                return Err(plan::PlanError {
                    message: format!(
                        "{}: cannot tell whether the DEFAULT partition {}.{} holds rows of \
                         wanted partition {name}: {why}",
                        policy.table, default.schema, default.name
                    ),
                    hint: unreadable_hint(&default.schema, &default.name, why),
                });
            }
            let rows = default.rows_in(*from, *to);
            if rows > 0 {
                return Err(plan::PlanError {
                    message: format!(
                        "{}: the DEFAULT partition {}.{} holds {rows} row(s) of [{}, {}), the \
                         period of wanted partition {name}; PostgreSQL refuses to attach a \
                         partition while the default holds rows that belong in it",
                        policy.table,
                        default.schema,
                        default.name,
                        sql_timestamp(*from),
                        sql_timestamp(*to)
                    ),
                    hint: format!(
                        "move those rows into their own partition with `dhctl partition \
                         drain-default --table {}` (bounded batches; inserts go on), then run \
                         create again",
                        policy.table
                    ),
                });
            }
        }
    }
    Ok(actions)
}

/// A plan error as the error of its table: nothing was changed in it.
fn refused(policy: &Policy, e: plan::PlanError) -> Error {
    Error::usage_hint(
        format!(
            "{}\nno partition of {} was created, detached or dropped",
            e.message, policy.table
        ),
        e.hint,
    )
}

/// The partition holding the newest rows, per table, when a plan asks for it (`needs_newest`).
pub(super) type Newest = HashMap<String, (String, String)>;

pub(super) fn plan_prune<'p>(
    policies: &'p [Policy],
    snapshot: &Snapshot,
    clocks: Clocks,
    options: &PruneOptions,
    newest: &Newest,
) -> (Vec<TablePlan<'p>>, bool) {
    let mut needs_newest = false;
    let plans = policies
        .iter()
        .zip(&snapshot.tables)
        .map(|(policy, found)| {
            let parent = match parent(policy, found, MissingTable::Refuse) {
                Ok(parent) => parent,
                Err(refused) => return *refused,
            };
            let mut table = TablePlan::new(policy, None);
            // A policy without a retention keeps everything; pending detaches are still dealt with.
            let retention = options.retention.or(policy.retention);
            let mode = options.keep.unwrap_or(policy.retention_mode);
            let newest = newest
                .get(&policy.table)
                .map(|(s, n)| (s.as_str(), n.as_str()));
            match plan::prune(policy, &parent.partitions, clocks, retention, mode, newest) {
                Ok(plan) => {
                    needs_newest |= plan.needs_newest && newest.is_none();
                    (table.actions, table.kept) = keep_foreign(&parent, plan.actions, plan.kept);
                }
                Err(e) => table.refusal = Some(refused(policy, e)),
            }
            if let (Some(default), false) = (&parent.default_partition, table.actions.is_empty()) {
                table.actions.clear();
                table.refusal = Some(Error::usage_hint(
                    format!(
                        "{}: DETACH PARTITION … CONCURRENTLY refuses to run while a DEFAULT \
                         partition exists ({}.{}), and a plain DETACH would block every query on \
                         {} while it waits; nothing was detached",
                        policy.table, default.schema, default.name, policy.table
                    ),
                    match default.stranded() {
                        None => format!(
                            "move the default's rows into proper partitions with `dhctl \
                             partition drain-default --table {}`, drop the empty default, then \
                             prune again",
                            policy.table
                        ),
                        Some(stranded) => format!(
                            "move the default's rows into proper partitions with `dhctl \
                             partition drain-default --table {}`; it also holds {stranded}, \
                             which no drain moves: move or delete those by hand before dropping \
                             it; then prune again",
                            policy.table
                        ),
                    },
                ));
            }
            table.parent = Some(parent);
            table
        })
        .collect();
    (plans, needs_newest)
}

/// Moves the detaches of foreign partitions from `actions` to `kept`: DROP TABLE cannot drop a
/// foreign table (42809), and detaching it first would leave it half-pruned. Status and prune
/// both plan through this, so what status says prune would do is what prune does.
pub(super) fn keep_foreign(
    parent: &Parent,
    actions: Vec<Action>,
    mut kept: Vec<Kept>,
) -> (Vec<Action>, Vec<Kept>) {
    let mut left = Vec::new();
    for action in actions {
        match &action {
            Action::Detach { schema, name, .. }
                if parent
                    .partitions
                    .iter()
                    .any(|e| e.foreign && &e.schema == schema && &e.name == name) =>
            {
                kept.push(Kept {
                    schema: schema.clone(),
                    name: name.clone(),
                    reason: "past retention, but a foreign table: prune does not detach it, as \
                             DROP TABLE cannot drop one; detach it and DROP FOREIGN TABLE by hand"
                        .to_string(),
                });
            }
            _ => left.push(action),
        }
    }
    (left, kept)
}

/// How to fix a DEFAULT partition whose rows could not be counted: a lock held by another
/// session (the count gave up after lock_timeout, SQLSTATE 55P03) or a missing privilege.
fn unreadable_hint(schema: &str, name: &str, why: &str) -> String {
    if why.contains("SQLSTATE 55P03") {
        let relation = crate::db::ident::quote_literal(&format!(
            "{}.{}",
            crate::db::ident::quote_ident(schema),
            crate::db::ident::quote_ident(name)
        ));
        format!(
            "another session holds a lock on {schema}.{name}; find the blocker with SELECT pid, \
             mode, query FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE relation = \
             {relation}::regclass; retry later, or raise --lock-timeout"
        )
    } else {
        format!("grant dhctl's role SELECT on {schema}.{name}, or drain and drop it")
    }
}
