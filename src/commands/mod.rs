//! The command layer: what `dhctl SUBCOMMAND` does, from typed flags to an exit code. One
//! module per subcommand, each with `run(args, global) -> Result<i32>`, dispatched by [`run`].
//! A command turns its flags into the domain's options, calls the domain modules, and hands the
//! report to `output`; it is also the one place where two domains meet ("migrate, then ensure
//! partitions under the same lock", `commands::migrate`), so `migrations` and `partitions`
//! never import each other. The `dhctl` binary only parses, calls [`execute`] and exits.

mod baseline;
mod completions;
mod dump;
mod lint;
mod man;
mod migrate;
mod new;
mod partition;
mod rollback;
mod status;
mod verify;

use serde::Serialize;

use crate::cli::{Cli, Command, ConnectArgs, Format, LockArgs};
use crate::db::{Access, DbConfig};
use crate::error::{Error, Result};
use crate::output;
use crate::report::Failed;

/// Prepares the process environment before the command line is parsed: drops every empty
/// `DHCTL_*` variable and loads `.env`. Returns the problem with `.env`, if any, to be reported
/// once the output format is known.
///
/// An empty DHCTL_* variable means "not set" (as an empty shell assignment usually does), not a
/// value that then fails to parse; dropped before and after .env, so an empty real variable lets
/// the file's line apply and an empty line in the file is ignored too. Runs first in main,
/// before any thread exists.
pub fn prepare_environment() -> Option<Error> {
    drop_empty_variables();
    let problem = crate::config::load_dotenv().err();
    drop_empty_variables();
    problem
}

fn drop_empty_variables() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(key, value)| key.to_string_lossy().starts_with("DHCTL_") && value.is_empty())
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        std::env::remove_var(key);
    }
}

/// Logs on stderr: warnings, or with `--verbose` dhctl's debug lines; `RUST_LOG` wins.
pub fn init_logging(verbose: bool) {
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

/// Runs the parsed command to its end and returns the process exit code; an error is printed
/// (`output::error`) and mapped by `Error::exit_code`. `env_problem` is what
/// [`prepare_environment`] found.
pub fn execute(cli: &Cli, env_problem: Option<Error>) -> i32 {
    let format = cli.global.format;
    let outcome = match env_problem {
        Some(e) => Err(e),
        None => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let outcome = runtime.block_on(run_until_signal(cli));
                // Dropping the runtime would wait for blocking work still running (a lint
                // interrupted by SIGTERM): the outcome is decided, so do not wait.
                runtime.shutdown_background();
                outcome
            }
            Err(e) => Err(Error::usage(format!("cannot start the async runtime: {e}"))),
        },
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            output::error(format, &err);
            err.exit_code()
        }
    }
}

/// Runs the command; SIGINT or SIGTERM cancels the statement in flight on the server (so the
/// backend does not go on holding locks) and exits 130.
async fn run_until_signal(cli: &Cli) -> Result<i32> {
    // Registered before the command starts, so a signal that arrives at any point of it is
    // seen, not the default action's abrupt end.
    #[cfg(unix)]
    let signal = {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
        async move {
            match streams {
                Ok((mut term, mut int)) => {
                    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    };
    #[cfg(not(unix))]
    let signal = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        result = run(cli) => result,
        () = signal => {
            crate::db::cancel_in_flight().await;
            crate::verify::scratch::drop_after_interrupt().await;
            // The run's future is dropped by now; the flag it left says where it was.
            if crate::migrations::execute::outside_transaction_in_flight() {
                Err(Error::InterruptedOutsideTransaction)
            } else {
                Err(Error::Interrupted)
            }
        }
    }
}

/// Dispatch: one arm per subcommand, each the subcommand's `run`.
pub async fn run(cli: &Cli) -> Result<i32> {
    let global = &cli.global;
    match &cli.command {
        Command::Migrate(args) => migrate::run(args, global).await,
        Command::Rollback(args) => rollback::run(args, global).await,
        Command::Status(args) => status::run(args, global).await,
        Command::Verify(args) => verify::run(args, global).await,
        Command::Baseline(args) => baseline::run(args, global).await,
        Command::Dump(args) => dump::run(args, global).await,
        Command::Lint(args) => lint::run(args, global).await,
        Command::New(args) => new::run(args, global),
        Command::Partition(command) => partition::run(command, global).await,
        Command::Completions(args) => completions::run(args, global),
        Command::Man(args) => man::run(args, global),
    }
}

/// The connection of a command that takes no lock.
fn unlocked(connect: &ConnectArgs) -> Result<DbConfig> {
    DbConfig::from_args(connect, &LockArgs::default(), Access::Read)
}

/// 0, or the exit code of the failures a report already described (printed on stderr).
fn exit_after(failures: Vec<Error>) -> i32 {
    if failures.is_empty() {
        return 0;
    }
    output::failures(&failures);
    Error::Many(failures).exit_code()
}

/// A run that failed: with the report of what it did before, the report is printed before the
/// error (`output::failed_run`) and the error's exit code returned; without one, the error goes
/// the usual way.
fn report_failure<R: Serialize>(
    format: Format,
    failed: Failed<R>,
    human: impl FnOnce(&R) -> String,
) -> Result<i32> {
    match failed.report {
        Some(report) => {
            output::failed_run(format, &report, human, &failed.error);
            Ok(failed.error.exit_code())
        }
        None => Err(failed.error),
    }
}
