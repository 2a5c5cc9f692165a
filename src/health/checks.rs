//! Readiness: PostgreSQL (through the pool), Redis (PING) and, optionally, pending migrations,
//! each bounded by the check timeout, run at most once at a time (single flight). The same
//! round reads what `/metrics` reports (the schema reads, see `schema`) and encodes it once.
//!
//! Probes never run checks themselves. The first probe that finds no fresh result starts one
//! check in a task of its own; every probe arriving while it runs waits for that same result,
//! and probes within `ready_cache` of its end reuse it. So N concurrent probes cost one
//! `SELECT 1` and one `PING`, and a probe flood cannot become a query flood. The check runs in
//! its own task so that a probe that hangs up cannot cancel it for the others.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use chrono::Utc;

use super::config::HealthConfig;
use super::dependencies::{DatabaseRound, Dependencies};
use super::metrics::{Metrics, Round};
use super::report::{Check, Reason, Verdict};
use super::schema::Facts;
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub database: Check,
    pub redis: Check,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Check>,
}

/// `/health/ready`'s body.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Verdict,
    pub checks: Checks,
}

/// A finished readiness round, its JSON and its metrics text encoded once for every probe and
/// scrape that shares it.
#[derive(Debug)]
pub struct Answer {
    pub ok: bool,
    pub body: Bytes,
    /// `/metrics`' body (Prometheus text, see `metrics`).
    pub metrics: Bytes,
}

impl Answer {
    fn of(report: &Report, metrics: Bytes) -> Answer {
        Answer {
            ok: report.status == Verdict::Ok,
            body: Bytes::from(serde_json::to_vec(report).unwrap_or_default()),
            metrics,
        }
    }

    /// The check task died without a result (it cannot panic by design; this is the net).
    fn lost() -> Answer {
        Answer {
            ok: false,
            body: Bytes::from_static(br#"{"status":"error","checks":{}}"#),
            metrics: Bytes::new(),
        }
    }
}

/// The last readiness verdict as `/health` reads it, without I/O.
const UNKNOWN: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;

/// The dependencies and the single-flight state in front of them.
pub struct Readiness {
    deps: Dependencies,
    cache: Duration,
    state: Mutex<Flight>,
    last_verdict: AtomicU8,
    metrics: Metrics,
    /// Whether each schema read (migrations, partitions) last succeeded, so that a lasting
    /// failure (a role without SELECT on the history table) is logged once, not every round.
    last_reads: [AtomicU8; 2],
}

#[derive(Default)]
struct Flight {
    last: Option<(Instant, Arc<Answer>)>,
    running: Option<watch::Receiver<Option<Arc<Answer>>>>,
}

impl Readiness {
    /// Builds the pool and the Redis client; connects nothing yet (see [`Readiness::warm_up`]).
    pub fn new(config: &HealthConfig) -> Result<Arc<Readiness>> {
        Ok(Arc::new(Readiness {
            deps: Dependencies::new(config)?,
            cache: config.ready_cache,
            state: Mutex::new(Flight::default()),
            last_verdict: AtomicU8::new(UNKNOWN),
            metrics: Metrics::new(Utc::now()),
            last_reads: [AtomicU8::new(UNKNOWN), AtomicU8::new(UNKNOWN)],
        }))
    }

