//! What the database says about each policy's table: that it is range-partitioned on the
//! policy's timestamptz column, which partitions it has, their bounds and whether a detach is
//! pending. Bounds come from `pg_get_expr(relpartbound)`, cast back to timestamptz by the
//! server in the same session settings that printed them; names are never parsed.
//!
//! Two queries: the parents (one row per policy, with the server's clock), then their
//! partitions. Deparsing a bound costs the server ~10 µs, so the cron no-op of `create` asks only
//! for the partitions it expects by name and checks their bounds (PostgreSQL forbids overlapping
//! partitions, so when those cover every wanted period nothing else can be in the way); anything
//! else reads them all.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Oid;
use tokio_postgres::Client;

use super::plan::Existing;
use super::policy::Policy;
use crate::error::{Error, FileProblem, Result};

/// A policy's table as found in the catalog.
#[derive(Debug, Clone)]
pub struct Parent {
    pub table: String,
    pub schema: String,
    pub oid: Oid,
    pub partitions: Vec<Existing>,
    /// A DEFAULT partition, which dhctl refuses to work around (docs/partitions.md).
    pub default_partition: Option<String>,
}

/// The catalog as the queries saw it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The server's clock (`now()`), the default "now" of every command.
    pub server_now: DateTime<Utc>,
    /// One entry per policy, in the policies' order: the table, or why it cannot be maintained.
    pub tables: Vec<std::result::Result<Parent, FileProblem>>,
}

/// Which partitions to read.
#[derive(Debug, Clone, Copy)]
pub enum Partitions<'a> {
    All,
    /// Only these names (the create no-op check).
    Named(&'a [String]),
}

/// One row per policy: how its table is partitioned, and now().
const PARENTS: &str = "\
SELECT w.name, n.nspname::text, c.relkind::text, pt.partstrat::text, pt.partnatts::int4,
       a.attname::text, format_type(a.atttypid, a.atttypmod), c.oid,
       CASE WHEN pt.partdefid <> 0 THEN pt.partdefid::regclass::text END, now()
FROM unnest($1::text[]) WITH ORDINALITY AS w(name, ord)
LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(w.name))
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
ORDER BY w.ord";

