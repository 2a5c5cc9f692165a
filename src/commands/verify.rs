//! `dhctl verify`: check the live database against the migrations; no lock, no change.

use super::{Produced, Shown};
use crate::cli::{LockArgs, VerifyArgs};
use crate::db::{Access, DbConfig};
use crate::error::Result;
use crate::migrations::catalog;
use crate::output;
use crate::partitions::policy;
use crate::verify::{self, VerifyReport};

/// `dhctl verify` on the database `args` names.
pub(crate) async fn produce(args: &VerifyArgs) -> Result<Produced<VerifyReport>> {
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
    let code = report.exit_code();
    Ok(Produced::ran(report, code))
}

impl Shown for VerifyReport {
    fn human(&self) -> String {
        output::verify::human(self)
    }

    fn changed(&self) -> String {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == verify::Status::Fail)
            .map(|c| c.name.as_str().to_string())
            .collect();
        if failed.is_empty() {
            format!("passed, {}", self.fingerprint)
        } else {
            format!("failed: {}", failed.join(", "))
        }
    }
}
