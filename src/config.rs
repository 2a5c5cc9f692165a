//! Turns the parsed command line (flags, environment, .env) into validated settings.
//!
//! The connection string is parsed here, once (`conninfo`), with libpq's environment
//! (`PGHOST`, `PGSSLMODE`, `~/.pgpass`, …) filling what it leaves out; everything downstream gets
//! a `tokio_postgres::Config` and never sees the raw string, so the password cannot leak through
//! an error message that quotes it. docs/configuration.md and docs/security.md describe the rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{
    ChannelBinding, Host, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs,
};

use crate::cli::{ConnectArgs, LockArgs};
use crate::conninfo::{self, shorten};
use crate::db::tls::{ClientCert, TlsSettings, Verify};
use crate::db::{Access, DbConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HOST};
use crate::error::{Error, Result};

impl DbConfig {
    /// `locks` is `LockArgs::default()` for commands that take no lock; `access` says whether
    /// the command changes the database (then it needs a writable primary).
    pub fn from_args(args: &ConnectArgs, locks: &LockArgs, access: Access) -> Result<DbConfig> {
        let url = args.database_url.as_deref().unwrap_or("");
        let (pg, tls) = parse_connection(url, args.ssl_root_cert.as_deref(), &|key| {
            std::env::var(key).ok()
        })?;
        check_access(&pg, access)?;
        Ok(DbConfig {
            pg,
            tls,
            access,
            wait: args.wait,
            lock_wait: locks.lock_wait,
            lock_timeout: locks.lock_timeout,
            lock_retries: locks.lock_retries,
            history_table: args.history_table.clone(),
        })
    }
}

/// A command that writes asks for a writable server whatever the string says (`any` then acts
/// as `read-write`), but cannot honour `read-only`: no server it finds could take its changes.
fn check_access(pg: &tokio_postgres::Config, access: Access) -> Result<()> {
    if access == Access::Write && pg.get_target_session_attrs() == TargetSessionAttrs::ReadOnly {
        return Err(usage(
            "target_session_attrs=read-only asks for a read-only server, and this command \
             changes the database",
            "remove target_session_attrs (write commands look for the primary themselves) or \
             set target_session_attrs=read-write; keep read-only for status, verify and lint \
             --pending, which run on a standby",
        ));
    }
    Ok(())
}

/// Loads `.env` from the working directory (never a parent's), without overriding variables
/// already set. A line that cannot be parsed is named by file and line number only: its text
/// may hold a password.
pub fn load_dotenv() -> Result<()> {
    load_dotenv_from(Path::new(".env"))
}

pub fn load_dotenv_from(path: &Path) -> Result<()> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(line, _)) => {
            let number = std::fs::read_to_string(path).ok().and_then(|text| {
                let at = text.find(line.as_str())?;
                Some(text[..at].matches('\n').count() + 1)
            });
            let place = match number {
                Some(n) => format!("line {n}"),
                None => "a line".to_string(),
            };
            Err(Error::usage_hint(
                format!("{}: {place} is not a valid NAME=value line", path.display()),
                "fix that line (quote values with spaces or #, close every quote) or remove the \
                 .env file; real environment variables win over it",
            ))
        }
        Err(dotenvy::Error::Io(e)) => Err(Error::Io {
            path: path.into(),
            source: e,
        }),
        Err(_) => Err(Error::usage(format!(
            "{}: cannot be loaded",
            path.display()
        ))),
    }
}

/// Parses a connection string with the process environment (libpq's PG* variables) filling
/// the gaps. The health server's entry point.
pub fn parse_database_url(
    url: &str,
    ssl_root_cert: Option<&Path>,
) -> Result<(tokio_postgres::Config, TlsSettings)> {
    parse_connection(url, ssl_root_cert, &|key| std::env::var(key).ok())
}

