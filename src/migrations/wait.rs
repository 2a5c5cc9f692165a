//! `dhctl status --until-current DUR`: wait until no migration is left to apply (the init
//! container of an application pod, while a Job runs `migrate`). Polls cheaply: no advisory
//! lock, one connection reused from poll to poll (opened again if it drops), one history read
//! per poll. A database that does not exist yet, or has no history table yet, is waited for.
//! Returns data; the caller prints (each change of [`Observed`] is handed to `on_change`).

use std::time::{Duration, Instant};

use super::catalog::Catalog;
use super::history::{self, Use};
use super::status::{self, Counts};
use super::StatusReport;
use crate::db::{connect, CreateDatabase, DbConfig, Session};
use crate::error::{Error, Result};

/// How often the history is read. A history read is a catalog lookup and a primary-key scan of
/// a table of a few dozen rows; once a second is nothing to the server and soon enough for a
/// pod that waits minutes.
pub const POLL: Duration = Duration::from_secs(1);

/// The longest one poll may take before its connection is taken for dead and opened again
/// (never past the limit): a poll is two catalog reads of a few rows, so ten seconds without
/// an answer is a connection that stopped answering, not a busy server.
pub const QUERY_LIMIT: Duration = Duration::from_secs(10);

/// What one poll saw; a line is written each time this changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The database does not exist yet (migrate creates it).
    NoDatabase,
    /// Migrations wait to be applied (`history_table` false: migrate has not created it yet).
    Unapplied {
        pending: usize,
        out_of_order: usize,
        history_table: bool,
    },
    /// dbmate migrated this database and dhctl has no history: it waits for
    /// `baseline --from-dbmate` (migrate refuses such a database).
    Dbmate { table: String },
    /// The connection dropped; reconnecting.
    Reconnecting,
    /// Nothing left to apply.
    Current { applied: usize },
}

/// How the wait ended; each carries the last status report.
#[derive(Debug)]
pub enum Waited {
    /// Nothing pending: exit 0.
    Current(StatusReport),
    /// The time ran out with migrations left to apply (or no database): exit 1.
    TimedOut(StatusReport),
    /// An applied migration was modified or its file is missing: exit 4 at once.
    Drift(StatusReport),
}

impl Waited {
    pub fn report(&self) -> &StatusReport {
        match self {
            Waited::Current(r) | Waited::TimedOut(r) | Waited::Drift(r) => r,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Waited::Current(_) => 0,
            Waited::TimedOut(_) => 1,
            Waited::Drift(_) => 4,
        }
    }
}

