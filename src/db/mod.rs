//! Everything about dhctl's own database session: connecting (TLS, `--wait`, several hosts and
//! the kind of server a command needs, creating a missing database), session settings, the
//! advisory lock, lock_timeout retries, waiting for standbys and identifier quoting.

pub mod ident;
pub mod inflight;
pub mod lock;
pub mod replicas;
pub mod retry;
pub mod server;
mod settings;
pub mod tls;

use std::time::{Duration, Instant};

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{describe_driver_error, Error, Result};
pub use lock::Locked;
pub use server::{ServerState, Unfit};
pub use settings::{
    describe, host_port, wants_tls, Access, DbConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HOST,
};

/// The oldest server dhctl supports: 14 brings `DETACH PARTITION … CONCURRENTLY` and
/// `client_connection_check_interval`, both of which dhctl relies on.
pub const MIN_SERVER_VERSION: i32 = 140000;

/// How often a backend whose client vanished (kill -9, a pod evicted) checks the socket while it
/// runs a long statement, so it aborts and frees the advisory lock instead of holding it to the
/// statement's end. PostgreSQL 14+, user-settable (docs: runtime-config-connection).
const CLIENT_CONNECTION_CHECK_INTERVAL: &str = "1s";

/// dhctl's own session settings, as select-list items of one statement: `$1` is
/// client_connection_check_interval, `$2` lock_timeout (NULL: leave it as it is; `connect`
/// always sets it, see `open_one`). TimeZone,
/// DateStyle, IntervalStyle and extra_float_digits are pinned so that nothing dhctl reads as
/// text depends on the server's, the database's or a migration's settings;
/// standard_conforming_strings so that a backslash in dhctl's own SQL literals means what it
/// says (an `ALTER DATABASE … SET standard_conforming_strings = off` would otherwise turn
/// `'\('` into `'('`; dhctl's queries also avoid backslashes in literals); the dead-client
/// check is set where the server has it (current_setting(…, true) is NULL on servers that lack
/// it). application_name is a startup parameter, which `RESET ALL` restores by itself.
const SETTINGS: &str = "pg_catalog.set_config('TimeZone', 'UTC', false), \
     pg_catalog.set_config('standard_conforming_strings', 'on', false), \
     pg_catalog.set_config('DateStyle', 'ISO, MDY', false), \
     pg_catalog.set_config('IntervalStyle', 'postgres', false), \
     pg_catalog.set_config('extra_float_digits', '3', false), \
     CASE WHEN pg_catalog.current_setting('client_connection_check_interval', true) IS NOT NULL \
          THEN pg_catalog.set_config('client_connection_check_interval', $1, false) END, \
     CASE WHEN $2::text IS NOT NULL THEN pg_catalog.set_config('lock_timeout', $2, false) END";

/// Everything a migration can leave behind in the session, undone: settings (`SET`, including
/// a `SET ROLE` or `SET SESSION AUTHORIZATION`), cursors, LISTEN registrations, prepared
/// statements, temporary tables, cached plans and sequence state. Not `DISCARD ALL`, which would
/// also release dhctl's advisory lock (docs: sql-discard). Runs inside a transaction too, so
/// that dhctl's history write in the migration's transaction no longer depends on what the
/// migration set.
const RESET: &str = "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; CLOSE ALL; UNLISTEN *; \
     DEALLOCATE ALL; DISCARD TEMP; DISCARD PLANS; DISCARD SEQUENCES";

