//! Migrations: the catalog of files, refinery's history table, the pure status diff, and the
//! commands that change the schema (migrate, rollback) or the folder (new).

pub mod catalog;
pub mod execute;
pub mod history;
pub mod migrate;
pub mod new;
pub mod rollback;
pub mod split;
pub mod status;

use std::time::Duration;

use crate::config::DbConfig;
use crate::db::lock::{self, LockGuard};
use crate::db::{connect, CreateDatabase, Session};
use crate::error::{Error, Result};

pub use catalog::{Catalog, Migration, Source};

/// Progress of a long command, reported by the library and drawn by `output` (a bar on a
/// terminal, plain lines otherwise). The library never prints.
pub trait Progress: Send + Sync {
    fn planned(&self, _total: usize) {}
    fn started(&self, _what: &str) {}
    fn finished(&self, _what: &str, _took: Duration) {}
    fn retrying(&self, _what: &str, _attempt: u32, _reason: &str) {}
    fn done(&self) {}
}

/// Progress that goes nowhere (tests, JSON output).
pub struct Silent;
impl Progress for Silent {}

/// A session that holds the dhctl advisory lock, with `lock_timeout` set for its DDL: the one
/// way to a connection that may change the schema (connect → lock → settings).
pub struct Locked {
    pub session: Session,
    guard: LockGuard,
}

impl Locked {
    pub async fn open(cfg: &DbConfig, create: CreateDatabase) -> Result<Locked> {
        let session = connect(cfg, create).await?;
        Locked::lock(session, cfg).await
    }

    /// Takes the lock on a session already open (partition commands first look, without the
    /// lock, whether there is anything to do at all).
    pub async fn lock(session: Session, cfg: &DbConfig) -> Result<Locked> {
        let guard = lock::acquire(&session.client, session.backend_pid, cfg.lock_wait).await?;
        // Every DDL statement from here on gives up after lock_timeout instead of queueing in
        // front of the gateway's traffic (and everything queued behind it); see db::retry.
        // The same statement checks that it still reaches the backend holding the lock.
        let ms = cfg.lock_timeout.as_millis().max(1).to_string();
        let pid: i32 = session
            .client
            .query_one(
                "SELECT pg_backend_pid() FROM (SELECT set_config('lock_timeout', $1, false)) s",
                &[&ms],
            )
            .await
            .map_err(|e| Error::sql("setting lock_timeout", &e))?
            .get(0);
        if pid != session.backend_pid {
            // The lock sits on a pooled backend we cannot reach again: end that backend so the
            // lock does not outlive this run (same role, so no extra privilege is needed).
            let _ = session
                .client
                .execute("SELECT pg_terminate_backend($1)", &[&session.backend_pid])
                .await;
            return Err(Error::Pooled);
        }
        Ok(Locked { session, guard })
    }

    /// Releases the lock and passes `result` through. A release error only surfaces when the
    /// work itself succeeded; after a failure the session may be gone, and the server frees
    /// the lock with it.
    pub async fn finish<T>(self, result: Result<T>) -> Result<T> {
        let released = self.guard.release(&self.session.client).await;
        match (result, released) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
        }
    }
}

/// What `dhctl status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub database: String,
    /// False when the database has no history table yet (everything is pending).
    pub history_table: bool,
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
    /// this release), 1 with pending migrations, else 0.
    pub fn exit_code(&self, ahead: Ahead) -> i32 {
        if self.counts.drift() || (ahead == Ahead::Refused && self.counts.ahead > 0) {
            4
        } else if self.counts.pending > 0 {
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
    Ok(StatusReport {
        database: cfg.display_target(),
        history_table: history.located.exists,
        counts: status::Counts::of(&migrations),
        migrations,
    })
}
