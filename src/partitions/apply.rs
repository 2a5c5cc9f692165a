//! Carrying out one planned action against the database, with lock_timeout retries.
//!
//! The session already holds the dhctl advisory lock and a session-wide `lock_timeout`
//! (`migrations::Locked`), so every statement here gives up instead of queueing in front of the
//! gateway's traffic, and is retried with jittered backoff (db::retry) a bounded number of times.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use tokio_postgres::types::Oid;

use super::child::{attach_sql, properties, standalone_sql, Properties};
use super::live;
use super::period::sql_timestamp;
use super::plan::{Action, Then};
use crate::db::ident::{quote_ident, quote_literal};
use crate::db::retry::{is_lock_timeout, Backoff};
use crate::error::{Error, SqlDetail};
use crate::progress::Progress;

/// The CHECK that lets ATTACH skip its validation scan; dropped in the same transaction.
pub(super) const BOUNDS_CHECK: &str = "dhctl_partition_bounds";

/// The partitioned table an action works on: its schema, name, oid and partition key column.
pub struct Partitioned<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub oid: Oid,
    pub column: &'a str,
}

impl Partitioned<'_> {
    /// A relation in the parent's schema (the parent, a partition being created).
    pub(super) fn qualified(&self, name: &str) -> String {
        qualified(self.schema, name)
    }

    /// The parent, schema-qualified and quoted.
    pub(super) fn parent(&self) -> String {
        self.qualified(self.table)
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// One partition of the table being maintained, with what every statement about it needs: the
/// session (which holds the lock), the retry budget and where progress goes.
#[derive(Clone, Copy)]
struct Child<'a> {
    client: &'a Client,
    target: &'a Partitioned<'a>,
    schema: &'a str,
    name: &'a str,
    retries: u32,
    progress: &'a dyn Progress,
}

/// How an action went: what was done, attempts (more than 1 after lock timeouts), wall time,
/// and what else to know.
pub struct Done {
    pub action: Action,
    pub attempts: u32,
    pub took: Duration,
    pub notes: Vec<String>,
}

/// An action that failed: the error, what was done nonetheless (a detach whose drop failed),
/// and whether the table's later actions may still run.
pub struct Failed {
    pub error: Error,
    pub done: Option<Action>,
    pub next: Next,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Only this partition is affected (a drop that would fail, bounds that changed).
    NextPartition,
    /// Something about the table (a lock held, a server error): stop its other actions.
    StopTable,
}

impl From<Error> for Box<Failed> {
    fn from(error: Error) -> Box<Failed> {
        Box::new(Failed {
            error,
            done: None,
            next: Next::StopTable,
        })
    }
}

/// Runs one action. Errors name the partition and say what is left behind.
pub async fn run(
    client: &Client,
    target: &Partitioned<'_>,
    action: &Action,
    retries: u32,
    progress: &dyn Progress,
) -> Result<Done, Box<Failed>> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let attempts =
        match action {
            Action::Create { name, from, to } => {
                let props = properties(client, target).await?;
                notes = props.notes.clone();
                create(client, target, name, *from, *to, &props, retries, progress).await?
            }
            Action::Detach { .. } | Action::Finalize { .. } => {
                detach_and_drop(client, target, action, retries, progress).await?
            }
            Action::Drain { .. } => return Err(Error::usage(
                "a drain runs through `dhctl partition drain-default`, not with create or prune",
            )
            .into()),
            Action::Reattach {
                schema,
                name,
                from,
                to,
            } => {
                let (attempts, what) = reattach(
                    client,
                    target,
                    schema,
                    name,
                    (*from, *to),
                    retries,
                    progress,
                )
                .await?;
                if let Some(what) = what {
                    notes.push(what);
                }
                attempts
            }
        };
    Ok(Done {
        action: action.clone(),
        attempts,
        took: started.elapsed(),
        notes,
    })
}