/// Puts the session back into dhctl's own known state after a migration (see [`RESET`]) and
/// re-applies dhctl's settings, `lock_timeout` included. Both are sent before either answer is
/// awaited (tokio-postgres pipelines futures polled together): one round trip.
pub async fn restore_session(
    client: &Client,
    lock_timeout: Duration,
) -> std::result::Result<(), tokio_postgres::Error> {
    let lock_timeout = lock_timeout_setting(lock_timeout);
    let settings = format!("SELECT {SETTINGS}");
    let (reset, set) = futures_util::future::join(
        client.batch_execute(RESET),
        client.query_typed(
            &settings,
            &[
                (
                    &CLIENT_CONNECTION_CHECK_INTERVAL,
                    tokio_postgres::types::Type::TEXT,
                ),
                (&Some(lock_timeout), tokio_postgres::types::Type::TEXT),
            ],
        ),
    )
    .await;
    // DEALLOCATE ALL also dropped the statements tokio-postgres caches to look up custom types;
    // forget them, or the next lookup would name a statement the server no longer has.
    client.clear_type_cache();
    reset?;
    set.map(|_| ())
}

/// `lock_timeout` as set_config takes it: whole milliseconds, at least 1 (0 would turn it off).
pub fn lock_timeout_setting(lock_timeout: Duration) -> String {
    lock_timeout.as_millis().max(1).to_string()
}

/// Whether `connect` may create the database when it does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateDatabase {
    IfMissing,
    Never,
}

/// An open dhctl session.
pub struct Session {
    pub client: Client,
    pub server_version: i32,
    /// The backend this session talks to. Behind a transaction-pooling proxy later statements
    /// may reach another one; the lock code compares against this to find out.
    pub backend_pid: i32,
    /// Primary or standby, writable or not, when the session started.
    pub server: ServerState,
    /// Which of the configuration's hosts it reached (0 with one host).
    pub host: usize,
    /// True when `connect` created the database for this session.
    pub created_database: bool,
    /// Its entry among the open sessions (cancelled on SIGINT, counted by a fleet).
    _registered: inflight::Registration,
}

/// Connects to the configured database, applying dhctl's session settings.
///
/// With several hosts, takes the first that answers and is the kind of server the command
/// wants ([`DbConfig::wanted`]: a writable primary for a command that writes). Retries what can
/// heal (refused, reset, no answer within connect_timeout, the server starting up, only a
/// standby answering while a failover promotes it) until `cfg.wait` runs out; fails at once on
/// bad credentials or a bad URL, and without `--wait` on a server of the wrong kind. Creates the
/// database on SQLSTATE 3D000 when `create` allows.
pub async fn connect(cfg: &DbConfig, create: CreateDatabase) -> Result<Session> {
    let started = Instant::now();
    let deadline = cfg.wait.map(|w| started + w);
    let retry = Retry {
        cfg,
        started,
        deadline,
    };
    let mut delay = Duration::from_millis(100);
    let mut created = false;
    // Built once, before any attempt: a broken CA file is a usage error, not a network one.
    let tls = if wants_tls(&cfg.pg) {
        Some(tls::make_connector(&cfg.tls)?)
    } else {
        None
    };
    loop {
        match open(
            &cfg.pg,
            cfg.wanted(),
            tls.as_ref(),
            &cfg.tls,
            deadline,
            cfg.lock_timeout,
        )
        .await
        {
            Ok(mut session) => {
                check_server_version(&session)?;
                session.created_database = created;
                return Ok(session);
            }
            Err(tried) => {
                let err = tried.worst();
                let code = err.as_db_error().map(|d| d.code().clone());
                if code.as_ref() == Some(&SqlState::INVALID_CATALOG_NAME) && !created {
                    if create == CreateDatabase::Never {
                        return Err(Error::MissingDatabase {
                            name: cfg.dbname().to_string(),
                            target: cfg.display_target(),
                        });
                    }
                    match create_database(cfg, tls.as_ref(), deadline).await {
                        Ok(()) => {
                            created = true;
                            continue;
                        }
                        // No writable host to create it on (only a standby answers during a
                        // failover): under --wait, retried like any connection that can heal.
                        Err(Create::NoHost(tried)) => {
                            retry
                                .back_off(
                                    &tried,
                                    &mut delay,
                                    "no host to create the database on yet; retrying",
                                )
                                .await?;
                            continue;
                        }
                        Err(Create::Failed(error)) => return Err(error),
                    }
                }
                // A statement prepared in one round trip and missing (or left over from another
                // client) in the next: the connection goes through a transaction-pooling proxy
                // that does not track prepared statements (PgBouncer before 1.21).
                if matches!(
                    code,
                    Some(SqlState::INVALID_SQL_STATEMENT_NAME | SqlState::DUPLICATE_PSTATEMENT)
                ) {
                    return Err(Error::Pooled);
                }
                retry
                    .back_off(&tried, &mut delay, "database not reachable yet; retrying")
                    .await?;
            }
        }
    }
}

