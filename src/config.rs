//! Turns the parsed command line (flags, environment, .env) into validated settings.
//!
//! The connection string is parsed here, once; everything downstream gets a
//! `tokio_postgres::Config` and never sees the raw string, so the password cannot leak through
//! an error message that quotes it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use crate::cli::{ConnectArgs, LockArgs};
use crate::db::tls::{TlsSettings, Verify};
use crate::error::{Error, Result};

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything needed to open dhctl's session.
#[derive(Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// Retry healable connection failures for this long.
    pub wait: Option<Duration>,
    pub lock_wait: Duration,
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    /// `--history-table schema.name`; None: find refinery_schema_history by name.
    pub history_table: Option<crate::migrations::history::TableName>,
}

impl DbConfig {
    /// `locks` is `LockArgs::default()` for commands that take no lock.
    pub fn from_args(args: &ConnectArgs, locks: &LockArgs) -> Result<DbConfig> {
        let url = args.database_url.as_deref().ok_or_else(|| {
            Error::usage_hint(
                "no database given",
                "set DATABASE_URL (or pass --database-url), e.g. postgres://postgres@127.0.0.1:5432/datahub",
            )
        })?;
        let (pg, mut tls) = parse_database_url(url)?;
        if let Some(root) = &args.ssl_root_cert {
            tls.root_cert = Some(root.clone());
        }
        if tls.root_cert.is_some() && tls.verify == Verify::Nothing {
            // libpq: with a root certificate, prefer/require verify the chain.
            tls.verify = Verify::Chain;
        }
        Ok(DbConfig {
            pg,
            tls,
            wait: args.wait,
            lock_wait: locks.lock_wait,
            lock_timeout: locks.lock_timeout,
            lock_retries: locks.lock_retries,
            history_table: args.history_table.clone(),
        })
    }

    /// `user@host:port/dbname`, for messages. Never includes the password.
    pub fn display_target(&self) -> String {
        describe(&self.pg)
    }

    pub fn dbname(&self) -> &str {
        self.pg
            .get_dbname()
            .or(self.pg.get_user())
            .unwrap_or("postgres")
    }
}

/// Parses a URL or key=value connection string and applies dhctl's session defaults.
/// `sslmode=verify-ca|verify-full` and `sslrootcert=FILE`, which the driver does not know, are
/// taken out first and returned as TLS settings.
pub fn parse_database_url(url: &str) -> Result<(tokio_postgres::Config, TlsSettings)> {
    let (url, tls) = extract_tls_params(url.trim());
    let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| {
        // The driver's parse errors name the option, never echo the string, so they are safe.
        Error::usage_hint(
            format!("DATABASE_URL is not a valid connection string: {e}"),
            "use postgres://user:password@host:5432/dbname or key=value pairs (host=… dbname=…)",
        )
    })?;
    if pg.get_hosts().is_empty() {
        pg.host("127.0.0.1");
    }
    if pg.get_application_name().is_none() {
        pg.application_name("dhctl");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if tls.verify != Verify::Nothing {
        pg.ssl_mode(SslMode::Require);
    }
    Ok((pg, tls))
}

/// Removes the libpq TLS parameters tokio-postgres rejects, from a URL's query or a key=value
/// string, and turns them into settings.
fn extract_tls_params(url: &str) -> (String, TlsSettings) {
    let mut tls = TlsSettings {
        verify: Verify::Nothing,
        root_cert: None,
    };
    let mut take = |key: &str, value: &str| -> bool {
        match (key, value) {
            ("sslmode", "verify-ca") => tls.verify = Verify::Chain,
            ("sslmode", "verify-full") => tls.verify = Verify::Full,
            ("sslrootcert", path) => tls.root_cert = Some(PathBuf::from(path)),
            _ => return false,
        }
        true
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), tls);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, &percent_decode(v))
            })
            .collect();
        let cleaned = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (cleaned, tls)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k.trim(), v.trim_matches('\''))
            })
            .collect();
        (kept.join(" "), tls)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `user@host:port/dbname` for any config. Never includes the password.
pub fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("?");
    let db = pg.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

pub fn wants_tls(pg: &tokio_postgres::Config) -> bool {
    !matches!(pg.get_ssl_mode(), SslMode::Disable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_never_shows_the_password() {
        let (pg, _) =
            parse_database_url("postgres://alice:s3cr3t@db.example:6543/gateway").unwrap();
        let shown = describe(&pg);
        assert_eq!(shown, "alice@db.example:6543/gateway");
        assert!(!shown.contains("s3cr3t"));
    }

    #[test]
    fn key_value_strings_are_accepted() {
        let (pg, _) =
            parse_database_url("host=127.0.0.1 user=postgres dbname=x password=pw").unwrap();
        assert_eq!(pg.get_dbname(), Some("x"));
        assert_eq!(pg.get_application_name(), Some("dhctl"));
    }

    #[test]
    fn libpq_tls_parameters_become_settings() {
        let (pg, tls) = parse_database_url(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            tls,
            TlsSettings {
                verify: Verify::Full,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        assert!(matches!(pg.get_ssl_mode(), SslMode::Require));
        let (_, tls) = parse_database_url("host=h dbname=db sslmode=verify-ca").unwrap();
        assert_eq!(tls.verify, Verify::Chain);
        let (_, tls) = parse_database_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(tls.verify, Verify::Nothing);
    }

    #[test]
    fn parse_errors_do_not_echo_the_string() {
        let err = parse_database_url("postgres://u:hunter2@h:notaport/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
