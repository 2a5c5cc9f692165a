//! The `dhctl` binary: parse, configure, run one command, print, exit with its code.
//! Everything else lives in the library.

use std::path::PathBuf;

use clap::Parser;

use dhctl::cli::{Cli, Command, Format, GlobalArgs, PartitionCommand};
use dhctl::config::DbConfig;
use dhctl::db::CreateDatabase;
use dhctl::migrations::migrate::{self, Mode};
use dhctl::migrations::rollback::{self, Target};
use dhctl::migrations::{catalog, new, status_report, Source};
use dhctl::output::{self, human, manual, progress::Reporter};
use dhctl::partitions::{self, policy, CreateOptions, PruneOptions, Retention, RetentionMode};
use dhctl::{verify, Error, Result};

fn main() {
    let env_problem = dhctl::config::load_dotenv().err();
    let cli = Cli::parse();
    let format = cli.global.format;
    init_logging(cli.global.verbose);
    let outcome = match env_problem {
        Some(e) => Err(e),
        None => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run_until_signal(cli)),
            Err(e) => Err(Error::usage(format!("cannot start the async runtime: {e}"))),
        },
    };
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            output::error(format, &err);
            err.exit_code()
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: bool) {
    let default = if verbose { "dhctl=debug,info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs the command; SIGINT or SIGTERM cancels the statement in flight on the server (so the
/// backend does not go on holding locks) and exits 130.
async fn run_until_signal(cli: Cli) -> Result<i32> {
    let signal = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    tokio::select! {
        result = run(&cli) => result,
        () = signal => {
            dhctl::db::cancel_in_flight().await;
            Err(Error::Interrupted)
        }
    }
}

fn migration_source(global: &GlobalArgs) -> Source {
    match &global.migrations_dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::Embedded,
    }
}

async fn run(cli: &Cli) -> Result<i32> {
    let global = &cli.global;
    let format = global.format;
    match &cli.command {
        Command::New(args) => {
            let dir = global
                .migrations_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("sql"));
            let report = new::run(&dir, &args.name, chrono::Utc::now())?;
            output::emit(format, &report, human::new);
            Ok(0)
        }
        Command::Status(args) => {
            let catalog = catalog::load(&migration_source(global))?;
            let cfg = DbConfig::from_args(global)?;
            let report = status_report(&cfg, &catalog).await?;
            output::emit(format, &report, human::status);
            Ok(if args.exit_code {
                report.exit_code()
            } else {
                0
            })
        }
        Command::Migrate(args) => {
            let catalog = catalog::load(&migration_source(global))?;
            let cfg = DbConfig::from_args(global)?;
            let mode = if args.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply
            };
            let create = if args.no_create_database || args.dry_run {
                CreateDatabase::Never
            } else {
                CreateDatabase::IfMissing
            };
            let options = migrate::Options {
                to: args.to,
                mode,
                create,
                show_sql: global.verbose,
            };
            // Policies are validated before anything changes; a dry run does not touch them.
            let policies = if args.no_partitions || args.dry_run {
                None
            } else {
                Some(policy::load(&policy_source(global))?)
            };
            let now = parse_now(args.now.as_deref())?;
            let partitions = policies
                .as_deref()
                .map(|policies| migrate::Partitions { policies, now });
            let progress = Reporter::for_stderr(format == Format::Json, "applying");
            let (report, failures) =
                migrate::command(&cfg, &catalog, &options, partitions.as_ref(), &progress).await?;
            output::emit(format, &report, human::migrate);
            Ok(exit_after(failures))
        }
        Command::Rollback(args) => {
            let catalog = catalog::load(&migration_source(global))?;
            let cfg = DbConfig::from_args(global)?;
            let target = match (args.steps, args.to) {
                (_, Some(to)) => Target::To(to),
                (Some(n), None) => Target::Steps(n),
                (None, None) => Target::Steps(1),
            };
            let mode = if args.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply
            };
            let progress = Reporter::for_stderr(format == Format::Json, "rolling back");
            let report =
                rollback::command(&cfg, &catalog, target, mode, global.verbose, &progress).await?;
            output::emit(format, &report, human::rollback);
            Ok(0)
        }
        Command::Completions(args) => {
            output::write_stdout_bytes(&manual::completions(args.shell));
            Ok(0)
        }
        Command::Man(args) => {
            match &args.dir {
                Some(dir) => output::emit(format, &manual::write_man_pages(dir)?, manual::human),
                None => output::write_stdout_bytes(&manual::man_page()),
            }
            Ok(0)
        }
        Command::Partition(command) => partition(global, command).await,
        Command::Verify(args) => {
            let options =
                verify::Options::parse(args.now.as_deref(), args.expect_fingerprint.as_deref())?;
            let catalog = catalog::load(&migration_source(global))?;
            let cfg = DbConfig::from_args(global)?;
            let policies = policy::load(&policy_source(global))?;
            let report = verify::run(&cfg, &catalog, &policies, &options).await?;
            output::emit(format, &report, output::verify::human);
            Ok(report.exit_code())
        }
    }
}