/// What a libpq keyword is to dhctl.
enum Keyword {
    Supported,
    Refused(&'static str),
}

fn keyword(key: &str) -> Option<Keyword> {
    use Keyword::*;
    Some(match key {
        "host" | "hostaddr" | "port" | "dbname" | "user" | "password" | "passfile"
        | "connect_timeout" | "application_name" | "fallback_application_name" | "options"
        | "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "sslnegotiation" | "keepalives"
        | "keepalives_idle" | "keepalives_interval" | "keepalives_count" | "tcp_user_timeout"
        | "target_session_attrs" | "channel_binding" | "load_balance_hosts" => Supported,
        "sslpassword" => Refused("encrypted client keys are not supported: decrypt the key file (openssl pkey) and keep it 0600"),
        "sslcrl" | "sslcrldir" => Refused("certificate revocation lists are not supported"),
        "sslsni" => Refused("dhctl always sends SNI for host names"),
        "sslcompression" => Refused("TLS compression is not supported"),
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => {
            Refused("dhctl always uses TLS 1.2 or 1.3")
        }
        "sslcertmode" => Refused("give sslcert and sslkey to send a client certificate"),
        "gssencmode" | "gsslib" | "gssdelegation" | "krbsrvname" => {
            Refused("GSSAPI/Kerberos is not supported")
        }
        "requirepeer" => Refused("peer checks on unix sockets are not supported"),
        "require_auth" => Refused("use channel_binding=require to insist on SCRAM"),
        "service" => Refused("pg_service.conf is not read: put the settings in DATABASE_URL"),
        "replication" => Refused("dhctl needs a normal session"),
        "client_encoding" => Refused("dhctl always uses UTF8"),
        "min_protocol_version" | "max_protocol_version" => {
            Refused("dhctl speaks protocol 3.0")
        }
        "requiressl" => Refused("use sslmode=require"),
        _ => return None,
    })
}

/// libpq's environment variables and the keyword each fills when the string leaves it out
/// (docs: libpq-envars.html). PGSSLROOTCERT is handled apart: it ranks below DHCTL_SSL_ROOT_CERT.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

/// libpq variables dhctl cannot honour; set, they stop it rather than being ignored in silence.
const REFUSED_ENVIRONMENT: &[(&str, &str)] = &[
    ("PGSERVICE", "pg_service.conf is not read"),
    ("PGSERVICEFILE", "pg_service.conf is not read"),
    ("PGSSLCRL", "certificate revocation lists are not supported"),
    (
        "PGSSLCRLDIR",
        "certificate revocation lists are not supported",
    ),
    ("PGSSLSNI", "dhctl always sends SNI for host names"),
    ("PGSSLCOMPRESSION", "TLS compression is not supported"),
    (
        "PGSSLMINPROTOCOLVERSION",
        "dhctl always uses TLS 1.2 or 1.3",
    ),
    (
        "PGSSLMAXPROTOCOLVERSION",
        "dhctl always uses TLS 1.2 or 1.3",
    ),
    (
        "PGSSLCERTMODE",
        "give sslcert and sslkey to send a client certificate",
    ),
    ("PGGSSENCMODE", "GSSAPI is not supported"),
    ("PGGSSLIB", "GSSAPI is not supported"),
    ("PGGSSDELEGATION", "GSSAPI is not supported"),
    ("PGKRBSRVNAME", "Kerberos is not supported"),
    ("PGREQUIREPEER", "peer checks are not supported"),
    (
        "PGREQUIREAUTH",
        "use channel_binding=require to insist on SCRAM",
    ),
    ("PGREQUIRESSL", "use sslmode=require"),
    ("PGMINPROTOCOLVERSION", "dhctl speaks protocol 3.0"),
    ("PGMAXPROTOCOLVERSION", "dhctl speaks protocol 3.0"),
    ("PGCLIENTENCODING", "dhctl always uses UTF8"),
    ("PGDATESTYLE", "dhctl pins its session's DateStyle"),
    ("PGTZ", "dhctl pins its session's TimeZone to UTC"),
    (
        "PGGEQO",
        "dhctl does not pass session settings from the environment",
    ),
];

fn usage(message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::usage_hint(message, hint)
}

/// Parses a URL or key=value connection string, fills what it leaves out from libpq's
/// environment (`env`), applies dhctl's defaults and validates everything, before any I/O
/// except reading a password file. The string's own settings win over the environment;
/// `ssl_root_cert` (`--ssl-root-cert` / `DHCTL_SSL_ROOT_CERT`) ranks between the two.
pub fn parse_connection(
    url: &str,
    ssl_root_cert: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(tokio_postgres::Config, TlsSettings)> {
    let env = |key: &str| env(key).filter(|v| !v.is_empty());
    let pairs =
        conninfo::parse(url).map_err(|e| usage(format!("DATABASE_URL: {}", e.message), e.hint))?;
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in pairs {
        match keyword(&key) {
            Some(Keyword::Supported) => {
                set.insert(key, value);
            }
            Some(Keyword::Refused(why)) => {
                return Err(usage(
                    format!(
                        "DATABASE_URL: the parameter \"{key}\" is not supported by dhctl: {why}"
                    ),
                    "remove it from the connection string",
                ))
            }
            None => {
                return Err(usage(
                    format!(
                        "DATABASE_URL: unknown connection parameter {}",
                        conninfo::key_name(&key)
                    ),
                    "see docs/configuration.md for the parameters dhctl knows (libpq's names); \
                     percent-encode \"&\" and \"=\" inside URL values",
                ))
            }
        }
    }
    for (var, why) in REFUSED_ENVIRONMENT {
        if env(var).is_some() {
            return Err(usage(
                format!("{var} is set, but dhctl cannot honour it: {why}"),
                format!("unset {var} (dhctl follows libpq's PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT and the rest it documents)"),
            ));
        }
    }
    // The parameters taken from the environment, by key, so an error names the variable.
    let mut from_env: Vec<(&str, &str)> = Vec::new();
    for (var, key) in ENVIRONMENT {
        if !set.contains_key(*key) {
            if let Some(value) = env(var) {
                set.insert(key.to_string(), value);
                from_env.push((key, var));
            }
        }
    }
    let source = |key: &str| {
        from_env
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, var)| *var)
    };
    let root_cert = set
        .get("sslrootcert")
        .map(PathBuf::from)
        .or_else(|| ssl_root_cert.map(Path::to_path_buf))
        .or_else(|| env("PGSSLROOTCERT").map(PathBuf::from));
    let get = |key: &str| set.get(key).map(String::as_str);

