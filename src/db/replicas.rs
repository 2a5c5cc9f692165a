//! `migrate --wait-replicas`: after the run's last commit, wait until every streaming standby of
//! the primary has replayed it, so an application reading from a replica never meets the old
//! schema. Standbys are what `pg_stat_replication` lists: physical walsenders, not a base backup
//! in progress and not a logical subscriber (its "replay" position is a subscription's, which may
//! lag on purpose). A walsender that reports a write or flush position but never a replay
//! position is a WAL receiver that does not replay (pg_receivewal, Barman's streaming archiver):
//! it is listed as ignored, not waited for. A standby seen once is remembered: if it disconnects
//! before it has replayed the target, it is "disconnected before confirming", and the wait does
//! not succeed without it (it ends at the limit, exit 2, unless it comes back and catches up).
//!
//! A standby reports its replay position to the primary after it receives WAL (before replaying
//! it) and then every `wal_receiver_status_interval` (10 s by default), so a plain wait would
//! usually see the change only ten seconds late. A commit made with `synchronous_commit =
//! remote_apply` carries a flag that makes each standby report as soon as it has replayed that
//! commit (docs: runtime-config-wal, "synchronous_commit"; the flag is in the commit record
//! whether or not synchronous replication is configured, and without `synchronous_standby_names`
//! the commit does not wait). dhctl therefore ends the run with one such empty commit (an xid,
//! nothing else) and waits for the WAL position after it: standbys that replay promptly are seen
//! promptly. The wait polls one cheap query, backing off to half a second, on the session that
//! ran the migrations, after it released the advisory lock.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The first pause between two looks at pg_stat_replication; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(500);

/// One standby as the primary sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Standby {
    /// The walreceiver's application_name (its cluster_name, or `walreceiver`).
    pub application_name: String,
    /// Where it connects from; null over a unix socket.
    pub client_addr: Option<String>,
    /// pg_stat_replication.state: `startup`, `catchup`, `streaming` or `stopping`; or
    /// `disconnected` for one seen earlier in the wait and gone from the list since.
    pub replication_state: String,
    /// The last WAL position it reported as replayed; null before its first report.
    pub replay_lsn: Option<String>,
    /// Bytes of WAL between that and the target; null when it has reported none.
    pub lag_bytes: Option<i64>,
    pub caught_up: bool,
}

/// A walsender that is not waited for: it receives WAL but never replays it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ignored {
    pub application_name: String,
    pub client_addr: Option<String>,
    /// Why it is not waited for.
    pub reason: String,
}

/// The state given to a standby that left pg_stat_replication during the wait.
pub const DISCONNECTED: &str = "disconnected";

/// What `--wait-replicas` saw at its last look.
#[derive(Debug, Clone, Serialize)]
pub struct Replicas {
    /// The primary's WAL position after the run's last commit.
    pub target_lsn: String,
    /// Every standby listed had replayed `target_lsn` (true when none is connected).
    pub caught_up: bool,
    pub waited_ms: f64,
    /// Every standby seen during the wait: those listed at the last look, and those seen earlier
    /// that have disconnected since (state `disconnected`).
    pub standbys: Vec<Standby>,
    /// Walsenders that receive WAL but never replay it (pg_receivewal): not waited for.
    pub ignored: Vec<Ignored>,
}

impl Replicas {
    /// The standbys still behind, described for an error message.
    pub fn lagging(&self) -> Vec<String> {
        self.standbys
            .iter()
            .filter(|s| !s.caught_up)
            .map(|s| {
                let addr = s.client_addr.as_deref().unwrap_or("local socket");
                let behind = match (s.replication_state == DISCONNECTED, s.lag_bytes) {
                    (true, Some(bytes)) => {
                        format!(
                            "disconnected before confirming ({bytes} bytes behind when last seen)"
                        )
                    }
                    (true, None) => "disconnected before confirming".into(),
                    (false, Some(bytes)) => format!("{bytes} bytes behind"),
                    (false, None) => "no replay position reported yet".into(),
                };
                format!(
                    "{} ({addr}): {behind}, {}",
                    s.application_name, s.replication_state
                )
            })
            .collect()
    }

