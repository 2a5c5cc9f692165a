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

use tokio_postgres::{CancelToken, NoTls};

use super::tls::{self, TlsSettings};

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
/// back") would not be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
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
pub fn phase(target: Option<TargetId>) -> Option<Phase> {
    PHASES.lock().ok().and_then(|phases| {
        phases
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, phase)| *phase)
    })
}

struct Entry {
    token: CancelToken,
    tls: Option<TlsSettings>,
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
    r.live.insert(id, Entry { token, tls });
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

/// Cancels the statement running on every live session, all at once. Called on SIGINT/SIGTERM,
/// before the sessions' futures are dropped (their entries go with them).
pub async fn cancel_all() {
    let entries: Vec<(CancelToken, Option<TlsSettings>)> = match REGISTRY.lock() {
        Ok(r) => r
            .live
            .values()
            .map(|e| (e.token.clone(), e.tls.clone()))
            .collect(),
        Err(_) => return,
    };
    futures_util::future::join_all(entries.into_iter().map(|(token, tls)| cancel(token, tls)))
        .await;
}

async fn cancel(token: CancelToken, tls: Option<TlsSettings>) {
    let outcome = if let Some(settings) = tls {
        match tls::make_connector(&settings) {
            Ok(connector) => token.cancel_query(connector).await,
            Err(_) => return,
        }
    } else {
        token.cancel_query(NoTls).await
    };
    if let Err(e) = outcome {
        tracing::debug!(error = %e, "cancel request failed");
    }
}