/// `connect`'s wait between attempts.
struct Retry<'a> {
    cfg: &'a DbConfig,
    started: Instant,
    deadline: Option<Instant>,
}

impl Retry<'_> {
    /// After the failed attempts `tried`: when what failed can heal and `--wait` leaves time,
    /// logs `retrying`, sleeps `delay` (at most until the deadline) and doubles it up to 1 s;
    /// else the error to give up with.
    async fn back_off(&self, tried: &Tried, delay: &mut Duration, retrying: &str) -> Result<()> {
        let now = Instant::now();
        match self.deadline {
            Some(deadline) if is_healable(tried.worst()) && now < deadline => {
                tracing::info!(target = %self.cfg.display_target(), error = %connect_error(self.cfg, tried, now - self.started, true), "{retrying}");
                tokio::time::sleep((*delay).min(deadline - now)).await;
                *delay = (*delay * 2).min(Duration::from_secs(1));
                Ok(())
            }
            _ => Err(connect_error(
                self.cfg,
                tried,
                self.started.elapsed(),
                self.cfg.wait.is_some(),
            )),
        }
    }
}

/// The shortest bound of one host's attempt when `--wait` is nearly spent: a host that answers
/// at once is still reached.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// Why one connection attempt failed.
#[derive(Debug)]
enum Attempt {
    /// The driver or the server said no.
    Failed(tokio_postgres::Error),
    /// Nothing conclusive within connect_timeout: a host that accepts TCP and never answers, a
    /// stalled TLS handshake or startup.
    TimedOut(Duration),
    /// The server answered, and is not the kind the command wants (a standby where it writes).
    Unfit(Unfit),
}

impl Attempt {
    fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Attempt::Failed(err) => err.as_db_error(),
            Attempt::TimedOut(_) | Attempt::Unfit(_) => None,
        }
    }

    /// How much an attempt says about the target, to pick the one an error reports: a server's
    /// own error (wrong password, missing database) over a server of the wrong kind over a
    /// driver error over silence.
    fn rank(&self) -> u8 {
        match self {
            Attempt::Failed(e) if e.as_db_error().is_some() => 3,
            Attempt::Unfit(_) => 2,
            Attempt::Failed(_) => 1,
            Attempt::TimedOut(_) => 0,
        }
    }

    /// What happened on one host, for a list of several.
    fn summary(&self) -> String {
        match self {
            Attempt::Failed(err) => match err.as_db_error() {
                Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                None => describe_driver_error(err),
            },
            Attempt::TimedOut(limit) => format!(
                "no answer within connect_timeout ({}s)",
                limit.as_secs_f64()
            ),
            Attempt::Unfit(why) => why.reason().to_string(),
        }
    }
}

/// Every host one connection attempt tried, in order, with what each said.
#[derive(Debug)]
struct Tried {
    hosts: Vec<(String, Attempt)>,
}

impl Tried {
    /// The attempt an error reports (see [`Attempt::rank`]); the last of equals.
    fn worst(&self) -> &Attempt {
        static NOTHING: Attempt = Attempt::TimedOut(DEFAULT_CONNECT_TIMEOUT);
        self.hosts
            .iter()
            .map(|(_, attempt)| attempt)
            .max_by_key(|attempt| attempt.rank())
            .unwrap_or(&NOTHING)
    }