    let Some(dbname) = get("dbname") else {
        if url.trim().is_empty() && get("user").is_none() {
            return Err(usage(
                "no database given: DATABASE_URL is empty or not set",
                "set DATABASE_URL, e.g. postgres://user:password@127.0.0.1:5432/datahub (or \
                 PGHOST, PGUSER and PGDATABASE, as for psql)",
            ));
        }
        return Err(usage(
            "no database given: DATABASE_URL names no database",
            "set DATABASE_URL to postgres://user:password@host:5432/dbname (or key=value pairs \
             with dbname=…; PGDATABASE also counts)",
        ));
    };
    let Some(user) = get("user") else {
        return Err(usage(
            "no database given: DATABASE_URL names no user",
            "name the role: postgres://user:password@host:5432/dbname (or user=…, or PGUSER); \
             dhctl does not fall back to the operating-system user",
        ));
    };
    let mut pg = tokio_postgres::Config::new();
    pg.dbname(dbname).user(user);

    let hostaddrs: Vec<IpAddr> = match get("hostaddr") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|a| {
                a.trim().parse().map_err(|_| {
                    usage(
                        format!("invalid hostaddr value: {}", shorten(a)),
                        "hostaddr takes IP addresses (host takes names)",
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let hosts: Vec<String> = match get("host") {
        Some(list) => list
            .split(',')
            .map(|h| {
                if h.is_empty() {
                    DEFAULT_HOST.into()
                } else {
                    h.to_string()
                }
            })
            .collect(),
        None if hostaddrs.is_empty() => vec![DEFAULT_HOST.into()],
        None => Vec::new(),
    };
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(usage(
            format!("{} hosts but {} hostaddrs", hosts.len(), hostaddrs.len()),
            "give one hostaddr per host",
        ));
    }
    for host in &hosts {
        pg.host(host);
    }
    for addr in &hostaddrs {
        pg.hostaddr(*addr);
    }
    let targets = hosts.len().max(hostaddrs.len());
    let ports: Vec<u16> = match get("port") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| match p.trim() {
                "" => Ok(5432),
                p => p.parse().map_err(|_| {
                    usage(
                        format!("invalid port number: {}", shorten(p)),
                        "a port is a number from 1 to 65535",
                    )
                }),
            })
            .collect::<Result<_>>()?,
    };
    if ports.len() > 1 && ports.len() != targets {
        return Err(usage(
            format!("{} ports for {targets} hosts", ports.len()),
            "give one port for every host, or a single port for all",
        ));
    }
    for port in &ports {
        pg.port(*port);
    }
    if let Some(options) = get("options") {
        pg.options(options);
    }
    pg.application_name(
        get("application_name")
            .or(get("fallback_application_name"))
            .unwrap_or("dhctl"),
    );
    pg.connect_timeout(match get("connect_timeout") {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(text) => seconds("connect_timeout", text)?.ok_or_else(|| {
            usage(
                format!(
                    "connect_timeout must be at least 1 second, not {}",
                    shorten(text)
                ),
                "dhctl never waits for a connection without a bound (libpq's 0 means forever)",
            )
        })?,
    });
    if let Some(text) = get("tcp_user_timeout") {
        if let Some(d) = millis("tcp_user_timeout", text)? {
            pg.tcp_user_timeout(d);
        }
    }
    if let Some(text) = get("keepalives") {
        pg.keepalives(number::<u32>("keepalives", text)? != 0);
    }
    if let Some(text) = get("keepalives_idle") {
        if let Some(d) = seconds("keepalives_idle", text)? {
            pg.keepalives_idle(d);
        }
    }
    if let Some(text) = get("keepalives_interval") {
        if let Some(d) = seconds("keepalives_interval", text)? {
            pg.keepalives_interval(d);
        }
    }
    if let Some(text) = get("keepalives_count") {
        pg.keepalives_retries(number("keepalives_count", text)?);
    }
    if let Some(value) = get("target_session_attrs") {
        pg.target_session_attrs(match value {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            _ => {
                let (named, fix) = match source("target_session_attrs") {
                    Some(var) => (
                        format!(" (from {var})"),
                        format!("unset {var} or set it to"),
                    ),
                    None => (String::new(), "use".to_string()),
                };
                return Err(usage(
                    format!(
                        "target_session_attrs {}{named} is not supported: dhctl supports any, \
                         read-write and read-only (libpq's primary, standby and \
                         prefer-standby are not)",
                        shorten(value)
                    ),
                    format!(
                        "{fix} read-write to reach the primary (commands that change the \
                         database ask for it anyway), read-only or any for a standby"
                    ),
                ));
            }
        });
    }
    if let Some(value) = get("channel_binding") {
        pg.channel_binding(match value {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => {
                return Err(invalid(
                    "channel_binding",
                    value,
                    "disable, prefer or require",
                ))
            }
        });
    }
    if let Some(value) = get("load_balance_hosts") {
        pg.load_balance_hosts(match value {
            "disable" => LoadBalanceHosts::Disable,
            "random" => LoadBalanceHosts::Random,
            _ => return Err(invalid("load_balance_hosts", value, "disable or random")),
        });
    }
    if let Some(value) = get("sslnegotiation") {
        pg.ssl_negotiation(match value {
            "postgres" => SslNegotiation::Postgres,
            "direct" => SslNegotiation::Direct,
            _ => return Err(invalid("sslnegotiation", value, "postgres or direct")),
        });
    }

    let tls = tls_settings(
        &mut pg,
        get("sslmode"),
        root_cert,
        get("sslcert"),
        get("sslkey"),
    )?;
    if pg.get_ssl_negotiation() == SslNegotiation::Direct && pg.get_ssl_mode() != SslMode::Require {
        return Err(usage(
            "sslnegotiation=direct needs sslmode=require or stronger (libpq refuses it with prefer)",
            "use sslmode=require, verify-ca or verify-full, or sslnegotiation=postgres",
        ));
    }

    let password = match get("password") {
        Some(password) => Some(password.to_string()),
        None => {
            let file = get("passfile")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")));
            match file {
                Some(file) => password_from_file(&file, &pg)?,
                None => None,
            }
        }
    };
    if let Some(password) = password {
        pg.password(password);
    }
    Ok((pg, tls))
}

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    usage(
        format!("invalid {key} value: {}", shorten(value)),
        format!("{key} is one of {expected}"),
    )
}

