//! What `/metrics` reads about the schema, on the readiness round's own connection right after
//! its `SELECT 1`: the history table (compared with the migrations) and each partition policy's
//! table (its partitions' bounds, the server's clock and, for a DEFAULT partition, PostgreSQL's
//! live-row estimate).
//!
//! Lock-safe by construction: catalog reads only (the history table aside, which the readiness
//! migrations check already read), each part in its own read-only transaction under
//! `lock_timeout` and `statement_timeout` set to what is left of the round's check timeout
//! (`SET LOCAL`, so nothing outlives the transaction, not even behind a transaction-pooling
//! PgBouncer). Catalog reads take ACCESS SHARE on catalogs only, which no DDL waits for; no user
//! table is scanned or locked: `to_regclass` resolves names without a lock and a DEFAULT
//! partition's rows come from the statistics system, not from a `count(*)`, which would lock
//! the partition and queue behind an `ATTACH PARTITION` (ACCESS EXCLUSIVE on the default).
//! The one exception is a hot standby, whose statistics never count replayed rows: there the
//! DEFAULT partitions' rows are counted (capped, under the same timeouts; see `default_rows`).
//! One part's failure (no privilege, a timeout) leaves the other part and readiness alone.
//!
//! Every statement is sent with typed parameters (`query_typed`: an unnamed statement, no
//! separate prepare round trip), as readiness's own are. dhctl-health often shares the
//! gateway's `DATABASE_URL`, i.e. a transaction-pooling PgBouncer: each read is one explicit
//! transaction, so all its statements reach one server connection, and it leaves nothing on
//! that connection (tested with two replicas behind `pool_mode=transaction`, tests/it/pooler.rs).

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::config::HealthConfig;
use super::report::{Failure, Reason};
use crate::db::ident::{quote_ident, TableName};
use crate::error::{Error, Result};
use crate::migrations::{catalog, history, status, Catalog};
use crate::partitions::live::{self, Parent};
use crate::partitions::{policy, Policy};
use crate::source::Source;

/// What the reads compare the database with, loaded once at start.
pub struct Schema {
    pub catalog: Catalog,
    pub policies: Vec<Policy>,
    pub history_table: Option<TableName>,
}

impl Schema {
    /// The migrations (`DHCTL_MIGRATIONS_DIR`, else those compiled in) and the partition
    /// policies (`DHCTL_PARTITIONS_DIR`, else those compiled in): a bad file stops the server at
    /// start (exit 2) rather than making every later read wrong.
    pub fn load(config: &HealthConfig) -> Result<Schema> {
        Ok(Schema {
            catalog: catalog::load(&config.migrations)
                .map_err(|e| from_variable("DHCTL_MIGRATIONS_DIR", &config.migrations, e))?,
            policies: policy::load(&config.partitions)
                .map_err(|e| from_variable("DHCTL_PARTITIONS_DIR", &config.partitions, e))?,
            history_table: config.history_table.clone(),
        })
    }
}

/// A folder's error, naming the variable that chose the folder (dhctl-health has no flags for
/// them, so the file-level messages' `--migrations-dir` advice does not apply).
fn from_variable(variable: &str, source: &Source, err: Error) -> Error {
    match source {
        Source::Embedded => err,
        Source::Dir(dir) => Error::usage_hint(
            format!("{variable}={}: {err}", dir.display()),
            format!(
                "point {variable} at the folder holding the files (readable by this process), \
                 or unset it to use the set compiled into dhctl-health"
            ),
        ),
    }
}

/// What one round read: each part, or why it could not be read.
#[derive(Debug)]
pub struct Facts {
    /// The status diff of the migrations against the history table.
    pub migrations: std::result::Result<Vec<status::Entry>, Failure>,
    /// How long the history read took (the migrations check's latency).
    pub migrations_took: Duration,
    pub partitions: std::result::Result<Partitions, Failure>,
    /// False when a read was cut off by the round's own timeout: the connection may be stuck
    /// mid-statement and must not go back to the pool.
    pub connection_usable: bool,
}

/// Each policy's table as the catalog shows it, at the server's clock.
#[derive(Debug)]
pub struct Partitions {
    /// The server's `now()`, the instant runway and ages are measured from (as for dhctl).
    pub now: DateTime<Utc>,
    /// One per policy, in the policies' order.
    pub tables: Vec<TableFacts>,
}

#[derive(Debug)]
pub struct TableFacts {
    /// The table with its partitions, or None when it does not exist or does not fit its policy.
    pub parent: Option<Parent>,
    /// PostgreSQL's estimate of the live rows in its DEFAULT partition, if it has one.
    pub default_rows: Option<i64>,
}