    /// "h1:5432: …; h2:5433: …" when there were several hosts, else nothing.
    fn list(&self) -> Option<String> {
        (self.hosts.len() > 1).then(|| {
            self.hosts
                .iter()
                .map(|(host, attempt)| format!("{host}: {}", attempt.summary()))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// One connection attempt: each host in turn (libpq's order, or a random start under
/// `load_balance_hosts=random`), each bounded as a whole (TCP, TLS, startup, session setup) by
/// connect_timeout, until one answers and is the kind of server `wanted` asks for. tokio-postgres
/// has this walk too, but its connect_timeout bounds only the TCP connect (a server that accepts
/// and never answers would hang dhctl forever) and its error names no host; so dhctl hands it
/// one host at a time. With a `deadline` (`--wait`), no attempt outlasts it: each is bounded by
/// the time left (at least [`MIN_ATTEMPT`]), and the walk stops once it has passed.
async fn open(
    pg: &tokio_postgres::Config,
    wanted: TargetSessionAttrs,
    tls: Option<&MakeRustlsConnect>,
    settings: &tls::TlsSettings,
    deadline: Option<Instant>,
    lock_timeout: Duration,
) -> std::result::Result<Session, Tried> {
    let limit = pg
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let count = pg.get_hosts().len().max(pg.get_hostaddrs().len()).max(1);
    let start = match pg.get_load_balance_hosts() {
        tokio_postgres::config::LoadBalanceHosts::Random => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as usize)
                .unwrap_or(0)
                % count
        }
        _ => 0,
    };
    let mut tried = Tried { hosts: Vec::new() };
    for i in (0..count).map(|n| (start + n) % count) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) && !tried.hosts.is_empty() {
            break;
        }
        let limit = match left {
            Some(left) => limit.min(left.max(MIN_ATTEMPT)),
            None => limit,
        };
        let one = single_host(pg, i);
        let failure =
            match tokio::time::timeout(limit, open_one(&one, tls, settings, lock_timeout)).await {
                Ok(Ok(mut session)) => match server::fit(wanted, session.server) {
                    Ok(()) => {
                        session.host = i;
                        return Ok(session);
                    }
                    // Dropping the session closes it; the next host may be the one.
                    Err(why) => Attempt::Unfit(why),
                },
                Ok(Err(err)) => Attempt::Failed(err),
                Err(_) => Attempt::TimedOut(limit),
            };
        tried.hosts.push((host_port(pg, i), failure));
    }
    Err(tried)
}

impl DbConfig {
    /// This configuration narrowed to the one host `session` reached, for a second session that
    /// must meet the same server (verify's scratch database lives there).
    pub fn on_host_of(&self, session: &Session) -> DbConfig {
        let mut pinned = self.clone();
        pinned.pg = single_host(&self.pg, session.host);
        pinned
            .pg
            .target_session_attrs(self.pg.get_target_session_attrs());
        pinned
    }
}

/// The `i`th host of a multi-host configuration, with every other setting.
fn single_host(pg: &tokio_postgres::Config, i: usize) -> tokio_postgres::Config {
    use tokio_postgres::config::Host;
    let mut one = tokio_postgres::Config::new();
    if let Some(user) = pg.get_user() {
        one.user(user);
    }
    if let Some(password) = pg.get_password() {
        one.password(password);
    }
    if let Some(dbname) = pg.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = pg.get_options() {
        one.options(options);
    }
    if let Some(name) = pg.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = pg.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = pg.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = pg.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = pg.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.ssl_mode(pg.get_ssl_mode())
        .ssl_negotiation(pg.get_ssl_negotiation())
        .keepalives(pg.get_keepalives())
        .keepalives_idle(pg.get_keepalives_idle())
        // dhctl judges the server itself, on its session setup's row (see server.rs).
        .target_session_attrs(TargetSessionAttrs::Any)
        .channel_binding(pg.get_channel_binding());
    match pg.get_hosts().get(i) {
        Some(Host::Tcp(host)) => {
            one.host(host);
        }
        #[cfg(unix)]
        Some(Host::Unix(path)) => {
            one.host_path(path);
        }
        _ => {}
    }
    if let Some(addr) = pg.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    let ports = pg.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        one.port(*port);
    }
    one
}

