//! What the database says about each policy's table: that it is range-partitioned on the
//! policy's timestamptz column, which partitions it has (each with its own schema), their bounds
//! and whether a detach is pending, its DEFAULT partition with rows per period, and relations
//! named like its partitions that are not. Bounds come from `pg_get_expr(relpartbound)`, printed
//! and cast back to timestamptz by the server in one read-only transaction whose DateStyle,
//! IntervalStyle, TimeZone and extra_float_digits are pinned (`PINNED`), so database or session
//! settings cannot change them; names are never parsed.
//!
//! The parents first (one row per policy, with the server's clock), then their partitions.
//! Deparsing a bound costs the server ~10 µs, so the cron no-op of `create` asks only for the
//! partitions it expects by name and checks their bounds (PostgreSQL forbids overlapping
//! partitions, so when those cover every wanted period nothing else can be in the way); anything
//! else reads them all, and the other relations and the default's rows with them.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{Oid, Type};
use tokio_postgres::Client;

use serde::Serialize;

use super::period::Interval;
use super::plan::Existing;
use super::policy::Policy;
use crate::db::ident::quote_ident;
use crate::error::{Error, FileProblem, Result};

/// A policy's table as found in the catalog.
#[derive(Debug, Clone)]
pub struct Parent {
    pub table: String,
    pub schema: String,
    pub oid: Oid,
    pub partitions: Vec<Existing>,
    /// The DEFAULT partition, if the table has one (docs/partitions.md).
    pub default_partition: Option<DefaultPartition>,
    /// Relations named like this table's partitions that are not its partitions: tables prune
    /// detached and kept (or could not drop), or anything else in the way of a create.
    pub others: Vec<Other>,
}

/// A DEFAULT partition and how many of its rows fall in each period (UTC period starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefaultPartition {
    pub schema: String,
    pub name: String,
    pub rows: Vec<PeriodRows>,
    /// Why its rows could not be counted (then `rows` is empty and nothing may attach next to
    /// it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Rows whose key is NULL: no partition but the default can hold them, so a drain leaves
    /// them there and the default is never empty while they exist.
    #[serde(skip_serializing_if = "is_zero")]
    pub null_key_rows: i64,
    /// Rows whose key is `±infinity` or at or past year 100000 (chrono, dhctl's clock type,
    /// reads no further than year 262142): counted apart from the periods. They block no finite partition, and a drain cannot move
    /// them into one.
    #[serde(skip_serializing_if = "is_zero")]
    pub far_rows: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodRows {
    pub from: DateTime<Utc>,
    pub rows: i64,
}

/// A relation named like one of the table's partitions that is not one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Other {
    pub schema: String,
    pub name: String,
    /// `detached` (a plain table, e.g. kept by prune), `interrupted drain` (a plain table with
    /// drain-default's bounds CHECK: a drain stopped before its attach, holding moved rows),
    /// `partition of <parent>` or another kind.
    pub what: String,
}

impl DefaultPartition {
    /// Whether it holds no row at all (periods, NULL keys and far keys alike).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.null_key_rows == 0 && self.far_rows == 0
    }

    /// What it holds that no drain moves (NULL and far keys), as a clause, if anything.
    pub fn stranded(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.null_key_rows > 0 {
            parts.push(format!("{} row(s) with a NULL key", self.null_key_rows));
        }
        if self.far_rows > 0 {
            parts.push(format!(
                "{} row(s) keyed ±infinity or past year 99999",
                self.far_rows
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// Rows it holds in [from, to).
    pub fn rows_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.from >= from && r.from < to)
            .map(|r| r.rows)
            .sum()
    }
}

/// Why a policy's table cannot be maintained: it does not exist (yet), or it does not fit.
#[derive(Debug, Clone)]
pub enum Unusable {
    Missing(FileProblem),
    Misfit(FileProblem),
}

impl Unusable {
    pub fn problem(&self) -> &FileProblem {
        match self {
            Unusable::Missing(p) | Unusable::Misfit(p) => p,
        }
    }
}

/// The catalog as the queries saw it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The server's clock (`now()`), the default "now" of every command.
    pub server_now: DateTime<Utc>,
    /// One entry per policy, in the policies' order: the table, or why it cannot be maintained.
    pub tables: Vec<std::result::Result<Parent, Unusable>>,
    /// Each policy's interval and column, in the same order.
    keys: Vec<(Interval, String)>,
}

