//! dhctl's integration tests: one binary (one link), a module per area. Every test gets its own
//! database on the server at DHCTL_TEST_DATABASE_URL and drives the real `dhctl` binary.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "a test's unwrap or panic is its assertion, and its stderr is the test log"
)]

mod adv_lifecycle;
mod adversary_failover;
mod adversary_fleet;
mod adversary_misc;
mod baseline;
mod certs;
mod cli;
mod cluster;
mod connection;
mod dump;
mod dump_io;
mod dump_load;
mod dump_losses;
mod failover;
mod files;
mod fleet;
mod harness;
mod health;
mod history;
mod hostile;
mod layers;
mod lint;
mod migrate;
mod out_of_order;
mod packaging;
mod partial_report;
mod partitions;
mod pooler;
mod privilege;
mod session;
mod tls;
mod until_current;
mod verify;