/// Detaches a partition past retention (CONCURRENTLY), or finishes a detach an earlier run left
/// pending, marks the table as detached by prune, then drops it unless it is to be kept.
async fn detach_and_drop(
    client: &Client,
    target: &Partitioned<'_>,
    action: &Action,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Box<Failed>> {
    let (Action::Detach {
        schema, name, then, ..
    }
    | Action::Finalize {
        schema, name, then, ..
    }) = action
    else {
        unreachable!("run passes only detach and finalize actions");
    };
    let child = Child {
        client,
        target,
        schema,
        name,
        retries,
        progress,
    };
    let mut blocked = None;
    let mut attempts = match action {
        Action::Detach { from, to, .. } => {
            recheck(&child, (*from, Some(*to))).await?;
            if *then == Then::Drop {
                refuse_undroppable(client, schema, name).await?;
            }
            detach(&child).await?
        }
        _ => {
            // A pending detach is finished whatever would stop the drop: it blocks every other
            // detach of the table. The table is then kept, and the report says why.
            if *then == Then::Drop {
                blocked = refuse_undroppable(client, schema, name).await.err();
            }
            finalize(&child).await?
        }
    };
    mark_kept(&child).await;
    if let Some(mut blocked) = blocked {
        blocked.done = Some(kept(action));
        return Err(blocked);
    }
    if *then == Then::Drop {
        let dropped = drop(&child).await;
        attempts = attempts.max(kept_on_failure(dropped, action)?);
    }
    Ok(attempts)
}

/// A detach or finalize as it was done when its table is kept rather than dropped.
fn kept(action: &Action) -> Action {
    let mut done = action.clone();
    if let Action::Detach { then, .. } | Action::Finalize { then, .. } = &mut done {
        *then = Then::Keep;
    }
    done
}

/// The comment prune puts on a table it detached from `schema.table`, so that status still lists
/// it when it is kept under a name not shaped like a partition's (catalog's OTHERS reads it).
pub(super) fn kept_marker(schema: &str, table: &str) -> String {
    format!(
        "dhctl: detached from {} by partition prune",
        qualified(schema, table)
    )
}

/// Marks a just-detached table with `kept_marker`, unless it has a comment of its own (never
/// overwritten). Best effort: the detach is done and is what matters; a table left unmarked is
/// still listed when its name is shaped like a partition's.
async fn mark_kept(child: &Child<'_>) {
    let Child { client, target, .. } = *child;
    let table = child.qualified();
    let bare = client
        .query_one(
            "SELECT pg_catalog.obj_description(pg_catalog.to_regclass($1)::oid, 'pg_class') IS NULL",
            &[&table],
        )
        .await
        .map(|r| r.get::<_, bool>(0));
    if let Ok(true) = bare {
        let marker = quote_literal(&kept_marker(target.schema, target.table));
        let _ = client
            .batch_execute(&format!("COMMENT ON TABLE {table} IS {marker}"))
            .await;
    }
}

/// A failed DROP after a successful detach: report the detach that happened, table kept.
fn kept_on_failure(dropped: Result<u32, Error>, planned: &Action) -> Result<u32, Box<Failed>> {
    dropped.map_err(|error| {
        Box::new(Failed {
            error,
            done: Some(kept(planned)),
            next: Next::NextPartition,
        })
    })
}

/// Reads the partition again under the lock, right before detaching it: it must still be a
/// partition of this parent, in this schema, with the planned bounds.
async fn recheck(
    child: &Child<'_>,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> Result<(), Box<Failed>> {
    let Child {
        target,
        schema,
        name,
        ..
    } = *child;
    let now = live::partition(child.client, target.oid, schema, name).await?;
    match now {
        Some(p) if p.from == from && p.to == to && !p.detach_pending => Ok(()),
        other => Err(Box::new(Failed {
            error: Error::usage_hint(
                format!(
                    "partition {schema}.{name} of {} changed since prune planned it ({}); it was \
                     not detached",
                    target.table,
                    match other {
                        Some(p) => format!("now {}", p.describe()),
                        None => "it is no longer a partition of the table".into(),
                    }
                ),
                "run `dhctl partition prune` again; it plans from what the catalog says now",
            ),
            done: None,
            next: Next::NextPartition,
        })),
    }
}

/// What would make `DROP TABLE` (without CASCADE) fail once the partition is detached: views
/// and foreign keys that depend on it, an owner dhctl's role cannot act for. Checked before
/// detaching, so prune never leaves a half-done partition behind for reasons it could see.
const DROP_BLOCKERS: &str = "\
WITH t AS (SELECT pg_catalog.to_regclass($1)::oid AS oid)
SELECT DISTINCT pg_catalog.format('%s %s depends on it',
       CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, v.oid::regclass)
FROM t JOIN pg_depend d ON d.refobjid = t.oid AND d.refclassid = 'pg_class'::regclass::oid
       AND d.classid = 'pg_rewrite'::regclass::oid
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class AND v.oid <> t.oid
UNION ALL
SELECT pg_catalog.format('foreign key %I of %s references it', c.conname, c.conrelid::regclass)
FROM t JOIN pg_constraint c ON c.confrelid = t.oid AND c.contype = 'f'
       AND c.conrelid <> t.oid AND c.conparentid = 0::oid
UNION ALL
SELECT pg_catalog.format('it belongs to role %I, which dhctl''s role %I cannot act for',
              pg_catalog.pg_get_userbyid(k.relowner), current_user)
FROM t JOIN pg_class k ON k.oid = t.oid AND NOT pg_catalog.pg_has_role(k.relowner, 'USAGE')
ORDER BY 1";

async fn refuse_undroppable(client: &Client, schema: &str, name: &str) -> Result<(), Box<Failed>> {
    let rows = client
        .query(DROP_BLOCKERS, &[&qualified(schema, name)])
        .await
        .map_err(|e| Error::sql(format!("checking what depends on {name}"), &e))?;
    if rows.is_empty() {
        return Ok(());
    }
    let why: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Err(Box::new(Failed {
        error: Error::usage_hint(
            format!(
                "partition {schema}.{name} is past retention but was not detached: DROP TABLE \
                 would fail ({})",
                why.join("; ")
            ),
            "drop or re-point what depends on it (or make dhctl's role a member of the owner), \
             or set retention_mode = \"detach\" to keep detached tables; then prune again",
        ),
        done: None,
        next: Next::NextPartition,
    }))
}

/// Builds the child standalone with a CHECK matching its bounds, attaches it (SHARE UPDATE
/// EXCLUSIVE on the parent: reads and writes go on; no scan, the CHECK implies the bound), then
/// drops the CHECK and gives it the parent's replica identity, grants and owner. The statements
/// are one simple-query string, hence one implicit transaction: a lock timeout anywhere leaves
/// nothing behind. The parent's lock is held only from the ATTACH to the commit, which is
/// immediate.
#[allow(clippy::too_many_arguments)]
async fn create(
    client: &Client,
    target: &Partitioned<'_>,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    props: &Properties,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Error> {
    let sql = format!(
        "{}{}",
        standalone_sql(target, name, from, to, props),
        attach_sql(target, name, from, to, props)
    );
    retry(client, &sql, retries, progress, name)
        .await
        .map_err(|(e, attempts)| {
            let hint = match e.code() {
                Some(c) if c == &SqlState::DUPLICATE_TABLE => Some(format!(
                    "a relation named {name} already exists in schema {}; run `dhctl partition \
                     status` to see what it is, then rename or drop it and run create again",
                    target.schema
                )),
                Some(c) if c == &SqlState::CHECK_VIOLATION => Some(format!(
                    "the DEFAULT partition of {} holds rows of this period; move them with \
                     `dhctl partition drain-default --table {}`, then run create again",
                    target.table, target.table
                )),
                _ => None,
            };
            failed(
                format!("creating partition {name} of {}", target.table),
                target,
                &e,
                attempts,
                hint,
            )
        })
}

/// Undoes a detach left pending on a period that still takes writes: finishes it and attaches
/// the table again with the same bounds, in one transaction (FINALIZE may run in one), so rows of
/// the period have a partition again at once. The CHECK the detach added implies the bounds,
/// so ATTACH does not scan.
async fn reattach(
    client: &Client,
    target: &Partitioned<'_>,
    schema: &str,
    name: &str,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    retries: u32,
    progress: &dyn Progress,
) -> Result<(u32, Option<String>), Error> {
    let child = qualified(schema, name);
    let parent = target.parent();
    let bound = |b: Option<DateTime<Utc>>, edge: &str| {
        b.map(|t| quote_literal(&sql_timestamp(t)))
            .unwrap_or_else(|| edge.to_string())
    };
    let attach = format!(
        "ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES FROM ({}) TO ({});",
        bound(from, "MINVALUE"),
        bound(to, "MAXVALUE")
    );
    let sql = match live::partition(client, target.oid, schema, name).await? {
        Some(p) if !p.detach_pending => return Ok((1, None)),
        Some(_) => format!("ALTER TABLE {parent} DETACH PARTITION {child} FINALIZE;\n{attach}"),
        None => attach,
    };
    retry(client, &sql, retries, progress, name)
        .await
        .map(|attempts| {
            (
                attempts,
                Some(format!(
                    "{schema}.{name} was left half-detached by an interrupted DETACH … \
                     CONCURRENTLY on a period that still takes writes; it is attached again"
                )),
            )
        })
        .map_err(|(e, attempts)| {
            failed(
                format!("attaching partition {name} of {} again", target.table),
                target,
                &e,
                attempts,
                None,
            )
        })
}

impl Child<'_> {
    /// The partition, schema-qualified and quoted.
    fn qualified(&self) -> String {
        qualified(self.schema, self.name)
    }

    /// `ALTER TABLE parent DETACH PARTITION child` and how (`CONCURRENTLY`, `FINALIZE`).
    fn detach_sql(&self, how: &str) -> String {
        format!(
            "ALTER TABLE {} DETACH PARTITION {} {how}",
            self.target.parent(),
            self.qualified()
        )
    }

    /// Runs `sql`, retrying lock timeouts (progress under `label`); a failure says what dhctl
    /// was doing (`context`) and how to go on.
    async fn run(
        &self,
        sql: &str,
        label: &str,
        context: String,
        hint: Option<String>,
    ) -> Result<u32, Error> {
        retry(self.client, sql, self.retries, self.progress, label)
            .await
            .map_err(|(e, attempts)| failed(context, self.target, &e, attempts, hint))
    }
}

