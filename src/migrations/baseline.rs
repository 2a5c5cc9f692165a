//! `dhctl baseline`: adopt a database made without dhctl (by hand, from a dump, by dbmate) by
//! recording the migrations it already has in the history table, in refinery's format. This
//! module chooses those migrations and writes their rows; the schema check that must pass
//! first (verify's rebuild and comparison) is run by the command layer, where the `verify` and
//! `migrations` domains meet.

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::catalog::{Catalog, Migration};
use super::history::{self, Located};
use crate::db::ident::TableName;
use crate::error::{Error, Result};

/// What `dhctl baseline` reports (the command adds where the migrations were rebuilt).
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub database: String,
    pub dry_run: bool,
    /// `version` (--version) or `dbmate` (--from-dbmate).
    pub source: Source,
    /// dbmate's table the versions were read from (null with --version).
    pub dbmate_table: Option<String>,
    /// The migrations recorded (in a dry run, or when the schema differs: to be recorded).
    pub steps: Vec<Recorded>,
    /// Each way the live schema differs from what those migrations build; empty when it is
    /// exactly that.
    pub differences: Vec<String>,
    /// True when the history rows were written.
    pub recorded: bool,
    /// What the rebuild adapted or left out (as verify's schema check notes).
    pub notes: Vec<String>,
    pub duration_ms: f64,
}

/// Where the versions to record come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `--version V`: every migration of the catalog up to V.
    Version,
    /// `--from-dbmate`: the versions dbmate recorded in `schema_migrations`.
    Dbmate,
}

/// One migration recorded (or, in a dry run, to be recorded).
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub version: i64,
    pub name: String,
    pub file: String,
}

impl Recorded {
    pub fn of(m: &Migration) -> Recorded {
        Recorded {
            version: m.version,
            name: m.name.clone(),
            file: m.file.clone(),
        }
    }
}

/// The migrations up to `version`, which must be a version of the catalog.
pub fn up_to(catalog: &Catalog, version: i64) -> Result<Vec<&Migration>> {
    if catalog.get(version).is_none() {
        return Err(Error::usage_hint(
            format!("--version {version}: no migration has that version; nothing was changed"),
            "give the version of the newest migration the database already has (`dhctl status` lists the versions)",
        ));
    }
    Ok(catalog
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .collect())
}

/// The migrations of the versions dbmate recorded; each must be a file of the catalog.
pub fn of_versions<'c>(
    catalog: &'c Catalog,
    versions: &[i64],
    table: &TableName,
) -> Result<Vec<&'c Migration>> {
    let unknown: Vec<String> = versions
        .iter()
        .filter(|v| catalog.get(**v).is_none())
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "{table} records version(s) {} that no migration file has; nothing was changed",
                unknown.join(", ")
            ),
            "point --migrations-dir at the folder dbmate applied them from (every applied file must be there)",
        ));
    }
    if versions.is_empty() {
        return Err(Error::usage_hint(
            format!("{table} is empty: dbmate applied nothing; nothing was changed"),
            "run `dhctl migrate` instead (there is nothing to adopt), or drop the empty table first",
        ));
    }
    Ok(versions.iter().filter_map(|v| catalog.get(*v)).collect())
}

/// Refuses a database whose history already has rows: baseline adopts, it never rewrites.
pub fn refuse_history(table: &TableName, rows: usize) -> Error {
    Error::usage_hint(
        format!("the history table {table} already has {rows} row(s): this database is already managed by dhctl; nothing was changed"),
        "run `dhctl status` to see what is applied, and `dhctl migrate` for the rest; baseline is only for a database without dhctl history",
    )
}

/// Writes the history rows of `migrations` in one transaction (the table created first if it
/// does not exist), after checking again inside it that the table is empty. The caller holds
/// the advisory lock. Every row gets the server's time as `applied_on` (refinery's format; increasing in version order) and refinery's
/// checksum of the file, exactly as migrate would have recorded them.
pub async fn record(
    client: &impl GenericClient,
    located: &mut Located,
    migrations: &[&Migration],
) -> Result<()> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| Error::sql("starting baseline's transaction", &e))?;
    let result = async {
        history::create(client, located).await?;
        let table = &located.table;
        let count: i64 = client
            .query_one(
                &format!("SELECT pg_catalog.count(*) FROM {}", table.sql()),
                &[],
            )
            .await
            .map_err(|e| Error::sql(format!("reading {table}"), &e))?
            .get(0);
        if count > 0 {
            return Err(refuse_history(table, count as usize));
        }
        let insert = history::insert_sql(table);
        // One statement per row, in version order: the server's clock gives each row its own
        // increasing time, so the application order reads as version order.
        for m in migrations {
            client
                .execute(&insert, &[&m.version, &m.name, &m.checksum.to_string()])
                .await
                .map_err(|e| Error::sql(format!("recording {} in {table}", m.file), &e))?;
        }
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client
        .batch_execute(end)
        .await
        .map_err(|e| Error::sql("ending baseline's transaction", &e));
    result?;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::three_selects as catalog;

    #[test]
    fn up_to_takes_the_catalog_through_a_known_version() {
        let c = catalog();
        let chosen = up_to(&c, 20240101000002).unwrap();
        assert_eq!(
            chosen.iter().map(|m| m.version).collect::<Vec<_>>(),
            vec![20240101000001, 20240101000002]
        );
        let err = up_to(&c, 20240101000009).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("20240101000009"), "{err}");
    }

    #[test]
    fn dbmate_versions_must_each_match_a_file() {
        let c = catalog();
        let table = TableName::parse("public.schema_migrations").unwrap();
        let chosen = of_versions(&c, &[20240101000001, 20240101000003], &table).unwrap();
        assert_eq!(chosen.len(), 2);
        let err = of_versions(&c, &[20240101000001, 7], &table).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("version(s) 7"), "{err}");
        assert_eq!(of_versions(&c, &[], &table).unwrap_err().exit_code(), 2);
    }
}
