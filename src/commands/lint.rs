//! `dhctl lint`: offline over the catalog or the named paths, or with `--pending` against the
//! database the connection options name (no lock taken, nothing written).

use crate::cli::{GlobalArgs, LintArgs};
use crate::error::{Error, Result};
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
        // Off the runtime's one thread: linting a large or pathological file is CPU work that
        // would otherwise keep the signal handler from running (SIGTERM would wait for it).
        tracing::debug!(paths = options.paths.len(), "linting");
        tokio::task::spawn_blocking(move || lint::run(&options))
            .await
            .map_err(|e| Error::usage(format!("the lint stopped: {e}")))??
    };
    output::lint::emit(global.format, &report);
    Ok(report.exit_code())
}
