//! `dhctl-health`'s settings, read from the environment (after `.env`), validated once at start.
//!
//! The variable names are the gateway's own (`PORT`, `DATABASE_URL`, `DATABASE_POOL_MIN`/`MAX`,
//! `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`), so one deployment's environment
//! configures both; `HEALTH_*` tunes the server itself. docs/health.md lists every one.
//! Messages name the variable and never echo a connection string or a password.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::parse_database_url;
use crate::db::ident::TableName;
use crate::db::tls::TlsSettings;
use crate::error::{Error, Result};
use crate::source::Source;

/// Every variable dhctl-health reads, its default and meaning: `dhctl-health --help` prints
/// this table, and a unit test checks that `from_lookup` reads nothing that is not in it.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("HOST", "0.0.0.0", "address to bind"),
    ("PORT", "3000", "port to bind (0: any free port)"),
    (
        "DATABASE_URL",
        "required",
        "PostgreSQL URL or key=value string, as for dhctl",
    ),
    (
        "DHCTL_SSL_ROOT_CERT",
        "",
        "CA file for PostgreSQL's certificate",
    ),
    ("DATABASE_POOL_MIN", "2", "connections opened at start"),
    ("DATABASE_POOL_MAX", "20", "most pooled connections"),
    (
        "DATABASE_POOL_WAIT_TIMEOUT_MS",
        "check timeout",
        "wait for a free pooled connection",
    ),
    (
        "REDIS_URL",
        "",
        "redis://[:password@]host:port[/db] or rediss:// (TLS)",
    ),
    (
        "REDIS_HOST",
        "localhost",
        "Redis host when REDIS_URL is unset",
    ),
    ("REDIS_PORT", "6379", "Redis port when REDIS_URL is unset"),
    (
        "REDIS_PASSWORD",
        "",
        "Redis password (also applies to REDIS_URL)",
    ),
    (
        "REDIS_TLS_CA_FILE",
        "",
        "CA file (PEM) for a rediss:// server",
    ),
    (
        "HEALTH_CHECK_TIMEOUT_MS",
        "1000",
        "bound on each readiness check",
    ),
    (
        "HEALTH_READY_CACHE_MS",
        "500",
        "how long a readiness result answers new probes",
    ),
    (
        "DHCTL_READY_REQUIRE_MIGRATED",
        "false",
        "readiness fails while migrations are pending",
    ),
    (
        "DHCTL_MIGRATIONS_DIR",
        "embedded",
        "migrations that check and /metrics compare with",
    ),
    (
        "DHCTL_PARTITIONS_DIR",
        "embedded",
        "partition policies /metrics reports on",
    ),
    (
        "DHCTL_HISTORY_TABLE",
        "found by name",
        "the history table as schema.name, as for dhctl",
    ),
    ("HEALTH_MAX_CONNECTIONS", "1024", "open connections at once"),
    (
        "HEALTH_MAX_HEADER_BYTES",
        "8192",
        "request line plus headers (beyond: 431)",
    ),
    (
        "HEALTH_HEADER_READ_TIMEOUT_MS",
        "5000",
        "time to send a request head",
    ),
    (
        "HEALTH_WRITE_TIMEOUT_MS",
        "5000",
        "a response write stalled this long closes the connection",
    ),
    (
        "HEALTH_MAX_REQUESTS_PER_CONNECTION",
        "1000",
        "requests before the connection is closed",
    ),
    (
        "HEALTH_DRAIN_TIMEOUT_MS",
        "10000",
        "after SIGTERM, time for in-flight requests",
    ),
    ("RUST_LOG", "info", "log filter (tracing EnvFilter syntax)"),
];

