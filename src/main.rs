//! The `dhctl` binary: parse, configure, run one command, print, exit with its code.
//! Everything else lives in the library.

use std::path::PathBuf;

use clap::Parser;

use dhctl::cli::{
    Cli, Command, ConnectArgs, Format, LockArgs, MigrationsDirArg, PartitionCommand,
    PartitionsDirArg,
};
use dhctl::config::DbConfig;
use dhctl::db::CreateDatabase;
use dhctl::migrations::migrate::{self, Mode};
use dhctl::migrations::rollback::{self, Target};
use dhctl::migrations::{catalog, new, status_report, Source};
use dhctl::output::{self, human, manual, progress::Reporter};
use dhctl::partitions::{self, policy, CreateOptions, PruneOptions, Retention, RetentionMode};
use dhctl::{verify, Error, Result};

fn main() {
    // An empty DHCTL_* variable means "not set" (as an empty shell assignment usually does), not
    // a value that then fails to parse; before and after .env, so an empty real variable lets
    // the file's line apply and an empty line in the file is ignored too.
    drop_empty_variables();
    let env_problem = dhctl::config::load_dotenv().err();
    drop_empty_variables();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => output::usage_error(&e),
    };
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

/// Removes every empty `DHCTL_*` variable from this process's environment. Runs first in main,
/// before any thread exists.
fn drop_empty_variables() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(key, value)| key.to_string_lossy().starts_with("DHCTL_") && value.is_empty())
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        std::env::remove_var(key);
    }
}

fn init_logging(verbose: bool) {
    let default = if verbose { "dhctl=debug,info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .fmt_fields(output::escape::LogFields)
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
            dhctl::verify::scratch::drop_after_interrupt().await;
            // The run's future is dropped by now; the flag it left says where it was.
            if dhctl::migrations::execute::outside_transaction_in_flight() {
                Err(Error::InterruptedOutsideTransaction)
            } else {
                Err(Error::Interrupted)
            }
        }
    }
}

fn migration_source(arg: &MigrationsDirArg) -> Source {
    match &arg.migrations_dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::Embedded,
    }
}

fn policy_source(arg: &PartitionsDirArg) -> policy::Source {
    match &arg.partitions_dir {
        Some(dir) => policy::Source::Dir(dir.clone()),
        None => policy::Source::Embedded,
    }
}

/// The connection of a command that takes no lock.
fn unlocked(connect: &ConnectArgs) -> Result<DbConfig> {
    DbConfig::from_args(connect, &LockArgs::default())
}

