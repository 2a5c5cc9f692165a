//! refinery's history table, `refinery_schema_history(version int8, name, applied_on, checksum)`:
//! finding it, checking it can be trusted, creating it the way refinery does, and writing the
//! rows dhctl records in refinery's format so refinery tooling can read them.
//!
//! The table is always addressed by its schema, fixed when it is created: an unqualified name
//! would follow `search_path`, which a database setting or a migration's `SET` can point
//! elsewhere (a second history table, every migration applied twice). Before one exists it is
//! found by name in the catalog, whatever `search_path` says; two are an error. A table that
//! another role could have planted (CVE-2018-1058 class: a trigger on it runs as the migrating
//! role) or of the wrong shape is refused before anything runs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_postgres::GenericClient;

use crate::db::ident::{quote_ident, TableName};
use crate::error::{Error, Result};

/// refinery's default table name, looked up in every schema unless `--history-table` says
/// where it is.
pub const TABLE: &str = "refinery_schema_history";

/// An identifier as a reader would type it: bare when it needs no quotes, quoted otherwise (a
/// schema named `a.b` must not read as two names).
fn shown(ident: &str) -> String {
    let plain = ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        ident.to_string()
    } else {
        quote_ident(ident)
    }
}

/// One row of the history table, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub version: i64,
    pub name: String,
    /// RFC 3339 text, as refinery writes it.
    pub applied_on: String,
    /// refinery's SipHash-1-3 checksum, as decimal text.
    pub checksum: String,
}

impl HistoryRow {
    pub fn applied_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.applied_on)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The order the history says its migrations were applied in: the one ordering rollback (a
/// stack, undone newest-applied first) and verify (the replay) follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedOrder<'h> {
    /// Oldest-applied first; each row with the newest version applied before it when that is
    /// newer than its own (it was applied out of order), else `None`.
    pub rows: Vec<(&'h HistoryRow, Option<i64>)>,
    /// The rows whose `applied_on` is not RFC 3339 text (NULL, hand-written, another tool's
    /// format): when there is any, no application order can be trusted and `rows` is in version
    /// order, with no `predates`.
    pub unreadable: Vec<i64>,
}

impl AppliedOrder<'_> {
    /// Falls back to version order because some `applied_on` is unreadable.
    pub fn by_version(&self) -> bool {
        !self.unreadable.is_empty()
    }

    /// What a plan says when it falls back to version order; `None` when it does not.
    pub fn note(&self) -> Option<String> {
        let shown: Vec<String> = self.unreadable.iter().take(5).map(i64::to_string).collect();
        let more = self.unreadable.len().saturating_sub(shown.len());
        (!self.unreadable.is_empty()).then(|| {
            format!(
                "the history's applied_on of {}{} is not RFC 3339 time, so the order the migrations \
                 were applied in is unknown: version order is used instead (newest version first \
                 for rollback); see docs/history.md",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            )
        })
    }
}

/// The history in the order it was applied, oldest first: by `applied_on` (the server's clock
/// when dhctl wrote it), then by version for rows recorded in one instant. The application
/// order is trusted only when every row's `applied_on` reads as RFC 3339: one unreadable row
/// (hand-written, NULL) could belong anywhere, so then the whole history is in version order.
pub fn applied_order(history: &[HistoryRow]) -> AppliedOrder<'_> {
    let unreadable: Vec<i64> = {
        let mut v: Vec<i64> = history
            .iter()
            .filter(|h| h.applied_at().is_none())
            .map(|h| h.version)
            .collect();
        v.sort_unstable();
        v
    };
    let mut rows: Vec<(&HistoryRow, Option<DateTime<Utc>>)> =
        history.iter().map(|h| (h, h.applied_at())).collect();
    if unreadable.is_empty() {
        rows.sort_by(|(a, at), (b, bt)| at.cmp(bt).then(a.version.cmp(&b.version)));
    } else {
        rows.sort_by_key(|(h, _)| h.version);
    }
    let mut newest: Option<i64> = None;
    let rows = rows
        .into_iter()
        .map(|(row, _)| {
            let predates = newest.filter(|n| *n > row.version);
            newest = newest.max(Some(row.version));
            (row, predates)
        })
        .collect();
    AppliedOrder { rows, unreadable }
}