    /// Opens `DATABASE_POOL_MIN` connections and runs a first check, in the background, so the
    /// first probe finds a warm pool and a broken dependency is logged at start.
    pub fn warm_up(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            // Held until all are open, or the pool would hand the first one out again.
            let mut held = Vec::with_capacity(me.deps.pool_min);
            for _ in 0..me.deps.pool_min {
                match me.deps.pool.get().await {
                    Ok(conn) => held.push(conn),
                    Err(_) => break, // the check below reports why
                }
            }
            drop(held);
            me.probe().await;
        });
    }

    /// True when the last finished check failed: `/health`'s "degraded". No I/O.
    pub fn degraded(&self) -> bool {
        self.last_verdict.load(Ordering::Relaxed) == FAILED
    }

    /// The readiness verdict (and metrics) for one probe or scrape: a fresh cached one, the one in
    /// flight, or a new one.
    pub async fn probe(self: &Arc<Self>) -> Arc<Answer> {
        let mut receiver = {
            let mut flight = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, outcome)) = &flight.last {
                if at.elapsed() < self.cache {
                    return Arc::clone(outcome);
                }
            }
            match &flight.running {
                // A closed channel means the task died; start another rather than wait forever.
                Some(rx) if rx.has_changed().is_ok() => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    flight.running = Some(rx.clone());
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        let outcome = Arc::new(me.run_checks().await);
                        {
                            let mut flight = me.state.lock().unwrap_or_else(|p| p.into_inner());
                            flight.last = Some((Instant::now(), Arc::clone(&outcome)));
                            flight.running = None;
                        }
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        let shared = receiver.wait_for(Option::is_some).await;
        match shared.ok().and_then(|v| v.as_ref().map(Arc::clone)) {
            Some(outcome) => outcome,
            None => Arc::new(Answer::lost()),
        }
    }

    /// Runs every check concurrently and logs each failure (and each recovery) once.
    async fn run_checks(&self) -> Answer {
        let (round, redis) = tokio::join!(self.deps.check_database(), self.deps.check_redis());
        let DatabaseRound {
            database,
            migrations,
            schema,
        } = round;
        let ok = [Some(&database), Some(&redis), migrations.as_ref()]
            .into_iter()
            .flatten()
            .all(|c| c.status == Verdict::Ok);
        for (name, check, endpoint) in [
            ("database", Some(&database), self.deps.pg_target.as_str()),
            ("redis", Some(&redis), self.deps.redis_target.as_str()),
            (
                "migrations",
                migrations.as_ref(),
                self.deps.pg_target.as_str(),
            ),
        ] {
            if let Some(Check {
                status: Verdict::Error,
                reason,
                detail,
                latency_ms,
                ..
            }) = check
            {
                if *reason == Some(Reason::NotChecked) {
                    continue; // its cause, the database check, is logged already
                }
                // The response says only `reason`; the operator's log gets the driver's text.
                // `endpoint`, not `target`: tracing's JSON lines already use `target` for the
                // module that logged (issue 11, item 15).
                tracing::warn!(
                    check = name,
                    endpoint,
                    latency_ms,
                    reason = reason.map(Reason::as_str),
                    error = detail.as_deref(),
                    "readiness check failed"
                );
            }
        }
        let previous = self
            .last_verdict
            .swap(if ok { OK } else { FAILED }, Ordering::Relaxed);
        if ok && previous == FAILED {
            tracing::info!("readiness recovered: every check passes again");
        }
        if let Some(facts) = &schema {
            self.log_reads(facts);
        }
        let metrics = self.metrics.record(&Round {
            at: Utc::now(),
            ready: ok,
            postgres: &database,
            redis: &redis,
            schema: schema.as_ref(),
            policies: &self.deps.schema.policies,
        });
        Answer::of(
            &Report {
                status: if ok { Verdict::Ok } else { Verdict::Error },
                checks: Checks {
                    database,
                    redis,
                    migrations,
                },
            },
            metrics,
        )
    }

    /// Logs a schema read that starts failing (with the driver's text) and one that recovers;
    /// nothing while it stays as it was.
    fn log_reads(&self, facts: &Facts) {
        let reads = [
            ("migrations", facts.migrations.as_ref().err()),
            ("partitions", facts.partitions.as_ref().err()),
        ];
        for ((part, failure), last) in reads.into_iter().zip(&self.last_reads) {
            let now = if failure.is_some() { FAILED } else { OK };
            let before = last.swap(now, Ordering::Relaxed);
            match failure {
                Some(f) if before != FAILED => tracing::warn!(
                    read = part,
                    endpoint = self.deps.pg_target.as_str(),
                    reason = f.reason.as_str(),
                    error = f.detail.as_str(),
                    "metrics read failed; its metrics are absent until it succeeds"
                ),
                None if before == FAILED => {
                    tracing::info!(read = part, "metrics read recovered");
                }
                _ => {}
            }
        }
    }

    /// Closes the pool's connections (shutdown).
    pub fn close(&self) {
        self.deps.pool.close();
    }
}
