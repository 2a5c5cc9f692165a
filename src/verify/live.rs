//! What verify reads from the live database before anything else: the main schema, the
//! extensions, the role's search_path, and whether a scratch database can be created from here.

use tokio_postgres::Client;

use crate::db::ident::quote_ident;
use crate::error::{Error, Result};

/// What verify reads from the live database before anything else.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The main schema (where the history table is, or the first on search_path before one
    /// exists): its objects are named unqualified in reports.
    pub live: String,
    /// Schemas holding installed extensions, after the main one on the snapshots' search_path,
    /// so extension types and functions print unqualified on both sides.
    pub extension_schemas: Vec<String>,
    /// The live database's extensions other than plpgsql: (name, schema, version).
    pub extensions: Vec<(String, String, String)>,
    /// Those of [`Facts::extensions`] this role may not create (untrusted, superuser-only, and
    /// the role is no superuser): the rebuild skips them with a note instead of failing.
    pub uncreatable: Vec<String>,
    /// The search_path the role's sessions start with (what `migrate` ran the migrations with).
    pub replay_path: String,
    /// A standby, or default_transaction_read_only: no database can be created from here.
    pub read_only: bool,
    /// The role has CREATEDB (or is a superuser).
    pub may_create_database: bool,
}

impl Facts {
    /// The snapshots' search_path: the main schema, then the extension schemas, quoted.
    pub fn snapshot_path(&self) -> String {
        std::iter::once(self.live.as_str())
            .chain(
                self.extension_schemas
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != self.live),
            )
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads the [`Facts`] (one round trip).
pub async fn facts(client: &Client, history_table: &str) -> Result<Facts> {
    // The last column: `trusted` exists from PostgreSQL 13 on, read through to_jsonb so that
    // older servers still parse the query (and count no extension as trusted).
    let rows = client
        .query(
            "SELECT coalesce((SELECT n.nspname FROM pg_class c \
                              JOIN pg_namespace n ON n.oid = c.relnamespace \
                              WHERE c.oid = pg_catalog.to_regclass($1)::oid), pg_catalog.current_schema())::text, \
                    ARRAY(SELECT DISTINCT n.nspname::text FROM pg_extension e \
                          JOIN pg_namespace n ON n.oid = e.extnamespace \
                          WHERE n.nspname <> 'pg_catalog' ORDER BY 1), \
                    (SELECT reset_val FROM pg_settings WHERE name = 'search_path'), \
                    pg_catalog.current_setting('transaction_read_only') = 'on' OR pg_catalog.pg_is_in_recovery(), \
                    coalesce((SELECT rolcreatedb OR rolsuper FROM pg_roles \
                              WHERE rolname = current_user), false), \
                    ARRAY(SELECT e.extname::text FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname), \
                    ARRAY(SELECT e.extnamespace::regnamespace::text FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname), \
                    ARRAY(SELECT e.extversion FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname), \
                    ARRAY(SELECT e.extname::text FROM pg_extension e \
                          JOIN pg_available_extension_versions v \
                            ON v.name = e.extname AND v.version = e.extversion \
                          WHERE e.extname <> 'plpgsql' AND v.superuser \
                            AND NOT coalesce((pg_catalog.to_jsonb(v) ->> 'trusted')::bool, false) \
                            AND NOT coalesce((SELECT rolsuper FROM pg_roles \
                                              WHERE rolname = current_user), false) \
                          ORDER BY e.extname)",
            &[&history_table],
        )
        .await
        .map_err(|e| Error::sql("reading the live database's settings", &e))?;
    let row = rows
        .first()
        .ok_or_else(|| Error::usage("the live database returned no settings (a dhctl bug)"))?;
    let live: Option<String> = row.get(0);
    let live = live.ok_or_else(|| {
        Error::usage_hint(
            "there is no schema to verify: no refinery_schema_history table, and no schema on \
             search_path exists",
            "run `dhctl migrate`, or set the role's search_path to the gateway's schema",
        )
    })?;
    let (names, schemas, versions): (Vec<String>, Vec<String>, Vec<String>) =
        (row.get(5), row.get(6), row.get(7));
    Ok(Facts {
        live,
        extension_schemas: row.get(1),
        replay_path: row.get::<_, Option<String>>(2).unwrap_or_default(),
        read_only: row.get(3),
        may_create_database: row.get(4),
        uncreatable: row.get(8),
        extensions: names
            .into_iter()
            .zip(schemas)
            .zip(versions)
            .map(|((name, schema), version)| (name, schema, version))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_path_puts_the_main_schema_first_and_quotes_every_name() {
        let facts = Facts {
            live: "public".into(),
            extension_schemas: vec!["public".into(), "ext\"s".into()],
            extensions: Vec::new(),
            uncreatable: Vec::new(),
            replay_path: String::new(),
            read_only: false,
            may_create_database: true,
        };
        assert_eq!(facts.snapshot_path(), "\"public\", \"ext\"\"s\"");
    }
}