/// Who is about to use the table: readers (status, verify, readiness) only read it; writers
/// (migrate, rollback, and their dry runs, so that a dry run predicts the real run) write it
/// and must own it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Read,
    Write,
}

/// Where the history table is, or where it will be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub table: TableName,
    /// False when it does not exist yet (migrate creates it at `table`).
    pub exists: bool,
}

/// What the catalog says about one table of the history table's name.
#[derive(Debug, Deserialize)]
struct Candidate {
    schema: String,
    name: String,
    kind: String,
    owner: String,
    owned: bool,
    row_security: bool,
    triggers: Vec<String>,
    rules: Vec<String>,
    policies: Vec<String>,
    /// Column name → type, as `format_type` spells it.
    columns: HashMap<String, String>,
}

/// Every relation of the wanted name (in the wanted schema, or in any schema but the temporary
/// ones), with what the trust and shape checks need, and the schema a new table goes into.
/// One round trip; the JSON keeps the many small arrays in one row.
const FIND: &str = "\
SELECT pg_catalog.current_schema()::text, coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
         'schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
         'owner', pg_catalog.pg_get_userbyid(c.relowner),
         'owned', pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER'),
         'row_security', c.relrowsecurity,
         'triggers', ARRAY(SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal ORDER BY 1),
         'rules', ARRAY(SELECT r.rulename FROM pg_rewrite r WHERE r.ev_class = c.oid ORDER BY 1),
         'policies', ARRAY(SELECT p.polname FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1),
         'columns', (SELECT coalesce(pg_catalog.json_object_agg(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), '{}')
                       FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
       ) ORDER BY n.nspname), '[]')::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = $2 AND ($1::text IS NULL OR n.nspname = $1)
   AND n.nspname::text !~ '^pg_(toast_)?temp_'";

