//! dhctl's integration tests: one binary (one link), a module per area. Every test gets its own
//! database on the server at DHCTL_TEST_DATABASE_URL and drives the real `dhctl` binary.

mod cluster;
mod connection;
mod harness;
mod health;
mod migrate;
mod packaging;
mod partitions;
mod pooler;
mod privilege;
mod tls;
mod verify;
