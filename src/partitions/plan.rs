//! The pure core of partition maintenance: given a policy, the partitions that exist (bounds from
//! the catalog) and "now", what create and prune should do, and how far ahead rows can be
//! written (the runway). No clock, no I/O: every input is an argument, so the tables of cases
//! below test it without a database.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::period::{sql_timestamp, Interval, Retention};
use super::policy::{Policy, RetentionMode};

/// The most periods one `create` may ask for (current + ahead): 1000 months is 83 years, 1000
/// days almost 3 years. pg_partman once made hundreds of partitions from one bad future row;
/// a typo in `--ahead` must be an error, not thousands of tables.
pub const MAX_PERIODS_PER_RUN: u32 = 1000;

/// How many periods the runway count looks ahead before it stops counting (a MAXVALUE bound).
const RUNWAY_COUNT_LIMIT: u32 = 100_000;

/// A partition as the catalog shows it. `None` bounds are MINVALUE / MAXVALUE (or ±infinity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Existing {
    /// The partition's own schema: a partition need not live in its parent's.
    pub schema: String,
    pub name: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// An earlier `DETACH … CONCURRENTLY` stopped half-way (pg_inherits.inhdetachpending).
    pub detach_pending: bool,
    /// A foreign table: DROP TABLE cannot drop it, so prune never detaches it.
    pub foreign: bool,
}

impl Existing {
    fn overlaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f < to) && self.to.is_none_or(|t| t > from)
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| f <= t) && self.to.is_none_or(|u| t < u)
    }

    /// `name [from, to)` for messages.
    pub fn describe(&self) -> String {
        let show = |b: Option<DateTime<Utc>>, edge: &str| {
            b.map(sql_timestamp).unwrap_or_else(|| edge.to_string())
        };
        format!(
            "{} [{}, {})",
            self.name,
            show(self.from, "MINVALUE"),
            show(self.to, "MAXVALUE")
        )
    }
}

/// What happens to a table once it is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    Drop,
    Keep,
}

/// One step of a plan; each runs on its own (create: one transaction; detach: CONCURRENTLY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Build `name` standalone with a CHECK on its bounds, attach it, drop the CHECK.
    Create {
        name: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// `DETACH PARTITION … CONCURRENTLY`, then drop or keep the table.
    Detach {
        schema: String,
        name: String,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        then: Then,
    },
    /// Finish a detach an earlier run left pending (`… FINALIZE`), then drop or keep.
    Finalize {
        schema: String,
        name: String,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        then: Then,
    },
    /// Move the DEFAULT partition's rows of one period into a new partition of their own, in
    /// bounded batches, then attach it (`partition drain-default`).
    Drain {
        name: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        rows: i64,
    },
    /// Undo a detach an earlier run left pending on a period that still takes writes: finish it
    /// and attach the table again, in one transaction, with the same bounds.
    Reattach {
        schema: String,
        name: String,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Create { name, .. }
            | Action::Drain { name, .. }
            | Action::Detach { name, .. }
            | Action::Finalize { name, .. }
            | Action::Reattach { name, .. } => name,
        }
    }

    /// The schema of the partition acted on; None for a create (the parent's schema).
    pub fn schema(&self) -> Option<&str> {
        match self {
            Action::Create { .. } | Action::Drain { .. } => None,
            Action::Detach { schema, .. }
            | Action::Finalize { schema, .. }
            | Action::Reattach { schema, .. } => Some(schema),
        }
    }
}

/// A plan that cannot be carried out; nothing has been changed when it is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn out_of_range(policy: &Policy) -> PlanError {
    PlanError {
        message: format!(
            "{}: the periods asked for lie outside the supported calendar",
            policy.table
        ),
        hint: "give --now a time between 1970 and 9000".into(),
    }
}

/// The partitions `create` should make: the period containing `now` and the `ahead` after it,
/// skipping those already covered (by dhctl's partitions or by foreign ones with other names).
/// A wanted period that an existing partition covers only in part is an error naming both.
pub fn create(
    policy: &Policy,
    existing: &[Existing],
    now: DateTime<Utc>,
    ahead: u32,
) -> Result<Vec<Action>, PlanError> {
    if ahead >= MAX_PERIODS_PER_RUN {
        return Err(PlanError {
            message: format!(
                "{}: --ahead {ahead} asks for {} periods; dhctl creates at most {MAX_PERIODS_PER_RUN} per run",
                policy.table,
                u64::from(ahead) + 1,
            ),
            hint: format!(
                "use a smaller --ahead (the policy's premake is {}), or create a far range in several runs with --now",
                policy.premake
            ),
        });
    }
    let mut actions = Vec::new();
    let mut from = policy.interval.floor(now);
    for _ in 0..=ahead {
        let to = policy
            .interval
            .next(from)
            .ok_or_else(|| out_of_range(policy))?;
        let name = policy.interval.child_name(&policy.table, from);
        let touching: Vec<&Existing> = existing.iter().filter(|e| e.overlaps(from, to)).collect();
        if touching.is_empty() {
            actions.push(Action::Create { name, from, to });
        } else if let Some(pending) = touching.iter().find(|e| e.detach_pending) {
            return Err(PlanError {
                message: format!(
                    "{}: wanted partition {name} [{}, {}) overlaps partition {}, which is being detached",
                    policy.table,
                    sql_timestamp(from),
                    sql_timestamp(to),
                    pending.describe()
                ),
                hint: "finish the detach with `dhctl partition prune` (it finalises pending detaches), then run create again".into(),
            });
        } else if !covers(&touching, from, to) {
            let names: Vec<String> = touching.iter().map(|e| e.describe()).collect();
            return Err(PlanError {
                message: format!(
                    "{}: wanted partition {name} [{}, {}) overlaps existing partition {} without covering it",
                    policy.table,
                    sql_timestamp(from),
                    sql_timestamp(to),
                    names.join(" and ")
                ),
                hint: format!(
                    "detach or re-bound the foreign partition so that it covers whole {}s on UTC period starts, or drop it if it is empty",
                    policy.interval.as_str()
                ),
            });
        }
        from = to;
    }
    Ok(actions)
}