/// Which partitions of the tables to read: all of them, or only the ones named.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    All,
    /// Only these names (the create no-op check).
    Named(&'a [String]),
}

/// One row per policy: how its table is partitioned, and now().
const PARENTS: &str = "\
SELECT w.name, n.nspname::text, c.relkind::text, pt.partstrat::text, pt.partnatts::int4,
       a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), c.oid,
       dn.nspname::text, d.relname::text, pg_catalog.now()
FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS w(name, ord)
LEFT JOIN pg_class c ON c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(w.name))::oid
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
LEFT JOIN pg_class d ON d.oid = pt.partdefid
LEFT JOIN pg_namespace dn ON dn.oid = d.relnamespace
ORDER BY w.ord";

/// The partitions of the given parents (all, or only those named). MATERIALIZED keeps the
/// planner from inlining the deparse into each use of the bound (it did: four calls per row).
/// pg_get_expr(…, 0): bounds are constants, with no Vars to resolve (docs: "System Information
/// Functions"). The default partition is left out here; the parents query names it.
/// `±infinity` bounds are read as what they cover, never as unbounded: a lower bound of
/// `infinity` (or at or past year 100000, far short of what chrono cannot read) becomes year
/// 100000, above every period dhctl makes; an upper bound of `-infinity` becomes the first timestamptz instant, below
/// every finite key. `-infinity` below and `infinity` above cover every finite key, as
/// MINVALUE and MAXVALUE do.
const CHILDREN: &str = "\
WITH kids AS MATERIALIZED (
    SELECT i.inhparent AS parent, ch.relname::text AS name, i.inhdetachpending AS pending,
           pg_catalog.pg_get_expr(ch.relpartbound, 0) AS bound, ns.nspname::text AS schema,
           ch.relkind = 'f' AS foreign_table
    FROM pg_inherits i
    JOIN pg_class ch ON ch.oid = i.inhrelid
    JOIN pg_namespace ns ON ns.oid = ch.relnamespace
    WHERE i.inhparent = ANY($1::oid[]) AND ($2::text[] IS NULL OR ch.relname = ANY($2::text[]))
), parsed AS MATERIALIZED (
    SELECT k.parent, k.name, k.pending, k.schema, k.foreign_table,
           pg_catalog.regexp_match(k.bound, '^FOR VALUES FROM [(](.+)[)] TO [(](.+)[)]$') AS m
    FROM kids k WHERE k.bound <> 'DEFAULT'
), bounds AS MATERIALIZED (
    SELECT p.parent, p.name, p.pending, p.schema, p.foreign_table,
           CASE WHEN p.m[1] <> 'MINVALUE' THEN pg_catalog.btrim(p.m[1], '''')::timestamptz END AS lo,
           CASE WHEN p.m[2] <> 'MAXVALUE' THEN pg_catalog.btrim(p.m[2], '''')::timestamptz END AS hi
    FROM parsed p
)
SELECT parent, name, pending,
       CASE WHEN lo = '-infinity' THEN NULL
            WHEN lo = 'infinity' OR lo >= '100000-01-01 00:00:00+00' THEN '100000-01-01 00:00:00+00'
            ELSE lo END,
       CASE WHEN hi = 'infinity' OR hi >= '100000-01-01 00:00:00+00' THEN NULL
            WHEN hi = '-infinity' THEN '4714-11-24 00:00:00+00 BC'
            ELSE hi END,
       schema, foreign_table
FROM bounds";

/// The settings the bound text above is printed and read back in, pinned for the read's
/// transaction only: an `ALTER DATABASE … SET datestyle = 'SQL, YMD'` (or IntervalStyle,
/// extra_float_digits, TimeZone) would otherwise print bounds that do not read back, or read
/// back as other instants. SET LOCAL ends with the transaction, so the session is left as it was.
macro_rules! pin {
    () => {
        "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; \
         SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1"
    };
}
const PINNED: &str = concat!("BEGIN READ ONLY; ", pin!());

/// Relations named like a parent's partitions (`<table>_YYYY_MM[_DD]`) that are not partitions
/// of it, in any schema, and tables prune detached from it under any name (its comment,
/// `apply::kept_marker`).
const OTHERS: &str = "\
SELECT n.nspname::text, c.relname::text,
       CASE WHEN c.relispartition THEN 'partition of ' || i.inhparent::regclass::text
            WHEN c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_constraint k
                 WHERE k.conrelid = c.oid AND k.conname = 'dhctl_partition_bounds')
                 THEN 'interrupted drain'
            WHEN c.relkind IN ('r', 'p') THEN 'detached'
            ELSE 'a relation of kind ' || c.relkind::text END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
