//! Carrying out one planned action against the database, with lock_timeout retries.
//!
//! The session already holds the dhctl advisory lock and a session-wide `lock_timeout`
//! (`migrations::Locked`), so every statement here gives up instead of queueing in front of the
//! gateway's traffic, and is retried with jittered backoff (db::retry) a bounded number of times.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::period::sql_timestamp;
use super::plan::{Action, Then};
use crate::db::ident::{quote_ident, quote_literal};
use crate::db::retry::{is_lock_timeout, Backoff};
use crate::error::{Error, SqlDetail};
use crate::migrations::Progress;

/// The CHECK that lets ATTACH skip its validation scan; dropped in the same transaction.
const BOUNDS_CHECK: &str = "dhctl_partition_bounds";

/// The table being maintained.
pub struct Target<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub column: &'a str,
}

impl Target<'_> {
    fn qualified(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(self.schema), quote_ident(name))
    }
}

/// How an action went: attempts (more than 1 after lock timeouts) and wall time.
pub struct Done {
    pub attempts: u32,
    pub took: Duration,
}

/// Runs one action. Errors name the partition and say what is left behind.
pub async fn run(
    client: &Client,
    target: &Target<'_>,
    action: &Action,
    retries: u32,
    progress: &dyn Progress,
) -> Result<Done, Error> {
    let started = Instant::now();
    let attempts = match action {
        Action::Create { name, from, to } => {
            create(client, target, name, *from, *to, retries, progress).await?
        }
        Action::Detach { name, then, .. } => {
            let mut attempts = detach(client, target, name, retries, progress).await?;
            if *then == Then::Drop {
                attempts = attempts.max(drop(client, target, name, retries, progress).await?);
            }
            attempts
        }
        Action::Finalize { name, then, .. } => {
            let mut attempts = finalize(client, target, name, retries, progress).await?;
            if *then == Then::Drop {
                attempts = attempts.max(drop(client, target, name, retries, progress).await?);
            }
            attempts
        }
    };
    Ok(Done {
        attempts,
        took: started.elapsed(),
    })
}

