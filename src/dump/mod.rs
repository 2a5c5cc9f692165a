//! `dhctl dump`: the schema of a database as loadable SQL, built from catalog queries (not by
//! running pg_dump, whose version must match the server's): schemas, extensions, types, casts,
//! sequences, tables (typed ones too) and their partitions, constraints, indexes, views,
//! functions, triggers, policies, comments, and the rows of the migration history, so that the
//! loaded database is "migrated" (`dhctl status` and `dhctl verify` pass on it).
//!
//! The same database gives the same bytes, and two databases migrated from the same files give
//! the same bytes: statements are sorted by section and then by name (partitions by bound), the
//! text holds no OID, no sequence value and no time (the history rows' `applied_on` is the load
//! time unless [`AppliedOn::Keep`]). What the dump cannot represent is named in its header and
//! returned as warnings, never silently dropped. docs/dump.md is the user's side of this.
//!
//! [`text`] is the pure part (ordering and assembling the statements), [`file`] writes a dump
//! atomically and compares one with a file.

pub mod file;
pub mod text;

use serde::Serialize;

use crate::db::{connect, CreateDatabase, DbConfig};
use crate::error::{Error, Result};
use crate::migrations::history;

pub use text::{AppliedOn, Statement};

/// The catalog query: one row per statement (`catalog.sql`).
const CATALOG: &str = include_str!("catalog.sql");

/// What the dump cannot represent (`warnings.sql`).
const WARNINGS: &str = include_str!("warnings.sql");

/// A schema dump.
#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    /// The SQL text, ending in a newline.
    pub sql: String,
    /// How many statements it holds (the session settings at its top not counted).
    pub objects: usize,
    /// How many migration history rows it records.
    pub history_rows: usize,
    /// What the database holds that the dump does not represent, one line each (also in the
    /// dump's header).
    pub not_dumped: Vec<String>,
}

/// What the catalog query's text depends on beside the catalog, pinned for the dump's
/// transaction so that the database's or the role's settings (`ALTER DATABASE … SET
/// bytea_output = 'escape'`) cannot change the bytes: how `pg_get_expr` and friends print a
/// constant (bytea, floats, intervals, dates, times, money) and whether they quote every name.
/// The connection pins some of these for the whole session already (`db::connect`); they are
/// repeated here so the dump does not depend on that. lc_monetary matches the file's preamble,
/// so a money constant loads as it was dumped.
const PINNED: &str = "SET LOCAL bytea_output = 'hex'; SET LOCAL quote_all_identifiers = off; \
     SET LOCAL extra_float_digits = 3; SET LOCAL IntervalStyle = 'postgres'; \
     SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL TimeZone = 'UTC'; SET LOCAL lc_monetary = 'C'";

/// The catalogs a dump reads (the query's and `warnings.sql`'s), fingerprinted before and after
/// the dump (see [`run`]).
const FINGERPRINTED: [&str; 30] = [
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_constraint",
    "pg_index",
    "pg_inherits",
    "pg_partitioned_table",
    "pg_proc",
    "pg_type",
    "pg_enum",
    "pg_range",
    "pg_sequence",
    "pg_depend",
    "pg_rewrite",
    "pg_trigger",
    "pg_policy",
    "pg_description",
    "pg_extension",
    "pg_collation",
    "pg_operator",
    "pg_opclass",
    "pg_opfamily",
    "pg_conversion",
    "pg_ts_config",
    "pg_ts_dict",
    "pg_statistic_ext",
    "pg_event_trigger",
    "pg_publication",
    "pg_am",
];

/// How many times a dump is read before concurrent DDL makes it give up, and the pause before
/// the second attempt (doubled for each further one): 5 attempts span about 1.5 s of pauses, a
/// migration's DDL burst or a `partition create`.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// One text that changes whenever a row of a dumped catalog is inserted, updated or deleted:
/// per catalog, its row count and the sum of its rows' `xmin` (an update or insert writes a
/// row with a newer transaction id, so the sum grows; a delete changes the count or the sum).
fn fingerprint_query() -> String {
    let parts: Vec<String> = FINGERPRINTED
        .iter()
        .map(|c| {
            format!(
                "(SELECT pg_catalog.concat(pg_catalog.count(*), ':', pg_catalog.sum(xmin::text::int8)) \
                 FROM pg_catalog.{c})"
            )
        })
        .collect();
    // Qualified functions, no operator: nothing planted in a schema on the search_path runs.
    format!("SELECT pg_catalog.concat_ws(' ', {})", parts.join(", "))
}