/// One host: connect, then set the session up. Every session gets `lock_timeout` from the
/// start, not only after the advisory lock: a catalog read, a size or a DEFAULT partition's
/// row count waits for a relation lock like DDL does, and must not queue behind a session
/// holding ACCESS EXCLUSIVE for longer than that (it fails with SQLSTATE 55P03 instead).
async fn open_one(
    pg: &tokio_postgres::Config,
    tls: Option<&MakeRustlsConnect>,
    settings: &tls::TlsSettings,
    lock_timeout: Duration,
) -> std::result::Result<Session, tokio_postgres::Error> {
    let client = match tls {
        Some(connector) => {
            let (client, connection) = pg.connect(connector.clone()).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
            client
        }
        None => {
            let (client, connection) = pg.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
            client
        }
    };
    let registered = inflight::register(client.cancel_token(), tls.map(|_| settings.clone()));
    // One round trip: the server version, the backend, primary or standby, and dhctl's session
    // settings (set here rather than as a startup `options` parameter, which PgBouncer
    // rejects). transaction_read_only is read before the settings are applied, and none of them
    // touches it. Typed parameters: no separate prepare round trip.
    let row = client
        .query_typed_one(
            &format!(
                "SELECT pg_catalog.current_setting('server_version_num')::int4, pg_catalog.pg_backend_pid(), \
                 pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only') = 'on', \
                 {SETTINGS}"
            ),
            &[
                (&CLIENT_CONNECTION_CHECK_INTERVAL, Type::TEXT),
                (&Some(lock_timeout_setting(lock_timeout)), Type::TEXT),
            ],
        )
        .await?;
    let server_version: i32 = row.get(0);
    let backend_pid: i32 = row.get(1);
    let server = ServerState {
        in_recovery: row.get(2),
        read_only: row.get(3),
    };
    Ok(Session {
        client,
        server_version,
        backend_pid,
        server,
        host: 0,
        created_database: false,
        _registered: registered,
    })
}

/// Errors that a later attempt may not see: the server is down, starting, restarting, full, or
/// not answering within connect_timeout.
fn is_healable(attempt: &Attempt) -> bool {
    let err = match attempt {
        // A standby may be promoted, a primary may come back: a failover heals.
        Attempt::TimedOut(_) | Attempt::Unfit(_) => return true,
        Attempt::Failed(err) => err,
    };
    if let Some(db) = err.as_db_error() {
        return matches!(
            *db.code(),
            SqlState::CANNOT_CONNECT_NOW
                | SqlState::TOO_MANY_CONNECTIONS
                | SqlState::ADMIN_SHUTDOWN
        );
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            );
        }
        source = s.source();
    }
    // Connection closed during startup (server restarting) or a timeout.
    err.is_closed() || err.to_string().contains("timed out")
}

/// The error of a connection attempt that found no host to use: what the most talkative host
/// said, and with several hosts what each one said, by `host:port`.
fn connect_error(cfg: &DbConfig, tried: &Tried, waited: Duration, waiting: bool) -> Error {
    let error = match tried.worst() {
        Attempt::Unfit(why) => unfit_error(cfg, tried, *why, waited, waiting),
        worst => attempt_error(cfg, worst, waited, waiting),
    };
    match (error, tried.list()) {
        (Error::Connect { message, hint }, Some(list)) => Error::Connect {
            message: format!("{message} (tried {list})"),
            hint,
        },
        (error, _) => error,
    }
}

