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

/// Whether a dry run's plan carries each step's SQL (`--verbose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    Shown,
    Hidden,
}

impl Sql {
    pub fn shown_if(verbose: bool) -> Sql {
        if verbose {
            Sql::Shown
        } else {
            Sql::Hidden
        }
    }
}

/// A run that failed part of the way, with the report of what it did before (as refinery's
/// `Error { kind, report }` does): a failed `migrate` still says which migrations it applied.
/// `report` is None when the run failed before changing anything.
#[derive(Debug)]
pub struct Failed<R> {
    pub error: crate::error::Error,
    pub report: Option<R>,
}

impl<R> Failed<R> {
    /// The same failure with its report turned into the report of a larger run.
    pub fn map_report<S>(self, f: impl FnOnce(R) -> S) -> Failed<S> {
        Failed {
            error: self.error,
            report: self.report.map(f),
        }
    }
}

impl<R> From<crate::error::Error> for Box<Failed<R>> {
    fn from(error: crate::error::Error) -> Box<Failed<R>> {
        Box::new(Failed {
            error,
            report: None,
        })
    }
}
