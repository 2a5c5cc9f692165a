//! `dhctl verify`: check the live database against the migrations; no lock, no change.

use crate::cli::{GlobalArgs, LockArgs, VerifyArgs};
use crate::db::{Access, DbConfig};
use crate::error::Result;
use crate::migrations::catalog;
use crate::output;
use crate::partitions::policy;
use crate::verify;

pub async fn run(args: &VerifyArgs, global: &GlobalArgs) -> Result<i32> {
    let options = verify::Options::parse(args.now, args.expect_fingerprint.as_deref())?
        .with_scratch(args.scratch_url.as_deref(), args.require_all)?;
    let catalog = catalog::load(&args.migrations.source())?;
    let locks = LockArgs {
        lock_timeout: args.lock_timeout,
        ..LockArgs::default()
    };
    let cfg = DbConfig::from_args(&args.connect, &locks, Access::Read)?;
    let policies = policy::load(&args.partitions.source())?;
    let report = verify::run(&cfg, &catalog, &policies, &options).await?;
    output::emit(global.format, &report, output::verify::human);
    Ok(report.exit_code())
}