fn number<T: std::str::FromStr>(key: &str, text: &str) -> Result<T> {
    text.trim().parse().map_err(|_| {
        usage(
            format!("invalid {key} value: {}", shorten(text)),
            format!("{key} is a whole number"),
        )
    })
}

/// libpq's timeouts: whole seconds, where 0 or less means "not set".
fn seconds(key: &str, text: &str) -> Result<Option<Duration>> {
    let n: i64 = number(key, text)?;
    Ok((n > 0).then(|| Duration::from_secs(n as u64)))
}

fn millis(key: &str, text: &str) -> Result<Option<Duration>> {
    let n: i64 = number(key, text)?;
    Ok((n > 0).then(|| Duration::from_millis(n as u64)))
}

/// sslmode, CA and client certificate, with libpq's meaning and dhctl's stricter edges
/// (docs/security.md).
fn tls_settings(
    pg: &mut tokio_postgres::Config,
    sslmode: Option<&str>,
    root_cert: Option<PathBuf>,
    sslcert: Option<&str>,
    sslkey: Option<&str>,
) -> Result<TlsSettings> {
    let mode = sslmode.unwrap_or("prefer");
    let (ssl_mode, mut verify) = match mode {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        "allow" => {
            return Err(usage(
                "sslmode=allow is not supported: it tries an unencrypted connection first",
                "use sslmode=prefer (TLS when the server offers it) or sslmode=disable",
            ))
        }
        other => {
            return Err(invalid(
                "sslmode",
                other,
                "disable, prefer, require, verify-ca or verify-full",
            ))
        }
    };
    pg.ssl_mode(ssl_mode);
    // libpq 16: sslrootcert=system means the platform's roots and demands verify-full.
    let root_cert = match root_cert {
        Some(path) if path.as_os_str() == "system" => {
            if verify != Verify::Full {
                return Err(usage(
                    format!("weak sslmode \"{mode}\" may not be used with sslrootcert=system"),
                    "use sslmode=verify-full (as libpq requires)",
                ));
            }
            None
        }
        other => other,
    };
    if root_cert.is_some() && verify == Verify::Nothing && ssl_mode != SslMode::Disable {
        // libpq: with a root certificate, prefer/require verify the chain.
        verify = Verify::Chain;
    }
    if ssl_mode == SslMode::Require {
        // PostgreSQL offers no TLS on a unix socket; libpq then ignores sslmode, dhctl refuses
        // to pretend a requirement was met.
        if let Some(Host::Unix(path)) = pg.get_hosts().iter().find(|h| matches!(h, Host::Unix(_))) {
            return Err(usage(
                format!(
                    "sslmode={mode} cannot be met on the unix socket {}: PostgreSQL offers no TLS there",
                    path.display()
                ),
                "use sslmode=prefer or disable for a socket, or connect over TCP",
            ));
        }
    }
    let client =
        match (sslcert, sslkey) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCert {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (Some(_), None) => return Err(usage(
                "sslcert is given without sslkey",
                "give both sslcert=FILE and sslkey=FILE (dhctl reads no ~/.postgresql/ defaults)",
            )),
            (None, Some(_)) => return Err(usage(
                "sslkey is given without sslcert",
                "give both sslcert=FILE and sslkey=FILE (dhctl reads no ~/.postgresql/ defaults)",
            )),
        };
    if client.is_some() && ssl_mode == SslMode::Disable {
        return Err(usage(
            "sslcert and sslkey need TLS, but sslmode=disable",
            "use sslmode=verify-full (or require)",
        ));
    }
    Ok(TlsSettings {
        verify,
        root_cert,
        client,
    })
}

