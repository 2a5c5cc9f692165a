//! dhctl's integration tests: one binary (one link), a module per area. Every test gets its own
//! database on the server at DHCTL_TEST_DATABASE_URL and drives the real `dhctl` binary.

mod adversary_misc;
mod cli;
mod cluster;
mod connection;
mod files;
mod harness;
mod health;
mod history;
mod hostile;
mod lint;
mod migrate;
mod packaging;
mod partitions;
mod pooler;
mod privilege;
mod session;
mod tls;
mod verify;
