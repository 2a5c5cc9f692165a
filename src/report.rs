//! What every command's report shares, whichever domain made it: whether the run changed
//! anything ([`Mode`], a report's `dry_run`) and how durations are written (`*_ms`).

use std::time::Duration;

/// Whether to change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

impl Mode {
    /// The mode a `--dry-run` flag asks for.
    pub fn dry_run_if(dry_run: bool) -> Mode {
        if dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        }
    }
}

/// A duration in milliseconds, rounded to the microsecond, as every report's `*_ms` field holds
/// it (docs/json.md).
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
