//! refinery's history table, `refinery_schema_history(version int8, name, applied_on, checksum)`:
//! reading it, creating it the way refinery does, and writing the rows dhctl records itself
//! (non-transactional migrations) in refinery's format so refinery tooling can read them.

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use crate::error::{Error, Result};

/// refinery's default table name; dhctl does not change it.
pub const TABLE: &str = "refinery_schema_history";

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

/// The applied migrations, or `None` when the history table does not exist yet.
pub async fn read(client: &impl GenericClient) -> Result<Option<Vec<HistoryRow>>> {
    let sql = format!("SELECT version, name, applied_on, checksum FROM {TABLE} ORDER BY version");
    match client.query(&sql, &[]).await {
        Ok(rows) => Ok(Some(
            rows.iter()
                .map(|r| HistoryRow {
                    version: r.get(0),
                    name: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    applied_on: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    checksum: r.get::<_, Option<String>>(3).unwrap_or_default(),
                })
                .collect(),
        )),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(Error::sql(format!("reading {TABLE}"), &e)),
    }
}

/// Creates the history table exactly as refinery 0.10 with `int8-versions` does, so either tool
/// may create it first.
pub async fn ensure(client: &impl GenericClient) -> Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {TABLE}(version int8 PRIMARY KEY, name VARCHAR(255), \
         applied_on VARCHAR(255), checksum VARCHAR(255))"
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::sql(format!("creating {TABLE}"), &e))
}

/// Records a migration dhctl ran itself, in refinery's format.
pub async fn insert(
    client: &impl GenericClient,
    version: i64,
    name: &str,
    checksum: u64,
) -> Result<()> {
    let applied_on = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    let sql = format!(
        "INSERT INTO {TABLE} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
    );
    client
        .execute(&sql, &[&version, &name, &applied_on, &checksum.to_string()])
        .await
        .map(|_| ())
        .map_err(|e| Error::sql(format!("recording migration {version} in {TABLE}"), &e))
}

/// Removes a rolled-back migration's row.
pub async fn delete(
    client: &impl GenericClient,
    version: i64,
) -> std::result::Result<u64, tokio_postgres::Error> {
    client
        .execute(
            &format!("DELETE FROM {TABLE} WHERE version = $1"),
            &[&version],
        )
        .await
}