/// Builds the child standalone with a CHECK matching its bounds, attaches it (SHARE UPDATE
/// EXCLUSIVE on the parent: reads and writes go on; no scan, the CHECK implies the bound), then
/// drops the CHECK. The four statements are one simple-query string, hence one implicit
/// transaction: a lock timeout anywhere leaves nothing behind. The parent's lock is held only
/// from the ATTACH to the commit, which is immediate.
async fn create(
    client: &Client,
    target: &Target<'_>,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Error> {
    let parent = target.qualified(target.table);
    let child = target.qualified(name);
    let column = quote_ident(target.column);
    let (lo, hi) = (
        quote_literal(&sql_timestamp(from)),
        quote_literal(&sql_timestamp(to)),
    );
    let check = quote_ident(BOUNDS_CHECK);
    // LIKE copies the NOT NULL and CHECK constraints ATTACH demands; indexes and foreign keys
    // declared on the parent are created on the child by ATTACH itself.
    let sql = format!(
        "CREATE TABLE {child} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE INCLUDING COMMENTS);\n\
         ALTER TABLE {child} ADD CONSTRAINT {check} \
             CHECK ({column} IS NOT NULL AND {column} >= {lo} AND {column} < {hi});\n\
         ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES FROM ({lo}) TO ({hi});\n\
         ALTER TABLE {child} DROP CONSTRAINT {check};"
    );
    retry(client, &sql, retries, progress, name)
        .await
        .map_err(|(e, attempts)| {
            let hint = if e.code() == Some(&SqlState::DUPLICATE_TABLE) {
                Some(format!(
                    "a table named {name} exists but is not a partition of {} (kept by prune \
                 --keep-table?); rename or drop it, then run create again",
                    target.table
                ))
            } else {
                None
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

/// `DETACH PARTITION … CONCURRENTLY`: two transactions, no ACCESS EXCLUSIVE on the parent. It
/// cannot run inside a transaction block, so it is sent alone. When it times out in its second
/// transaction the detach stays pending; the retry then finalises it instead.
async fn detach(
    client: &Client,
    target: &Target<'_>,
    name: &str,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Error> {
    let sql = format!(
        "ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY",
        target.qualified(target.table),
        target.qualified(name)
    );
    let context = || format!("detaching partition {name} from {}", target.table);
    let mut backoff = Backoff::new(retries);
    loop {
        match client.batch_execute(&sql).await {
            Ok(()) => return Ok(backoff.attempts()),
            Err(e) if is_lock_timeout(&e) => {
                let attempts = backoff.attempts();
                if attempts > retries {
                    let hint = "if the detach was left pending, the next `dhctl partition prune` \
                                finishes it; retry later, or raise --lock-timeout / --lock-retries";
                    return Err(failed(context(), target, &e, attempts, Some(hint.into())));
                }
                progress.retrying(name, attempts, "lock_timeout");
                backoff.pause().await;
                match pending(client, target, name).await? {
                    Some(true) => {
                        let more = finalize(client, target, name, retries, progress).await?;
                        return Ok(attempts + more);
                    }
                    Some(false) => continue,
                    None => return Ok(attempts),
                }
            }
            Err(e) => return Err(failed(context(), target, &e, backoff.attempts(), None)),
        }
    }
}

/// Whether `name` is still a partition (`Some(pending)`) or already detached (`None`).
async fn pending(client: &Client, target: &Target<'_>, name: &str) -> Result<Option<bool>, Error> {
    let row = client
        .query_opt(
            "SELECT i.inhdetachpending FROM pg_inherits i \
             WHERE i.inhrelid = to_regclass($1) AND i.inhparent = to_regclass($2)",
            &[&target.qualified(name), &target.qualified(target.table)],
        )
        .await
        .map_err(|e| Error::sql(format!("reading the detach state of {name}"), &e))?;
    Ok(row.map(|r| r.get(0)))
}

async fn finalize(
    client: &Client,
    target: &Target<'_>,
    name: &str,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Error> {
    let sql = format!(
        "ALTER TABLE {} DETACH PARTITION {} FINALIZE",
        target.qualified(target.table),
        target.qualified(name)
    );
    retry(client, &sql, retries, progress, name)
        .await
        .map_err(|(e, attempts)| {
            failed(
                format!(
                    "finishing the pending detach of {name} from {}",
                    target.table
                ),
                target,
                &e,
                attempts,
                None,
            )
        })
}

/// Drops a detached partition: ACCESS EXCLUSIVE on the child only, which nothing uses now.
async fn drop(
    client: &Client,
    target: &Target<'_>,
    name: &str,
    retries: u32,
    progress: &dyn Progress,
) -> Result<u32, Error> {
    let sql = format!("DROP TABLE {}", target.qualified(name));
    retry(client, &sql, retries, progress, name)
        .await
        .map_err(|(e, attempts)| {
            failed(
                format!("dropping detached partition {name} of {}", target.table),
                target,
                &e,
                attempts,
                Some(format!(
                    "{name} is detached (no longer a partition); drop it by hand with DROP TABLE once \
                     nothing uses it"
                )),
            )
        })
}

/// Runs `sql`, retrying lock timeouts; on failure returns the error and the attempts made.
async fn retry(
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
fn failed(
    context: String,
    target: &Target<'_>,
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
        detail.hint = Some(format!(
            "find the blocker with SELECT pid, mode, query FROM pg_locks JOIN pg_stat_activity \
             USING (pid) WHERE relation = '{}'::regclass; retry later, or raise \
             --lock-timeout / --lock-retries",
            target.qualified(target.table).replace('\'', "''")
        ));
    }
    if hint.is_some() {
        detail.hint = hint;
    }
    Error::Sql { context, detail }
}
