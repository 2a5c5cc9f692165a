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
use crate::db::tls::TlsSettings;
use crate::error::{Error, Result};
use crate::migrations::Source;

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
    pub require_migrated: Option<Source>,
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
    /// `HEALTH_DRAIN_TIMEOUT_MS` (10000): after SIGTERM, how long in-flight requests may take.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_header_bytes: 8192,
            header_read_timeout: Duration::from_secs(5),
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
        let database = database(&get, check_timeout)?;
        let redis = redis(&get)?;
        let require_migrated = match flag(&get, "DHCTL_READY_REQUIRE_MIGRATED")? {
            false => None,
            true => Some(match get("DHCTL_MIGRATIONS_DIR") {
                Some(dir) => Source::Dir(PathBuf::from(dir)),
                None => Source::Embedded,
            }),
        };
        let limits = Limits {
            max_connections: number(&get, "HEALTH_MAX_CONNECTIONS", 1024usize)?.max(1),
            // hyper refuses a read buffer under 8 KiB, and a smaller head limit helps no one.
            max_header_bytes: number(&get, "HEALTH_MAX_HEADER_BYTES", 8192usize)?
                .clamp(1024, 1 << 20),
            header_read_timeout: millis(&get, "HEALTH_HEADER_READ_TIMEOUT_MS", 5000)?
                .max(Duration::from_millis(100)),
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
            limits,
        })
    }

    /// The passwords this configuration holds; the log writer and the response bodies scrub them.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(pw) = self.database.pg.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        if let Some(pw) = self.redis.password() {
            secrets.push(pw.to_string());
        }
        secrets.retain(|s| !s.is_empty());
        secrets
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
                "use redis://[:password@]host:6379[/db], or REDIS_HOST, REDIS_PORT and REDIS_PASSWORD",
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
    Ok(RedisSettings { info })
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
    fn defaults_follow_the_seed() {
        let c = config(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 3000));
        assert_eq!((c.database.pool_min, c.database.pool_max), (2, 20));
        assert_eq!(c.check_timeout, Duration::from_millis(1000));
        assert_eq!(c.redis.describe(), "localhost:6379/0");
        assert_eq!(c.database.pg.get_application_name(), Some("dhctl-health"));
        assert!(c.require_migrated.is_none());
    }

    #[test]
    fn passwords_are_collected_for_scrubbing_but_never_described() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:db-secret@h/db"),
            ("REDIS_URL", "redis://127.0.0.1:6380/2"),
            ("REDIS_PASSWORD", "redis-secret"),
        ])
        .unwrap();
        assert_eq!(c.secrets(), vec!["db-secret", "redis-secret"]);
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
