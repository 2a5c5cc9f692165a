//! JSON log lines on stderr, one event per line.
//!
//! No line can hold a password because none is ever given one: connection targets are logged
//! from the parsed settings (`user@host:port/database`, see `crate::db::describe` and
//! `RedisSettings::describe`), never from a URL's text, and the drivers' error texts name no
//! password. Masking is by structure, not by searching the text: an earlier version replaced
//! each configured password wherever it appeared, which with user = database = password
//! (`datahub`) printed `***@db/***`, telling the reader the password, and with a password of
//! `"` turned every line into invalid JSON (issue 13, item 4). Lines are written by
//! tracing-subscriber's JSON formatter untouched, so each is a valid JSON object.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber: `RUST_LOG` or `info`, one event per line on stderr.
pub fn init() {
    let filter = std::env::var("RUST_LOG").unwrap_or_default();
    // try_init, not set_global_default: it also routes the `log` crate's records (the
    // PostgreSQL driver and rustls log through it) into the same JSON lines.
    let _ = dispatch(&filter, std::io::stderr).try_init();
}

/// The subscriber the binary installs, writing to `writer`, filtered by `filter` (tracing's
/// `EnvFilter` syntax; empty or invalid means `info`). Tests that run the server in process
/// install it per runtime, with a writer that collects the lines.
pub fn dispatch<W>(filter: &str, writer: W) -> tracing::Dispatch
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .ok()
        .filter(|_| !filter.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish();
    tracing::Dispatch::new(subscriber)
}