/// The partitions of the given parents (all, or only those named). MATERIALIZED keeps the
/// planner from inlining the deparse into each use of the bound (it did: four calls per row).
/// pg_get_expr(…, 0): bounds are constants, with no Vars to resolve (docs: "System Information
/// Functions"). The default partition is left out here; the parents query names it.
const CHILDREN: &str = "\
WITH kids AS MATERIALIZED (
    SELECT i.inhparent AS parent, ch.relname::text AS name, i.inhdetachpending AS pending,
           pg_get_expr(ch.relpartbound, 0) AS bound
    FROM pg_inherits i
    JOIN pg_class ch ON ch.oid = i.inhrelid
    WHERE i.inhparent = ANY($1::oid[]) AND ($2::text[] IS NULL OR ch.relname = ANY($2::text[]))
), parsed AS MATERIALIZED (
    SELECT k.parent, k.name, k.pending,
           regexp_match(k.bound, '^FOR VALUES FROM \\((.+)\\) TO \\((.+)\\)$') AS m
    FROM kids k WHERE k.bound <> 'DEFAULT'
), bounds AS MATERIALIZED (
    SELECT p.parent, p.name, p.pending,
           CASE WHEN p.m[1] <> 'MINVALUE' THEN btrim(p.m[1], '''')::timestamptz END AS lo,
           CASE WHEN p.m[2] <> 'MAXVALUE' THEN btrim(p.m[2], '''')::timestamptz END AS hi
    FROM parsed p
)
SELECT parent, name, pending,
       CASE WHEN isfinite(lo) THEN lo END, CASE WHEN isfinite(hi) THEN hi END
FROM bounds";

/// Reads every policy's table and all its partitions.
pub async fn read(client: &Client, policies: &[Policy]) -> Result<Snapshot> {
    let snapshot = parents(client, policies).await?;
    partitions(client, snapshot, Partitions::All).await
}

/// Reads how each policy's table is partitioned (no partitions yet) and the server's clock.
pub async fn parents(client: &Client, policies: &[Policy]) -> Result<Snapshot> {
    let names: Vec<&str> = policies.iter().map(|p| p.table.as_str()).collect();
    let rows = client
        .query(PARENTS, &[&names])
        .await
        .map_err(|e| Error::sql("reading the partitioned tables from the catalog", &e))?;
    let server_now = match rows.first() {
        Some(row) => row.get(9),
        None => client
            .query_one("SELECT now()", &[])
            .await
            .map_err(|e| Error::sql("reading the server's clock", &e))?
            .get(0),
    };
    let tables = policies
        .iter()
        .zip(&rows)
        .map(|(policy, row)| {
            let shape = Shape {
                relkind: row.get(2),
                strategy: row.get(3),
                key_columns: row.get(4),
                key_column: row.get(5),
                key_type: row.get(6),
            };
            shape.check(policy).map_err(|problem| FileProblem {
                file: policy.file.clone(),
                problem,
            })?;
            Ok(Parent {
                table: policy.table.clone(),
                schema: row.get(1),
                oid: row.get(7),
                partitions: Vec::new(),
                default_partition: row.get(8),
            })
        })
        .collect();
    Ok(Snapshot { server_now, tables })
}

/// Adds the partitions (all, or the named ones) of every usable parent, sorted by lower bound.
pub async fn partitions(
    client: &Client,
    mut snapshot: Snapshot,
    which: Partitions<'_>,
) -> Result<Snapshot> {
    let oids: Vec<Oid> = snapshot
        .tables
        .iter()
        .filter_map(|t| t.as_ref().ok().map(|p| p.oid))
        .collect();
    if oids.is_empty() {
        return Ok(snapshot);
    }
    let names: Option<&[String]> = match which {
        Partitions::All => None,
        Partitions::Named(names) => Some(names),
    };
    let rows = client
        .query(CHILDREN, &[&oids, &names])
        .await
        .map_err(|e| Error::sql("reading the partitions from the catalog", &e))?;
    for parent in snapshot.tables.iter_mut().filter_map(|t| t.as_mut().ok()) {
        parent.partitions = rows
            .iter()
            .filter(|r| r.get::<_, Oid>(0) == parent.oid)
            .map(|r| Existing {
                name: r.get(1),
                detach_pending: r.get(2),
                from: r.get(3),
                to: r.get(4),
            })
            .collect();
        parent
            .partitions
            .sort_by(|a, b| (a.from, &a.name).cmp(&(b.from, &b.name)));
    }
    Ok(snapshot)
}

/// The parent's partitioning as the catalog describes it.
struct Shape {
    relkind: Option<String>,
    strategy: Option<String>,
    key_columns: Option<i32>,
    key_column: Option<String>,
    key_type: Option<String>,
}

impl Shape {
    /// Whether the table is range-partitioned on exactly the policy's timestamptz column.
    fn check(&self, policy: &Policy) -> std::result::Result<(), String> {
        let table = &policy.table;
        let column = &policy.column;
        let range_hint =
            format!("dhctl needs PARTITION BY RANGE ({column}) on a timestamptz column");
        match (self.relkind.as_deref(), self.strategy.as_deref()) {
            (None, _) => {
                return Err(format!(
                    "key `table`: table {table} does not exist in this database (searched the \
                     search_path); run `dhctl migrate` first, or fix the name"
                ))
            }
            (Some("p"), Some("r")) => {}
            (Some("p"), Some(other)) => {
                let by = match other {
                    "l" => "list",
                    "h" => "hash",
                    _ => "another strategy",
                };
                return Err(format!(
                    "key `table`: {table} is partitioned by {by}, not by range; {range_hint}"
                ));
            }
            _ => {
                return Err(format!(
                    "key `table`: {table} is not a partitioned table; {range_hint}"
                ))
            }
        }
        if self.key_columns != Some(1) || self.key_column.is_none() {
            return Err(format!(
                "key `column`: {table} is partitioned on an expression or several columns; {range_hint}"
            ));
        }
        let key = self.key_column.as_deref().unwrap_or_default();
        if key != column {
            return Err(format!(
                "key `column`: {table} is partitioned on `{key}`, not `{column}`; set column = \"{key}\""
            ));
        }
        let key_type = self.key_type.as_deref().unwrap_or_default();
        if key_type != "timestamp with time zone" {
            return Err(format!(
                "key `column`: {table}.{column} is `{key_type}`; dhctl needs timestamptz \
                 (timestamp with time zone), so bounds are instants rather than local times"
            ));
        }
        Ok(())
    }
}
