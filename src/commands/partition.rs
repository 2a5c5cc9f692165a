//! `dhctl partition create | prune | drain-default | status`. Every input is checked before
//! connecting.

use crate::cli::{
    Format, GlobalArgs, PartitionCommand, PartitionCreateArgs, PartitionDrainArgs,
    PartitionPruneArgs, PartitionStatusArgs, PartitionsDirArg,
};
use crate::db::{Access, CreateDatabase, DbConfig};
use crate::error::Result;
use crate::output::{self, progress::Reporter};
use crate::partitions::{
    self, policy, CreateOptions, DrainOptions, Policy, PruneOptions, RetentionMode,
};
use crate::report::Mode;

pub async fn run(command: &PartitionCommand, global: &GlobalArgs) -> Result<i32> {
    let format = global.format;
    let progress = Reporter::for_stderr(format == Format::Json, "creating");
    let outcome = match command {
        PartitionCommand::Create(args) => create(args, &progress).await?,
        PartitionCommand::Prune(args) => prune(args, &progress).await?,
        PartitionCommand::DrainDefault(args) => drain_default(args, &progress).await?,
        PartitionCommand::Status(args) => return status(args, format).await,
    };
    output::emit(format, &outcome.report, output::partitions::run);
    Ok(super::exit_after(outcome.failures))
}

/// The policies a command works on: every one, or the `--table` given.
fn policies(dir: &PartitionsDirArg, table: Option<&str>) -> Result<Vec<Policy>> {
    policy::select(policy::load(&dir.source())?, table)
}

async fn create(
    args: &PartitionCreateArgs,
    progress: &Reporter,
) -> Result<partitions::Maintenance> {
    let policies = policies(&args.partitions, args.table.as_deref())?;
    if let Some(ahead) = args.ahead {
        partitions::check_ahead(ahead)?;
    }
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let options = CreateOptions {
        now: args.now,
        ahead: args.ahead,
        mode: Mode::dry_run_if(args.dry_run),
    };
    partitions::create(&cfg, &policies, &options, progress).await
}

async fn prune(args: &PartitionPruneArgs, progress: &Reporter) -> Result<partitions::Maintenance> {
    let policies = policies(&args.partitions, args.table.as_deref())?;
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let options = PruneOptions {
        now: args.now,
        retention: args.retention,
        keep: args.keep_table.then_some(RetentionMode::Detach),
        mode: Mode::dry_run_if(args.dry_run),
    };
    partitions::prune(&cfg, &policies, &options, progress).await
}

async fn drain_default(
    args: &PartitionDrainArgs,
    progress: &Reporter,
) -> Result<partitions::Maintenance> {
    let policies = policies(&args.partitions, Some(args.table.as_str()))?;
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let options = DrainOptions {
        batch: args.batch,
        mode: Mode::dry_run_if(args.dry_run),
    };
    partitions::drain_default(&cfg, &policies[0], &options, progress).await
}

async fn status(args: &PartitionStatusArgs, format: Format) -> Result<i32> {
    let policies = policies(&args.partitions, args.table.as_deref())?;
    let cfg = super::unlocked(&args.connect)?;
    let session = crate::db::connect(&cfg, CreateDatabase::Never).await?;
    let inspection = partitions::inspect(&session.client, &policies, args.now).await?;
    let located = output::WithDatabase {
        database: cfg.display_target(),
        report: &inspection,
    };
    output::emit(format, &located, |l| output::partitions::status(l.report));
    Ok(0)
}
