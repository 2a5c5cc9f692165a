//! What readiness checks: a deadpool-postgres pool (built from dhctl's parsed
//! config and rustls connector) and one reconnecting Redis connection. Each check is bounded
//! by the check timeout; a connection involved in a failure is thrown away, never reused.
//! Failures carry a generic [`Reason`] for the response and the driver's text for the log.
//! The database check also runs `/metrics`' schema reads (`schema`) on its connection, in what
//! is left of its timeout.

use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use super::config::HealthConfig;
use super::metrics::MigrationFigures;
use super::report::{classify, Check, Failure, Reason, Verdict};
use super::schema::{self, Facts, Schema};
use crate::db::describe;
use crate::db::tls::make_connector;
use crate::error::{describe_driver_error, Result};

/// PostgreSQL and Redis, as the checks see them.
pub struct Dependencies {
    pub pool: Pool,
    pub pool_min: usize,
    pub pg_target: String,
    redis: redis::Client,
    redis_config: redis::AsyncConnectionConfig,
    /// One multiplexed connection, reused across checks and replaced after any failure (the
    /// reconnect: a check after Redis comes back opens a new one).
    redis_conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    pub redis_target: String,
    /// The migrations, policies and history table the schema reads compare the database with.
    pub schema: Schema,
    require_migrated: RequireMigrated,
    timeout: Duration,
}

/// Whether readiness fails while migrations are pending (`DHCTL_READY_REQUIRE_MIGRATED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequireMigrated {
    No,
    Yes,
}

/// What one database check found: its verdict, the migrations check when required, and the
/// schema reads when PostgreSQL answered.
pub struct DatabaseRound {
    pub database: Check,
    pub migrations: Option<Check>,
    pub schema: Option<Facts>,
}

impl Dependencies {
    pub fn new(config: &HealthConfig) -> Result<Dependencies> {
        let db = &config.database;
        let manager = Manager::from_config(
            db.pg.clone(),
            make_connector(&db.tls)?,
            // Fast: no query on checkout. A broken connection is noticed by the check itself,
            // which then discards it (see `Discard`), so "verified" would only double the load.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(db.pool_max)
            .wait_timeout(Some(db.wait_timeout))
            .create_timeout(db.pg.get_connect_timeout().copied())
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| crate::Error::usage(format!("cannot build the connection pool: {e}")))?;
        let info = config.redis.info.clone();
        let redis = match &config.redis.tls_ca {
            None => redis::Client::open(info),
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
        }
        .map_err(|_| crate::Error::usage("REDIS_URL: unsupported Redis connection settings"))?;
        let redis_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.check_timeout))
            .set_response_timeout(Some(config.check_timeout));
        Ok(Dependencies {
            pool,
            pool_min: db.pool_min,
            pg_target: describe(&db.pg),
            redis,
            redis_config,
            redis_conn: tokio::sync::Mutex::new(None),
            redis_target: config.redis.describe(),
            schema: Schema::load(config)?,
            require_migrated: if config.require_migrated {
                RequireMigrated::Yes
            } else {
                RequireMigrated::No
            },
            timeout: config.check_timeout,
        })
    }

    /// `SELECT 1` on a pooled connection; then, on the same connection and within what is left
    /// of the same timeout, the schema reads `/metrics` reports (see `schema`), from which the
    /// migrations check (when required) is also taken. The database check's verdict is the
    /// `SELECT 1` alone: a schema read that fails or runs out of time fails only its own part.
    pub async fn check_database(&self) -> DatabaseRound {
        let started = Instant::now();
        let ping = async {
            // Wrapped at once: a failure below drops the connection instead of pooling it.
            let conn = Discard(Some(self.pool.get().await.map_err(|e| pool_failure(&e))?));
            let client = conn
                .0
                .as_ref()
                .ok_or_else(|| Failure::new(Reason::Unavailable, "no pooled connection"))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| pg_failure(&e))?;
            Ok::<_, Failure>(conn)
        };
        let mut conn = match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(failure)) => return self.unreached(Check::failed(started.elapsed(), failure)),
            Err(_) => return self.unreached(self.timed_out(started.elapsed())),
        };
        let database = Check::ok(started.elapsed());
        let facts = match conn.0.as_ref() {
            Some(client) => {
                let left = self.timeout.saturating_sub(started.elapsed());
                schema::read(client, &self.schema, left).await
            }
            None => return self.unreached(database),
        };
        if facts.connection_usable {
            conn.return_to_pool();
        }
        let migrations = match self.require_migrated {
            RequireMigrated::No => None,
            RequireMigrated::Yes => Some(Self::migrations_check(&facts)),
        };
        DatabaseRound {
            database,
            migrations,
            schema: Some(facts),
        }
    }

    /// The round when PostgreSQL could not be asked: the migrations check (if required) failed,
    /// without a second log line for the same cause (see `Readiness::run_checks`).
    fn unreached(&self, database: Check) -> DatabaseRound {
        let migrations = match self.require_migrated {
            RequireMigrated::No => None,
            RequireMigrated::Yes => Some(Check {
                status: Verdict::Error,
                latency_ms: 0.0,
                reason: Some(Reason::NotChecked),
                pending: None,
                detail: None,
            }),
        };
        DatabaseRound {
            database,
            migrations,
            schema: None,
        }
    }

    /// Readiness's migrations check, from the round's read of the history: fails while
    /// migrations are not applied, out-of-order ones included (those of a newer release,
    /// `ahead`, do not count). `pending` is the same figure as `dhctl_migrations_pending`.
    fn migrations_check(facts: &Facts) -> Check {
        let took = facts.migrations_took;
        match &facts.migrations {
            Ok(entries) => {
                let figures = MigrationFigures::of(entries);
                match figures.pending {
                    0 => Check {
                        pending: Some(0),
                        ..Check::ok(took)
                    },
                    n => Check {
                        pending: Some(n),
                        ..Check::failed(
                            took,
                            Failure::new(Reason::MigrationsPending, not_applied(&figures)),
                        )
                    },
                }
            }
            Err(failure) => Check::failed(took, failure.clone()),
        }
    }

    /// PING on the shared connection, opening it first when there is none.
    pub async fn check_redis(&self) -> Check {
        let started = Instant::now();
        let mut slot = self.redis_conn.lock().await;
        let work = async {
            if slot.is_none() {
                let conn = self
                    .redis
                    .get_multiplexed_async_connection_with_config(&self.redis_config)
                    .await?;
                *slot = Some(conn);
            }
            match slot.as_mut() {
                Some(conn) => redis::cmd("PING").query_async::<String>(conn).await,
                None => Ok(String::new()),
            }
        };
        let outcome = tokio::time::timeout(self.timeout, work).await;
        let took = started.elapsed();
        match outcome {
            Ok(Ok(_pong)) => Check::ok(took),
            Ok(Err(e)) => {
                *slot = None;
                Check::failed(took, redis_failure(&e))
            }
            Err(_) => {
                *slot = None;
                self.timed_out(took)
            }
        }
    }

    fn timed_out(&self, took: Duration) -> Check {
        let limit = self.timeout.as_millis();
        Check::failed(
            took,
            Failure::new(Reason::Timeout, format!("no answer within {limit} ms")),
        )
    }
}

