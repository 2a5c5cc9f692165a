//! The one error type of the library and the single place that maps an error to an exit code.
//!
//! Exit codes are a contract (DESIGN.md, "Exit codes"): 0 ok, 1 a check failed, 2 error,
//! 3 the advisory lock stayed busy for `--lock-wait`, 4 drift, 130 interrupted. A check that fails
//! (pending migrations under `status --exit-code`, a failed `verify` check) is not an error: it is
//! reported as data and main turns it into exit 1.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Everything that can go wrong in dhctl. Messages are lower-case, name the object and say what
/// to do; the `hint` is printed on its own line where one helps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, values or names given by the user.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },

    /// Migration files that cannot be used; reported before any connection is made. `hints`
    /// holds one piece of advice per kind of problem found (naming, markers, encoding…).
    #[error("{}", format_file_problems(.problems))]
    Catalog {
        problems: Vec<FileProblem>,
        hints: Vec<String>,
    },

    /// The server could not be reached or refused us.
    #[error("{message}")]
    Connect {
        message: String,
        hint: Option<String>,
    },

    /// A statement failed. `context` says what dhctl was doing ("applying migration …").
    #[error("{context}: {detail}")]
    Sql { context: String, detail: SqlDetail },

    /// Another runner held the advisory lock for the whole `--lock-wait`.
    #[error("{}", lock_busy_message(.waited, .holder))]
    LockBusy {
        waited: std::time::Duration,
        holder: Option<Holder>,
    },

    /// The database does not exist (and dhctl was not to create it).
    #[error("database \"{name}\" does not exist on {target}")]
    MissingDatabase { name: String, target: String },

    /// An applied migration was modified or its file is missing.
    #[error("{message}")]
    Drift { message: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Writing a result to stdout failed: a full disk, a closed file, or (for output whose end
    /// matters, a dump) a reader that stopped before the end.
    #[error("cannot write {what} to stdout: {source}")]
    Stdout {
        what: &'static str,
        source: std::io::Error,
    },

    /// `dump` waited `lock_timeout` for a lock (printing a view or an expression takes ACCESS
    /// SHARE on its relation) that another session held or was queued for in ACCESS EXCLUSIVE
    /// mode: a migration in progress. `relation` and `pid`: that lock, when one was found.
    #[error("{}", dump_locked_message(.waited, .relation, .pid))]
    DumpLocked {
        waited: std::time::Duration,
        relation: Option<String>,
        pid: Option<i32>,
    },

    /// The catalog changed while `dump` read it, on every attempt: concurrent DDL.
    #[error("the schema changed while it was being dumped, on each of {attempts} attempts (DDL committed during the dump); nothing was written")]
    SchemaChanged { attempts: u32 },

    /// Statements of one session reached different backends (a transaction-pooling proxy).
    #[error("consecutive statements reached different backends: a transaction-pooling proxy sits in front of PostgreSQL, and dhctl needs one session (its advisory lock, lock_timeout and prepared statements live in it); nothing was changed")]
    Pooled,

    /// SIGINT or SIGTERM arrived; in-flight work was cancelled and rolled back.
    #[error("interrupted; the statement in flight was cancelled and its transaction rolled back")]
    Interrupted,

    /// Like [`Error::Interrupted`], during a `transaction:false` section: what ran before the
    /// cancelled statement stays.
    #[error("interrupted during a transaction:false migration; the statement in flight was cancelled, the section's statements before it were kept, and the migration may not be recorded: check the database and dhctl status before running again")]
    InterruptedOutsideTransaction,

    /// SIGINT or SIGTERM arrived while no session was open (connecting, or reading the fleet
    /// file): nothing was running on the server.
    #[error("interrupted while no session was open (connecting, or before connecting); nothing was running on the server")]
    InterruptedIdle,

    /// SIGINT or SIGTERM arrived, and a cancel request did not reach the server within
    /// `db::inflight::CANCEL_WAIT` (or a second signal stopped waiting for it): the connection
    /// was closed instead.
    #[error("interrupted; the cancel request could not be delivered and the connection was closed (the server rolls back an open transaction when it notices the closed connection){}", if *.outside_transaction { "; a transaction:false migration was running: the section's statements that finished are kept, and the migration may not be recorded: check the database and dhctl status before running again" } else { "" })]
    InterruptedUndelivered { outside_transaction: bool },

    /// Like [`Error::Interrupted`], while a COMMIT was in flight: cancelling a COMMIT that waits
    /// for a synchronous standby does not undo it (PostgreSQL keeps it, "already committed
    /// locally"), so the migration may be committed.
    #[error("interrupted while a migration's COMMIT was in flight; the commit may have completed (a COMMIT waiting for a synchronous standby is kept when its wait is cancelled: \"already committed locally\"): run dhctl status to see whether the migration is recorded before running again")]
    InterruptedDuringCommit,

    /// Like [`Error::Interrupted`], during `migrate --wait-replicas`'s wait: everything was
    /// committed before it.
    #[error("interrupted while waiting for the standbys (--wait-replicas); the migrations are committed on the primary, only the wait for the standbys was cut short")]
    InterruptedWaitingForStandbys,

    /// `migrate --wait-replicas`: a standby had not replayed the migration in time, or its
    /// replay position cannot be seen. The migration itself is committed.
    #[error("{message}")]
    Replicas { message: String, hint: String },

    /// migrate found error findings in the migrations it was about to apply; nothing was applied.
    #[error("{errors} lint error(s) in the pending migrations; nothing was applied")]
    Unsafe { errors: usize },

    /// Several independent units failed (e.g. partition maintenance of several tables).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<Error>),
}

/// The session holding the dhctl advisory lock, as `pg_stat_activity` shows it: what
/// [`Error::LockBusy`] names (`db::lock` looks it up). Defined here so the error type depends on
/// no other module.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub application_name: Option<String>,
    /// When the holder's session connected (dhctl takes the lock right after connecting).
    pub since: Option<DateTime<Utc>>,
    pub client_addr: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match self.application_name.as_deref() {
            Some(name) if !name.is_empty() => write!(f, " (application_name '{name}')")?,
            _ => write!(f, " (no application_name)")?,
        }
        if let Some(addr) = &self.client_addr {
            write!(f, " from {addr}")?;
        }
        if let Some(since) = self.since {
            write!(
                f,
                ", connected since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
        }
        Ok(())
    }
}