/// [`VARIABLES`] as the ENVIRONMENT section of `--help`.
pub fn environment_help() -> String {
    let width = VARIABLES
        .iter()
        .map(|(name, _, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from(
        "Environment (a .env file in the working directory is read first; empty values count \
         as unset; see docs/health.md):\n",
    );
    for (name, default, meaning) in VARIABLES {
        let default = match *default {
            "" => String::new(),
            d => format!(" [default: {d}]"),
        };
        text.push_str(&format!("  {name:width$}  {meaning}{default}\n"));
    }
    text
}

/// Everything `serve` needs. Built by [`HealthConfig::from_env`] or by hand in tests.
#[derive(Clone)]
pub struct HealthConfig {
    /// `HOST` (0.0.0.0): the address to bind.
    pub host: String,
    /// `PORT` (3000); 0 picks a free port.
    pub port: u16,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    /// `HEALTH_CHECK_TIMEOUT_MS` (1000): the bound on each readiness check.
    pub check_timeout: Duration,
    /// `HEALTH_READY_CACHE_MS` (500): a readiness result younger than this answers new probes
    /// without I/O, which bounds the dependencies' load at about 1/cache checks per second
    /// whatever the probe rate. 0 keeps only single flight.
    pub ready_cache: Duration,
    /// `DHCTL_READY_REQUIRE_MIGRATED` (false): readiness also fails while migrations are pending.
    pub require_migrated: bool,
    /// `DHCTL_MIGRATIONS_DIR` (the embedded set): the migrations that the migrations check and
    /// `/metrics` compare the history with.
    pub migrations: Source,
    /// `DHCTL_PARTITIONS_DIR` (the embedded set): the policies whose tables `/metrics` reports.
    pub partitions: Source,
    /// `DHCTL_HISTORY_TABLE` (found by name): where the history table is, as dhctl's
    /// `--history-table` says.
    pub history_table: Option<TableName>,
    pub limits: Limits,
}

/// What bounds one server: connections, header size and time, shutdown.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `HEALTH_MAX_CONNECTIONS` (1024): open connections at once; past it, new ones wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
    /// `HEALTH_MAX_HEADER_BYTES` (8192): request line plus headers; beyond it hyper answers 431.
    pub max_header_bytes: usize,
    /// `HEALTH_HEADER_READ_TIMEOUT_MS` (5000): a connection that has not sent a complete request
    /// head within this (idle keep-alive connections included) is closed, so slow or idle
    /// clients cannot hold connection slots for long.
    pub header_read_timeout: Duration,
    /// `HEALTH_WRITE_TIMEOUT_MS` (5000): a response write that moves no byte for this long
    /// fails and closes the connection, so a client that never reads its answers cannot hold
    /// a slot (the header read timeout only bounds the client's sending).
    pub write_timeout: Duration,
    /// `HEALTH_MAX_REQUESTS_PER_CONNECTION` (1000, nginx's `keepalive_requests`): the answer to
    /// the last one says `Connection: close`, so pipelining cannot keep a connection forever.
    pub max_requests_per_connection: usize,
    /// `HEALTH_DRAIN_TIMEOUT_MS` (10000): after SIGTERM, how long in-flight requests may take.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_header_bytes: 8192,
            header_read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_requests_per_connection: 1000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL side: a parsed config (never the raw URL) and the pool's bounds.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub pg: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// `DATABASE_POOL_MIN` (2): connections opened at start, so the first probe is fast.
    pub pool_min: usize,
    /// `DATABASE_POOL_MAX` (20).
    pub pool_max: usize,
    /// `DATABASE_POOL_WAIT_TIMEOUT_MS` (the check timeout): the wait for a free connection.
    pub wait_timeout: Duration,
}

/// The Redis side: where, and how to describe it in logs without the password.
#[derive(Clone)]
pub struct RedisSettings {
    pub info: ConnectionInfo,
    /// `REDIS_TLS_CA_FILE`, read and checked at start: the CA (PEM) that `rediss://` verifies
    /// the server's certificate against instead of the Mozilla roots compiled in.
    pub tls_ca: Option<Vec<u8>>,
}

impl RedisSettings {
    /// `host:port/db`, for log lines. Never includes the password.
    pub fn describe(&self) -> String {
        let db = self.info.redis_settings().db();
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}/{db}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}/{db} (tls)"),
            ConnectionAddr::Unix(path) => format!("{}/{db}", path.display()),
            _ => format!("redis/{db}"),
        }
    }

    pub fn password(&self) -> Option<&str> {
        self.info.redis_settings().password()
    }
}

