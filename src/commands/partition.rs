//! `dhctl partition create | prune | drain-default | status`. Every input is checked before
//! connecting.

use serde::Serialize;

use super::{End, Produced, Shown};
use crate::cli::{
    Format, GlobalArgs, PartitionCommand, PartitionCreateArgs, PartitionDrainArgs,
    PartitionPruneArgs, PartitionStatusArgs, PartitionsDirArg,
};
use crate::db::{Access, CreateDatabase, DbConfig};
use crate::error::Result;
use crate::output::{self, progress::Reporter};
use crate::partitions::{
    self, policy, CreateOptions, DrainOptions, Inspection, Policy, PruneOptions, RetentionMode,
    RunReport,
};
use crate::report::Mode;

/// A partition subcommand on the one database its flags name.
pub async fn run(command: &PartitionCommand, global: &GlobalArgs) -> Result<i32> {
    let format = global.format;
    let progress = Reporter::for_stderr(format == Format::Json, "creating");
    let outcome = match command {
        PartitionCommand::Create(args) => create(args, &progress).await?,
        PartitionCommand::Prune(args) => prune(args, &progress).await?,
        PartitionCommand::DrainDefault(args) => drain_default(args, &progress).await?,
        PartitionCommand::Status(args) => return Ok(super::show(format, status(args).await?)),
    };
    Ok(super::show(format, ran(outcome)))
}

/// A maintenance run's report, with the per-table failures it describes.
pub(crate) fn ran(outcome: partitions::Maintenance) -> Produced<RunReport> {
    Produced {
        report: Some(outcome.report),
        end: End::Failures(outcome.failures),
    }
}

impl Shown for RunReport {
    fn human(&self) -> String {
        output::partitions::run(self)
    }

    fn changed(&self) -> String {
        let steps: usize = self.tables.iter().map(|t| t.steps.len()).sum();
        let failed = self.tables.iter().filter(|t| t.error.is_some()).count();
        let mut text = match (self.dry_run, steps) {
            (_, 0) => "nothing to do".to_string(),
            (true, n) => format!("{n} step(s) planned"),
            (false, n) => format!("{n} step(s) done"),
        };
        if failed > 0 {
            text.push_str(&format!(", {failed} table(s) failed"));
        }
        text
    }
}

/// `partition status`'s report: the inspection, with the database it was read from.
#[derive(Serialize)]
pub(crate) struct Located {
    pub database: String,
    #[serde(flatten)]
    pub report: Inspection,
}

impl Shown for Located {
    fn human(&self) -> String {
        output::partitions::status(&self.report)
    }

    fn changed(&self) -> String {
        let runway: Vec<String> = self
            .report
            .tables
            .iter()
            .map(|t| format!("{} {}", t.table, t.partitions.len()))
            .collect();
        format!("partitions: {}", runway.join(", "))
    }
}

/// The policies a command works on: every one, or the `--table` given.
fn policies(dir: &PartitionsDirArg, table: Option<&str>) -> Result<Vec<Policy>> {
    policy::select(policy::load(&dir.source())?, table)
}

pub(crate) async fn create(
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

pub(crate) async fn prune(
    args: &PartitionPruneArgs,
    progress: &Reporter,
) -> Result<partitions::Maintenance> {
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

/// `partition status` on the database `args` names.
pub(crate) async fn status(args: &PartitionStatusArgs) -> Result<Produced<Located>> {
    let policies = policies(&args.partitions, args.table.as_deref())?;
    let cfg = super::unlocked(&args.connect)?;
    let session = crate::db::connect(&cfg, CreateDatabase::Never).await?;
    let inspection = partitions::inspect(&session.client, &policies, args.now).await?;
    Ok(Produced::ran(
        Located {
            database: cfg.display_target(),
            report: inspection,
        },
        0,
    ))
}
