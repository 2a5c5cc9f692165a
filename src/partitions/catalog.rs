//! What the database says about each policy's table: that it is range-partitioned on the
//! policy's timestamptz column, which partitions it has, their bounds and whether a detach is
//! pending. Bounds come from `pg_get_expr(relpartbound)`, cast back to timestamptz by the
//! server in the same session settings that printed them; names are never parsed.
//!
//! One query answers for every policy (and reads the server's clock), so the cron no-op costs a
//! single round trip after connecting.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::plan::Existing;
use super::policy::Policy;
use crate::error::{Error, FileProblem, Result};

/// A policy's table as found in the catalog.
#[derive(Debug, Clone)]
pub struct Parent {
    pub table: String,
    pub schema: String,
    pub partitions: Vec<Existing>,
    /// A DEFAULT partition, which dhctl refuses to work around (docs/partitions.md).
    pub default_partition: Option<String>,
}

/// The catalog as one query saw it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The server's clock (`now()`), the default "now" of every command.
    pub server_now: DateTime<Utc>,
    /// One entry per policy, in the policies' order: the table, or why it cannot be maintained.
    pub tables: Vec<std::result::Result<Parent, FileProblem>>,
}

/// The partitioned tables of `policies`, their partitions and bounds.
///
/// The CASE guards keep the bound cast away from tables that are not range-partitioned on one
/// timestamptz column, so such a table is reported as a problem instead of failing the query.
const QUERY: &str = "\
WITH wanted AS (
    SELECT w.name, w.ord, to_regclass(quote_ident(w.name)) AS oid
    FROM unnest($1::text[]) WITH ORDINALITY AS w(name, ord)
), parents AS (
    SELECT w.name, w.ord, c.oid, n.nspname::text AS schema, c.relkind::text AS relkind,
           pt.partstrat::text AS strategy, pt.partnatts::int4 AS key_columns,
           a.attname::text AS key_column, format_type(a.atttypid, a.atttypmod) AS key_type,
           (pt.partstrat = 'r' AND pt.partnatts = 1
               AND a.atttypid = 'timestamptz'::regtype) AS usable
    FROM wanted w
    LEFT JOIN pg_class c ON c.oid = w.oid
    LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
)
SELECT p.name, p.schema, p.relkind, p.strategy, p.key_columns, p.key_column, p.key_type,
       ch.relname::text, i.inhdetachpending, b.bound = 'DEFAULT',
       CASE WHEN lo.v IS NOT NULL AND isfinite(lo.v) THEN lo.v END,
       CASE WHEN hi.v IS NOT NULL AND isfinite(hi.v) THEN hi.v END,
       now()
FROM parents p
LEFT JOIN pg_inherits i ON p.usable AND i.inhparent = p.oid
LEFT JOIN pg_class ch ON ch.oid = i.inhrelid
LEFT JOIN LATERAL (SELECT pg_get_expr(ch.relpartbound, ch.oid) AS bound) b ON true
LEFT JOIN LATERAL (SELECT regexp_match(b.bound, '^FOR VALUES FROM \\((.+)\\) TO \\((.+)\\)$') AS m) r ON true
LEFT JOIN LATERAL (SELECT CASE WHEN r.m[1] <> 'MINVALUE' THEN btrim(r.m[1], '''')::timestamptz END AS v) lo ON true
LEFT JOIN LATERAL (SELECT CASE WHEN r.m[2] <> 'MAXVALUE' THEN btrim(r.m[2], '''')::timestamptz END AS v) hi ON true
ORDER BY p.ord, lo.v NULLS FIRST, ch.relname";

/// Reads every policy's table in one round trip.
pub async fn read(client: &Client, policies: &[Policy]) -> Result<Snapshot> {
    let names: Vec<&str> = policies.iter().map(|p| p.table.as_str()).collect();
    let rows = client
        .query(QUERY, &[&names])
        .await
        .map_err(|e| Error::sql("reading the partitions from the catalog", &e))?;
    let mut server_now = None;
    let mut tables = Vec::with_capacity(policies.len());
    for policy in policies {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(0) == policy.table)
            .collect();
        let Some(first) = mine.first() else {
            continue;
        };
        server_now = Some(first.get::<_, DateTime<Utc>>(12));
        let shape = Shape {
            schema: first.get(1),
            relkind: first.get(2),
            strategy: first.get(3),
            key_columns: first.get(4),
            key_column: first.get(5),
            key_type: first.get(6),
        };
        if let Err(problem) = shape.check(policy) {
            tables.push(Err(FileProblem {
                file: policy.file.clone(),
                problem,
            }));
            continue;
        }
        let mut parent = Parent {
            table: policy.table.clone(),
            schema: shape.schema.unwrap_or_default(),
            partitions: Vec::new(),
            default_partition: None,
        };
        for row in &mine {
            let Some(name) = row.get::<_, Option<String>>(7) else {
                continue;
            };
            if row.get::<_, Option<bool>>(9) == Some(true) {
                parent.default_partition = Some(name);
                continue;
            }
            parent.partitions.push(Existing {
                name,
                from: row.get(10),
                to: row.get(11),
                detach_pending: row.get::<_, Option<bool>>(8).unwrap_or(false),
            });
        }
        tables.push(Ok(parent));
    }
    let server_now = match server_now {
        Some(now) => now,
        None => client
            .query_one("SELECT now()", &[])
            .await
            .map_err(|e| Error::sql("reading the server's clock", &e))?
            .get(0),
    };
    Ok(Snapshot { server_now, tables })
}

/// The parent's partitioning as the catalog describes it.
struct Shape {
    schema: Option<String>,
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