/// Whether the (overlapping, attached) partitions together cover [from, to) without a hole.
fn covers(parts: &[&Existing], from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    let mut sorted: Vec<&&Existing> = parts.iter().collect();
    sorted.sort_by_key(|e| e.from);
    let mut cursor = from;
    for part in sorted {
        if part.from.is_some_and(|f| f > cursor) {
            return false;
        }
        match part.to {
            None => return true,
            Some(t) if t > cursor => cursor = t,
            Some(_) => {}
        }
        if cursor >= to {
            return true;
        }
    }
    false
}

/// The two clocks prune looks at: the "now" it was asked to use (`--now`, or the server's
/// clock) and the server's own clock, which always protects the current and future periods.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub now: DateTime<Utc>,
    pub server_now: DateTime<Utc>,
}

impl Clocks {
    /// `now` as given (`--now`), or the server's clock.
    pub fn at(now: Option<DateTime<Utc>>, server_now: DateTime<Utc>) -> Clocks {
        Clocks {
            now: now.unwrap_or(server_now),
            server_now,
        }
    }
}

/// A partition prune leaves in place although its retention is over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub schema: String,
    pub name: String,
    pub reason: String,
}

/// What prune does to one table, and what it refuses to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    pub actions: Vec<Action>,
    pub kept: Vec<Kept>,
    /// Every live partition is past retention and `newest` was not known: the caller should find
    /// the partition holding the newest rows and plan again with it.
    pub needs_newest: bool,
}

/// What `prune` should do: finish every pending detach first (PostgreSQL allows one per table),
/// then detach every partition whose upper bound lies at or before `now - retention` and at or
/// before the current period's start.
///
/// Never touched, whatever `now` and the retention say: a partition that is current or future by
/// the server's clock (a `--now` ahead of the server must not drop live months), and the last
/// live partition of a table (the one holding the newest rows, `newest`, else the highest), so a
/// parent is never left without partitions. A detach left pending on a period that still takes
/// writes is undone (re-attached), never finished. Without a retention only pending detaches are
/// dealt with; nothing is detached.
pub fn prune(
    policy: &Policy,
    existing: &[Existing],
    clocks: Clocks,
    retention: Option<Retention>,
    mode: RetentionMode,
    newest: Option<(&str, &str)>,
) -> Result<PrunePlan, PlanError> {
    let cutoff = match retention {
        Some(r) => Some(r.cutoff(clocks.now).ok_or_else(|| out_of_range(policy))?),
        None => None,
    };
    let current = policy.interval.floor(clocks.now);
    let server_current = policy.interval.floor(clocks.server_now);
    let past_retention = |to: Option<DateTime<Utc>>| match (to, cutoff) {
        (Some(t), Some(c)) => t <= c && t <= current,
        _ => false,
    };
    // Takes (or will take) rows by the server's clock: its upper bound lies after the start of
    // the server's current period.
    let live_by_server = |to: Option<DateTime<Utc>>| to.is_none_or(|t| t > server_current);
    let then = |old: bool| match mode {
        RetentionMode::Drop if old => Then::Drop,
        _ => Then::Keep,
    };
    let mut sorted: Vec<&Existing> = existing.iter().collect();
    sorted.sort_by_key(|e| (!e.detach_pending, e.to.is_none(), e.to));
    let mut plan = PrunePlan::default();
    let mut detachable: Vec<&Existing> = Vec::new();
    let mut survivors = 0usize;
    for e in sorted {
        if e.detach_pending {
            if live_by_server(e.to) {
                plan.actions.push(Action::Reattach {
                    schema: e.schema.clone(),
                    name: e.name.clone(),
                    from: e.from,
                    to: e.to,
                });
                survivors += 1;
            } else {
                plan.actions.push(Action::Finalize {
                    schema: e.schema.clone(),
                    name: e.name.clone(),
                    from: e.from,
                    to: e.to,
                    then: then(past_retention(e.to)),
                });
            }
        } else if past_retention(e.to) {
            if live_by_server(e.to) {
                plan.kept.push(Kept {
                    schema: e.schema.clone(),
                    name: e.name.clone(),
                    reason: format!(
                        "current or future by the server's clock ({}); --now {} is later, and \
                         prune never detaches a period that still takes writes",
                        sql_timestamp(clocks.server_now),
                        sql_timestamp(clocks.now)
                    ),
                });
                survivors += 1;
            } else {
                detachable.push(e);
            }
        } else {
            survivors += 1;
        }
    }
    if survivors == 0 && !detachable.is_empty() {
        let keep = match newest {
            Some((schema, name)) => detachable
                .iter()
                .position(|e| e.schema == schema && e.name == name),
            None => {
                plan.needs_newest = true;
                None
            }
        }
        .unwrap_or(detachable.len() - 1);
        let last = detachable.remove(keep);
        plan.kept.push(Kept {
            schema: last.schema.clone(),
            name: last.name.clone(),
            reason: format!(
                "the last partition of {} (it holds the newest rows) and no current one exists; \
                 prune never leaves a table without partitions: run `dhctl partition create`",
                policy.table
            ),
        });
    }
    for e in detachable {
        if let Some(to) = e.to {
            plan.actions.push(Action::Detach {
                schema: e.schema.clone(),
                name: e.name.clone(),
                from: e.from,
                to,
                then: then(true),
            });
        }
    }
    Ok(plan)
}

