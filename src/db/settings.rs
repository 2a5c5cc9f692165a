//! Everything needed to open dhctl's session, as `config` fills it from flags, the environment
//! and `.env`: the parsed connection (never the raw string), TLS, waits and lock settings. Here,
//! beside `connect`, so the session code depends on no parsing and `config` sits above `db`.

use std::time::Duration;

use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};

use super::tls::TlsSettings;

/// How long one connection attempt (TCP, TLS and startup) may take when neither the connection
/// string nor PGCONNECT_TIMEOUT says. libpq waits forever; an init container must not, and 10 s
/// leaves room for a TLS handshake and SCRAM across regions.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host dhctl connects to when none is given (libpq would use its unix socket).
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// What a command does with its session, which decides the servers it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only (status, verify, lint --pending, partition status): any server will do, a
    /// hot standby included, unless `target_session_attrs` says otherwise.
    Read,
    /// Changes the database (migrate, rollback, partition create/prune/drain-default): only a
    /// writable primary, whatever the connection string says (docs/failover.md).
    Write,
}

/// Everything needed to open dhctl's session.
#[derive(Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    pub tls: TlsSettings,
    /// Read or write: with [`DbConfig::wanted`] it picks the server among several hosts.
    pub access: Access,
    /// Retry healable connection failures for this long.
    pub wait: Option<Duration>,
    pub lock_wait: Duration,
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    /// `--history-table schema.name`; None: find refinery_schema_history by name.
    pub history_table: Option<super::ident::TableName>,
}

impl DbConfig {
    /// `user@host:port/dbname`, for messages. Never includes the password.
    pub fn display_target(&self) -> String {
        describe(&self.pg)
    }

    /// The kind of server a session must reach: read-write for a command that writes (libpq's
    /// `target_session_attrs=read-write`), else what the connection string asked for (`any`
    /// by default).
    pub fn wanted(&self) -> TargetSessionAttrs {
        match self.access {
            Access::Write => TargetSessionAttrs::ReadWrite,
            Access::Read => self.pg.get_target_session_attrs(),
        }
    }

    pub fn dbname(&self) -> &str {
        // parse_connection refuses a configuration without a database name.
        self.pg.get_dbname().unwrap_or("postgres")
    }
}

/// `user@host:port/dbname` for any config (`user@h1:p1,h2:p2/dbname` with several hosts), built
/// from its fields: never includes the password.
pub fn describe(pg: &tokio_postgres::Config) -> String {
    let count = pg.get_hosts().len().max(pg.get_hostaddrs().len()).max(1);
    let hosts: Vec<String> = (0..count).map(|i| host_port(pg, i)).collect();
    let user = pg.get_user().unwrap_or("?");
    let db = pg.get_dbname().unwrap_or("?");
    format!("{user}@{}/{db}", hosts.join(","))
}

/// `host:port` of the `i`th host of a configuration, for messages that name one server; an IPv6
/// address in brackets (`[::1]:5432`), as in a URL.
pub fn host_port(pg: &tokio_postgres::Config, i: usize) -> String {
    let ports = pg.get_ports();
    let bracketed = |h: &str| {
        if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]")
        } else {
            h.to_string()
        }
    };
    let host = match (pg.get_hosts().get(i), pg.get_hostaddrs().get(i)) {
        (Some(Host::Tcp(h)), _) => bracketed(h),
        (Some(Host::Unix(p)), _) => p.display().to_string(),
        (None, Some(addr)) => bracketed(&addr.to_string()),
        (None, None) => DEFAULT_HOST.into(),
    };
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    format!("{host}:{port}")
}

pub fn wants_tls(pg: &tokio_postgres::Config) -> bool {
    !matches!(pg.get_ssl_mode(), SslMode::Disable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_shown_in_brackets() {
        let mut pg = tokio_postgres::Config::new();
        pg.host("::1").port(5433).host("db2").user("u").dbname("d");
        assert_eq!(host_port(&pg, 0), "[::1]:5433");
        assert_eq!(describe(&pg), "u@[::1]:5433,db2:5433/d");
    }
}