/// `DETACH PARTITION … CONCURRENTLY`: two transactions, no ACCESS EXCLUSIVE on the parent. It
/// cannot run inside a transaction block, so it is sent alone. When it times out in its second
/// transaction the detach stays pending; the retry then finalises it instead.
async fn detach(child: &Child<'_>) -> Result<u32, Error> {
    let sql = child.detach_sql("CONCURRENTLY");
    let context = || {
        format!(
            "detaching partition {} from {}",
            child.name, child.target.table
        )
    };
    let mut backoff = Backoff::new(child.retries);
    loop {
        match child.client.batch_execute(&sql).await {
            Ok(()) => return Ok(backoff.attempts()),
            Err(e) if is_lock_timeout(&e) => {
                let attempts = backoff.attempts();
                if attempts > child.retries {
                    let hint = "if the detach was left pending, the next `dhctl partition prune` \
                                finishes it; retry later, or raise --lock-timeout / --lock-retries";
                    return Err(failed(
                        context(),
                        child.target,
                        &e,
                        attempts,
                        Some(hint.into()),
                    ));
                }
                child
                    .progress
                    .retrying(child.name, attempts, "lock_timeout");
                backoff.pause().await;
                match pending(child).await? {
                    Some(true) => {
                        let more = finalize(child).await?;
                        return Ok(attempts + more);
                    }
                    Some(false) => continue,
                    None => return Ok(attempts),
                }
            }
            Err(e) => {
                return Err(failed(
                    context(),
                    child.target,
                    &e,
                    backoff.attempts(),
                    None,
                ))
            }
        }
    }
}