/// The password `~/.pgpass` (or `passfile`/`PGPASSFILE`) holds for this connection, as libpq
/// finds it: the first line matching host, port, database and user. A file readable by group or
/// others is skipped with a warning, as libpq does. With several hosts every one must get the
/// same password (one config carries one).
fn password_from_file(file: &Path, pg: &tokio_postgres::Config) -> Result<Option<String>> {
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "password file has group or world access and is ignored, as libpq does; chmod 600 it"
            );
            return Ok(None);
        }
    }
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        path: file.into(),
        source,
    })?;
    let lines: Vec<[String; 5]> = text.lines().filter_map(conninfo::pgpass_line).collect();
    let dbname = pg.get_dbname().unwrap_or_default();
    let user = pg.get_user().unwrap_or_default();
    let ports = pg.get_ports();
    let names: Vec<String> = match pg.get_hosts() {
        [] => pg.get_hostaddrs().iter().map(|a| a.to_string()).collect(),
        hosts => hosts
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                // libpq matches "localhost" for the default socket directory.
                Host::Unix(path)
                    if path == Path::new("/var/run/postgresql") || path == Path::new("/tmp") =>
                {
                    "localhost".into()
                }
                Host::Unix(path) => path.display().to_string(),
            })
            .collect(),
    };
    let mut found: Option<Option<String>> = None;
    for (i, host) in names.iter().enumerate() {
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(5432)
            .to_string();
        let password = lines
            .iter()
            .find(|[h, p, d, u, _]| {
                conninfo::pgpass_matches(h, host)
                    && conninfo::pgpass_matches(p, &port)
                    && conninfo::pgpass_matches(d, dbname)
                    && conninfo::pgpass_matches(u, user)
            })
            .map(|line| line[4].clone());
        match &found {
            Some(previous) if *previous != password => {
                return Err(usage(
                    format!(
                        "{} holds different passwords for the hosts of DATABASE_URL",
                        file.display()
                    ),
                    "put the password in DATABASE_URL or PGPASSWORD when the hosts share one role",
                ))
            }
            _ => found = Some(password),
        }
    }
    Ok(found.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::describe;

    fn parse_with(
        url: &str,
        env: &[(&str, &str)],
    ) -> Result<(tokio_postgres::Config, TlsSettings)> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_connection(url, None, &move |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    fn parse(url: &str) -> Result<(tokio_postgres::Config, TlsSettings)> {
        parse_with(url, &[])
    }

    #[test]
    fn describe_never_shows_the_password() {
        let (pg, _) = parse("postgres://alice:s3cr3t@db.example:6543/gateway").unwrap();
        let shown = describe(&pg);
        assert_eq!(shown, "alice@db.example:6543/gateway");
        assert!(!shown.contains("s3cr3t"));
        let (pg, _) = parse("postgres://alice:s3cr3t@a:1,b/gateway").unwrap();
        assert_eq!(describe(&pg), "alice@a:1,b:5432/gateway");
    }

    #[test]
    fn both_multi_host_forms_reach_the_driver_with_target_session_attrs() {
        let (pg, _) = parse(
            "postgres://u:hunter2@h1:5432,h2:5433/db?target_session_attrs=read-write&connect_timeout=2",
        )
        .unwrap();
        assert_eq!(describe(&pg), "u@h1:5432,h2:5433/db");
        assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(2)));
        let (pg, _) =
            parse("host=a,b port=6001,6002 user=u dbname=db target_session_attrs=read-only")
                .unwrap();
        assert_eq!(describe(&pg), "u@a:6001,b:6002/db");
        assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadOnly);
        let (pg, _) = parse("host=a,b port=6001 user=u dbname=db").unwrap();
        assert_eq!(describe(&pg), "u@a:6001,b:6001/db");
        assert!(parse("host=a,b port=1,2,3 user=u dbname=db").is_err());
    }

    #[test]
    fn unsupported_target_session_attrs_are_named_with_the_supported_ones() {
        for value in ["standby", "prefer-standby", "primary"] {
            let e = parse(&format!(
                "postgres://u:hunter2@h/db?target_session_attrs={value}"
            ))
            .unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let text = e.to_string();
            assert!(text.contains(&format!("\"{value}\"")), "{text}");
            assert!(text.contains("any, read-write and read-only"), "{text}");
        }
    }

    #[test]
    fn an_unsupported_target_session_attrs_from_the_environment_names_the_variable() {
        let e =
            parse_with("postgres://u@h/db", &[("PGTARGETSESSIONATTRS", "standby")]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains("\"standby\" (from PGTARGETSESSIONATTRS)"),
            "{text}"
        );
        assert!(
            e.hint()
                .unwrap_or_default()
                .contains("unset PGTARGETSESSIONATTRS"),
            "{:?}",
            e.hint()
        );
    }

    #[test]
    fn a_writing_command_cannot_ask_for_a_read_only_server() {
        let (pg, _) = parse("postgres://u@h1,h2/db?target_session_attrs=read-only").unwrap();
        assert!(check_access(&pg, Access::Read).is_ok());
        let e = check_access(&pg, Access::Write).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("read-only"), "{e}");
        let (pg, _) = parse("postgres://u@h1,h2/db?target_session_attrs=any").unwrap();
        assert!(check_access(&pg, Access::Write).is_ok());
    }

    #[test]
    fn key_value_strings_are_accepted() {
        let (pg, _) = parse("host=127.0.0.1 user=postgres dbname=x password=pw").unwrap();
        assert_eq!(pg.get_dbname(), Some("x"));
        assert_eq!(pg.get_application_name(), Some("dhctl"));
        assert_eq!(pg.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn quoted_key_value_pairs_keep_their_spaces_and_never_turn_into_settings() {
        let (pg, tls) = parse(
            "host=h user=u dbname=d password='x sslmode=verify-ca y' sslrootcert='certs/a b.pem'",
        )
        .unwrap();
        assert_eq!(pg.get_password(), Some(&b"x sslmode=verify-ca y"[..]));
        assert_eq!(tls.verify, Verify::Chain); // from the CA, as libpq, not from the password
        assert_eq!(tls.root_cert, Some(PathBuf::from("certs/a b.pem")));
        let (pg, _) = parse("host=h user=u dbname=d password='a  b'").unwrap();
        assert_eq!(pg.get_password(), Some(&b"a  b"[..]));
    }

    #[test]
    fn libpq_tls_parameters_become_settings() {
        let (pg, tls) = parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            tls,
            TlsSettings {
                verify: Verify::Full,
                root_cert: Some("/etc/ca.pem".into()),
                client: None,
            }
        );
        assert!(matches!(pg.get_ssl_mode(), SslMode::Require));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        let (_, tls) = parse("host=h user=u dbname=db sslmode=verify-ca").unwrap();
        assert_eq!(tls.verify, Verify::Chain);
        let (_, tls) = parse("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(tls.verify, Verify::Nothing);
        let (_, tls) =
            parse("postgres://u@h/db?sslmode=require&sslcert=c.pem&sslkey=k.pem").unwrap();
        assert_eq!(
            tls.client,
            Some(ClientCert {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
    }

    #[test]
    fn the_strings_own_ca_wins_over_the_flag_and_the_environment() {
        let env = |key: &str| (key == "PGSSLROOTCERT").then(|| "/env/ca.pem".to_string());
        let flag = Some(Path::new("/flag/ca.pem"));
        let (_, tls) =
            parse_connection("postgres://u@h/db?sslrootcert=/url/ca.pem", flag, &env).unwrap();
        assert_eq!(tls.root_cert, Some("/url/ca.pem".into()));
        let (_, tls) = parse_connection("postgres://u@h/db", flag, &env).unwrap();
        assert_eq!(tls.root_cert, Some("/flag/ca.pem".into()));
        let (_, tls) = parse_connection("postgres://u@h/db", None, &env).unwrap();
        assert_eq!(tls.root_cert, Some("/env/ca.pem".into()));
    }

    #[test]
    fn libpq_environment_fills_what_the_string_leaves_out() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "verify-full"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("PGAPPNAME", "envapp"),
        ];
        let (pg, tls) = parse_with("", &env).unwrap();
        assert_eq!(describe(&pg), "envuser@envhost:6000/envdb");
        assert_eq!(pg.get_password(), Some(&b"envpw"[..]));
        assert_eq!(tls.verify, Verify::Full);
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert_eq!(pg.get_application_name(), Some("envapp"));
        let (pg, tls) = parse_with(
            "postgres://u:pw@h:1/db?sslmode=disable&application_name=x",
            &env,
        )
        .unwrap();
        assert_eq!(describe(&pg), "u@h:1/db");
        assert_eq!(pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(tls.verify, Verify::Nothing);
        assert!(matches!(pg.get_ssl_mode(), SslMode::Disable));
        let e = parse_with("postgres://u@h/db", &[("PGSERVICE", "x")]).unwrap_err();
        assert!(e.to_string().contains("PGSERVICE"), "{e}");
    }

    #[test]
    fn no_user_or_no_database_is_no_database_given() {
        for url in [
            "",
            "postgres://",
            "postgres:///db",
            "postgres://u@h",
            "host=h dbname=d",
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.to_string().starts_with("no database given"), "{url}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn bad_values_are_named_and_passwords_never_shown() {
        let cases = [
            (
                "postgres://u:hunter2@h:notaport/db",
                "invalid port number: \"notaport\"",
            ),
            (
                "postgres://u:hunter2@h/db?sslmode=bogus",
                "invalid sslmode value: \"bogus\"",
            ),
            ("postgres://u:hunter2@h/db?sslmode=allow", "sslmode=allow"),
            ("postgres://u:hunter2@h/db?sslcrl=x", "\"sslcrl\""),
            (
                "postgres://u:hunter2@h/db?bogus_key=1",
                "unknown connection parameter \"bogus_key\"",
            ),
            ("postgres://u:hunt@er2@h/db", "unencoded \"@\""),
            (
                "postgres://u:hunter2@h/db?connect_timeout=0",
                "connect_timeout",
            ),
            ("postgres://u:hunter2@h/db?password=Sup3rS%eécret", "%XX"),
            (
                "host=/tmp user=u dbname=d password=hunter2 sslmode=require",
                "unix socket",
            ),
            (
                "host=h user=u dbname=d password=hunter2 sslcert=c.pem",
                "sslkey",
            ),
            (
                "postgres://u:hunter2@h/db?sslmode=require&sslrootcert=system",
                "verify-full",
            ),
        ];
        for (url, expected) in cases {
            let e = parse(url).unwrap_err();
            let text = format!("{e} {}", e.hint().unwrap_or_default());
            assert!(text.contains(expected), "{url}: {text}");
            assert!(
                !text.contains("hunter2") && !text.contains("cret"),
                "{url}: {text}"
            );
        }
    }

    /// The fuzz target's property (fuzz/fuzz_targets/connection_string.rs) over a table of
    /// passwords that break naive parsers, in every place a password can stand.
    #[test]
    fn no_error_ever_contains_the_password() {
        let passwords = [
            "Sup3rS%eécret",
            "p@ss@word",
            "pa/ss",
            "a b c",
            "x sslmode=verify-ca y",
            "it's",
            "back\\slash",
            "%zz%",
            "a&sslmode=bogus",
            "?#",
            "q'uote",
            "=",
            "%00",
            "sslmode=",
            "\u{1F511}",
            "pa:ss",
            "a\nb",
        ];
        let tails = [
            "",
            "h/db",
            "h:notaport/db",
            "sslmode=",
            "host=h dbname=d user=u",
            "x",
            "sslmode= ",
            "h/db?sslmode=bogus&",
            "[::1/db",
        ];
        for password in passwords {
            let marked = format!("\u{1F511}{password}");
            for tail in tails {
                for text in [
                    format!("postgres://user:{marked}@{tail}"),
                    format!("postgres://user@h/db?password={marked}&{tail}"),
                    format!("{tail} password='{marked}'"),
                    format!("password={marked} {tail}"),
                    format!("{tail} password={marked}"),
                ] {
                    match parse(&text) {
                        Ok((pg, _)) => assert!(!describe(&pg).contains(&marked), "{text}"),
                        Err(e) => {
                            let shown = format!("{e} {}", e.hint().unwrap_or_default());
                            assert!(!shown.contains(&marked), "{text:?} -> {shown}");
                        }
                    }
                }
            }
        }
    }

    /// A cheap in-process stand-in for the cargo-fuzz target, so the property also runs with
    /// `cargo test`: random strings over an alphabet of the characters that matter to the
    /// parsers, in the fuzz target's five shapes. A fixed seed keeps failures reproducible.
    #[test]
    fn random_connection_strings_never_panic_or_leak_the_password() {
        const ALPHABET: &[&str] = &[
            "a",
            "Z",
            "0",
            "9",
            " ",
            "=",
            "'",
            "\\",
            "@",
            "/",
            ":",
            "?",
            "&",
            "#",
            "%",
            "%4",
            "%40",
            "%e",
            "é",
            "\u{1F511}",
            ",",
            "[",
            "]",
            "host",
            "sslmode",
            "password",
            "verify-full",
            "postgres://",
            "\t",
            "\n",
            "%00",
            "%C3",
            "%A9",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut word = |max: usize| -> String {
                (0..next(max))
                    .map(|_| ALPHABET[next(ALPHABET.len())])
                    .collect()
            };
            let password =
                format!("\u{1F511}{}", word(6)).replace("\u{1F511}\u{1F511}", "\u{1F511}");
            let tail = word(12);
            let text = match next(5) {
                0 => format!("postgres://{tail}"),
                1 => format!("postgres://user:{password}@{tail}"),
                2 => format!("postgres://user@h/db?password={password}&{tail}"),
                3 => format!("{tail} password='{password}'"),
                _ => format!("password={password} {tail}"),
            };
            let outcome = parse(&text);
            if tail.contains("\u{1F511}")
                || text.starts_with("postgres://") && !text.contains("password")
            {
                continue;
            }
            match outcome {
                // Only where the password landed in the password field (a tail can make the
                // whole string a URL whose database name holds " password='…'").
                Ok((pg, _)) => {
                    if pg.get_password() == Some(password.as_bytes()) && !tail.contains('%') {
                        assert!(!describe(&pg).contains(&password), "{text:?}");
                    }
                }
                Err(e) => {
                    let shown = format!("{e} {}", e.hint().unwrap_or_default());
                    assert!(!shown.contains(&password), "{text:?} -> {shown}");
                }
            }
        }
    }

    #[test]
    fn pgpass_supplies_a_missing_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# c\nother:*:*:*:no\nh:5433:db:u:from\\:file\n*:*:*:*:fallback\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let passfile = file.to_str().unwrap();
        let (pg, _) = parse_with("postgres://u@h:5433/db", &[("PGPASSFILE", passfile)]).unwrap();
        assert_eq!(pg.get_password(), Some(&b"from:file"[..]));
        let (pg, _) = parse_with("postgres://u@h:5432/db", &[("PGPASSFILE", passfile)]).unwrap();
        assert_eq!(pg.get_password(), Some(&b"fallback"[..]));
        let (pg, _) =
            parse_with("postgres://u:given@h:5433/db", &[("PGPASSFILE", passfile)]).unwrap();
        assert_eq!(pg.get_password(), Some(&b"given"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (pg, _) =
                parse_with("postgres://u@h:5433/db", &[("PGPASSFILE", passfile)]).unwrap();
            assert_eq!(pg.get_password(), None);
        }
    }

    #[test]
    fn a_malformed_dotenv_line_is_named_by_number_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        std::fs::write(
            &file,
            "# comment\nA_DHCTL_TEST_OK=1\nDATABASE_URL=postgres://u:hunter2@h/db 'oops\n",
        )
        .unwrap();
        let e = load_dotenv_from(&file).unwrap_err();
        let text = format!("{e} {}", e.hint().unwrap_or_default());
        assert!(text.contains("line 3"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(load_dotenv_from(&dir.path().join("missing")).is_ok());
    }
}