/// How far ahead rows can be written, and what is odd about the partitions, for `status` and
/// `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The period containing now.
    pub current_from: DateTime<Utc>,
    pub current_to: DateTime<Utc>,
    /// The end of the premake horizon (the current period plus `premake` periods).
    pub horizon: DateTime<Utc>,
    /// Rows dated from now up to this instant have a partition; None when now has none, or
    /// when a MAXVALUE bound covers everything ahead.
    pub covered_until: Option<DateTime<Utc>>,
    /// Whole periods after the current one that have a partition, without a gap.
    pub runway: u32,
    /// Holes between the current period's start and the horizon.
    pub gaps: Vec<Gap>,
    /// Partitions whose bounds are not one period on UTC period starts, or whose name disagrees
    /// with their bounds.
    pub odd: Vec<Odd>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Odd {
    pub name: String,
    pub problem: String,
}

/// Runway, gaps and odd partitions. Partitions pending detach no longer take new rows, so they
/// cover nothing.
pub fn coverage(policy: &Policy, existing: &[Existing], now: DateTime<Utc>) -> Option<Coverage> {
    let interval = policy.interval;
    let live: Vec<&Existing> = existing.iter().filter(|e| !e.detach_pending).collect();
    let current_from = interval.floor(now);
    let current_to = interval.next(current_from)?;
    let mut horizon = current_to;
    for _ in 0..policy.premake {
        horizon = interval.next(horizon)?;
    }
    // Walk from now through touching partitions.
    let mut covered_until = None;
    let mut cursor = now;
    while let Some(part) = live.iter().find(|e| e.contains(cursor)) {
        match part.to {
            Some(to) => {
                cursor = to;
                covered_until = Some(to);
            }
            None => {
                covered_until = None;
                cursor = DateTime::<Utc>::MAX_UTC;
                break;
            }
        }
    }
    let mut runway = 0;
    if cursor > now {
        let mut end = current_to;
        while runway < RUNWAY_COUNT_LIMIT {
            match interval.next(end) {
                Some(next) if next <= cursor => {
                    runway += 1;
                    end = next;
                }
                _ => break,
            }
        }
    }
    let gaps = gaps(&live, current_from, horizon);
    let odd = existing
        .iter()
        .filter_map(|e| odd(policy, interval, e))
        .collect();
    Some(Coverage {
        current_from,
        current_to,
        horizon,
        covered_until,
        runway,
        gaps,
        odd,
    })
}

fn gaps(live: &[&Existing], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let mut cursor = from;
    while cursor < to {
        match live.iter().find(|e| e.contains(cursor)) {
            Some(part) => match part.to {
                Some(t) => cursor = t,
                None => break,
            },
            None => {
                let next = live
                    .iter()
                    .filter_map(|e| e.from.filter(|f| *f > cursor))
                    .min()
                    .unwrap_or(to)
                    .min(to);
                gaps.push(Gap {
                    from: cursor,
                    to: next,
                });
                cursor = next;
            }
        }
    }
    gaps
}

fn odd(policy: &Policy, interval: Interval, e: &Existing) -> Option<Odd> {
    let problem = match (e.from, e.to) {
        (Some(from), Some(to)) if interval.is_start(from) && interval.next(from) == Some(to) => {
            let expected = interval.child_name(&policy.table, from);
            if e.name == expected {
                return None;
            }
            format!("its name does not match its bounds; dhctl would name it {expected}")
        }
        _ => format!(
            "its bounds are not one {} on UTC period starts",
            interval.as_str()
        ),
    };
    Some(Odd {
        name: e.name.clone(),
        problem,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
