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

/// Reads the database's catalog (one read-only, repeatable-read transaction, so every query
/// sees the same schema) and builds the dump. Takes no lock and changes nothing.
pub async fn run(cfg: &DbConfig, applied_on: AppliedOn) -> Result<Dump> {
    let session = connect(cfg, CreateDatabase::Never).await?;
    let client = &session.client;
    let reading = |e: &tokio_postgres::Error| Error::sql("reading the catalog for the dump", e);
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| reading(&e))?;
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
            Ok(Statement {
                section: r.try_get(0)?,
                keys: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
                sql: r.try_get(4)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(|e| reading(&e))?;
    let mut warnings = client
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
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| reading(&e))?;
    warnings.sort();
    warnings.dedup();
    Ok(text::assemble(
        statements,
        history.as_ref(),
        applied_on,
        warnings,
    ))
}
