//! dbmate's history table, `schema_migrations(version varchar(128) PRIMARY KEY)`: found by name
//! and shape in any schema and by recording versions of the catalog, read for `baseline
//! --from-dbmate`, and looked for by `status` and `migrate` on a database without a dhctl
//! history table (a database dbmate migrated must be adopted, not migrated again). dbmate stores each applied file's leading digits as written (`001`).

use tokio_postgres::GenericClient;

use crate::db::ident::TableName;
use crate::error::{Error, Result};

/// dbmate's default table name (`--migrations-table` can change it; dhctl looks for the default).
pub const TABLE: &str = "schema_migrations";

/// Every relation named `schema_migrations` with a text-like `version` column, outside the
/// system and temporary schemas.
const FIND: &str = "\
SELECT n.nspname::text, c.relname::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'version' AND NOT a.attisdropped
 WHERE c.relname = $1 AND c.relkind IN ('r', 'p')
   AND a.atttypid IN ('pg_catalog.varchar'::pg_catalog.regtype, 'pg_catalog.text'::pg_catalog.regtype)
   AND n.nspname::text !~ '^pg_' AND n.nspname <> 'information_schema'
 ORDER BY 1";

/// Every table named `schema_migrations` with a text-like `version` column.
async fn candidates(client: &impl GenericClient) -> Result<Vec<TableName>> {
    let rows = client
        .query_typed(FIND, &[(&TABLE, tokio_postgres::types::Type::NAME)])
        .await
        .map_err(|e| Error::sql("looking for dbmate's schema_migrations table", &e))?;
    Ok(rows
        .iter()
        .map(|r| TableName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// dbmate's table: the one `schema_migrations` (text `version`) that records at least one
/// version of this catalog (dbmate's `001` is version 1). An empty table, or one of another
/// application (a Rails app's, with versions none of these files have), or one this role may
/// not read, is not dbmate's record of these migrations and is ignored. Two that overlap are an
/// error naming both.
pub async fn find(client: &impl GenericClient, catalog: &[i64]) -> Result<Option<TableName>> {
    let mut overlapping = Vec::new();
    for table in candidates(client).await? {
        let sql = format!("SELECT version::text FROM {}", table.sql());
        let rows = match client.query_typed(&sql, &[]).await {
            Ok(rows) => rows,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                continue
            }
            Err(e) => return Err(Error::sql(format!("reading {table}"), &e)),
        };
        let overlaps = rows.iter().any(|r| {
            r.get::<_, Option<String>>(0)
                .and_then(|text| parse_version(&text))
                .is_some_and(|v| catalog.contains(&v))
        });
        if overlaps {
            overlapping.push(table);
        }
    }
    match overlapping.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(Error::usage_hint(
            format!(
                "this database has {} tables named {TABLE} that record versions of these migrations: {}; \
                 dhctl cannot tell which one is dbmate's; nothing was changed",
                many.len(),
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
            ),
            "drop or rename the one dbmate does not use (compare their rows), then run dhctl again; \
             if dhctl's history lives elsewhere, name it with --history-table schema.name (env DHCTL_HISTORY_TABLE)",
        )),
    }
}

/// A database dbmate migrated and dhctl never did: no dhctl history table at all (an empty
/// one, as `rollback --all` leaves it, is dhctl's) and dbmate's table ([`find`]).
pub async fn detect(
    client: &impl GenericClient,
    history_table: bool,
    catalog: &[i64],
) -> Result<Option<TableName>> {
    if history_table {
        return Ok(None);
    }
    find(client, catalog).await
}

/// dbmate's text version as a number: digits only; `None` for anything else or too large.
fn parse_version(text: &str) -> Option<i64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<i64>().ok())
        .flatten()
}

/// The versions dbmate recorded, as numbers (dbmate's text `001` is version 1, as dhctl reads
/// file names), in order. A value that is not digits, or too large, is an error naming it.
pub async fn versions(client: &impl GenericClient, table: &TableName) -> Result<Vec<i64>> {
    let sql = format!("SELECT version::text FROM {} ORDER BY 1", table.sql());
    let rows = client
        .query_typed(&sql, &[])
        .await
        .map_err(|e| Error::sql(format!("reading {table}"), &e))?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in &rows {
        let text: Option<String> = row.get(0);
        let text = text.unwrap_or_default();
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        match parse_version(&text) {
            Some(v) => versions.push(v),
            None if digits => {
                return Err(Error::usage_hint(
                    format!("{table} holds version {text:?}, which is too large for a migration version (at most {}); nothing was changed", i64::MAX),
                    "dbmate records the leading digits of each file name; fix or delete that row",
                ))
            }
            None => {
                return Err(Error::usage_hint(
                    format!("{table} holds version {text:?}, which is not a migration version (digits); nothing was changed"),
                    "dbmate records the leading digits of each file name; fix or delete that row",
                ))
            }
        }
    }
    versions.sort_unstable();
    if let Some(w) = versions.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::usage_hint(
            format!(
                "{table} holds version {} twice, written differently (e.g. 001 and 1); nothing was changed",
                w[0]
            ),
            "dhctl reads versions as numbers: keep one of those rows",
        ));
    }
    Ok(versions)
}

/// migrate (and status) on a database dbmate migrated and dhctl never did: adopt it first.
pub fn adopt_first(table: &TableName) -> Error {
    Error::usage_hint(
        format!(
            "this database was migrated by dbmate ({table} exists) and has no dhctl history; \
             migrate would apply every migration again, so it refuses; nothing was changed"
        ),
        "adopt it first: `dhctl baseline --from-dbmate` checks the schema and records dbmate's \
         applied versions in dhctl's history (docs/baseline.md)",
    )
}