impl HealthConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<HealthConfig> {
        HealthConfig::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup` (the environment, or a table in unit tests). Empty values
    /// count as unset, as they do for most shells' `VAR=` lines in `.env` files.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<HealthConfig> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let check_timeout = millis(&get, "HEALTH_CHECK_TIMEOUT_MS", 1000)?;
        if check_timeout.is_zero() {
            return Err(Error::usage("HEALTH_CHECK_TIMEOUT_MS must be at least 1"));
        }
        // The schema reads set it (three quarters of what is left of it) as their lock_timeout
        // and statement_timeout, which PostgreSQL takes up to INT_MAX milliseconds only.
        if check_timeout.as_millis() > i32::MAX as u128 {
            return Err(Error::usage(format!(
                "HEALTH_CHECK_TIMEOUT_MS must be at most {} (about 24 days: PostgreSQL's \
                 largest lock_timeout and statement_timeout)",
                i32::MAX
            )));
        }
        let database = database(&get, check_timeout)?;
        let redis = redis(&get)?;
        let require_migrated = flag(&get, "DHCTL_READY_REQUIRE_MIGRATED")?;
        let dir = |key: &str| Source::dir_or_embedded(get(key).map(PathBuf::from).as_deref());
        let history_table = match get("DHCTL_HISTORY_TABLE") {
            None => None,
            Some(text) => Some(
                // dhctl's parser, untrimmed: dhctl (its --history-table) and dhctl-health take
                // the same view of one value, spaces included.
                TableName::parse(&text)
                    .map_err(|e| Error::usage(format!("DHCTL_HISTORY_TABLE: {e}")))?,
            ),
        };
        let limits = Limits {
            max_connections: number(&get, "HEALTH_MAX_CONNECTIONS", 1024usize)?.max(1),
            // hyper refuses a read buffer under 8 KiB, and a smaller head limit helps no one.
            max_header_bytes: number(&get, "HEALTH_MAX_HEADER_BYTES", 8192usize)?
                .clamp(1024, 1 << 20),
            header_read_timeout: millis(&get, "HEALTH_HEADER_READ_TIMEOUT_MS", 5000)?
                .max(Duration::from_millis(100)),
            write_timeout: millis(&get, "HEALTH_WRITE_TIMEOUT_MS", 5000)?
                .max(Duration::from_millis(100)),
            max_requests_per_connection: number(
                &get,
                "HEALTH_MAX_REQUESTS_PER_CONNECTION",
                1000usize,
            )?
            .max(1),
            drain_timeout: millis(&get, "HEALTH_DRAIN_TIMEOUT_MS", 10_000)?,
        };
        Ok(HealthConfig {
            host: get("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: number(&get, "PORT", 3000u16)?,
            database,
            redis,
            check_timeout,
            ready_cache: millis(&get, "HEALTH_READY_CACHE_MS", 500)?,
            require_migrated,
            migrations: dir("DHCTL_MIGRATIONS_DIR"),
            partitions: dir("DHCTL_PARTITIONS_DIR"),
            history_table,
            limits,
        })
    }
}

fn database(
    get: &impl Fn(&str) -> Option<String>,
    check_timeout: Duration,
) -> Result<DatabaseSettings> {
    let url = get("DATABASE_URL").ok_or_else(|| {
        Error::usage_hint(
            "no database given",
            "set DATABASE_URL, e.g. postgres://gateway:…@db:5432/datahub",
        )
    })?;
    // DHCTL_SSL_ROOT_CERT ranks below an sslrootcert= in the URL (docs/security.md).
    let root = get("DHCTL_SSL_ROOT_CERT").map(PathBuf::from);
    let (mut pg, tls) = parse_database_url(&url, root.as_deref())?;
    // parse_database_url names sessions "dhctl" unless the URL chose a name; the health
    // server's sessions should be told apart from the migrator's in pg_stat_activity.
    if pg.get_application_name() == Some("dhctl") {
        pg.application_name("dhctl-health");
    }
    let pool_min = number(get, "DATABASE_POOL_MIN", 2usize)?;
    let pool_max = number(get, "DATABASE_POOL_MAX", 20usize)?;
    if pool_max == 0 || pool_min > pool_max {
        return Err(Error::usage(format!(
            "DATABASE_POOL_MIN ({pool_min}) must not exceed DATABASE_POOL_MAX ({pool_max}), \
             which must be at least 1"
        )));
    }
    Ok(DatabaseSettings {
        pg,
        tls,
        pool_min,
        pool_max,
        wait_timeout: millis(
            get,
            "DATABASE_POOL_WAIT_TIMEOUT_MS",
            check_timeout.as_millis() as u64,
        )?,
    })
}

/// `REDIS_URL` wins; otherwise `REDIS_HOST` (localhost) and `REDIS_PORT` (6379), the seed's
/// defaults. `REDIS_PASSWORD` applies to either, so the URL can stay free of secrets.
fn redis(get: &impl Fn(&str) -> Option<String>) -> Result<RedisSettings> {
    let info = match get("REDIS_URL") {
        Some(url) => url.as_str().into_connection_info().map_err(|_| {
            // The crate's parse error is generic; ours names the variable, never the value.
            Error::usage_hint(
                "REDIS_URL is not a valid Redis URL",
                "use redis://[:password@]host:6379[/db] (rediss:// for TLS), or REDIS_HOST, \
                 REDIS_PORT and REDIS_PASSWORD",
            )
        })?,
        None => {
            let host = get("REDIS_HOST").unwrap_or_else(|| "localhost".into());
            let port = number(get, "REDIS_PORT", 6379u16)?;
            ConnectionAddr::Tcp(host, port)
                .into_connection_info()
                .map_err(|_| Error::usage("REDIS_HOST is not a valid host"))?
        }
    };
    let info = match get("REDIS_PASSWORD") {
        Some(pw) => {
            let settings: RedisConnectionInfo = info.redis_settings().clone().set_password(pw);
            info.set_redis_settings(settings)
        }
        None => info,
    };
    let tls_ca = redis_tls(&info, get("REDIS_TLS_CA_FILE"))?;
    Ok(RedisSettings { info, tls_ca })
}

/// The TLS rules for Redis, the same as for PostgreSQL under `verify-full`: `rediss://` always
/// verifies the certificate and host name, against `REDIS_TLS_CA_FILE` when set, else the
/// Mozilla roots compiled in (which managed services' certificates chain to). Nothing
/// downgrades in silence: a CA file with a plain `redis://` target is refused rather than
/// ignored, and the redis crate's `#insecure` (no verification at all) is refused.
fn redis_tls(info: &ConnectionInfo, ca_file: Option<String>) -> Result<Option<Vec<u8>>> {
    let insecure = match info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => *insecure,
        _ => {
            return match ca_file {
                None => Ok(None),
                Some(_) => Err(Error::usage_hint(
                    "REDIS_TLS_CA_FILE is set but the Redis connection is not TLS",
                    "use REDIS_URL=rediss://host:port (TLS), or unset REDIS_TLS_CA_FILE",
                )),
            };
        }
    };
    if insecure {
        return Err(Error::usage_hint(
            "REDIS_URL asks for TLS without certificate verification (#insecure), which \
             dhctl-health does not do",
            "remove #insecure; for a private CA, set REDIS_TLS_CA_FILE to its certificate (PEM)",
        ));
    }
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .map_err(|e| Error::usage(format!("REDIS_TLS_CA_FILE: cannot read {path}: {e}")))?;
    let mut reader = std::io::BufReader::new(pem.as_slice());
    let mut certs = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        cert.map_err(|e| {
            Error::usage(format!(
                "REDIS_TLS_CA_FILE: {path} is not a PEM certificate file: {e}"
            ))
        })?;
        certs += 1;
    }
    if certs == 0 {
        return Err(Error::usage(format!(
            "REDIS_TLS_CA_FILE: no PEM certificate found in {path} \
             (expected -----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(Some(pem))
}

fn number<T: FromStr>(get: &impl Fn(&str) -> Option<String>, key: &str, default: T) -> Result<T> {
    match get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            Error::usage(format!(
                "{key} must be a non-negative whole number, not {:?}",
                text.chars().take(40).collect::<String>()
            ))
        }),
    }
}