/// Whether the partition is still one (`Some(pending)`) or already detached (`None`).
async fn pending(child: &Child<'_>) -> Result<Option<bool>, Error> {
    let row = child
        .client
        .query_opt(
            "SELECT i.inhdetachpending FROM pg_inherits i \
             WHERE i.inhrelid = pg_catalog.to_regclass($1)::oid AND i.inhparent = pg_catalog.to_regclass($2)::oid",
            &[&child.qualified(), &child.target.parent()],
        )
        .await
        .map_err(|e| Error::sql(format!("reading the detach state of {}", child.name), &e))?;
    Ok(row.map(|r| r.get(0)))
}

async fn finalize(child: &Child<'_>) -> Result<u32, Error> {
    let Child { name, target, .. } = *child;
    // Its own label: after a detach that timed out, "attempt 1" of the detach was reported
    // already, and the finalize's attempts are counted afresh.
    child
        .run(
            &child.detach_sql("FINALIZE"),
            &format!("{name} (finishing the detach)"),
            format!(
                "finishing the pending detach of {name} from {}",
                target.table
            ),
            None,
        )
        .await
}

/// Drops a detached partition: ACCESS EXCLUSIVE on the child only, which nothing uses now.
async fn drop(child: &Child<'_>) -> Result<u32, Error> {
    let Child {
        schema,
        name,
        target,
        ..
    } = *child;
    child
        .run(
            &format!("DROP TABLE {}", child.qualified()),
            name,
            format!("dropping detached partition {name} of {}", target.table),
            Some(format!(
                "{schema}.{name} is detached (no longer a partition) and kept; `dhctl \
                 partition status` lists it until it is gone; drop it by hand with DROP \
                 TABLE once nothing uses it"
            )),
        )
        .await
}