/// Finds the history table (by name in every schema, or exactly `wanted`) and checks that it
/// can be trusted and has refinery's shape. Not found: where migrate will create it, which is
/// `wanted`, or else the first existing schema on the session's search_path (where refinery
/// and earlier dhctl releases created it).
pub async fn locate(
    client: &impl GenericClient,
    wanted: Option<&TableName>,
    usage: Use,
) -> Result<Located> {
    let name = wanted.map_or(TABLE, |w| w.name.as_str());
    let schema = wanted.map(|w| w.schema.as_str());
    let row = client
        .query_typed_one(
            FIND,
            &[
                (&schema, tokio_postgres::types::Type::TEXT),
                (&name, tokio_postgres::types::Type::NAME),
            ],
        )
        .await
        .map_err(|e| Error::sql("finding the history table", &e))?;
    let current: Option<String> = row.get(0);
    let candidates: Vec<Candidate> = serde_json::from_str(row.get(1))
        .map_err(|e| Error::usage(format!("reading the catalog for the history table: {e}")))?;
    match candidates.as_slice() {
        [] => {
            let table = match wanted {
                Some(w) => w.clone(),
                // A reader only needs to know there is none yet.
                None if usage == Use::Read => TableName {
                    schema: current.unwrap_or_else(|| "public".into()),
                    name: TABLE.into(),
                },
                None => TableName {
                    schema: current.ok_or_else(|| {
                        Error::usage_hint(
                            format!("there is no {TABLE} table and no schema on the role's search_path exists to create it in"),
                            "create the schema the role's search_path names, or pass --history-table schema.name (env DHCTL_HISTORY_TABLE)",
                        )
                    })?,
                    name: TABLE.into(),
                },
            };
            Ok(Located {
                table,
                exists: false,
            })
        }
        [one] => {
            let table = TableName {
                schema: one.schema.clone(),
                name: one.name.clone(),
            };
            trust(one, &table, usage)?;
            shape(&one.columns, &table)?;
            Ok(Located {
                table,
                exists: true,
            })
        }
        many => Err(Error::usage_hint(
            format!(
                "this database has {} history tables: {}; dhctl cannot tell which one records the schema",
                many.len(),
                many.iter()
                    .map(|c| format!("{}.{}", shown(&c.schema), shown(&c.name)))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            "keep the one the migrations were recorded in (compare their rows), drop or rename the other, \
             or pass --history-table schema.name (env DHCTL_HISTORY_TABLE) to name the one to use",
        )),
    }
}

/// Refuses a table another role could have planted or armed: dhctl writes it as the migrating
/// role, so a trigger, rule or policy on it would run code with that role's rights.
fn trust(c: &Candidate, table: &TableName, usage: Use) -> Result<()> {
    let fix = |what: String, hint: String| Err(Error::usage_hint(what, hint));
    if c.kind != "r" {
        return fix(
            format!("the history table {table} is not a plain table (relkind '{}'); dhctl only records history in a table it can trust", c.kind),
            format!("drop or rename {table}; dhctl creates the table it needs"),
        );
    }
    if usage == Use::Write && !c.owned {
        return fix(
            format!("the history table {table} is owned by role \"{}\", which the migrating role is not a member of; a table another role made may carry code that runs as this role", c.owner),
            format!("check its rows and definition; if it is genuine, have a superuser run ALTER TABLE {} OWNER TO the migrating role, otherwise drop it", table.sql()),
        );
    }
    let mut armed = Vec::new();
    if !c.triggers.is_empty() {
        armed.push(format!("trigger(s) {}", c.triggers.join(", ")));
    }
    if !c.rules.is_empty() {
        armed.push(format!("rule(s) {}", c.rules.join(", ")));
    }
    if !c.policies.is_empty() {
        armed.push(format!(
            "row-level security polic(ies) {}",
            c.policies.join(", ")
        ));
    }
    if c.row_security && c.policies.is_empty() {
        armed.push("row-level security enabled".into());
    }
    if !armed.is_empty() {
        return fix(
            format!(
                "the history table {table} has {}; dhctl makes none, and they would run as the role that writes history",
                armed.join(", ")
            ),
            "find out who added them (this may be an attack); drop them (DROP TRIGGER / DROP RULE / DROP POLICY, ALTER TABLE … DISABLE ROW LEVEL SECURITY) and run dhctl again".into(),
        );
    }
    Ok(())
}

/// refinery's shape: `version` int8 (dhctl's 14-digit versions do not fit int4, and refinery
/// reads it as i64), the other three text-like.
fn shape(columns: &HashMap<String, String>, table: &TableName) -> Result<()> {
    let wrong = |column: &str, found: Option<&String>, wanted: &str| {
        let found = found.map_or("missing".to_string(), |t| format!("of type {t}"));
        Err(Error::usage_hint(
            format!("the history table {table} has column {column} {found}; dhctl needs {wanted} (refinery's history format)"),
            format!(
                "if the table holds real history, convert it (ALTER TABLE {} ALTER COLUMN {column} TYPE {wanted} USING {column}::{wanted}); \
                 if it was made by hand by mistake, drop it and let dhctl create it",
                table.sql()
            ),
        ))
    };
    if columns.get("version").map(String::as_str) != Some("bigint") {
        return wrong("version", columns.get("version"), "bigint");
    }
    for column in ["name", "applied_on", "checksum"] {
        let found = columns.get(column);
        let text_like = found.is_some_and(|t| t == "text" || t.starts_with("character varying"));
        if !text_like {
            return wrong(column, found, "varchar");
        }
    }
    Ok(())
}

/// The applied migrations in the located table, in version order.
pub async fn read_rows(client: &impl GenericClient, table: &TableName) -> Result<Vec<HistoryRow>> {
    let sql = format!(
        "SELECT version, name, applied_on, checksum FROM {} ORDER BY version",
        table.sql()
    );
    let rows = client
        .query_typed(&sql, &[])
        .await
        .map_err(|e| Error::sql(format!("reading {table}"), &e))?;
    rows.iter()
        .map(|r| {
            let version: Option<i64> = r
                .try_get(0)
                .map_err(|e| Error::usage(format!("reading {table}: {e}")))?;
            let text = |i: usize| r.try_get::<_, Option<String>>(i).ok().flatten();
            Ok(HistoryRow {
                version: version.ok_or_else(|| {
                    Error::usage_hint(
                        format!("the history table {table} has a row without a version"),
                        format!(
                            "delete it: DELETE FROM {} WHERE version IS NULL",
                            table.sql()
                        ),
                    )
                })?,
                name: text(1).unwrap_or_default(),
                applied_on: text(2).unwrap_or_default(),
                checksum: text(3).unwrap_or_default(),
            })
        })
        .collect()
}

/// What a command reads: where the table is and its rows (none when it does not exist yet).
#[derive(Debug, Clone)]
pub struct History {
    pub located: Located,
    pub rows: Vec<HistoryRow>,
}

/// Locates, checks and reads the history table: the one way every command reads history.
pub async fn read(
    client: &impl GenericClient,
    wanted: Option<&TableName>,
    usage: Use,
) -> Result<History> {
    let located = locate(client, wanted, usage).await?;
    let rows = if located.exists {
        read_rows(client, &located.table).await?
    } else {
        Vec::new()
    };
    Ok(History { located, rows })
}

/// Creates the history table exactly as refinery 0.10 with `int8-versions` does (so either
/// tool may create it first), qualified, and only when it does not exist: a role that owns
/// every table but may not CREATE in the schema can still run `migrate` with nothing to do.
pub async fn create(client: &impl GenericClient, located: &mut Located) -> Result<()> {
    if located.exists {
        return Ok(());
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {}(version int8 PRIMARY KEY, name VARCHAR(255), \
         applied_on VARCHAR(255), checksum VARCHAR(255))",
        located.table.sql()
    );
    client.batch_execute(&sql).await.map_err(|e| {
        if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) {
            return Error::usage_hint(
                format!(
                    "cannot create the history table {}: schema \"{}\" does not exist; nothing was changed",
                    located.table, located.table.schema
                ),
                format!(
                    "create it first (CREATE SCHEMA {}), or fix --history-table / DHCTL_HISTORY_TABLE",
                    quote_ident(&located.table.schema)
                ),
            );
        }
        Error::sql(format!("creating the history table {}", located.table), &e)
    })?;
    located.exists = true;
    Ok(())
}