fn millis(get: &impl Fn(&str) -> Option<String>, key: &str, default: u64) -> Result<Duration> {
    number(get, key, default).map(Duration::from_millis)
}

fn flag(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<bool> {
    match get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(Error::usage(format!("{key} must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<HealthConfig> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HealthConfig::from_lookup(move |key| {
            pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn every_variable_read_is_listed_for_help() {
        let read = std::cell::RefCell::new(Vec::new());
        for set in [
            &[("DATABASE_URL", "postgres://u@h/db")][..],
            &[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("REDIS_URL", "redis://h"),
                ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
                ("DHCTL_HISTORY_TABLE", "audit.history"),
            ][..],
        ] {
            let _ = HealthConfig::from_lookup(|key| {
                read.borrow_mut().push(key.to_string());
                set.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            });
        }
        for key in read.into_inner() {
            assert!(
                VARIABLES.iter().any(|(name, _, _)| *name == key),
                "{key} is read but not listed in VARIABLES"
            );
        }
        assert!(environment_help().contains("HEALTH_WRITE_TIMEOUT_MS"));
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = config(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 3000));
        assert_eq!((c.database.pool_min, c.database.pool_max), (2, 20));
        assert_eq!(c.check_timeout, Duration::from_millis(1000));
        assert_eq!(c.redis.describe(), "localhost:6379/0");
        assert_eq!(c.database.pg.get_application_name(), Some("dhctl-health"));
        assert!(!c.require_migrated);
        assert_eq!(
            (&c.migrations, &c.partitions, &c.history_table),
            (&Source::Embedded, &Source::Embedded, &None)
        );
    }

    #[test]
    fn the_history_table_and_the_folders_are_dhctls_variables() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DHCTL_HISTORY_TABLE", "audit.history"),
            ("DHCTL_MIGRATIONS_DIR", "/srv/sql"),
            ("DHCTL_PARTITIONS_DIR", "/srv/partitions"),
        ])
        .unwrap();
        let table = c.history_table.unwrap();
        assert_eq!(
            (table.schema.as_str(), table.name.as_str()),
            ("audit", "history")
        );
        assert_eq!(c.migrations, Source::Dir("/srv/sql".into()));
        assert_eq!(c.partitions, Source::Dir("/srv/partitions".into()));
        let err = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DHCTL_HISTORY_TABLE", "history"),
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("DHCTL_HISTORY_TABLE"), "{err}");
        assert!(err.to_string().contains("schema.name"), "{err}");
    }

    #[test]
    fn a_check_timeout_postgresql_cannot_take_is_refused_at_start() {
        let with = |ms: &str| {
            config(&[
                ("DATABASE_URL", "postgres://u@h/db"),
                ("HEALTH_CHECK_TIMEOUT_MS", ms),
            ])
        };
        assert!(with("2147483647").is_ok());
        let err = with("2147483648").err().unwrap();
        assert!(err.to_string().contains("HEALTH_CHECK_TIMEOUT_MS"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_history_table_with_spaces_is_refused_as_dhctl_refuses_it() {
        let err = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DHCTL_HISTORY_TABLE", " public.refinery_schema_history "),
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("DHCTL_HISTORY_TABLE"), "{err}");
    }

    #[test]
    fn passwords_are_never_described() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:db-secret@h/db"),
            ("REDIS_URL", "redis://:url-secret@127.0.0.1:6380/2"),
            ("REDIS_PASSWORD", "redis-secret"),
        ])
        .unwrap();
        assert_eq!(c.redis.password(), Some("redis-secret"));
        assert_eq!(c.redis.describe(), "127.0.0.1:6380/2");
    }

    #[test]
    fn bad_values_name_the_variable_without_echoing_urls() {
        let err = config(&[("DATABASE_URL", "postgres://u@h/db"), ("PORT", "http")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("PORT"), "{err}");
        let err = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("REDIS_URL", "nope://:hunter2@x"),
        ])
        .err()
        .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = config(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DATABASE_POOL_MIN", "5"),
            ("DATABASE_POOL_MAX", "2"),
        ])
        .err()
        .unwrap();
        assert!(err.to_string().contains("DATABASE_POOL_MIN"), "{err}");
        assert!(config(&[]).is_err());
    }
}
