//! `dhctl-health`: the gateway's health endpoints (`/health`, `/health/ready`, `/health/live`)
//! and `/metrics` (Prometheus) as a small hyper 1 server, sharing dhctl's connection-string parsing and TLS.
//!
//! - `config`: settings from the environment;
//! - `checks`: the single-flight readiness state and `/health/ready`'s report;
//! - `dependencies`: the PostgreSQL pool, the Redis connection and the checks on each;
//! - `schema`: what `/metrics` reads about the history and the partitions, lock-safe;
//! - `metrics`: `/metrics`' figures and their Prometheus text;
//! - `report`: one check's result: the generic reason responses show, the detail logs get;
//! - `routes`: the routes, status codes, JSON shapes and common headers;
//! - `deadline`: the write stall deadline every connection's socket is wrapped in;
//! - `server`: `serve(listener, config, shutdown)`, limits and graceful shutdown;
//! - `logging`: JSON log lines on stderr;
//! - `probe`: `--check-url`, a self-contained HTTP GET for container HEALTHCHECKs.
//!
//! Contract: DESIGN.md, "dhctl-health"; operator guide: docs/health.md.

pub mod checks;
pub mod config;
pub mod deadline;
pub mod dependencies;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod routes;
pub mod schema;
pub mod server;

pub use config::HealthConfig;
pub use server::{serve, signal};