/// The server answered and is not the kind the command wants: name it, say why, and that
/// nothing was changed.
fn unfit_error(
    cfg: &DbConfig,
    tried: &Tried,
    why: Unfit,
    waited: Duration,
    waiting: bool,
) -> Error {
    let target = cfg.display_target();
    let waited_note = if waiting {
        format!("; gave up after waiting {:.1}s", waited.as_secs_f64())
    } else {
        String::new()
    };
    let (what, none) = match (cfg.access, why) {
        (Access::Write, _) => (
            "this command changes the database and needs a writable primary",
            "this command changes the database, and none of its hosts is a writable primary",
        ),
        (Access::Read, Unfit::NotReadOnly) => (
            "target_session_attrs=read-only asks for a read-only server",
            "none of its hosts is read-only, as target_session_attrs=read-only asks",
        ),
        (Access::Read, _) => (
            "target_session_attrs=read-write asks for a writable server",
            "none of its hosts is writable, as target_session_attrs=read-write asks",
        ),
    };
    let message = match tried.hosts.as_slice() {
        [(host, _)] => format!(
            "cannot use {target}: {host} is {}, and {what}{waited_note}; nothing was changed",
            why.reason()
        ),
        _ => format!("cannot use {target}: {none}{waited_note}; nothing was changed"),
    };
    let hint = match (cfg.access, why) {
        (Access::Write, Unfit::ReadOnlySetting) => {
            "turn default_transaction_read_only off for dhctl's role or database (ALTER ROLE … \
             SET default_transaction_read_only = off), or point DATABASE_URL at a writable primary"
        }
        (Access::Write, _) => {
            "point DATABASE_URL at the primary, or list every node with \
             target_session_attrs=read-write (postgres://user@db1:5432,db2:5432/datahub?\
             target_session_attrs=read-write) and dhctl finds the primary; during a failover, \
             --wait 60s keeps trying until a standby is promoted (docs/failover.md)"
        }
        (Access::Read, Unfit::NotReadOnly) => {
            "list a standby in DATABASE_URL, or drop target_session_attrs=read-only"
        }
        (Access::Read, _) => {
            "list the primary in DATABASE_URL too, or drop target_session_attrs=read-write: \
             status, verify and lint --pending run on a standby"
        }
    };
    Error::Connect {
        message,
        hint: Some(hint.into()),
    }
}