fn policy_source(global: &GlobalArgs) -> policy::Source {
    match &global.partitions_dir {
        Some(dir) => policy::Source::Dir(dir.clone()),
        None => policy::Source::Embedded,
    }
}

fn parse_now(text: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    text.map(|t| partitions::parse_now("--now", t)).transpose()
}

/// 0, or the exit code of the failures a report already described (printed on stderr).
fn exit_after(failures: Vec<Error>) -> i32 {
    if failures.is_empty() {
        return 0;
    }
    output::failures(&failures);
    Error::Many(failures).exit_code()
}

/// `dhctl partition create | prune | status`. Every input is checked before connecting.
async fn partition(global: &GlobalArgs, command: &PartitionCommand) -> Result<i32> {
    let format = global.format;
    let progress = Reporter::for_stderr(format == Format::Json, "creating");
    let mode = |dry_run: bool| if dry_run { Mode::DryRun } else { Mode::Apply };
    match command {
        PartitionCommand::Create(args) => {
            let policies =
                policy::select(policy::load(&policy_source(global))?, args.table.as_deref())?;
            let now = parse_now(args.now.as_deref())?;
            if let Some(ahead) = args.ahead {
                partitions::check_ahead(ahead)?;
            }
            let cfg = DbConfig::from_args(global)?;
            let options = CreateOptions {
                now,
                ahead: args.ahead,
                mode: mode(args.dry_run),
            };
            let outcome = partitions::create(&cfg, &policies, &options, &progress).await?;
            output::emit(format, &outcome.report, output::partitions::run);
            Ok(exit_after(outcome.failures))
        }
        PartitionCommand::Prune(args) => {
            let policies =
                policy::select(policy::load(&policy_source(global))?, args.table.as_deref())?;
            let now = parse_now(args.now.as_deref())?;
            let retention = match &args.retention {
                Some(text) => Some(
                    Retention::parse(text)
                        .map_err(|e| Error::usage(format!("--retention: {e}")))?,
                ),
                None => None,
            };
            let cfg = DbConfig::from_args(global)?;
            let options = PruneOptions {
                now,
                retention,
                keep: args.keep_table.then_some(RetentionMode::Detach),
                mode: mode(args.dry_run),
            };
            let outcome = partitions::prune(&cfg, &policies, &options, &progress).await?;
            output::emit(format, &outcome.report, output::partitions::run);
            Ok(exit_after(outcome.failures))
        }
        PartitionCommand::Status(args) => {
            let policies =
                policy::select(policy::load(&policy_source(global))?, args.table.as_deref())?;
            let now = parse_now(args.now.as_deref())?;
            let cfg = DbConfig::from_args(global)?;
            let session = dhctl::db::connect(&cfg, CreateDatabase::Never).await?;
            let inspection = partitions::inspect(&session.client, &policies, now).await?;
            output::emit(format, &inspection, output::partitions::status);
            Ok(0)
        }
    }
}