/// Runs `sql`, retrying lock timeouts; on failure returns the error and the attempts made.
pub(super) async fn retry(
    client: &Client,
    sql: &str,
    retries: u32,
    progress: &dyn Progress,
    what: &str,
) -> Result<u32, (tokio_postgres::Error, u32)> {
    crate::db::retry::batch_execute(client, sql, retries, &|attempt| {
        progress.retrying(what, attempt, "lock_timeout")
    })
    .await
}

/// A statement error with what dhctl was doing; a lock timeout says how to find the blocker.
pub(super) fn failed(
    context: String,
    target: &Partitioned<'_>,
    e: &tokio_postgres::Error,
    attempts: u32,
    hint: Option<String>,
) -> Error {
    let mut detail = SqlDetail::from_pg(e, None);
    if is_lock_timeout(e) {
        detail.message = format!(
            "{} (gave up after {attempts} attempts; another session holds a conflicting lock)",
            detail.message
        );
        // ATTACH also locks the tables the parent's foreign keys reference: name them too.
        let parent = quote_literal(&target.parent());
        detail.hint = Some(format!(
            "find the blocker with SELECT pid, mode, relation::regclass, query FROM pg_locks \
             JOIN pg_stat_activity USING (pid) WHERE relation IN (SELECT {parent}::regclass \
             UNION SELECT confrelid FROM pg_constraint WHERE conrelid = {parent}::regclass::oid AND \
             contype = 'f'); retry later, or raise --lock-timeout / --lock-retries"
        ));
    }
    if hint.is_some() {
        detail.hint = hint;
    }
    Error::Sql { context, detail }
}
