//! The dhctl advisory lock: one session-level lock per database that serialises migrate,
//! rollback and partition changes, so any number of runners (Kubernetes replicas, cron, a DBA)
//! may start at once.
//!
//! Waiting is never unbounded (golang-migrate#269). A first `pg_try_advisory_lock` takes the
//! free lock at once. When it is busy, dhctl blocks in `pg_advisory_lock` under a short
//! `statement_timeout`, re-entered until `--lock-wait` runs out: it wakes the moment the holder
//! releases (polling would wake up to a poll interval late, which 8 racing init containers pay
//! 7 times), and a waiter never keeps a snapshot open longer than that timeout, so it cannot
//! deadlock a `CREATE INDEX CONCURRENTLY` run by the holder (flyway#1654).

use std::time::{Duration, Instant};

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::{connect, CreateDatabase, DbConfig, Session};
pub use crate::error::Holder;
use crate::error::{Error, Result};

/// The advisory lock key: the ASCII bytes of "dhctl_mg" as a big-endian i64. Advisory locks are
/// per database, so runners against different databases never contend. Documented in
/// docs/operations.md; change it and old and new binaries stop excluding each other.
pub const LOCK_KEY: i64 = i64::from_be_bytes(*b"dhctl_mg");

/// How long one blocking attempt may wait before it is re-entered (see the module comment).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Proof that this session holds the lock. Release it with [`LockGuard::release`]; if the
/// process dies instead, the server frees it when the session ends.
#[must_use = "the lock is held until released or the session ends"]
pub struct LockGuard {
    /// The backend that holds the lock.
    backend_pid: i32,
}

impl LockGuard {
    /// Releases every session-level advisory lock of this session. `unlock_all` rather than
    /// `unlock(key)`: an attempt cancelled by its statement_timeout just after the grant can
    /// leave the lock held twice (re-entrant), and one unlock would then keep it.
    ///
    /// Should the release reach another backend than the holder (a transaction-pooling proxy
    /// that mixed up an idle pool after the checks in `acquire`), the holder is terminated, so
    /// the lock never outlives the run in a pooled connection.
    pub async fn release(self, client: &Client) -> Result<()> {
        let row = client
            .query_typed_one(
                "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $1 THEN pg_catalog.pg_advisory_unlock_all() IS NULL END",
                &[(&self.backend_pid, Type::INT4)],
            )
            .await
            .map_err(|e| Error::sql("releasing the dhctl advisory lock", &e))?;
        if row.get::<_, Option<bool>>(0).is_none() {
            tracing::warn!(
                pid = self.backend_pid,
                "lock holder unreachable through a pooling proxy; terminating it"
            );
            client
                .execute(
                    "SELECT pg_catalog.pg_terminate_backend($1)",
                    &[&self.backend_pid],
                )
                .await
                .map_err(|e| {
                    Error::sql("ending the backend that held the dhctl advisory lock", &e)
                })?;
        }
        Ok(())
    }
}

/// Takes the lock on backend `backend_pid`, waiting at most `wait`. Exit 3
/// (`Error::LockBusy`) names the holder.
///
/// Every attempt runs only if the statement reached `backend_pid` (a CASE guarantees the order),
/// so behind a transaction-pooling proxy no lock is ever taken on a backend dhctl cannot reach
/// again: the attempt returns NULL and dhctl refuses (`Error::Pooled`).
pub async fn acquire(client: &Client, backend_pid: i32, wait: Duration) -> Result<LockGuard> {
    let got: Option<bool> = client
        .query_typed_one(
            "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $2 THEN pg_catalog.pg_try_advisory_lock($1) END",
            &[(&LOCK_KEY, Type::INT8), (&backend_pid, Type::INT4)],
        )
        .await
        .map_err(|e| Error::sql("taking the dhctl advisory lock", &e))?
        .get(0);
    match got {
        Some(true) => return Ok(LockGuard { backend_pid }),
        Some(false) => {}
        None => return Err(Error::Pooled),
    }
    let started = Instant::now();
    tracing::info!("the dhctl advisory lock is busy; waiting up to {:?}", wait);
    let outcome = wait_blocking(client, backend_pid, started, wait).await;
    // Back to the role's default whether or not we got it; the session goes on to run DDL.
    client
        .batch_execute("RESET statement_timeout")
        .await
        .map_err(|e| Error::sql("resetting statement_timeout", &e))?;
    match outcome? {
        true => Ok(LockGuard { backend_pid }),
        // The holder is looked up only now, for the message: a runner that gets the lock after
        // a short wait (the common case of racing init containers) pays nothing for it.
        false => Err(Error::LockBusy {
            waited: started.elapsed(),
            holder: holder(client).await?,
        }),
    }
}