/// What the server said about a failed statement, with the place in the file when known.
#[derive(Debug, Clone)]
pub struct SqlDetail {
    pub sqlstate: String,
    pub message: String,
    /// `file:line` when the statement came from a migration file.
    pub location: Option<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for SqlDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

/// One problem with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub file: String,
    pub problem: String,
}

fn format_file_problems(problems: &[FileProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.file, p.problem))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lock_busy_message(waited: &std::time::Duration, holder: &Option<Holder>) -> String {
    let who = match holder {
        Some(h) => format!(" by {h}"),
        None => String::new(),
    };
    format!(
        "the dhctl advisory lock is held{who}; gave up after waiting {:.1}s",
        waited.as_secs_f64()
    )
}

fn dump_locked_message(
    waited: &std::time::Duration,
    relation: &Option<String>,
    pid: &Option<i32>,
) -> String {
    let what = match (relation, pid) {
        (Some(r), Some(p)) => {
            format!(" on {r}, which pid {p} holds or waits for in ACCESS EXCLUSIVE mode,")
        }
        (Some(r), None) => format!(" on {r},"),
        _ => String::new(),
    };
    format!(
        "the dump waited {:.1}s (lock_timeout) for a lock{what} and gave up; nothing was written",
        waited.as_secs_f64()
    )
}