fn attempt_error(cfg: &DbConfig, attempt: &Attempt, waited: Duration, waiting: bool) -> Error {
    let target = cfg.display_target();
    let err = match attempt {
        // connect_error words these; a plain line should one ever reach here.
        Attempt::Unfit(why) => {
            return Error::Connect {
                message: format!("cannot use {target}: the server is {}", why.reason()),
                hint: None,
            }
        }
        Attempt::Failed(err) => err,
        Attempt::TimedOut(limit) => {
            let waited_note = if waiting {
                format!("; gave up after waiting {:.1}s", waited.as_secs_f64())
            } else {
                String::new()
            };
            return Error::Connect {
                message: format!(
                    "cannot connect to {target}: no answer within connect_timeout ({}s){waited_note}",
                    limit.as_secs_f64()
                ),
                hint: Some(if waiting {
                    "something accepted the connection but never completed the startup (a \
                     stalled server, proxy or TLS terminator): check the host and port, raise \
                     --wait, or set connect_timeout=SECONDS in DATABASE_URL"
                        .into()
                } else {
                    "something accepted the connection but never completed the startup (a \
                     stalled server, proxy or TLS terminator): check the host and port; --wait \
                     60s retries, connect_timeout=SECONDS in DATABASE_URL bounds each attempt"
                        .into()
                }),
            };
        }
    };
    if let Some(db) = err.as_db_error() {
        let hint = match *db.code() {
            SqlState::INVALID_PASSWORD => Some(
                "the password was refused: check it in DATABASE_URL (percent-encoded), \
                 PGPASSWORD or ~/.pgpass"
                    .to_string(),
            ),
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION => Some(
                "check the user name, and that pg_hba.conf lets this role reach this database \
                 from this address with this sslmode"
                    .to_string(),
            ),
            SqlState::INSUFFICIENT_PRIVILEGE => {
                Some("the role lacks CONNECT on this database".to_string())
            }
            _ => None,
        };
        return Error::Connect {
            message: format!(
                "cannot connect to {target}: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
            hint,
        };
    }
    let detail = describe_driver_error(err);
    if detail.contains("password missing") {
        return Error::Connect {
            message: format!(
                "cannot connect to {target}: the server asks for a password and none was given"
            ),
            hint: Some(
                "set it in DATABASE_URL (postgres://user:PASSWORD@host/db, percent-encoded), \
                 PGPASSWORD or ~/.pgpass; not with --database-url, which other local users can \
                 read in the process list"
                    .into(),
            ),
        };
    }
    if detail.contains("channel binding") || detail.contains("SCRAM") || detail.contains("SASL") {
        return Error::Connect {
            message: format!("cannot connect to {target}: {detail}"),
            hint: Some(
                "channel_binding=require needs SCRAM-SHA-256 authentication over TLS (sslmode \
                 require or stronger, a scram-sha-256 password on the server); use \
                 channel_binding=prefer to allow other methods"
                    .into(),
            ),
        };
    }
    if detail.contains("does not support TLS") {
        return Error::Connect {
            message: format!("cannot connect to {target}: {detail}"),
            hint: Some(
                "the server has TLS turned off: turn ssl on in postgresql.conf, or use \
                 sslmode=prefer (TLS when offered) or sslmode=disable"
                    .into(),
            ),
        };
    }
    if detail.contains("TLS") || detail.contains("certificate") {
        return Error::Connect {
            message: format!("cannot connect to {target}: {detail}"),
            hint: Some(
                "the server's certificate must chain to the CA given with sslrootcert= (or \
                 --ssl-root-cert) and, with sslmode=verify-full, name the host in its \
                 subjectAltName (the subject CN is not read); sslmode=verify-ca skips the name \
                 check, sslmode=disable turns TLS off"
                    .into(),
            ),
        };
    }
    let waited_note = if waiting {
        format!(" after waiting {:.1}s", waited.as_secs_f64())
    } else {
        String::new()
    };
    Error::Connect {
        message: format!("cannot connect to {target}{waited_note}: {detail}"),
        hint: Some(if waiting {
            "is the server running and reachable? raise --wait if it is still starting".into()
        } else {
            "is the server running and reachable? --wait 60s retries while it starts".into()
        }),
    }
}

/// Why [`create_database`] did not create the database.
enum Create {
    /// No host of the maintenance database could be used (none writable, none answering).
    NoHost(Tried),
    Failed(Error),
}

/// Creates the configured database through the maintenance database `postgres`.
async fn create_database(
    cfg: &DbConfig,
    tls: Option<&MakeRustlsConnect>,
    deadline: Option<Instant>,
) -> std::result::Result<(), Create> {
    let dbname = cfg.dbname().to_string();
    let mut maintenance = cfg.pg.clone();
    maintenance.dbname("postgres");
    let session = open(
        &maintenance,
        cfg.wanted(),
        tls,
        &cfg.tls,
        deadline,
        cfg.lock_timeout,
    )
    .await
    .map_err(Create::NoHost)?;
    let sql = format!("CREATE DATABASE {}", ident::quote_ident(&dbname));
    match session.client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(database = %dbname, "created database");
            Ok(())
        }
        // Another runner created it first: that is what we wanted.
        Err(e) if matches!(e.code(), Some(c) if *c == SqlState::DUPLICATE_DATABASE || *c == SqlState::UNIQUE_VIOLATION) => {
            Ok(())
        }
        Err(e) => Err(Create::Failed(Error::Connect {
            message: format!(
                "database \"{dbname}\" does not exist on {} and could not be created: {}",
                describe(&maintenance),
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| describe_driver_error(&e))
            ),
            hint: Some(
                "create it as a role with CREATEDB, or give DATABASE_URL an existing database"
                    .into(),
            ),
        })),
    }
}

