//! The accept loop: `serve(listener, config, shutdown)`, in the shape of mini-redis's
//! `server::run`. Tests bind port 0 and pass their own shutdown future; the binary passes
//! SIGTERM/SIGINT.
//!
//! Robustness is hyper's HTTP/1 parser plus the bounds set here: a cap on open connections
//! (a semaphore; past it new connections wait in the kernel's accept queue), a cap on the
//! request head (hyper answers 431), a header read timeout (which also closes idle keep-alive
//! connections), a write stall deadline (a client that stops reading its answers is cut, see
//! `deadline`), a cap on requests per connection (so pipelining cannot keep one connection
//! busy forever), and a drain timeout for graceful shutdown. Together they bound how long any
//! one connection can hold a slot, whatever the client does, so probes always get a turn.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::checks::Readiness;
use super::config::HealthConfig;
use super::deadline::WriteDeadline;
use super::routes::{handle, App};
use crate::error::Result;

/// hyper's own floor for its read buffer (`max_buf_size` panics below it).
const MIN_READ_BUFFER: usize = 8192;

/// Pause after an accept error such as EMFILE, so a full fd table does not become a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the health endpoints on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (at most `limits.drain_timeout`) and closes the pool.
pub async fn serve(
    listener: TcpListener,
    config: HealthConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let readiness = Readiness::new(&config)?;
    let app = Arc::new(App {
        readiness: Arc::clone(&readiness),
    });
    let limits = config.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        // The read buffer need not exceed the head limit: we never read a request body.
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();

    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        // Built from the parsed settings (user, host, port, database), never from the URL
        // text, so no password can be in it whatever the URL looked like.
        database = %describe_target(&config),
        redis = %config.redis.describe(),
        check_timeout_ms = config.check_timeout.as_millis() as u64,
        max_connections = limits.max_connections,
        version = super::routes::VERSION,
        "listening"
    );
    readiness.warm_up();

    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break }; // the semaphore is never closed; belt and braces
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: the listener is fine, resources are short.
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Responses are one small write each; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let served = Arc::new(AtomicUsize::new(0));
        let max_requests = limits.max_requests_per_connection;
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            let nth = served.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let mut response = handle(req, app).await?;
                if nth >= max_requests {
                    // hyper closes the connection after a response that says so; requests the
                    // client pipelined behind it are dropped unanswered, as HTTP/1.1 allows.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Client-side trouble (garbage, resets, header timeouts): not the server's
                // error, and logging each at warn would let any client flood the log.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        "shutting down: no longer accepting; draining"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained; exiting"),
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!(
            drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
            "drain timeout reached; closing the remaining connections"
        ),
    }
    readiness.close();
    Ok(())
}

fn describe_target(config: &HealthConfig) -> String {
    crate::db::describe(&config.database.pg)
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
