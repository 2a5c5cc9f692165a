//! `dhctl status`: every migration's state; no lock, no change.

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::Result;
use crate::migrations::{catalog, status_report, wait, Ahead};
use crate::output::{self, human};

pub async fn run(args: &StatusArgs, global: &GlobalArgs) -> Result<i32> {
    let catalog = catalog::load(&args.migrations.source())?;
    let cfg = super::unlocked(&args.connect)?;
    if let Some(limit) = args.until_current {
        let waited = wait::until_current(&cfg, &catalog, limit, &output::waiting).await?;
        output::emit(global.format, waited.report(), human::status);
        return Ok(waited.exit_code());
    }
    let report = status_report(&cfg, &catalog).await?;
    output::emit(global.format, &report, human::status);
    let ahead = if args.strict {
        Ahead::Refused
    } else {
        Ahead::Allowed
    };
    Ok(if args.exit_code {
        report.exit_code(ahead)
    } else {
        0
    })
}