/// Refuses servers older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(session: &Session) -> Result<()> {
    if session.server_version < MIN_SERVER_VERSION {
        return Err(Error::Connect {
            message: format!(
                "PostgreSQL {}.{} is not supported; dhctl needs 14 or newer",
                session.server_version / 10000,
                session.server_version % 10000 / 100
            ),
            hint: Some("upgrade the server (DETACH PARTITION … CONCURRENTLY needs 14)".into()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(access: Access, hosts: &[(&str, u16)]) -> DbConfig {
        let mut pg = tokio_postgres::Config::new();
        pg.user("app").password("hunter2").dbname("datahub");
        for (host, port) in hosts {
            pg.host(*host).port(*port);
        }
        DbConfig {
            pg,
            tls: tls::TlsSettings {
                verify: tls::Verify::Nothing,
                root_cert: None,
                client: None,
            },
            access,
            wait: None,
            lock_wait: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(2),
            lock_retries: 5,
            history_table: None,
        }
    }

    #[test]
    fn a_standby_is_named_with_why_and_never_the_password() {
        let one = cfg(Access::Write, &[("db2", 5433)]);
        let tried = Tried {
            hosts: vec![("db2:5433".into(), Attempt::Unfit(Unfit::Standby))],
        };
        let e = connect_error(&one, &tried, Duration::ZERO, false);
        let text = format!("{e} {}", e.hint().unwrap_or_default());
        assert_eq!(e.exit_code(), 2);
        assert!(text.contains("db2:5433 is a standby in recovery"), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
        assert!(text.contains("target_session_attrs=read-write"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("gave up"),
            "{text}"
        );
    }

    #[test]
    fn several_hosts_are_each_listed_and_the_refusal_outranks_silence() {
        let two = cfg(Access::Write, &[("db1", 5432), ("db2", 5432)]);
        let tried = Tried {
            hosts: vec![
                ("db1:5432".into(), Attempt::TimedOut(Duration::from_secs(3))),
                ("db2:5432".into(), Attempt::Unfit(Unfit::ReadOnlySetting)),
            ],
        };
        assert!(matches!(tried.worst(), Attempt::Unfit(_)));
        assert!(is_healable(tried.worst()), "a failover heals under --wait");
        let e = connect_error(&two, &tried, Duration::from_secs(5), true);
        let text = e.to_string();
        assert!(
            text.contains("none of its hosts is a writable primary"),
            "{text}"
        );
        assert!(text.contains("gave up after waiting 5.0s"), "{text}");
        assert!(
            text.contains("db1:5432: no answer within connect_timeout (3s)"),
            "{text}"
        );
        assert!(text.contains("db2:5432: read-only by setting"), "{text}");
        assert!(e.hint().unwrap().contains("default_transaction_read_only"));
    }

    #[test]
    fn a_reading_command_asks_for_what_the_string_says_and_a_writing_one_for_read_write() {
        let mut read = cfg(Access::Read, &[("db1", 5432)]);
        assert_eq!(read.wanted(), TargetSessionAttrs::Any);
        read.pg.target_session_attrs(TargetSessionAttrs::ReadOnly);
        assert_eq!(read.wanted(), TargetSessionAttrs::ReadOnly);
        let mut write = cfg(Access::Write, &[("db1", 5432)]);
        write.pg.target_session_attrs(TargetSessionAttrs::Any);
        assert_eq!(write.wanted(), TargetSessionAttrs::ReadWrite);
    }
}
