//! JSON log lines on stderr, one event per line.
//!
//! No line can hold a password because none is ever given one: connection targets are logged
//! from the parsed settings (`user@host:port/database`, see `crate::config::describe` and
//! `RedisSettings::describe`), never from a URL's text, and the drivers' error texts name no
//! password. Masking is by structure, not by searching the text: an earlier version replaced
//! each configured password wherever it appeared, which with user = database = password
//! (`datahub`) printed `***@db/***`, telling the reader the password, and with a password of
//! `"` turned every line into invalid JSON (issue 13, item 4). Lines are written by
//! tracing-subscriber's JSON formatter untouched, so each is a valid JSON object.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber: `RUST_LOG` or `info`, one event per line on stderr.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