    /// Exit 2 when the wait ran out with a standby behind.
    pub fn check(&self) -> Result<()> {
        if self.caught_up {
            return Ok(());
        }
        let lagging = self.lagging();
        Err(Error::Replicas {
            message: format!(
                "{} standby(s) had not replayed the migration after waiting {:.1}s: {}; the \
                 migration is committed on the primary",
                lagging.len(),
                self.waited_ms / 1000.0,
                lagging.join("; ")
            ),
            hint: "check the standby: replay paused (SELECT pg_get_wal_replay_pause_state() on \
                   it), a long query holding replay back (max_standby_streaming_delay), or a slow \
                   link; raise --wait-replicas, or run migrate again later (it has nothing left to \
                   apply and waits again)"
                .into(),
        })
    }
}

/// Marks the end of the run with a commit every standby reports promptly once replayed (see the
/// module comment) and returns the primary's WAL position after it. `limit` bounds the commit:
/// under synchronous replication it waits for the synchronous standbys.
///
/// The run's own commits may not be flushed yet (`synchronous_commit = off` for the database or
/// role): PostgreSQL commits a transaction that wrote no WAL but its commit record
/// asynchronously, whatever `synchronous_commit` says, so an xid alone would not flush. The
/// closing transaction therefore writes one small record (a transactional logical message,
/// ignored by physical standbys and harmless without logical decoding), which makes its commit
/// flush the WAL up to it, the run's commits included. The target is the WAL *insert* position
/// after it, never before a commit of the run even if nothing had been flushed.
pub async fn commit_lsn(client: &Client, limit: Duration) -> Result<String> {
    let sql = format!(
        "BEGIN; SET LOCAL synchronous_commit = remote_apply; SET LOCAL statement_timeout = {}; \
         SELECT pg_catalog.pg_current_xact_id(); SELECT pg_catalog.pg_logical_emit_message(true, 'dhctl', ''); \
         COMMIT; SELECT pg_catalog.pg_current_wal_insert_lsn()::text",
        limit.as_millis().max(1)
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| Error::sql("marking the end of the migration for the standbys", &e))?;
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| Error::usage("pg_current_wal_insert_lsn() returned nothing"))
}