/// What one read of the catalog gave.
struct Read {
    statements: Vec<Statement>,
    warnings: Vec<String>,
    history: Option<text::History>,
}

/// Reads the database's catalog and builds the dump: one read-only, repeatable-read
/// transaction, so every query sees the same snapshot of the catalog. Takes no lock and changes
/// nothing.
///
/// The snapshot is not the whole story: `pg_get_viewdef`, `pg_get_functiondef`, `regclass` and
/// the other functions that print an object read the current catalog, not the snapshot, so DDL
/// that commits while the dump runs could mix two schemas into one dump (or fail it with "cache
/// lookup failed"). So the catalogs are fingerprinted in the snapshot and again after the
/// transaction: equal, nothing committed in between and every function read the snapshot's
/// schema; different, the dump is read again, up to [`ATTEMPTS`] times, and then refused
/// ([`Error::SchemaChanged`]). A query that failed while the catalog changed is retried too.
pub async fn run(cfg: &DbConfig, applied_on: AppliedOn) -> Result<Dump> {
    let session = connect(cfg, CreateDatabase::Never).await?;
    let client = &session.client;
    let fingerprint = fingerprint_query();
    let reading = |e: &tokio_postgres::Error| Error::sql("reading the catalog for the dump", e);
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {PINNED}"
            ))
            .await
            .map_err(|e| reading(&e))?;
        // The first query takes the snapshot the whole transaction reads.
        let before = match client.query_one(&fingerprint, &[]).await {
            Ok(row) => row.try_get::<_, String>(0).map_err(|e| reading(&e)),
            Err(e) => Err(reading(&e)),
        };
        let before = match before {
            Ok(before) => before,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        let read = read(client, cfg).await;
        let ended = client
            .batch_execute(if read.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await;
        let after = client
            .query_one(&fingerprint, &[])
            .await
            .and_then(|row| row.try_get::<_, String>(0));
        if !matches!(&after, Ok(after) if *after != before) {
            let read = read?;
            ended.map_err(|e| reading(&e))?;
            after.map_err(|e| reading(&e))?;
            let mut warnings = read.warnings;
            warnings.sort();
            warnings.dedup();
            return Ok(text::assemble(
                read.statements,
                read.history.as_ref(),
                applied_on,
                warnings,
            ));
        }
        tracing::info!(
            attempt,
            "the catalog changed during the dump; reading it again"
        );
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Err(Error::SchemaChanged { attempts: ATTEMPTS })
}

/// The dump's queries, inside the transaction [`run`] opened.
async fn read(client: &tokio_postgres::Client, cfg: &DbConfig) -> Result<Read> {
    let reading = |e: &tokio_postgres::Error| Error::sql("reading the catalog for the dump", e);
    // Before the empty search_path: where a missing history table would go is read from it.
    let found = history::read(client, cfg.history_table.as_ref(), history::Use::Read).await?;
    client
        .batch_execute("SET LOCAL search_path = ''")
        .await
        .map_err(|e| reading(&e))?;
    let rows = client.query(CATALOG, &[]).await.map_err(|e| reading(&e))?;
    let statements = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i32>(0)?,
                [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
                r.try_get::<_, Option<String>>(4)?,
            ))
        })
        .collect::<std::result::Result<Vec<(i32, [String; 3], Option<String>)>, tokio_postgres::Error>>()
        .map_err(|e| reading(&e))?
        .into_iter()
        .map(|(section, keys, sql)| match sql {
            Some(sql) => Ok(Statement { section, keys, sql }),
            // A part of the statement the catalog query could not write: refused, so that no
            // column (or anything else) is left out of a dump silently.
            None => Err(Error::usage_hint(
                format!(
                    "dump: cannot write the statement for {} (section {section}): a part of its \
                     definition is in a form dhctl does not know; nothing was written",
                    keys.iter()
                        .filter(|k| !k.is_empty())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                "report it with the object's definition; pg_dump --schema-only can dump this schema meanwhile",
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    let warnings = client
        .query(WARNINGS, &[])
        .await
        .map_err(|e| reading(&e))?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| reading(&e))?;
    // The history table's name as the other statements spell it (quoted only where needed).
    let history = if found.located.exists {
        Some(text::History {
            table: client
                .query_one(
                    "SELECT pg_catalog.to_regclass($1)::text",
                    &[&found.located.table.sql()],
                )
                .await
                .and_then(|r| r.try_get::<_, Option<String>>(0))
                .map_err(|e| reading(&e))?
                .unwrap_or_else(|| found.located.table.sql()),
            rows: found.rows,
        })
    } else {
        None
    };
    Ok(Read {
        statements,
        warnings,
        history,
    })
}