async fn run(cli: &Cli) -> Result<i32> {
    let global = &cli.global;
    let format = global.format;
    match &cli.command {
        Command::New(args) => {
            let dir = args
                .migrations
                .migrations_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("sql"));
            let report = new::run(&dir, &args.name, chrono::Utc::now())?;
            output::emit(format, &report, human::new);
            Ok(0)
        }
        Command::Status(args) => {
            let catalog = catalog::load(&migration_source(&args.migrations))?;
            let cfg = unlocked(&args.connect)?;
            let report = status_report(&cfg, &catalog).await?;
            output::emit(format, &report, human::status);
            let ahead = if args.strict {
                dhctl::migrations::Ahead::Refused
            } else {
                dhctl::migrations::Ahead::Allowed
            };
            Ok(if args.exit_code {
                report.exit_code(ahead)
            } else {
                0
            })
        }
        Command::Migrate(args) => {
            let catalog = catalog::load(&migration_source(&args.migrations))?;
            let cfg = DbConfig::from_args(&args.connect, &args.locks)?;
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
            // Policies are validated before anything changes. A dry run does not create
            // partitions, but lints with what the policies manage, as the real run would.
            let loaded = if args.no_partitions {
                None
            } else {
                Some(policy::load(&policy_source(&args.partitions))?)
            };
            let managed = dhctl::lint::managed_tables(loaded.as_deref().unwrap_or_default());
            let policies = loaded.filter(|_| !args.dry_run);
            let options = migrate::Options {
                to: args.to,
                mode,
                create,
                show_sql: global.verbose,
                lint: migrate::LintGate {
                    findings: if args.allow_unsafe {
                        migrate::UnsafeFindings::Allow
                    } else {
                        migrate::UnsafeFindings::Refuse
                    },
                    managed,
                    small_table: dhctl::lint::parse_size(&args.small_table)
                        .map_err(|e| Error::usage(format!("--small-table: {e}")))?,
                },
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
            let catalog = catalog::load(&migration_source(&args.migrations))?;
            let cfg = DbConfig::from_args(&args.connect, &args.locks)?;
            let target = match (args.steps, args.to, args.all) {
                (_, _, true) => Target::All,
                (_, Some(to), false) => Target::To(to),
                (Some(n), None, false) => Target::Steps(n),
                (None, None, false) => Target::Steps(1),
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
        Command::Partition(command) => partition(format, command).await,
        Command::Lint(args) => {
            let report = dhctl::lint::command(args).await?;
            output::lint::emit(format, &report);
            Ok(report.exit_code())
        }
        Command::Verify(args) => {
            let options =
                verify::Options::parse(args.now.as_deref(), args.expect_fingerprint.as_deref())?
                    .with_scratch(args.scratch_url.as_deref(), args.require_all)?;
            let catalog = catalog::load(&migration_source(&args.migrations))?;
            let locks = LockArgs {
                lock_timeout: args.lock_timeout,
                ..LockArgs::default()
            };
            let cfg = DbConfig::from_args(&args.connect, &locks)?;
            let policies = policy::load(&policy_source(&args.partitions))?;
            let report = verify::run(&cfg, &catalog, &policies, &options).await?;
            output::emit(format, &report, output::verify::human);
            Ok(report.exit_code())
        }
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
async fn partition(format: Format, command: &PartitionCommand) -> Result<i32> {
    let progress = Reporter::for_stderr(format == Format::Json, "creating");
    let mode = |dry_run: bool| if dry_run { Mode::DryRun } else { Mode::Apply };
    match command {
        PartitionCommand::Create(args) => {
            let policies = policy::select(
                policy::load(&policy_source(&args.partitions))?,
                args.table.as_deref(),
            )?;
            let now = parse_now(args.now.as_deref())?;
            if let Some(ahead) = args.ahead {
                partitions::check_ahead(ahead)?;
            }
            let cfg = DbConfig::from_args(&args.connect, &args.locks)?;
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
            let policies = policy::select(
                policy::load(&policy_source(&args.partitions))?,
                args.table.as_deref(),
            )?;
            let now = parse_now(args.now.as_deref())?;
            let retention = match &args.retention {
                Some(text) => Some(
                    Retention::parse(text)
                        .map_err(|e| Error::usage(format!("--retention: {e}")))?,
                ),
                None => None,
            };
            let cfg = DbConfig::from_args(&args.connect, &args.locks)?;
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
        PartitionCommand::DrainDefault(args) => {
            let policies = policy::select(
                policy::load(&policy_source(&args.partitions))?,
                Some(args.table.as_str()),
            )?;
            let cfg = DbConfig::from_args(&args.connect, &args.locks)?;
            let options = partitions::DrainOptions {
                batch: args.batch,
                mode: mode(args.dry_run),
            };
            let outcome =
                partitions::drain_default(&cfg, &policies[0], &options, &progress).await?;
            output::emit(format, &outcome.report, output::partitions::run);
            Ok(exit_after(outcome.failures))
        }
        PartitionCommand::Status(args) => {
            let policies = policy::select(
                policy::load(&policy_source(&args.partitions))?,
                args.table.as_deref(),
            )?;
            let now = parse_now(args.now.as_deref())?;
            let cfg = unlocked(&args.connect)?;
            let session = dhctl::db::connect(&cfg, CreateDatabase::Never).await?;
            let inspection = partitions::inspect(&session.client, &policies, now).await?;
            let located = output::WithDatabase {
                database: cfg.display_target(),
                report: &inspection,
            };
            output::emit(format, &located, |l| output::partitions::status(l.report));
            Ok(0)
        }
    }
}
