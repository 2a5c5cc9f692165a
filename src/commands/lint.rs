//! `dhctl lint`: offline over the catalog or the named paths, or with `--pending` against the
//! database the connection options name (no lock taken, nothing written).

use crate::cli::{GlobalArgs, LintArgs};
use crate::error::Result;
use crate::lint::{self, Options, Plan};
use crate::output;

pub async fn run(args: &LintArgs, global: &GlobalArgs) -> Result<i32> {
    let options = Options {
        migrations: args.migrations.source(),
        partitions: args.partitions.source(),
        paths: args.paths.clone(),
        plan: if args.plan { Plan::Collect } else { Plan::Skip },
    };
    let report = if args.pending {
        let cfg = super::unlocked(&args.connect)?;
        lint::pending_live(&cfg, &options, args.small_table).await?
    } else {
        lint::run(&options)?
    };
    output::lint::emit(global.format, &report);
    Ok(report.exit_code())
}