/// Reads both parts, one after the other, within `budget` in all. The history read may use half
/// of it, so that a history table locked by DDL (the one wait these reads can meet) leaves the
/// partitions the other half.
pub async fn read(client: &Client, schema: &Schema, budget: Duration) -> Facts {
    let started = Instant::now();
    let deadline = started + budget;
    let (migrations, usable_after_history) = bounded(client, started + budget / 2, async {
        let history = history::read(client, schema.history_table.as_ref(), history::Use::Read)
            .await
            .map_err(|e| failure(&e))?;
        Ok(status::diff(&schema.catalog, &history.rows))
    })
    .await;
    let migrations_took = started.elapsed();
    if !usable_after_history {
        // Not tried: the connection may be stuck, for the reason the history read gives.
        let partitions = Err(migrations
            .as_ref()
            .err()
            .cloned()
            .unwrap_or_else(out_of_time));
        return Facts {
            migrations,
            migrations_took,
            partitions,
            connection_usable: false,
        };
    }
    let (partitions, usable) = bounded(client, deadline, async {
        partitions(client, &schema.policies)
            .await
            .map_err(|e| failure(&e))
    })
    .await;
    Facts {
        migrations,
        migrations_took,
        partitions,
        connection_usable: usable,
    }
}

/// `work` in a read-only transaction whose lock_timeout and statement_timeout are the time left
/// until `deadline`, itself bounded by that time. Returns the outcome and whether the
/// connection is still usable (false when the bound cut the work off mid-statement).
async fn bounded<T>(
    client: &Client,
    deadline: Instant,
    work: impl Future<Output = std::result::Result<T, Failure>>,
) -> (std::result::Result<T, Failure>, bool) {
    let left = deadline.saturating_duration_since(Instant::now());
    // Below a millisecond there is nothing worth starting (and 0 would mean "no timeout").
    if left < Duration::from_millis(1) {
        return (Err(out_of_time()), true);
    }
    // The outcome, and whether the transaction was ended (when it could not be, the connection
    // must not go back to the pool: it would hand out a session inside an open or aborted
    // transaction).
    let run = async {
        // The server's own bounds come a quarter earlier than ours, so that normally it is the
        // server that gives up (an error, the connection intact) rather than us (mid-statement).
        if let Err(e) = begin(client, left - left / 4).await {
            // BEGIN may have succeeded and the settings failed: end the transaction (a ROLLBACK
            // with none open only warns). The failure reported is the original one.
            let ended = client.batch_execute("ROLLBACK").await.is_ok();
            return (Err(failure(&e)), ended);
        }
        match work.await {
            Ok(value) => match client.batch_execute("COMMIT").await {
                Ok(()) => (Ok(value), true),
                Err(e) => {
                    let ended = client.batch_execute("ROLLBACK").await.is_ok();
                    (Err(failure(&Error::sql("ending the read", &e))), ended)
                }
            },
            Err(failed) => {
                // The transaction may be aborted; end it so the session is usable again. If
                // that fails too, the read's own failure is the one worth reporting.
                let ended = client.batch_execute("ROLLBACK").await.is_ok();
                (Err(failed), ended)
            }
        }
    };
    match tokio::time::timeout(left, run).await {
        Ok((outcome, ended)) => {
            let usable = ended && !client.is_closed();
            (outcome, usable)
        }
        Err(_) => (Err(out_of_time()), false),
    }
}

/// BEGIN READ ONLY, then both timeouts for this transaction only (`set_config(…, true)` is
/// `SET LOCAL`). lock_timeout is what keeps a read from queueing behind DDL; statement_timeout
/// ends anything else slow on the server's side too, not only on ours. standard_conforming_strings
/// is pinned on, as dhctl's sessions pin it (`db::SETTINGS`), whatever the database or role sets.
/// Both are sent before either answer is awaited (tokio-postgres pipelines futures polled
/// together, in the order first polled): one round trip.
async fn begin(client: &Client, left: Duration) -> Result<()> {
    let ms = left.as_millis().max(1).to_string();
    let (begun, set) = futures_util::future::join(
        client.batch_execute("BEGIN READ ONLY"),
        client.query_typed(
            "SELECT pg_catalog.set_config('lock_timeout', $1, true), \
             pg_catalog.set_config('statement_timeout', $1, true), \
             pg_catalog.set_config('standard_conforming_strings', 'on', true)",
            &[(&ms, Type::TEXT)],
        ),
    )
    .await;
    begun.map_err(|e| Error::sql("starting the read", &e))?;
    set.map_err(|e| Error::sql("setting the read's timeouts", &e))?;
    Ok(())
}