/// Waits until every standby has replayed `target`, for at most `limit` from `started`.
pub async fn wait(
    client: &Client,
    target: &str,
    started: Instant,
    limit: Duration,
) -> Result<Replicas> {
    let mut pause = FIRST_POLL;
    let mut known: Vec<Standby> = Vec::new();
    loop {
        let (listed, ignored) = look(client, target).await?;
        known = remember(known, listed);
        let caught_up = known.iter().all(|s| s.caught_up);
        let waited = started.elapsed();
        if caught_up || waited >= limit {
            return Ok(Replicas {
                target_lsn: target.to_string(),
                caught_up,
                waited_ms: crate::report::ms(waited),
                standbys: known,
                ignored,
            });
        }
        tokio::time::sleep(pause.min(limit - waited)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// The standbys known after a look: those `listed` now, then those seen before and gone since.
/// A standby is known by its name and address (a reconnecting one has a new pid). One that had
/// replayed the target before it left stays caught up; one that had not is `disconnected`, not
/// caught up.
fn remember(known: Vec<Standby>, listed: Vec<Standby>) -> Vec<Standby> {
    let same = |a: &Standby, b: &Standby| {
        a.application_name == b.application_name && a.client_addr == b.client_addr
    };
    let gone: Vec<Standby> = known
        .into_iter()
        .filter(|k| !listed.iter().any(|l| same(k, l)))
        .map(|mut k| {
            if !k.caught_up {
                k.replication_state = DISCONNECTED.into();
            }
            k
        })
        .collect();
    let mut all = listed;
    all.extend(gone);
    all
}

/// One look at pg_stat_replication: the standbys, and the walsenders that do not replay.
async fn look(client: &Client, target: &str) -> Result<(Vec<Standby>, Vec<Ignored>)> {
    let rows = client
        .query(
            "SELECT coalesce(r.application_name, ''), host(r.client_addr), r.state, \
                    r.replay_lsn::text, \
                    CASE WHEN r.replay_lsn IS NOT NULL \
                         THEN greatest(pg_catalog.pg_wal_lsn_diff($1::text::pg_lsn, r.replay_lsn), 0)::int8 \
                    END, \
                    coalesce(r.replay_lsn >= $1::text::pg_lsn, false), \
                    r.replay_lsn IS NULL \
                      AND (r.write_lsn IS NOT NULL OR r.flush_lsn IS NOT NULL) \
             FROM pg_stat_replication r \
             WHERE r.state IS DISTINCT FROM 'backup' \
               AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s \
                               WHERE s.active_pid = r.pid AND s.slot_type = 'logical') \
             ORDER BY 1, r.pid",
            &[&target],
        )
        .await
        .map_err(|e| Error::sql("reading pg_stat_replication", &e))?;
    let mut standbys = Vec::with_capacity(rows.len());
    let mut ignored = Vec::new();
    for row in rows {
        // Without pg_read_all_stats a role sees only the pid of another role's walsender.
        let Some(state) = row.get::<_, Option<String>>(2) else {
            return Err(Error::Replicas {
                message: "cannot see how far the standbys have replayed: pg_stat_replication \
                          shows their details only to superusers and members of \
                          pg_read_all_stats"
                    .into(),
                hint: "GRANT pg_monitor (or pg_read_all_stats) TO dhctl's role, or drop \
                       --wait-replicas; the migration is committed on the primary"
                    .into(),
            });
        };
        // A real standby reports its replay position with its first report; a walsender that
        // reports receiving WAL but no replay position never replays (pg_receivewal).
        if row.get::<_, bool>(6) {
            ignored.push(Ignored {
                application_name: row.get(0),
                client_addr: row.get(1),
                reason: "not a replica: it receives WAL but reports no replay position \
                         (pg_receivewal or a WAL archiver)"
                    .into(),
            });
            continue;
        }
        standbys.push(Standby {
            application_name: row.get(0),
            client_addr: row.get(1),
            replication_state: state,
            replay_lsn: row.get(3),
            lag_bytes: row.get(4),
            caught_up: row.get(5),
        });
    }
    Ok((standbys, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(name: &str, lag: Option<i64>, caught_up: bool) -> Standby {
        Standby {
            application_name: name.into(),
            client_addr: Some("10.0.0.2".into()),
            replication_state: "streaming".into(),
            replay_lsn: lag.map(|_| "0/3000060".into()),
            lag_bytes: lag,
            caught_up,
        }
    }

    #[test]
    fn only_standbys_behind_are_named_and_none_connected_is_success() {
        let report = Replicas {
            target_lsn: "0/3000100".into(),
            caught_up: false,
            waited_ms: 2000.0,
            standbys: vec![
                standby("db2", Some(0), true),
                standby("db3", Some(160), false),
                standby("db4", None, false),
            ],
            ignored: Vec::new(),
        };
        let e = report.check().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("2 standby(s)"), "{text}");
        assert!(text.contains("db3 (10.0.0.2): 160 bytes behind"), "{text}");
        assert!(
            text.contains("db4 (10.0.0.2): no replay position"),
            "{text}"
        );
        assert!(!text.contains("db2"), "{text}");
        let none = Replicas {
            target_lsn: "0/1".into(),
            caught_up: true,
            waited_ms: 0.0,
            standbys: Vec::new(),
            ignored: Vec::new(),
        };
        assert!(none.check().is_ok());
    }

    #[test]
    fn a_standby_that_leaves_before_catching_up_is_remembered_as_disconnected() {
        let first = remember(
            Vec::new(),
            vec![
                standby("db2", Some(0), true),
                standby("db3", Some(160), false),
            ],
        );
        assert_eq!(first.len(), 2);
        // Both leave: db2 had replayed the target, db3 had not.
        let later = remember(first, Vec::new());
        assert_eq!(later.len(), 2);
        let db2 = later.iter().find(|s| s.application_name == "db2").unwrap();
        assert!(db2.caught_up);
        assert_eq!(db2.replication_state, "streaming");
        let db3 = later.iter().find(|s| s.application_name == "db3").unwrap();
        assert!(!db3.caught_up);
        assert_eq!(db3.replication_state, DISCONNECTED);
        let report = Replicas {
            target_lsn: "0/3000100".into(),
            caught_up: later.iter().all(|s| s.caught_up),
            waited_ms: 2000.0,
            standbys: later.clone(),
            ignored: Vec::new(),
        };
        let text = report.check().unwrap_err().to_string();
        assert!(
            text.contains("db3 (10.0.0.2): disconnected before confirming"),
            "{text}"
        );
        // It comes back and catches up: listed again, once.
        let back = remember(later, vec![standby("db3", Some(0), true)]);
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(|s| s.caught_up));
    }
}