async fn wait_blocking(
    client: &Client,
    backend_pid: i32,
    started: Instant,
    wait: Duration,
) -> Result<bool> {
    loop {
        let Some(remaining) = wait.checked_sub(started.elapsed()).filter(|r| !r.is_zero()) else {
            return Ok(false);
        };
        let attempt = remaining.min(ATTEMPT_TIMEOUT);
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                attempt.as_millis().max(1)
            ))
            .await
            .map_err(|e| Error::sql("setting statement_timeout", &e))?;
        let attempt = client
            .query_one(
                "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $2 THEN pg_catalog.pg_advisory_lock($1) IS NULL END",
                &[&LOCK_KEY, &backend_pid],
            )
            .await;
        match attempt {
            Ok(row) if row.get::<_, Option<bool>>(0).is_none() => return Err(Error::Pooled),
            Ok(_) => return Ok(true),
            // statement_timeout ended this attempt, or the session's lock_timeout (set from the
            // start, and shorter than an attempt when --lock-timeout is small) did: either way
            // the next attempt waits again until --lock-wait is spent.
            Err(e)
                if matches!(
                    e.code(),
                    Some(&SqlState::QUERY_CANCELED | &SqlState::LOCK_NOT_AVAILABLE)
                ) =>
            {
                continue
            }
            Err(e) => return Err(Error::sql("waiting for the dhctl advisory lock", &e)),
        }
    }
}

/// The session that holds the dhctl lock in this database, if any.
pub async fn holder(client: &Client) -> Result<Option<Holder>> {
    let classid = (LOCK_KEY >> 32) as u32;
    let objid = (LOCK_KEY & 0xffff_ffff) as u32;
    // A bigint key is stored as classid = high half, objid = low half, objsubid = 1
    // (docs: "pg_locks", advisory locks).
    let row = client
        .query_opt(
            "SELECT l.pid, a.application_name, a.backend_start, host(a.client_addr) \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = pg_catalog.current_database()) \
               AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.objsubid = 1 \
             LIMIT 1",
            &[&(classid as i64), &(objid as i64)],
        )
        .await
        .map_err(|e| Error::sql("looking up the holder of the dhctl advisory lock", &e))?;
    Ok(row.map(|r| Holder {
        pid: r.get(0),
        application_name: r.get(1),
        since: r.get(2),
        client_addr: r.get(3),
    }))
}

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
        // connect already refuses a standby for a DbConfig with Access::Write; this keeps the
        // promise of this type for a session opened any other way.
        if let Err(why) = super::server::fit(TargetSessionAttrs::ReadWrite, session.server) {
            return Err(Error::Connect {
                message: format!(
                    "cannot change the database through this session: the server is {}; \
                     nothing was changed",
                    why.reason()
                ),
                hint: Some(
                    "point DATABASE_URL at the primary, or list every node with \
                     target_session_attrs=read-write (docs/failover.md)"
                        .into(),
                ),
            });
        }
        let guard = acquire(&session.client, session.backend_pid, cfg.lock_wait).await?;
        // Every DDL statement from here on gives up after lock_timeout instead of queueing in
        // front of the gateway's traffic (and everything queued behind it); see db::retry.
        // The same statement checks that it still reaches the backend holding the lock.
        let ms = super::lock_timeout_setting(cfg.lock_timeout);
        let pid: i32 = session
            .client
            .query_typed_one(
                "SELECT pg_catalog.pg_backend_pid() FROM (SELECT pg_catalog.set_config('lock_timeout', $1, false)) s",
                &[(&ms, Type::TEXT)],
            )
            .await
            .map_err(|e| Error::sql("setting lock_timeout", &e))?
            .get(0);
        if pid != session.backend_pid {
            // The lock sits on a pooled backend we cannot reach again: end that backend so the
            // lock does not outlive this run (same role, so no extra privilege is needed).
            let _ = session
                .client
                .execute(
                    "SELECT pg_catalog.pg_terminate_backend($1)",
                    &[&session.backend_pid],
                )
                .await;
            return Err(Error::Pooled);
        }
        Ok(Locked { session, guard })
    }

    /// Releases the lock and passes `result` through. A release error only surfaces when the
    /// work itself succeeded; after a failure the session may be gone, and the server frees
    /// the lock with it.
    pub async fn finish<T, E: From<Error>>(self, result: Result<T, E>) -> Result<T, E> {
        let (released, _session) = self.release().await;
        match (result, released) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        }
    }

    /// Releases the lock and keeps the session, for work after the lock (`migrate
    /// --wait-replicas` waits for the standbys without holding it).
    pub async fn release(self) -> (Result<()>, Session) {
        let released = self.guard.release(&self.session.client).await;
        (released, self.session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn lock_key_is_the_documented_constant() {
        assert_eq!(LOCK_KEY, 0x6468_6374_6c5f_6d67);
    }

    #[test]
    fn holder_display_names_pid_and_application() {
        let h = Holder {
            pid: 42,
            application_name: Some("dhctl".into()),
            since: Some(
                DateTime::parse_from_rfc3339("2026-11-26T02:00:00Z")
                    .unwrap()
                    .into(),
            ),
            client_addr: None,
        };
        assert_eq!(
            h.to_string(),
            "pid 42 (application_name 'dhctl'), connected since 2026-11-26T02:00:00Z"
        );
    }
}
