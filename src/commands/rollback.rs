//! `dhctl rollback`: undo applied migrations under the lock.

use super::{Produced, Shown};
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::db::{Access, CreateDatabase, DbConfig, Locked};
use crate::error::Result;
use crate::migrations::catalog;
use crate::migrations::rollback::{self, RollbackReport, Undo};
use crate::output::{human, progress::Reporter};
use crate::report::{Mode, Sql};

/// `dhctl rollback` on the database `args` names; `progress` shows each step.
pub(crate) async fn produce(
    args: &RollbackArgs,
    global: &GlobalArgs,
    progress: &Reporter,
) -> Result<Produced<RollbackReport>> {
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
    // Never creates the database: there is nothing to undo in one that does not exist.
    let mut locked = Locked::open(&cfg, CreateDatabase::Never).await?;
    let result = rollback::run(&mut locked, &cfg, &catalog, options, progress).await;
    match locked.finish(result).await {
        Ok(report) => Ok(Produced::ran(report, 0)),
        Err(failed) => super::report_failure(*failed),
    }
}

impl Shown for RollbackReport {
    fn human(&self) -> String {
        human::rollback(self)
    }

    fn changed(&self) -> String {
        match (self.dry_run, self.rolled_back.len()) {
            (_, 0) => "nothing to undo".into(),
            (true, n) => format!("would undo {n} migration(s)"),
            (false, n) => format!("undid {n} migration(s)"),
        }
    }
}