WHERE (c.relname::text ~ ('^' || $1 || '_[0-9]{4}_[0-9]{2}(_[0-9]{2})?$')
       OR (NOT c.relispartition AND pg_catalog.obj_description(c.oid, 'pg_class') = $3))
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND i.inhparent IS DISTINCT FROM $2
ORDER BY 1, 2";

/// Reads every policy's table and all its partitions.
pub async fn read(client: &Client, policies: &[Policy]) -> Result<Snapshot> {
    let snapshot = parents(client, policies).await?;
    partitions(client, snapshot, Which::All).await
}

/// Reads how each policy's table is partitioned (no partitions yet) and the server's clock.
pub async fn parents(client: &Client, policies: &[Policy]) -> Result<Snapshot> {
    let names: Vec<&str> = policies.iter().map(|p| p.table.as_str()).collect();
    // Typed parameters: no separate prepare round trip.
    let rows = client
        .query_typed(PARENTS, &[(&names, Type::TEXT_ARRAY)])
        .await
        .map_err(|e| Error::sql("reading the partitioned tables from the catalog", &e))?;
    let server_now = match rows.first() {
        Some(row) => row.get(10),
        None => client
            .query_typed_one("SELECT pg_catalog.now()", &[])
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
            let missing = shape.relkind.is_none();
            shape.check(policy).map_err(|problem| {
                let problem = FileProblem {
                    file: policy.file.clone(),
                    problem,
                };
                if missing {
                    Unusable::Missing(problem)
                } else {
                    Unusable::Misfit(problem)
                }
            })?;
            let default_partition = match (row.get(8), row.get(9)) {
                (Some(schema), Some(name)) => Some(DefaultPartition {
                    schema,
                    name,
                    rows: Vec::new(),
                    unreadable: None,
                    null_key_rows: 0,
                    far_rows: 0,
                }),
                _ => None,
            };
            Ok(Parent {
                table: policy.table.clone(),
                schema: row.get(1),
                oid: row.get(7),
                partitions: Vec::new(),
                default_partition,
                others: Vec::new(),
            })
        })
        .collect();
    let keys = policies
        .iter()
        .map(|p| (p.interval, p.column.clone()))
        .collect();
    Ok(Snapshot {
        server_now,
        tables,
        keys,
    })
}

/// Adds the partitions (all, or the named ones) of every usable parent, sorted by lower bound.
pub async fn partitions(
    client: &Client,
    mut snapshot: Snapshot,
    which: Which<'_>,
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
        Which::All => None,
        Which::Named(names) => Some(names),
    };
    let rows = pinned(
        client,
        CHILDREN,
        &[(&oids, Type::OID_ARRAY), (&names, Type::TEXT_ARRAY)],
    )
    .await
    .map_err(|e| Error::sql("reading the partitions from the catalog", &e))?;
    assign(&mut snapshot, &rows);
    if let Which::All = which {
        for (policy, parent) in policies_of(&mut snapshot) {
            parent.others = others(client, parent).await?;
            if let Some(default) = parent.default_partition.as_mut() {
                // One table's unreadable default (no SELECT on it) is that table's problem only.
                match default_rows(client, default, policy).await {
                    Ok((rows, null_key_rows, far_rows)) => {
                        default.rows = rows;
                        default.null_key_rows = null_key_rows;
                        default.far_rows = far_rows;
                    }
                    Err(e) => default.unreadable = Some(e.to_string()),
                }
            }
        }
    }
    Ok(snapshot)
}

