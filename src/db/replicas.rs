//! `migrate --wait-replicas`: after the run's last commit, wait until every streaming standby of
//! the primary has replayed it, so an application reading from a replica never meets the old
//! schema. Standbys are what `pg_stat_replication` lists at each look: physical walsenders, not
//! a base backup in progress and not a logical subscriber (its "replay" position is a
//! subscription's, which may lag on purpose).
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
    /// pg_stat_replication.state: `startup`, `catchup`, `streaming` or `stopping`.
    pub replication_state: String,
    /// The last WAL position it reported as replayed; null before its first report.
    pub replay_lsn: Option<String>,
    /// Bytes of WAL between that and the target; null when it has reported none.
    pub lag_bytes: Option<i64>,
    pub caught_up: bool,
}

/// What `--wait-replicas` saw at its last look.
#[derive(Debug, Clone, Serialize)]
pub struct Replicas {
    /// The primary's WAL position after the run's last commit.
    pub target_lsn: String,
    /// Every standby listed had replayed `target_lsn` (true when none is connected).
    pub caught_up: bool,
    pub waited_ms: f64,
    pub standbys: Vec<Standby>,
}

impl Replicas {
    /// The standbys still behind, described for an error message.
    pub fn lagging(&self) -> Vec<String> {
        self.standbys
            .iter()
            .filter(|s| !s.caught_up)
            .map(|s| {
                let addr = s.client_addr.as_deref().unwrap_or("local socket");
                let behind = match s.lag_bytes {
                    Some(bytes) => format!("{bytes} bytes behind"),
                    None => "no replay position reported".into(),
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
pub async fn commit_lsn(client: &Client, limit: Duration) -> Result<String> {
    let sql = format!(
        "BEGIN; SET LOCAL synchronous_commit = remote_apply; SET LOCAL statement_timeout = {}; \
         SELECT pg_catalog.pg_current_xact_id(); COMMIT; SELECT pg_catalog.pg_current_wal_lsn()::text",
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
        .ok_or_else(|| Error::usage("pg_current_wal_lsn() returned nothing"))
}

/// Waits until every standby has replayed `target`, for at most `limit` from `started`.
pub async fn wait(
    client: &Client,
    target: &str,
    started: Instant,
    limit: Duration,
) -> Result<Replicas> {
    let mut pause = FIRST_POLL;
    loop {
        let standbys = look(client, target).await?;
        let caught_up = standbys.iter().all(|s| s.caught_up);
        let waited = started.elapsed();
        if caught_up || waited >= limit {
            return Ok(Replicas {
                target_lsn: target.to_string(),
                caught_up,
                waited_ms: crate::report::ms(waited),
                standbys,
            });
        }
        tokio::time::sleep(pause.min(limit - waited)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// One look at pg_stat_replication.
async fn look(client: &Client, target: &str) -> Result<Vec<Standby>> {
    let rows = client
        .query(
            "SELECT coalesce(r.application_name, ''), host(r.client_addr), r.state, \
                    r.replay_lsn::text, \
                    greatest(pg_catalog.pg_wal_lsn_diff($1::text::pg_lsn, r.replay_lsn), 0)::int8, \
                    coalesce(r.replay_lsn >= $1::text::pg_lsn, false) \
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
        standbys.push(Standby {
            application_name: row.get(0),
            client_addr: row.get(1),
            replication_state: state,
            replay_lsn: row.get(3),
            lag_bytes: row.get(4),
            caught_up: row.get(5),
        });
    }
    Ok(standbys)
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
        };
        assert!(none.check().is_ok());
    }
}
