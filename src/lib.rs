//! dhctl: schema migrations, partition maintenance and health probes for the DataHub API
//! gateway's PostgreSQL database. The binaries (`dhctl`, `dhctl-health`) are thin; everything
//! they do lives here and returns data. Only `output` prints.
//!
//! # Layout
//!
//! Top-level modules in layers; a module imports only from the layers below it, so no two
//! top-level modules import each other (docs/architecture.md draws the graph).
//!
//! - **Commands** — [`commands`]: one module per subcommand, each `run(args, global)`, and the
//!   dispatch. Turns typed flags into the domain's options, calls the domains, hands reports to
//!   [`output`]. The one place domains meet: `migrate` applies migrations, then ensures
//!   partitions under the same lock.
//! - **Rendering** — [`output`]: human tables, JSON documents, progress bars, errors; the only
//!   code that prints.
//! - **Domains** — [`migrations`] (files, history, the status diff, migrate, rollback, new),
//!   [`partitions`] (policies, the live catalog, the pure plan, create/prune/drain/inspect),
//!   [`verify`] (reads both), [`dump`] (the schema as loadable SQL), [`health`] (the
//!   `dhctl-health` server). `migrations` and
//!   `partitions` never import each other.
//! - **Settings** — [`cli`] (clap types; values typed by value parsers at the edge), [`config`]
//!   (flags, environment and `.env` into [`db::DbConfig`]), [`conninfo`] (libpq's text formats).
//! - **Shared pieces** — [`db`] (the session, the advisory lock and [`db::Locked`], the one way
//!   to a session that may change the schema; retries, identifiers), [`progress`] (the
//!   [`progress::Progress`] a long run reports to), [`report`] ([`report::Mode`], durations,
//!   [`report::Failed`]: a failed run with its partial report), [`source`] (files compiled in or
//!   a folder), [`error`] (the one error type and its exit codes; depends on nothing),
//!   [`fleet`] (a `--targets` file read and checked, and the pure rollout schedule).

pub mod cli;
pub mod commands;
pub mod config;
pub mod conninfo;
pub mod db;
pub mod dump;
pub mod error;
pub mod fleet;
pub mod health;
pub mod lint;
pub mod migrations;
pub mod output;
pub mod partitions;
pub mod progress;
pub mod report;
pub mod source;
pub mod verify;

/// sql/ and partitions/ as compiled into the binary (see build.rs).
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use error::{Error, Result};
