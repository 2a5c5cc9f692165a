//! `dhctl lint`: offline over the catalog or the named paths, or with `--pending` against the
//! database the connection options name (no lock taken, nothing written).

use super::{Produced, Shown};
use crate::cli::{Format, LintArgs};
use crate::error::{Error, Result};
use crate::lint::{self, Options, Plan, Report};
use crate::output;

/// `dhctl lint`: offline, or with `--pending` on the database `args` names.
pub(crate) async fn produce(args: &LintArgs) -> Result<Produced<Report>> {
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
    let code = report.exit_code();
    Ok(Produced::ran(report, code))
}

impl Shown for Report {
    fn human(&self) -> String {
        output::lint::human(self, false)
    }

    fn emit(&self, format: Format) {
        output::lint::emit(format, self);
    }

    fn changed(&self) -> String {
        format!(
            "{} file(s) linted: {} error(s), {} warning(s)",
            self.files, self.errors, self.warnings
        )
    }
}
