//! Progress of a long command (migrate, rollback, partition changes), reported by the library
//! and drawn by `output::progress` (a bar on a terminal, plain lines otherwise). Its own module
//! because every domain that changes the schema reports through it and none of them owns it.

use std::time::Duration;

/// What a long command tells its watcher. The library never prints.
pub trait Progress: Send + Sync {
    fn planned(&self, _total: usize) {}
    fn started(&self, _what: &str) {}
    fn finished(&self, _what: &str, _took: Duration) {}
    fn retrying(&self, _what: &str, _attempt: u32, _reason: &str) {}
    fn done(&self) {}
}

/// Progress that goes nowhere (tests, JSON output).
pub struct Silent;
impl Progress for Silent {}