impl Error {
    /// The process exit code for this error (DESIGN.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::LockBusy { .. } | Error::DumpLocked { .. } => 3,
            Error::Drift { .. } => 4,
            Error::Interrupted
            | Error::InterruptedOutsideTransaction
            | Error::InterruptedIdle
            | Error::InterruptedUndelivered { .. }
            | Error::InterruptedDuringCommit
            | Error::InterruptedWaitingForStandbys => 130,
            Error::Unsafe { .. } => 1,
            Error::Many(errors) => errors.iter().map(Error::exit_code).max().unwrap_or(2),
            Error::Usage { .. }
            | Error::Catalog { .. }
            | Error::Connect { .. }
            | Error::Sql { .. }
            | Error::Io { .. }
            | Error::Stdout { .. }
            | Error::SchemaChanged { .. }
            | Error::MissingDatabase { .. }
            | Error::Replicas { .. }
            | Error::Pooled => 2,
        }
    }

    /// A line of advice printed after the error, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage { hint, .. } | Error::Connect { hint, .. } => hint.clone(),
            Error::Replicas { hint, .. } => Some(hint.clone()),
            Error::Sql { detail, .. } => detail.hint.clone().or_else(|| {
                match detail.sqlstate.as_str() {
                    "42501" => Some(privilege_hint(&detail.message)),
                    code => sqlstate_hint(code).map(str::to_string),
                }
            }),
            Error::LockBusy { .. } => Some(
                "another dhctl (or a session holding its lock) is working on this database; \
                 retry later, raise --lock-wait, or end that session with pg_terminate_backend(pid)"
                    .into(),
            ),
            Error::Drift { .. } => Some(
                "restore the file as it was applied, or run `dhctl status` to see every difference"
                    .into(),
            ),
            Error::MissingDatabase { .. } => Some(
                "create it, or run `dhctl migrate` (without --no-create-database), which creates it"
                    .into(),
            ),
            Error::Pooled => Some(
                "point dhctl at PostgreSQL directly, or at a PgBouncer pool with pool_mode=session; \
                 the gateway itself may keep using transaction pooling"
                    .into(),
            ),
            Error::Catalog { hints, .. } => (!hints.is_empty()).then(|| hints.join("\n")),
            Error::Stdout { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => {
                Some(
                    "the program reading dhctl's output stopped before the end (`| head`?), so \
                     what it read is incomplete; use --output FILE, or read the whole output"
                        .into(),
                )
            }
            Error::DumpLocked { pid, .. } => Some(format!(
                "a migration or other DDL holds that lock until its transaction ends, and the \
                 dump's read must wait for it: dump again when it has finished, raise \
                 --lock-timeout (DHCTL_LOCK_TIMEOUT){}",
                match pid {
                    Some(p) => format!(", or end that session with pg_terminate_backend({p})"),
                    None => String::new(),
                }
            )),
            Error::SchemaChanged { .. } => Some(
                "dump when no migration or other DDL is running (CI, or between deploys), or retry"
                    .into(),
            ),
            Error::Unsafe { .. } => Some(
                "fix the statements (each finding's hint shows the safe pattern), accept one with \
                 `-- dhctl:allow RULE reason` on the line before it, or pass --allow-unsafe \
                 (DHCTL_ALLOW_UNSAFE=true) to apply them anyway; see docs/lint.md"
                    .into(),
            ),
            _ => None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage_hint(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Wraps a statement error with what dhctl was doing.
    pub fn sql(context: impl Into<String>, err: &tokio_postgres::Error) -> Error {
        Error::Sql {
            context: context.into(),
            detail: SqlDetail::from_pg(err, None),
        }
    }
}

impl SqlDetail {
    /// Extracts SQLSTATE and message from a driver error; `location` names the file and line.
    pub fn from_pg(err: &tokio_postgres::Error, location: Option<String>) -> SqlDetail {
        match err.as_db_error() {
            Some(db) => SqlDetail {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                location,
                hint: db.hint().map(str::to_string),
            },
            None => SqlDetail {
                // 08006 connection_failure: the connection broke (terminated backend, network).
                sqlstate: "08006".into(),
                message: describe_driver_error(err),
                location,
                hint: None,
            },
        }
    }
}

/// Where in the query the server placed an error: a 1-based character position, when the server
/// reported one for the statement as sent (not for an internally generated query).
pub fn error_position(err: &tokio_postgres::Error) -> Option<usize> {
    match err.as_db_error()?.position()? {
        tokio_postgres::error::ErrorPosition::Original(p) => Some(*p as usize),
        tokio_postgres::error::ErrorPosition::Internal { .. } => None,
    }
}

/// A driver error without a server message: the connection was closed or broke.
pub fn describe_driver_error(err: &tokio_postgres::Error) -> String {
    if err.is_closed() {
        return "the connection to the server was closed (the backend was terminated or the \
                server went away)"
            .into();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Advice for a failed statement the server gave no hint for, by SQLSTATE
/// (https://www.postgresql.org/docs/current/errcodes-appendix.html): the causes an operator meets
/// when pointing dhctl at a database set up by someone else.
/// SQLSTATE 42501's hint, from what the server's message names: the privilege or ownership
/// missing and on what ("permission denied for function f", "must be owner of table t"). It
/// claims nothing the message does not say (the role may well own the database: the missing
/// privilege is then on something else).
pub fn privilege_hint(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("permission denied for ") {
        let (kind, name) = rest.split_once(' ').unwrap_or((rest, ""));
        let privilege = match kind {
            "function" | "procedure" | "routine" | "aggregate" => "EXECUTE",
            "schema" => "CREATE (to create objects in it) or USAGE (to use them)",
            "database" => "CONNECT, CREATE or TEMPORARY",
            "sequence" => "USAGE (or SELECT/UPDATE)",
            "table" | "view" | "materialized" | "relation" => {
                "the one the statement needs (SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES \
                 or TRIGGER)"
            }
            "type" | "domain" | "language" | "foreign-data" | "foreign" => "USAGE",
            "tablespace" => "CREATE",
            _ => "the one the statement needs",
        };
        let what = match name {
            "" => kind.to_string(),
            name => format!("{kind} {name}"),
        };
        return format!(
            "dhctl's role lacks a privilege on {what}: {privilege}; have its owner (or a \
             superuser) GRANT it to the role, or run dhctl as a role that has it"
        );
    }
    if let Some(what) = message.strip_prefix("must be owner of ") {
        return format!(
            "only the owner of {what} (or a member of the owning role) may do this: run dhctl as \
             that role, or have it run ALTER ... OWNER TO dhctl's role"
        );
    }
    "the role lacks a privilege this step needs (the message names the object): have the \
     object's owner GRANT it to dhctl's role, or run dhctl as a role that has it"
        .to_string()
}

pub fn sqlstate_hint(sqlstate: &str) -> Option<&'static str> {
    Some(match sqlstate {
        // insufficient_privilege (42501) is worded from the message: see privilege_hint.
        // read_only_sql_transaction
        "25006" => {
            "the session is read-only: connected to a standby (point DATABASE_URL at the primary, \
             or add target_session_attrs=read-write to a multi-host URL), or \
             default_transaction_read_only is on for this role or database"
        }
        // query_canceled without Ctrl-C: the server's statement_timeout.
        "57014" => {
            "a statement_timeout set on the role or database cancelled the statement: raise it \
             for dhctl's role (ALTER ROLE ... SET statement_timeout = '10min') or run the \
             long step at a quieter time"
        }
        // duplicate_table / undefined_table, mostly met by migration authors.
        "42P07" => {
            "an object of that name already exists (made by hand, by another tool, or by an \
             earlier migration): rename it in the migration, or drop the stray object"
        }
        "42P01" => {
            "the statement names a table that does not exist here: check its name and schema, \
             and that the migration creating it has a lower version"
        }
        // deadlock_detected: the server rolled back this side.
        "40P01" => "another session took the same locks in the opposite order; run dhctl again",
        // disk_full, out_of_memory, too_many_connections
        "53100" => "the server's disk is full: free space on the server, then run dhctl again",
        "53300" => "the server has no free connection slot: retry, or raise max_connections",
        _ => return None,
    })
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_the_server_gave_no_hint_for_get_one_by_sqlstate() {
        let err = |sqlstate: &str, hint: Option<&str>| Error::Sql {
            context: "applying migration 20240101000001_create_api_keys".into(),
            detail: SqlDetail {
                sqlstate: sqlstate.into(),
                message: "m".into(),
                location: None,
                hint: hint.map(str::to_string),
            },
        };
        let permission = err("42501", None).hint().unwrap();
        assert!(permission.contains("GRANT"), "{permission}");
        assert!(
            !permission.contains("owner of the database"),
            "{permission}"
        );
        let read_only = err("25006", None).hint().unwrap();
        assert!(read_only.contains("standby"), "{read_only}");
        // The server's own hint wins; unknown codes get none rather than a guess.
        assert_eq!(
            err("42501", Some("server")).hint().as_deref(),
            Some("server")
        );
        assert_eq!(err("XX000", None).hint(), None);
    }

    #[test]
    fn a_permission_hint_names_what_the_message_names_and_claims_nothing_else() {
        let function = privilege_hint("permission denied for function secret_fn");
        assert!(
            function.contains("function secret_fn") && function.contains("EXECUTE"),
            "{function}"
        );
        assert!(!function.contains("CREATE ON SCHEMA"), "{function}");
        assert!(!function.contains("owner of the database"), "{function}");
        let schema = privilege_hint("permission denied for schema public");
        assert!(
            schema.contains("schema public") && schema.contains("CREATE"),
            "{schema}"
        );
        let owner = privilege_hint("must be owner of table api_keys");
        assert!(
            owner.contains("owner of table api_keys") && owner.contains("OWNER TO"),
            "{owner}"
        );
    }
}
