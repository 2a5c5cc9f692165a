//! `dhctl rollback`: undo applied migrations under the lock.

use crate::cli::{Format, GlobalArgs, RollbackArgs};
use crate::db::{Access, CreateDatabase, DbConfig, Locked};
use crate::error::Result;
use crate::migrations::catalog;
use crate::migrations::rollback::{self, Undo};
use crate::output::{self, human, progress::Reporter};
use crate::report::{Mode, Sql};

pub async fn run(args: &RollbackArgs, global: &GlobalArgs) -> Result<i32> {
    let format = global.format;
    let catalog = catalog::load(&args.migrations.source())?;
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let target = match (args.steps, args.to, args.all) {
        (_, _, true) => Undo::All,
        (_, Some(to), false) => Undo::To(to),
        (Some(n), None, false) => Undo::Steps(n),
        (None, None, false) => Undo::Steps(1),
    };
    let options = rollback::Options {
        target,
        mode: Mode::dry_run_if(args.dry_run),
        sql: Sql::shown_if(global.verbose),
    };
    let progress = Reporter::for_stderr(format == Format::Json, "rolling back");
    // Never creates the database: there is nothing to undo in one that does not exist.
    let mut locked = Locked::open(&cfg, CreateDatabase::Never).await?;
    let result = rollback::run(&mut locked, &cfg, &catalog, options, &progress).await;
    match locked.finish(result).await {
        Ok(report) => {
            output::emit(format, &report, human::rollback);
            Ok(0)
        }
        Err(failed) => super::report_failure(format, *failed, human::rollback),
    }
}
