//! The `dhctl` binary: parse, configure, run one command, print, exit with its code.
//! Everything else lives in the library.

use std::path::PathBuf;

use clap::Parser;

use dhctl::cli::{Cli, Command, Format, GlobalArgs};
use dhctl::config::DbConfig;
use dhctl::db::CreateDatabase;
use dhctl::migrations::migrate::{self, Mode};
use dhctl::migrations::rollback::{self, Target};
use dhctl::migrations::{catalog, new, status_report, Locked, Source};
use dhctl::output::{self, human, progress::Reporter};
use dhctl::{verify, Error, Result};

fn main() {
    let env_problem = match dotenvy::dotenv() {
        Err(e) if !e.not_found() => Some(Error::usage_hint(
            format!(".env: {e}"),
            "fix the line or remove the .env file",
        )),
        _ => None,
    };
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
            let progress = Reporter::for_stderr(format == Format::Json);
            let mut locked = Locked::open(&cfg, create).await?;
            let result = migrate::run(&mut locked, &cfg, &catalog, &options, &progress).await;
            let report = locked.finish(result).await?;
            output::emit(format, &report, human::migrate);
            Ok(0)
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
            let progress = Reporter::for_stderr(format == Format::Json);
            let mut locked = Locked::open(&cfg, CreateDatabase::Never).await?;
            let result = rollback::run(
                &mut locked,
                &cfg,
                &catalog,
                target,
                mode,
                global.verbose,
                &progress,
            )
            .await;
            let report = locked.finish(result).await?;
            output::emit(format, &report, human::rollback);
            Ok(0)
        }
        Command::Verify(args) => {
            let options =
                verify::Options::parse(args.now.as_deref(), args.expect_fingerprint.as_deref())?;
            let catalog = catalog::load(&migration_source(global))?;
            let cfg = DbConfig::from_args(global)?;
            let report = verify::run(&cfg, &catalog, &options).await?;
            output::emit(format, &report, output::verify::human);
            Ok(report.exit_code())
        }
        Command::Partition(_) => Err(Error::usage(
            "this command is being built; see the open issues",
        )),
    }
}