/// `applied_on` of a row written now, by the SERVER's clock (one clock for every runner: a
/// runner whose clock is behind must not reorder the history), in the text refinery writes
/// (`time`'s RFC 3339: UTC, `Z`, the fraction without trailing zeros, none when zero), read
/// once per statement. Functions are qualified (CVE-2018-1058); no operator is used.
pub const APPLIED_ON_NOW: &str = "(SELECT pg_catalog.concat(\
pg_catalog.to_char(t, 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
pg_catalog.rtrim(pg_catalog.rtrim(pg_catalog.to_char(t, '.US'), '0'), '.'), 'Z') \
FROM (SELECT pg_catalog.timezone('UTC', pg_catalog.clock_timestamp()) AS t) AS now)";

/// The SQL that records an applied migration in refinery's format: `$1..$3` are version,
/// name and checksum (decimal text); applied_on is [`APPLIED_ON_NOW`].
pub fn insert_sql(table: &TableName) -> String {
    format!(
        "INSERT INTO {} (version, name, applied_on, checksum) VALUES ($1, $2, {APPLIED_ON_NOW}, $3)",
        table.sql()
    )
}

/// [`insert_sql`] for dhctl's transaction `$4` (a txid): records nothing when run in any other
/// transaction, such as the one-statement transaction of a session whose migration ended
/// dhctl's (see src/migrations/execute.rs).
pub fn insert_in_transaction_sql(table: &TableName) -> String {
    format!(
        "INSERT INTO {} (version, name, applied_on, checksum) SELECT $1, $2, {APPLIED_ON_NOW}, $3 \
         WHERE pg_catalog.txid_current() OPERATOR(pg_catalog.=) $4",
        table.sql()
    )
}

