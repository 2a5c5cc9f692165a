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
/// the dump (see [`run`]), each with the condition that leaves out the rows of temporary objects
/// (other sessions' `pg_temp_*` / `pg_toast_temp_*` schemas, which the dump never writes): a
/// session making temporary tables all day must not make every dump retry. `tn` is the set of
/// temporary schemas, `tr` of temporary relations, `tt` of temporary types, `tmp` of every
/// temporary object as (catalog, oid) (see [`fingerprint_query`]).
const FINGERPRINTED: [(&str, &str); 30] = [
    ("pg_namespace", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.oid)"),
    ("pg_class", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.oid)"),
    ("pg_attribute", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.attrelid)"),
    ("pg_attrdef", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.adrelid)"),
    ("pg_constraint", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.connamespace)"),
    ("pg_index", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.indrelid)"),
    ("pg_inherits", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.inhrelid)"),
    ("pg_partitioned_table", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.partrelid)"),
    ("pg_proc", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.pronamespace)"),
    ("pg_type", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.typnamespace)"),
    ("pg_enum", "NOT EXISTS (SELECT FROM tt WHERE tt.oid OPERATOR(pg_catalog.=) x.enumtypid)"),
    ("pg_range", "NOT EXISTS (SELECT FROM tt WHERE tt.oid OPERATOR(pg_catalog.=) x.rngtypid)"),
    ("pg_sequence", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.seqrelid)"),
    (
        "pg_depend",
        "NOT EXISTS (SELECT FROM tmp WHERE c OPERATOR(pg_catalog.=) x.classid AND o OPERATOR(pg_catalog.=) x.objid) \
         AND NOT EXISTS (SELECT FROM tmp WHERE c OPERATOR(pg_catalog.=) x.refclassid AND o OPERATOR(pg_catalog.=) x.refobjid)",
    ),
    ("pg_rewrite", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.ev_class)"),
    ("pg_trigger", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.tgrelid)"),
    ("pg_policy", "NOT EXISTS (SELECT FROM tr WHERE tr.oid OPERATOR(pg_catalog.=) x.polrelid)"),
    (
        "pg_description",
        "NOT EXISTS (SELECT FROM tmp WHERE c OPERATOR(pg_catalog.=) x.classoid AND o OPERATOR(pg_catalog.=) x.objoid)",
    ),
    ("pg_extension", "true"),
    ("pg_collation", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.collnamespace)"),
    ("pg_operator", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.oprnamespace)"),
    ("pg_opclass", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.opcnamespace)"),
    ("pg_opfamily", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.opfnamespace)"),
    ("pg_conversion", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.connamespace)"),
    ("pg_ts_config", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.cfgnamespace)"),
    ("pg_ts_dict", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.dictnamespace)"),
    ("pg_statistic_ext", "NOT EXISTS (SELECT FROM tn WHERE tn.oid OPERATOR(pg_catalog.=) x.stxnamespace)"),
    ("pg_event_trigger", "true"),
    ("pg_publication", "true"),
    ("pg_am", "true"),
];

/// How many times a dump is read before concurrent DDL makes it give up, and the pause before
/// the second attempt (doubled for each further one): 5 attempts span about 1.5 s of pauses, a
/// migration's DDL burst or a `partition create`.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The temporary objects [`FINGERPRINTED`]'s conditions leave out: schemas, relations, types,
/// and every object of theirs a `pg_depend` or `pg_description` row may name.
const TEMPORARY: &str = "WITH tn AS (SELECT oid FROM pg_catalog.pg_namespace \
       WHERE pg_catalog.starts_with(nspname::text, 'pg_temp_') \
          OR pg_catalog.starts_with(nspname::text, 'pg_toast_temp_')), \
     tr AS (SELECT oid FROM pg_catalog.pg_class \
       WHERE relpersistence OPERATOR(pg_catalog.=) 't' OR relnamespace OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tn)), \
     tt AS (SELECT oid FROM pg_catalog.pg_type WHERE typnamespace OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tn)), \
     tmp (c, o) AS ( \
       SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid, oid FROM tn \
       UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, oid FROM tr \
       UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, oid FROM tt \
       UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_constraint WHERE connamespace OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tn) \
       UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_attrdef WHERE adrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tr) \
       UNION ALL SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_trigger WHERE tgrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tr) \
       UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_rewrite WHERE ev_class OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tr) \
       UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tr) \
       UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, oid \
         FROM pg_catalog.pg_proc WHERE pronamespace OPERATOR(pg_catalog.=) ANY (SELECT oid FROM tn))";

