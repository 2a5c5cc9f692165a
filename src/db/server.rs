//! What kind of server a session reached (a primary, a hot standby, a server made read-only by a
//! setting) and whether that is the kind the command wants: libpq's `target_session_attrs`
//! decided on the row dhctl's session setup already reads, so finding the primary among several
//! hosts costs no round trip of its own. Pure; `db::connect` asks it about every host it tries.
//!
//! tokio-postgres implements `read-write` and `read-only` too, with a `SHOW
//! transaction_read_only` of its own after the startup, and fails a host with "database does not
//! allow writes": one more round trip per host, and neither which host nor why. dhctl walks the
//! hosts itself already (each attempt bounded as a whole by connect_timeout, see `db::open`), so
//! it hands tokio-postgres one host at a time with `any` and judges the server here.

use tokio_postgres::config::TargetSessionAttrs;

/// The server a session reached, as its first statement saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    /// `pg_is_in_recovery()`: a hot standby (or a server still replaying after a crash or
    /// being promoted).
    pub in_recovery: bool,
    /// `transaction_read_only` at the start of the session: on in recovery, and on a primary
    /// whose `default_transaction_read_only` is on (server, database or role setting).
    pub read_only: bool,
}

impl ServerState {
    /// A primary that accepts writes in this session.
    pub fn writable(&self) -> bool {
        !self.in_recovery && !self.read_only
    }
}

/// Why a server is not the kind a session wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// A hot standby in recovery, where writes are wanted.
    Standby,
    /// A primary where `default_transaction_read_only` is on, where writes are wanted.
    ReadOnlySetting,
    /// A writable server, where `target_session_attrs=read-only` asked for a read-only one.
    NotReadOnly,
}

impl Unfit {
    /// Why, for a message: "<host:port> is …".
    pub fn reason(&self) -> &'static str {
        match self {
            Unfit::Standby => "a standby in recovery (pg_is_in_recovery() is true)",
            Unfit::ReadOnlySetting => {
                "read-only by setting (default_transaction_read_only is on for this server, \
                 database or role)"
            }
            Unfit::NotReadOnly => {
                "writable, and target_session_attrs=read-only asks for a read-only server"
            }
        }
    }
}

/// Whether a server fits what the session wants (libpq's `target_session_attrs` semantics:
/// read-write means `transaction_read_only` is off, read-only that it is on).
pub fn fit(wanted: TargetSessionAttrs, state: ServerState) -> Result<(), Unfit> {
    match wanted {
        TargetSessionAttrs::ReadWrite if state.in_recovery => Err(Unfit::Standby),
        TargetSessionAttrs::ReadWrite if state.read_only => Err(Unfit::ReadOnlySetting),
        TargetSessionAttrs::ReadOnly if !state.read_only => Err(Unfit::NotReadOnly),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetSessionAttrs::{Any, ReadOnly, ReadWrite};

    const PRIMARY: ServerState = ServerState {
        in_recovery: false,
        read_only: false,
    };
    const STANDBY: ServerState = ServerState {
        in_recovery: true,
        read_only: true,
    };
    const READ_ONLY_PRIMARY: ServerState = ServerState {
        in_recovery: false,
        read_only: true,
    };

    #[test]
    fn each_kind_of_server_fits_what_libpq_says() {
        let cases = [
            (Any, PRIMARY, Ok(())),
            (Any, STANDBY, Ok(())),
            (Any, READ_ONLY_PRIMARY, Ok(())),
            (ReadWrite, PRIMARY, Ok(())),
            (ReadWrite, STANDBY, Err(Unfit::Standby)),
            (ReadWrite, READ_ONLY_PRIMARY, Err(Unfit::ReadOnlySetting)),
            (ReadOnly, PRIMARY, Err(Unfit::NotReadOnly)),
            (ReadOnly, STANDBY, Ok(())),
            (ReadOnly, READ_ONLY_PRIMARY, Ok(())),
        ];
        for (wanted, state, expected) in cases {
            assert_eq!(fit(wanted, state), expected, "{wanted:?} {state:?}");
        }
        assert!(PRIMARY.writable() && !STANDBY.writable() && !READ_ONLY_PRIMARY.writable());
    }

    #[test]
    fn reasons_say_standby_or_setting() {
        assert!(Unfit::Standby.reason().contains("standby"));
        assert!(Unfit::ReadOnlySetting
            .reason()
            .contains("default_transaction_read_only"));
    }
}
