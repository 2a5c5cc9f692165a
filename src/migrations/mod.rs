//! Migrations: the catalog of files, refinery's history table, the pure status diff, and the
//! commands that change the schema (migrate, rollback) or the folder (new).

pub mod baseline;
pub mod catalog;
pub mod dbmate;
pub mod execute;
pub mod history;
pub mod migrate;
pub mod new;
pub mod rollback;
pub mod split;
pub mod status;
pub mod wait;

use crate::db::{connect, CreateDatabase, DbConfig};
use crate::error::Result;

pub use catalog::{Catalog, Migration};

/// What `dhctl status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub database: String,
    /// False when the database has no history table yet (everything is pending).
    pub history_table: bool,
    /// dbmate's `schema_migrations` (schema.name), when this database has one and no dhctl
    /// history: it was migrated by dbmate and must be adopted (`baseline --from-dbmate`), not
    /// migrated again. Null otherwise.
    pub dbmate_table: Option<String>,
    pub counts: status::Counts,
    pub migrations: Vec<status::Entry>,
}

/// Whether `status --exit-code` fails on applied migrations newer than every file (the
/// database ahead of this release): not by default, since that is what a rolling deploy looks
/// like to the old release; with `--strict`, yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    Allowed,
    Refused,
}

impl StatusReport {
    /// `status --exit-code`: 4 on drift (and, with `--strict`, when the database is ahead of
    /// this release), 1 with pending or out-of-order migrations (both wait to be applied),
    /// else 0.
    pub fn exit_code(&self, ahead: Ahead) -> i32 {
        if self.counts.drift() || (ahead == Ahead::Refused && self.counts.ahead > 0) {
            4
        } else if self.counts.unapplied() > 0 {
            1
        } else {
            0
        }
    }
}

/// `dhctl status`: no lock, no change; a database without a history table is all pending.
pub async fn status_report(cfg: &DbConfig, catalog: &Catalog) -> Result<StatusReport> {
    let session = connect(cfg, CreateDatabase::Never).await?;
    let history = history::read(
        &session.client,
        cfg.history_table.as_ref(),
        history::Use::Read,
    )
    .await?;
    let migrations = status::diff(catalog, &history.rows);
    let dbmate_table = dbmate::detect(&session.client, history.located.exists, &catalog.versions())
        .await?
        .map(|t| t.to_string());
    Ok(StatusReport {
        database: cfg.display_target(),
        history_table: history.located.exists,
        dbmate_table,
        counts: status::Counts::of(&migrations),
        migrations,
    })
}