/// Each policy's table and partitions (catalog only), and its DEFAULT partition's live rows as
/// the statistics system counts them.
async fn partitions(client: &Client, policies: &[Policy]) -> Result<Partitions> {
    let snapshot = live::parents(client, policies).await?;
    let snapshot = live::bounds_in_transaction(client, snapshot).await?;
    let parents: Vec<Option<Parent>> = snapshot.tables.into_iter().map(|t| t.ok()).collect();
    let defaults: Vec<(String, String)> = parents
        .iter()
        .flatten()
        .filter_map(|p| p.default_partition.as_ref())
        .map(|d| (d.schema.clone(), d.name.clone()))
        .collect();
    let estimates = default_rows(client, &defaults).await?;
    let tables = parents
        .into_iter()
        .map(|parent| {
            let default_rows = parent
                .as_ref()
                .and_then(|p| p.default_partition.as_ref())
                .and_then(|d| {
                    estimates
                        .iter()
                        .find(|(schema, name, _)| *schema == d.schema && *name == d.name)
                        .map(|(_, _, rows)| *rows)
                });
            TableFacts {
                parent,
                default_rows,
            }
        })
        .collect();
    Ok(Partitions {
        now: snapshot.server_now,
        tables,
    })
}

/// On a hot standby, at most this many rows of a DEFAULT partition are counted: its metric then
/// reads 10001, "more than 10000".
pub const STANDBY_COUNT_CAP: i64 = 10_001;

/// `pg_stat_get_live_tuples` (pg_stat_user_tables.n_live_tup) of each DEFAULT partition: what
/// the statistics system has counted from inserts and deletes as they commit. It takes no lock
/// and reads no row. Not `pg_class.reltuples`, which only VACUUM and ANALYZE update: a default
/// partition that receives a few dozen stray rows never reaches autovacuum's analyze threshold
/// (50 rows plus 10 %), so it would read 0 (or -1, "never analyzed", since PostgreSQL 14).
/// The estimate lags a live count by the statistics flush (at most about a second after a
/// commit) and restarts from 0 after a crash or `pg_stat_reset`.
///
/// A hot standby counts only its own inserts (none: it replays the primary's), so there the
/// statistic always reads 0; on a standby each default's rows are counted instead, capped at
/// [`STANDBY_COUNT_CAP`] (`LIMIT`, so a default full of rows costs a bounded scan), under the
/// read's lock_timeout and statement_timeout: the count takes ACCESS SHARE on the partition, so
/// a replayed `ATTACH PARTITION` (ACCESS EXCLUSIVE) makes it give up rather than wait.
async fn default_rows(
    client: &Client,
    defaults: &[(String, String)],
) -> Result<Vec<(String, String, i64)>> {
    if defaults.is_empty() {
        return Ok(Vec::new());
    }
    let schemas: Vec<&str> = defaults.iter().map(|(s, _)| s.as_str()).collect();
    let names: Vec<&str> = defaults.iter().map(|(_, n)| n.as_str()).collect();
    let rows = client
        .query_typed(
            "SELECT d.s, d.n, pg_catalog.pg_stat_get_live_tuples(pg_catalog.to_regclass(pg_catalog.format('%I.%I', d.s, d.n))), \
                    pg_catalog.pg_is_in_recovery() \
             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS d(s, n)",
            &[(&schemas, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| Error::sql("reading the DEFAULT partitions' row estimates", &e))?;
    let standby = rows.iter().any(|r| r.get::<_, bool>(3));
    if !standby {
        return Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), r.get(1), r.get::<_, Option<i64>>(2)?)))
            .collect());
    }
    let mut counted = Vec::with_capacity(rows.len());
    for (schema, name) in defaults {
        let sql = format!(
            "SELECT pg_catalog.count(*) FROM (SELECT 1 FROM ONLY {}.{} LIMIT {STANDBY_COUNT_CAP}) s",
            quote_ident(schema),
            quote_ident(name)
        );
        let row = client.query_typed_one(&sql, &[]).await.map_err(|e| {
            Error::sql(
                format!("counting the rows of the DEFAULT partition {name} (on a standby)"),
                &e,
            )
        })?;
        counted.push((schema.clone(), name.clone(), row.get(0)));
    }
    Ok(counted)
}

/// A read's error as a check failure: a lock_timeout or statement_timeout is a timeout; the
/// rest (no privilege, two history tables, …) is "unavailable", with dhctl's message for the log.
fn failure(err: &Error) -> Failure {
    let reason = match err {
        Error::Sql { detail, .. } if matches!(detail.sqlstate.as_str(), "55P03" | "57014") => {
            Reason::Timeout
        }
        _ => Reason::Unavailable,
    };
    Failure::new(reason, err.to_string())
}

fn out_of_time() -> Failure {
    Failure::new(
        Reason::Timeout,
        "the check timeout ran out before the schema could be read",
    )
}