/// Adds every partition of every usable parent, bounds only: the catalog and nothing else (no
/// look-alike relations, no count of a DEFAULT partition's rows, so no lock on any table).
/// For a caller already inside a transaction (dhctl-health's `/metrics`, whose reads run under
/// its own lock_timeout and statement_timeout); the bound settings are pinned with SET LOCAL,
/// so they last until that transaction ends.
pub async fn bounds_in_transaction(client: &Client, mut snapshot: Snapshot) -> Result<Snapshot> {
    let oids: Vec<Oid> = snapshot
        .tables
        .iter()
        .filter_map(|t| t.as_ref().ok().map(|p| p.oid))
        .collect();
    if oids.is_empty() {
        return Ok(snapshot);
    }
    let all: Option<&[String]> = None;
    // Pipelined (one round trip): the settings are sent, and so take effect, first.
    let (pinned, rows) = futures_util::future::join(
        client.batch_execute(pin!()),
        client.query_typed(
            CHILDREN,
            &[(&oids, Type::OID_ARRAY), (&all, Type::TEXT_ARRAY)],
        ),
    )
    .await;
    pinned.map_err(|e| Error::sql("pinning the settings partition bounds are read in", &e))?;
    let rows = rows.map_err(|e| Error::sql("reading the partitions from the catalog", &e))?;
    assign(&mut snapshot, &rows);
    Ok(snapshot)
}

/// Gives each usable parent its partitions among `rows` (of [`CHILDREN`]'s shape), sorted by
/// lower bound.
fn assign(snapshot: &mut Snapshot, rows: &[tokio_postgres::Row]) {
    for parent in snapshot.tables.iter_mut().filter_map(|t| t.as_mut().ok()) {
        parent.partitions = rows
            .iter()
            .filter(|r| r.get::<_, Oid>(0) == parent.oid)
            .map(existing)
            .collect();
        parent
            .partitions
            .sort_by(|a, b| (a.from, &a.name).cmp(&(b.from, &b.name)));
    }
}

/// The usable parents with the interval and column their rows are counted by.
fn policies_of(snapshot: &mut Snapshot) -> Vec<((Interval, String), &mut Parent)> {
    snapshot
        .tables
        .iter_mut()
        .zip(&snapshot.keys)
        .filter_map(|(t, key)| t.as_mut().ok().map(|p| (key.clone(), p)))
        .collect()
}

/// Runs one catalog query with the settings it parses pinned (see PINNED), in one round trip:
/// the BEGIN with its settings, the query (its parameters typed, so no separate prepare) and the
/// COMMIT are pipelined, and each takes effect in the order sent. A failed query aborts the
/// transaction and the COMMIT then ends it as a ROLLBACK, so the session is left as it was.
async fn pinned(
    client: &Client,
    sql: &str,
    params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let (began, rows, ended) = futures_util::future::join3(
        client.batch_execute(PINNED),
        client.query_typed(sql, params),
        client.batch_execute("COMMIT"),
    )
    .await;
    began?;
    let rows = rows?;
    ended?;
    Ok(rows)
}