/// A PostgreSQL error's reason: SQLSTATE class 28 (invalid authorization) is an
/// authentication failure; any other server error (no such database, too many connections,
/// shutting down) is "unavailable"; client-side errors by their I/O or TLS cause.
fn pg_failure(err: &tokio_postgres::Error) -> Failure {
    let reason = match err.as_db_error() {
        Some(db) if db.code().code().starts_with("28") => Reason::AuthenticationFailed,
        Some(_) => Reason::Unavailable,
        // "server does not support TLS" and handshake errors carry no rustls error to find.
        None => match classify(err, Reason::Unavailable) {
            Reason::Unavailable if err.to_string().contains("TLS") => Reason::Tls,
            reason => reason,
        },
    };
    Failure::new(reason, describe_driver_error(err))
}

fn pool_failure(err: &deadpool_postgres::PoolError) -> Failure {
    use deadpool_postgres::PoolError;
    match err {
        PoolError::Backend(e) => pg_failure(e),
        PoolError::Timeout(_) => {
            Failure::new(Reason::Timeout, "no pooled connection became free in time")
        }
        PoolError::Closed => {
            Failure::new(Reason::Unavailable, "the pool is closed (shutting down)")
        }
        other => Failure::new(Reason::Unavailable, other.to_string()),
    }
}

fn redis_failure(err: &redis::RedisError) -> Failure {
    let reason = if err.is_connection_refusal() {
        Reason::ConnectionRefused
    } else if err.is_timeout() {
        Reason::Timeout
    } else if err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        Reason::AuthenticationFailed
    } else {
        // The crate keeps I/O errors behind an `Arc<dyn Error>` whose `source()` skips the
        // rustls error, so TLS failures are recognised by rustls's own wording.
        let text = err.to_string().to_ascii_lowercase();
        let tls = ["certificate", "tls", "handshake", "alert"];
        match classify(err, Reason::Unavailable) {
            Reason::Unavailable if tls.iter().any(|w| text.contains(w)) => Reason::Tls,
            reason => reason,
        }
    };
    Failure::new(reason, format!("redis: {err}"))
}

/// A pooled connection that is thrown away when dropped, unless the check succeeded with it
/// ([`Discard::return_to_pool`]). A connection
/// whose check failed or timed out may be stuck (a server that stopped answering mid-query);
/// returning it to the pool would make every later check wait on it too.
struct Discard(Option<Object>);

impl Discard {
    /// The check succeeded: the connection goes back to the pool when dropped.
    fn return_to_pool(&mut self) {
        self.0 = None;
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// Why the migrations check fails, in words an operator can act on: pending migrations are
/// applied by `dhctl migrate`, but out-of-order ones (older than the newest applied) are
/// refused by it, so they are not told to run it.
fn not_applied(figures: &MigrationFigures) -> String {
    let out_of_order = figures.out_of_order.min(figures.pending);
    let in_order = figures.pending - out_of_order;
    let refused = "older than the newest applied one, which `dhctl migrate` refuses: see \
                   docs/history.md (--allow-out-of-order)";
    match (in_order, out_of_order) {
        (n, 0) => format!("{n} migration(s) pending; run `dhctl migrate`"),
        (0, k) => format!("{k} migration(s) out of order ({refused})"),
        (n, k) => format!(
            "{} migration(s) not applied: {n} pending, {k} out of order ({refused})",
            n + k
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pending: usize, out_of_order: usize) -> MigrationFigures {
        MigrationFigures {
            pending,
            out_of_order,
            ..MigrationFigures::default()
        }
    }

    #[test]
    fn out_of_order_migrations_are_not_sent_to_dhctl_migrate() {
        assert_eq!(
            not_applied(&figures(2, 0)),
            "2 migration(s) pending; run `dhctl migrate`"
        );
        let only = not_applied(&figures(1, 1));
        assert!(only.starts_with("1 migration(s) out of order"), "{only}");
        assert!(!only.contains("run `dhctl migrate`"), "{only}");
        assert!(
            only.contains("docs/history.md") && only.contains("--allow-out-of-order"),
            "{only}"
        );
        let both = not_applied(&figures(3, 1));
        assert!(both.contains("2 pending, 1 out of order"), "{both}");
        assert!(!both.contains("run `dhctl migrate`"), "{both}");
    }
}
