//! `dhctl status`: every migration's state; no lock, no change.

use super::{Produced, Shown};
use crate::cli::StatusArgs;
use crate::error::Result;
use crate::migrations::catalog::{self, Catalog};
use crate::migrations::{status_report, wait, Ahead, StatusReport};
use crate::output::{self, human};

/// `dhctl status` on the database `args` names.
pub(crate) async fn produce(args: &StatusArgs) -> Result<Produced<StatusReport>> {
    // Off the runtime's thread, so that a signal during a long read is heard (`off_thread`).
    let source = args.migrations.source();
    let catalog = super::off_thread(move || catalog::load(&source)).await?;
    produce_with(args, &catalog).await
}

/// `dhctl status` on the database `args` names against `catalog`, read before (once for a
/// fleet: docs/fleet.md).
pub(crate) async fn produce_with(
    args: &StatusArgs,
    catalog: &Catalog,
) -> Result<Produced<StatusReport>> {
    let cfg = super::unlocked(&args.connect)?;
    if let Some(limit) = args.until_current {
        let waited = wait::until_current(&cfg, catalog, limit, &output::waiting).await?;
        let code = waited.exit_code();
        let (wait::Waited::Current(report)
        | wait::Waited::TimedOut(report)
        | wait::Waited::Drift(report)) = waited;
        return Ok(Produced::ran(report, code));
    }
    let report = status_report(&cfg, catalog).await?;
    let ahead = if args.strict {
        Ahead::Refused
    } else {
        Ahead::Allowed
    };
    let code = if args.exit_code {
        report.exit_code(ahead)
    } else {
        0
    };
    Ok(Produced::ran(report, code))
}

impl Shown for StatusReport {
    fn human(&self) -> String {
        human::status(self)
    }

    fn changed(&self) -> String {
        let c = &self.counts;
        let mut parts = vec![
            format!("{} applied", c.applied),
            format!("{} pending", c.pending),
        ];
        // Every state the target's own status line counts: an out-of-order migration is not
        // pending (migrate refuses it without --allow-out-of-order), so it is named apart.
        for (n, what) in [
            (c.out_of_order, "out-of-order"),
            (c.modified, "modified"),
            (c.missing, "missing"),
            (c.ahead, "ahead"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}