async fn others(client: &Client, parent: &Parent) -> Result<Vec<Other>> {
    let marker = super::apply::kept_marker(&parent.schema, &parent.table);
    // Typed parameters: no separate prepare round trip.
    let rows = client
        .query_typed(
            OTHERS,
            &[
                (&parent.table, Type::TEXT),
                (&parent.oid, Type::OID),
                (&marker, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| Error::sql("reading tables named like partitions from the catalog", &e))?;
    Ok(rows
        .iter()
        .map(|r| Other {
            schema: r.get(0),
            name: r.get(1),
            what: r.get(2),
        })
        .collect())
}

/// Keys at or past this are far rows: chrono (dhctl's clock type) reads years up to 262142 only,
/// and this leaves room for any period's end.
const FAR: &str = "'100000-01-01 00:00:00+00'";

/// Rows of the DEFAULT partition per period (a scan of it: it should be small, and its rows
/// must be known before any ATTACH next to it), then its NULL-key rows and its far rows
/// (`±infinity`, or past year 99999), which fit in no period and would not read into one.
async fn default_rows(
    client: &Client,
    default: &DefaultPartition,
    (interval, column): (Interval, String),
) -> Result<(Vec<PeriodRows>, i64, i64)> {
    let column = quote_ident(&column);
    // `kind` sorts the rows: 0 a period, 1 a NULL key, 2 far. Only kind 0 has a period start.
    let sql = format!(
        "SELECT CASE WHEN k.kind = 0 THEN pg_catalog.date_trunc($1, k.key AT TIME ZONE 'UTC')                 AT TIME ZONE 'UTC' END, k.kind, pg_catalog.count(*)          FROM (SELECT {column} AS key,                       CASE WHEN {column} IS NULL THEN 1                            WHEN NOT pg_catalog.isfinite({column}) OR {column} >= {FAR}::timestamptz THEN 2                            ELSE 0 END AS kind                FROM {}.{}) k          GROUP BY 1, 2 ORDER BY 2, 1",
        quote_ident(&default.schema),
        quote_ident(&default.name)
    );
    let rows = client
        .query(&sql, &[&interval.as_str()])
        .await
        .map_err(|e| {
            Error::sql(
                format!(
                    "counting the rows of the DEFAULT partition {}",
                    default.name
                ),
                &e,
            )
        })?;
    let (mut periods, mut null_key, mut far) = (Vec::new(), 0, 0);
    for r in &rows {
        let count: i64 = r.get(2);
        match (r.get::<_, i32>(1), r.get::<_, Option<DateTime<Utc>>>(0)) {
            (0, Some(from)) => periods.push(PeriodRows { from, rows: count }),
            (1, _) => null_key += count,
            _ => far += count,
        }
    }
    Ok((periods, null_key, far))
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

/// The partition (schema, name) that holds the parent's newest row by `column`, if any row
/// exists. One read down the column's index when there is one.
pub async fn newest_rows(
    client: &Client,
    parent: &Parent,
    column: &str,
) -> Result<Option<(String, String)>> {
    let column = quote_ident(column);
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = (SELECT tableoid FROM {}.{} WHERE {column} IS NOT NULL \
                        ORDER BY {column} DESC LIMIT 1)",
        quote_ident(&parent.schema),
        quote_ident(&parent.table)
    );
    let row = client
        .query_opt(&sql, &[])
        .await
        .map_err(|e| Error::sql(format!("finding the newest row of {}", parent.table), &e))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// One partition of the parent `oid` as the catalog shows it now (None when it is no longer
/// one): prune reads it again under the lock, right before detaching it.
pub async fn partition(
    client: &Client,
    oid: Oid,
    schema: &str,
    name: &str,
) -> Result<Option<Existing>> {
    let names = [name.to_string()];
    let (oids, names) = (vec![oid], Some(&names[..]));
    let rows = pinned(
        client,
        CHILDREN,
        &[(&oids, Type::OID_ARRAY), (&names, Type::TEXT_ARRAY)],
    )
    .await
    .map_err(|e| Error::sql(format!("reading the bounds of partition {name}"), &e))?;
    Ok(rows
        .iter()
        .filter(|r| r.get::<_, String>(5) == schema)
        .map(existing)
        .next())
}

/// A partition from a row of [`CHILDREN`]'s shape (parent oid, name, detach pending, from, to,
/// schema, foreign): the one reading of those columns.
fn existing(r: &tokio_postgres::Row) -> Existing {
    Existing {
        schema: r.get(5),
        name: r.get(1),
        detach_pending: r.get(2),
        from: r.get(3),
        to: r.get(4),
        foreign: r.get(6),
    }
}
