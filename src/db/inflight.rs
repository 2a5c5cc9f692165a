//! The sessions dhctl has open right now, each with the cancel token SIGINT/SIGTERM uses to stop
//! its running statement on the server (otherwise the backend would go on running it, holding its
//! locks, after dhctl exits). One entry per live connection, registered when it opens and
//! removed when its [`Session`](super::Session) is dropped, so a fleet run (`--targets`) cancels
//! every target's statement, and the count of live connections is a fact the fleet report shows
//! (`connections.peak`).
//!
//! A fleet runs each target's command inside [`for_target`]: code far below (the migration
//! runner, verify's scratch database) asks [`current_target`] which target it works for, to keep
//! its own interrupt state per target.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{CancelToken, NoTls};

use super::tls::{self, TlsSettings};
use crate::error::Error;

/// The fleet target a piece of work belongs to (its index in the fleet file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub usize);

tokio::task_local! {
    static TARGET: TargetId;
}

/// Runs `work` as target `id`'s: [`current_target`] says so while it runs.
pub async fn for_target<F: Future>(id: TargetId, work: F) -> F::Output {
    TARGET.scope(id, work).await
}

/// The target the running work belongs to; None outside a fleet.
pub fn current_target() -> Option<TargetId> {
    TARGET.try_with(|t| *t).ok()
}

/// What a piece of work was doing, where an interrupt's usual message ("its transaction rolled
/// back") would not be true. One at a time per target: [`interrupt_error`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A `transaction:false` section (or its bookkeeping) is running: the statements before the
    /// cancelled one stay.
    OutsideTransaction,
    /// A COMMIT is in flight: cancelling it may leave it committed (synchronous replication).
    Committing,
    /// `migrate --wait-replicas` waits for the standbys: everything is committed.
    WaitingForStandbys,
}

static PHASES: Mutex<Vec<(Option<TargetId>, Phase)>> = Mutex::new(Vec::new());

/// Sets (or with None clears) the running work's phase, for [`phase`]. Cleared explicitly, not on
/// drop: an interrupt drops the work before its message is chosen.
pub fn set_phase(phase: Option<Phase>) {
    let target = current_target();
    if let Ok(mut phases) = PHASES.lock() {
        phases.retain(|(t, _)| *t != target);
        if let Some(phase) = phase {
            phases.push((target, phase));
        }
    }
}

/// The phase `target`'s work was in (None: the single database of a command without --targets).
fn phase(target: Option<TargetId>) -> Option<Phase> {
    PHASES.lock().ok().and_then(|phases| {
        phases
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, phase)| *phase)
    })
}

/// How `target`'s interrupted work ended (None: the one database of a command without
/// --targets): its future is dropped by now, `cancels` says whether its sessions' cancel
/// requests arrived, and the phase it left (see [`set_phase`]) what was in flight. The one place
/// an interrupt's message is chosen, for a single database and for each target of a fleet.
pub fn interrupt_error(target: Option<TargetId>, cancels: &Cancels) -> Error {
    let phase = phase(target);
    let outside_transaction = phase == Some(Phase::OutsideTransaction);
    match cancels.delivered(target) {
        None if !outside_transaction => Error::InterruptedIdle,
        Some(false) | None => Error::InterruptedUndelivered {
            outside_transaction,
        },
        Some(true) => match phase {
            Some(Phase::OutsideTransaction) => Error::InterruptedOutsideTransaction,
            Some(Phase::Committing) => Error::InterruptedDuringCommit,
            Some(Phase::WaitingForStandbys) => Error::InterruptedWaitingForStandbys,
            None => Error::Interrupted,
        },
    }
}

struct Entry {
    token: CancelToken,
    tls: Option<TlsSettings>,
    /// The fleet target whose work opened it (None outside a fleet).
    target: Option<TargetId>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    live: BTreeMap<u64, Entry>,
    peak: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    live: BTreeMap::new(),
    peak: 0,
});

/// A live session's place in the registry; dropping it (with its session) removes the entry.
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut r) = REGISTRY.lock() {
            r.live.remove(&self.0);
        }
    }
}

/// Registers a connection just opened.
pub(super) fn register(token: CancelToken, tls: Option<TlsSettings>) -> Registration {
    let Ok(mut r) = REGISTRY.lock() else {
        return Registration(u64::MAX);
    };
    r.next += 1;
    let id = r.next;
    let target = current_target();
    r.live.insert(id, Entry { token, tls, target });
    r.peak = r.peak.max(r.live.len());
    Registration(id)
}

/// How many connections are open now.
pub fn live_connections() -> usize {
    REGISTRY.lock().map(|r| r.live.len()).unwrap_or(0)
}

/// The most connections open at once since the last [`reset_peak`].
pub fn peak_connections() -> usize {
    REGISTRY.lock().map(|r| r.peak).unwrap_or(0)
}

/// Starts counting the peak afresh (from what is open now).
pub fn reset_peak() {
    if let Ok(mut r) = REGISTRY.lock() {
        r.peak = r.live.len();
    }
}

