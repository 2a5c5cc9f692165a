//! dhctl: schema migrations, partition maintenance and health probes for the DataHub API
//! gateway's PostgreSQL database. The binaries (`dhctl`, `dhctl-health`) are thin; everything
//! they do lives here and returns data. Only `output` prints.

pub mod cli;
pub mod config;
pub mod conninfo;
pub mod db;
pub mod error;
pub mod health;
pub mod lint;
pub mod migrations;
pub mod output;
pub mod partitions;
pub mod verify;

/// sql/ and partitions/ as compiled into the binary (see build.rs).
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use error::{Error, Result};