/// [`delete_sql`] for dhctl's transaction `$2` (a txid), as [`insert_in_transaction_sql`].
pub fn delete_in_transaction_sql(table: &TableName) -> String {
    format!(
        "DELETE FROM {} WHERE version OPERATOR(pg_catalog.=) $1 \
         AND pg_catalog.txid_current() OPERATOR(pg_catalog.=) $2",
        table.sql()
    )
}

/// The SQL that removes a rolled-back migration's row (`$1` the version).
pub fn delete_sql(table: &TableName) -> String {
    format!(
        "DELETE FROM {} WHERE version OPERATOR(pg_catalog.=) $1",
        table.sql()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(version: &str) -> HashMap<String, String> {
        [
            ("version", version),
            ("name", "character varying(255)"),
            ("applied_on", "text"),
            ("checksum", "character varying(255)"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn table() -> TableName {
        TableName::parse("public.refinery_schema_history").unwrap()
    }

    fn row(version: i64, applied_on: &str) -> HistoryRow {
        HistoryRow {
            version,
            name: format!("m{version}"),
            applied_on: applied_on.into(),
            checksum: "1".into(),
        }
    }

    fn order(history: &[HistoryRow]) -> Vec<(i64, Option<i64>)> {
        applied_order(history)
            .rows
            .iter()
            .map(|(h, p)| (h.version, *p))
            .collect()
    }

    #[test]
    fn applied_order_follows_applied_on_then_version() {
        let h = [
            row(1, "2026-01-01T00:00:01Z"),
            row(2, "2026-01-01T00:00:03.5Z"),
            row(3, "2026-01-01T00:00:02.123456Z"),
            row(4, "2026-01-01T00:00:03.5Z"),
        ];
        assert_eq!(
            order(&h),
            vec![(1, None), (3, None), (2, Some(3)), (4, None)]
        );
        assert!(!applied_order(&h).by_version());
        assert_eq!(applied_order(&h).note(), None);
    }

    #[test]
    fn one_unreadable_applied_on_means_version_order_for_all() {
        for bad in ["", "2026-01-01 00:00:00+00", "yesterday"] {
            let h = [
                row(1, "2026-01-01T00:00:01Z"),
                row(3, bad),
                row(2, "2026-01-01T00:00:03Z"),
            ];
            let o = applied_order(&h);
            assert!(o.by_version(), "{bad}");
            assert_eq!(o.unreadable, vec![3]);
            assert_eq!(order(&h), vec![(1, None), (2, None), (3, None)], "{bad}");
            let note = o.note().unwrap();
            assert!(
                note.contains("version order") && note.contains('3'),
                "{note}"
            );
        }
    }

    #[test]
    fn history_table_names_must_be_qualified() {
        assert_eq!(table().sql(), "\"public\".\"refinery_schema_history\"");
        assert_eq!(
            TableName::parse("Ops.History").unwrap().sql(),
            "\"Ops\".\"History\""
        );
        for bad in [
            "history",
            ".h",
            "s.",
            "a.b.c",
            "s.\u{1b}x",
            "pg_temp.h",
            "pg_temp_3.h",
            "public.h ",
            " public.h",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shape_check_names_the_column_and_the_fix() {
        assert!(shape(&columns("bigint"), &table()).is_ok());
        for wrong in ["text", "integer"] {
            let err = shape(&columns(wrong), &table()).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(text.contains("column version of type"), "{text}");
            assert!(text.contains("bigint"), "{text}");
        }
        let mut no_checksum = columns("bigint");
        no_checksum.remove("checksum");
        let err = shape(&no_checksum, &table()).unwrap_err().to_string();
        assert!(err.contains("column checksum missing"), "{err}");
        let mut int_name = columns("bigint");
        int_name.insert("name".into(), "integer".into());
        assert!(shape(&int_name, &table()).is_err());
    }
}