/// How long one cancel request may take (connecting, the TLS handshake under sslmode=prefer or
/// require, sending it). tokio-postgres bounds only the TCP connect: a server (or a proxy in
/// front of it) that accepts and then never answers would otherwise hold SIGINT forever. Past it
/// the session is closed instead, and the server rolls back when it notices.
pub const CANCEL_WAIT: Duration = Duration::from_secs(3);

/// The sessions open when SIGINT/SIGTERM arrived, about to be cancelled.
pub struct Pending(Vec<(Option<TargetId>, CancelToken, Option<TlsSettings>)>);

/// Whether the cancel requests reached their servers, per target.
#[derive(Debug, Default)]
pub struct Cancels(Vec<(Option<TargetId>, bool)>);

impl Cancels {
    /// For the sessions of `target` (None: those opened outside a fleet): None when it had no
    /// session open, else whether every cancel request was delivered.
    pub fn delivered(&self, target: Option<TargetId>) -> Option<bool> {
        let mut of = self.0.iter().filter(|(t, _)| *t == target).peekable();
        of.peek()?;
        Some(of.all(|(_, delivered)| *delivered))
    }
}

/// The live sessions, to cancel with [`Pending::cancel`]. Taken on SIGINT/SIGTERM, before the
/// sessions' futures are dropped (their entries go with them).
pub fn pending() -> Pending {
    match REGISTRY.lock() {
        Ok(r) => Pending(
            r.live
                .values()
                .map(|e| (e.target, e.token.clone(), e.tls.clone()))
                .collect(),
        ),
        Err(_) => Pending(Vec::new()),
    }
}

impl Pending {
    /// Cancels the statement running on every session, all at once, each request bounded by
    /// [`CANCEL_WAIT`].
    pub async fn cancel(&self) -> Cancels {
        let sent = self.0.iter().map(|(target, token, tls)| async move {
            let delivered = tokio::time::timeout(CANCEL_WAIT, cancel(token, tls.as_ref()))
                .await
                .unwrap_or(false);
            (*target, delivered)
        });
        Cancels(futures_util::future::join_all(sent).await)
    }

    /// As if no cancel request had arrived: a second signal stopped waiting for them.
    pub fn abandoned(&self) -> Cancels {
        Cancels(
            self.0
                .iter()
                .map(|(target, _, _)| (*target, false))
                .collect(),
        )
    }
}

async fn cancel(token: &CancelToken, tls: Option<&TlsSettings>) -> bool {
    let outcome = if let Some(settings) = tls {
        match tls::make_connector(settings) {
            Ok(connector) => token.cancel_query(connector).await,
            Err(_) => return false,
        }
    } else {
        token.cancel_query(NoTls).await
    };
    match outcome {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cancel request failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_delivered_only_when_every_cancel_of_it_arrived() {
        let cancels = Cancels(vec![
            (Some(TargetId(0)), true),
            (Some(TargetId(1)), true),
            (Some(TargetId(1)), false),
            (None, true),
        ]);
        assert_eq!(cancels.delivered(Some(TargetId(0))), Some(true));
        assert_eq!(cancels.delivered(Some(TargetId(1))), Some(false));
        assert_eq!(cancels.delivered(Some(TargetId(2))), None);
        assert_eq!(cancels.delivered(None), Some(true));
    }

    /// Each phase a target's work can leave, with its cancel delivered, not delivered, or with
    /// no session open, gives its own message (a target of its own: phases are process-wide).
    #[tokio::test]
    async fn the_phase_a_target_left_and_its_cancels_choose_the_interrupt_message() {
        let id = TargetId(usize::MAX - 1);
        let target = Some(id);
        let delivered = Cancels(vec![(target, true)]);
        let undelivered = Cancels(vec![(target, false)]);
        let idle = Cancels::default();
        let outside = Error::InterruptedUndelivered {
            outside_transaction: true,
        };
        let inside = Error::InterruptedUndelivered {
            outside_transaction: false,
        };
        let cases = [
            (None, &delivered, Error::Interrupted),
            (None, &undelivered, inside),
            (None, &idle, Error::InterruptedIdle),
            (
                Some(Phase::OutsideTransaction),
                &delivered,
                Error::InterruptedOutsideTransaction,
            ),
            (Some(Phase::OutsideTransaction), &undelivered, outside),
            (
                Some(Phase::OutsideTransaction),
                &idle,
                Error::InterruptedUndelivered {
                    outside_transaction: true,
                },
            ),
            (
                Some(Phase::Committing),
                &delivered,
                Error::InterruptedDuringCommit,
            ),
            (
                Some(Phase::WaitingForStandbys),
                &delivered,
                Error::InterruptedWaitingForStandbys,
            ),
        ];
        for (phase, cancels, expected) in cases {
            let got = for_target(id, async {
                set_phase(phase);
                let got = interrupt_error(target, cancels);
                set_phase(None);
                got
            })
            .await;
            assert_eq!(
                got.to_string(),
                expected.to_string(),
                "{phase:?}, {cancels:?}"
            );
        }
    }
}