/// Polls until nothing is left to apply, drift is found, or `limit` runs out. A connection
/// failure that can heal (refused, reset, the server starting) is retried within `limit`; one
/// that cannot (bad credentials, a bad URL) is an error at once.
pub async fn until_current(
    cfg: &DbConfig,
    catalog: &Catalog,
    limit: Duration,
    on_change: &dyn Fn(&Observed),
) -> Result<Waited> {
    let deadline = Instant::now() + limit;
    let versions = catalog.versions();
    let mut session: Option<Session> = None;
    let mut last: Option<Observed> = None;
    let mut report_change = |seen: Observed| {
        if last.as_ref() != Some(&seen) {
            on_change(&seen);
            last = Some(seen);
        }
    };
    // Before a database exists everything is pending: that is the report a timeout shows.
    let mut latest = report_of(cfg, catalog, &[], false);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            if session.take().is_some() {
                report_change(Observed::Reconnecting);
            }
            let connecting = DbConfig {
                wait: Some(remaining.max(Duration::from_millis(1))),
                ..cfg.clone()
            };
            // connect's own wait ends between attempts; an attempt that hangs (a peer that
            // accepts and never answers, with no connect_timeout) is cut at the deadline.
            let began = Instant::now();
            let connected = tokio::time::timeout_at(
                tokio::time::Instant::from_std(deadline),
                connect(&connecting, CreateDatabase::Never),
            )
            .await;
            match connected {
                Ok(Ok(opened)) => session = Some(opened),
                Ok(Err(Error::MissingDatabase { .. })) => report_change(Observed::NoDatabase),
                // Out of time while the server stayed unreachable: say why.
                Ok(Err(e)) => return Err(e),
                // The limit cut an attempt that had just begun: the time ran out, nothing more
                // is known of the server.
                Err(_) if began.elapsed() < POLL => return Ok(Waited::TimedOut(latest)),
                Err(_) => return Err(unanswered(cfg, limit)),
            }
        }
        if let Some(open) = &session {
            // Bounded by the time left and by QUERY_LIMIT: a connection that stopped answering
            // (a partition without RST, a stalled proxy) is dropped, not waited on.
            let bound = deadline.min(Instant::now() + QUERY_LIMIT);
            let polled = tokio::time::timeout_at(
                tokio::time::Instant::from_std(bound),
                poll(&open.client, cfg, &versions),
            )
            .await;
            match polled {
                Ok(Ok((read, dbmate))) => {
                    latest = report_of(cfg, catalog, &read.rows, read.located.exists);
                    let counts = latest.counts;
                    if counts.drift() {
                        return Ok(Waited::Drift(latest));
                    }
                    if counts.unapplied() == 0 {
                        report_change(Observed::Current {
                            applied: counts.applied,
                        });
                        return Ok(Waited::Current(latest));
                    }
                    match dbmate {
                        Some(table) => {
                            latest.dbmate_table = Some(table.to_string());
                            report_change(Observed::Dbmate {
                                table: table.to_string(),
                            });
                        }
                        None => report_change(Observed::Unapplied {
                            pending: counts.pending,
                            out_of_order: counts.out_of_order,
                            history_table: read.located.exists,
                        }),
                    }
                }
                Ok(Err(e)) if open.client.is_closed() || connection_lost(&e) => {
                    report_change(Observed::Reconnecting);
                    session = None;
                }
                Ok(Err(e)) => return Err(e),
                // No answer in time: drop the connection (its statement with it) and open a new
                // one, if time is left.
                Err(_) => {
                    report_change(Observed::Reconnecting);
                    session = None;
                }
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(Waited::TimedOut(latest));
        }
        tokio::time::sleep(POLL.min(remaining)).await;
    }
}

/// One poll: the history, and dbmate's table while dhctl has no history table (more catalog
/// queries). Both on the same connection, so both reconnect the same way when it drops.
async fn poll(
    client: &tokio_postgres::Client,
    cfg: &DbConfig,
    versions: &[i64],
) -> Result<(history::History, Option<crate::db::ident::TableName>)> {
    let read = history::read(client, cfg.history_table.as_ref(), Use::Read).await?;
    let dbmate = super::dbmate::detect(client, read.located.exists, versions).await?;
    Ok((read, dbmate))
}

/// The server accepted a connection and never completed it before the limit ran out.
fn unanswered(cfg: &DbConfig, limit: Duration) -> Error {
    Error::Connect {
        message: format!(
            "cannot connect to {}: no answer before --until-current {}s ran out",
            cfg.display_target(),
            limit.as_secs_f64()
        ),
        hint: Some(
            "something accepted the connection but never completed the startup (a stalled \
             server, proxy or TLS terminator): check the host and port, or set \
             connect_timeout=SECONDS in DATABASE_URL so that each attempt is retried"
                .into(),
        ),
    }
}

/// A statement failed because the session ended (terminated backend, restart, network).
fn connection_lost(e: &Error) -> bool {
    match e {
        Error::Sql { detail, .. } => {
            detail.sqlstate.starts_with("08") || detail.sqlstate.starts_with("57P")
        }
        _ => false,
    }
}

fn report_of(
    cfg: &DbConfig,
    catalog: &Catalog,
    rows: &[history::HistoryRow],
    history_table: bool,
) -> StatusReport {
    let migrations = status::diff(catalog, rows);
    StatusReport {
        database: cfg.display_target(),
        history_table,
        dbmate_table: None,
        counts: Counts::of(&migrations),
        migrations,
    }
}