/// One text that changes whenever a row of a dumped catalog is inserted, updated or deleted:
/// per catalog, its row count and the sum of a 64-bit hash of each row's `(xmin, ctid)`. An
/// insert or update writes a row version with a new `(xmin, ctid)`, a delete removes one, and
/// no sequence of commits can be arranged to keep the sum of 64-bit hashes of the row versions
/// equal (a sum of the `xmin`s could: an old transaction rewriting one row, -1, and a new one
/// another, +1). Rows of temporary objects are left out ([`FINGERPRINTED`]).
///
/// Every function is `pg_catalog.`-qualified and every operator `OPERATOR(pg_catalog.…)`:
/// nothing planted in a schema on the search_path runs.
pub fn fingerprint_query() -> String {
    let parts: Vec<String> = FINGERPRINTED
        .iter()
        .map(|(c, keep)| {
            format!(
                "(SELECT pg_catalog.concat(pg_catalog.count(*), ':', \
                 pg_catalog.sum(pg_catalog.hashtextextended(pg_catalog.concat(x.xmin, x.ctid), 0))) \
                 FROM pg_catalog.{c} x WHERE {keep})"
            )
        })
        .collect();
    format!(
        "{TEMPORARY} SELECT pg_catalog.concat_ws(' ', {})",
        parts.join(", ")
    )
}

/// What one read of the catalog gave.
struct Read {
    statements: Vec<Statement>,
    warnings: Vec<String>,
    history: Option<text::History>,
}

/// Reads the database's catalog and builds the dump: one read-only, repeatable-read
/// transaction, so every query sees the same snapshot of the catalog. Changes nothing; the
/// ACCESS SHARE locks printing a view takes are waited for at most `lock_timeout`
/// ([`Error::DumpLocked`], exit 3).
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
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {PINNED}; \
                 SET LOCAL lock_timeout = {}",
                crate::db::lock_timeout_setting(cfg.lock_timeout)
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
        let read = read(client, cfg).await.map_err(read_only_hint);
        let ended = client
            .batch_execute(if read.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await;
        let after = client
            .query_one(&fingerprint, &[])
            .await
            .and_then(|row| row.try_get::<_, String>(0));
        if !matches!(&after, Ok(after) if *after != before) {
            let read = match read {
                Err(Error::Sql { detail, .. }) if detail.sqlstate == LOCK_NOT_AVAILABLE => {
                    return Err(locked(client, cfg).await)
                }
                read => read?,
            };
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

/// A permission error while dumping is a missing read privilege (the dump writes nothing): the
/// generic hint (GRANT CREATE, ALTER … OWNER) is for the commands that change the schema.
fn read_only_hint(e: Error) -> Error {
    match e {
        Error::Sql {
            context,
            mut detail,
        } if detail.sqlstate == "42501" && detail.hint.is_none() => {
            detail.hint = Some(
                "dhctl dump only reads: have the table's owner GRANT SELECT ON it (the migration \
                 history table, refinery_schema_history or --history-table) and USAGE ON its \
                 schema to this role"
                    .into(),
            );
            Error::Sql { context, detail }
        }
        e => e,
    }
}

/// SQLSTATE lock_not_available: a statement waited `lock_timeout` for a lock.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The relation whose lock the dump gave up waiting for, and the session holding (or queued
/// for) it in ACCESS EXCLUSIVE mode, the only mode that blocks the ACCESS SHARE the dump takes:
/// looked up after the dump's transaction ended, so a lock held by then is named; a granted
/// lock before a queued one.
const BLOCKER: &str = "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), l.pid \
     FROM pg_catalog.pg_locks l \
     JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation \
     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' \
       AND l.mode OPERATOR(pg_catalog.=) 'AccessExclusiveLock' \
       AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d \
         WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
       AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() \
       AND c.relpersistence OPERATOR(pg_catalog.<>) 't' \
     ORDER BY l.granted DESC, 1 LIMIT 1";

/// [`Error::DumpLocked`], naming the lock where one is found.
async fn locked(client: &tokio_postgres::Client, cfg: &DbConfig) -> Error {
    let found = client
        .query_opt(BLOCKER, &[])
        .await
        .ok()
        .flatten()
        .and_then(|r| {
            Some((
                r.try_get::<_, String>(0).ok()?,
                r.try_get::<_, i32>(1).ok()?,
            ))
        });
    Error::DumpLocked {
        waited: cfg.lock_timeout,
        relation: found.as_ref().map(|(r, _)| r.clone()),
        pid: found.map(|(_, p)| p),
    }
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
