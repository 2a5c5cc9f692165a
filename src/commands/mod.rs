//! The command layer: what `dhctl SUBCOMMAND` does, from typed flags to an exit code. One
//! module per subcommand, each with `run(args, global) -> Result<i32>`, dispatched by [`run`].
//! A command turns its flags into the domain's options, calls the domain modules, and hands the
//! report to `output`; it is also the one place where two domains meet ("migrate, then ensure
//! partitions under the same lock", `commands::migrate`), so `migrations` and `partitions`
//! never import each other. The `dhctl` binary only parses, calls [`execute`] and exits.

mod baseline;
mod completions;
mod dump;
mod fleet;
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
use crate::output::{self, progress::Reporter};
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
    // A result that did not reach stdout (a full disk) is not a success, nor the verdict of a
    // check whose report was lost.
    let outcome = match (outcome, output::stdout_failure()) {
        (Ok(_), Some(failed)) => Err(failed),
        (outcome, _) => outcome,
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            output::error(format, &err);
            err.exit_code()
        }
    }
}

/// SIGINT and SIGTERM, registered before the command starts (so a signal that arrives at any
/// point of it is seen, not the default action's abrupt end), and received as often as they
/// come: the first starts the interrupt, a second one ends waiting for it.
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .ok();
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.streams {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the command; SIGINT or SIGTERM cancels the statement in flight on the server (so the
/// backend does not go on holding locks) and exits 130. A second signal exits at once.
async fn run_until_signal(cli: &Cli) -> Result<i32> {
    let mut signals = Signals::new();
    if let Some(fleet) = fleet::requested(cli)? {
        return fleet::run(cli, fleet, &mut signals).await;
    }
    // Boxed, so the handler below can drop it after the cancel.
    let mut run = Box::pin(run(cli));
    tokio::select! {
        result = &mut run => result,
        () = signals.recv() => {
            // Cancelled while the sessions are still open (their registrations go with them),
            // then dropped: the backends roll back and free the lock at once.
            let cancels = cancel_in_flight(&mut signals).await;
            drop(run);
            drop_scratch(&mut signals).await;
            Err(interrupt_error(None, &cancels))
        }
    }
}

/// After SIGINT/SIGTERM: cancels the statement of every open session, all at once, each request
/// bounded by [`crate::db::inflight::CANCEL_WAIT`]; a second signal stops waiting (the sessions
/// are closed right after either way).
async fn cancel_in_flight(signals: &mut Signals) -> crate::db::inflight::Cancels {
    let pending = crate::db::inflight::pending();
    tokio::select! {
        cancels = pending.cancel() => cancels,
        () = signals.recv() => pending.abandoned(),
    }
}

/// Once the interrupted work is dropped: drops the scratch databases verify had made (a second
/// signal stops that; the next verify drops them).
async fn drop_scratch(signals: &mut Signals) {
    tokio::select! {
        () = crate::verify::scratch::drop_after_interrupt() => {},
        () = signals.recv() => {},
    }
}

/// Runs `work` (reading migration files, policies: plain blocking file I/O) on tokio's blocking
/// pool, not on the runtime's only thread: a 30 MB migration or a stalled network mount would
/// otherwise keep that thread, and SIGINT/SIGTERM with it, until the read ends. The caller's
/// future yields while it waits, so [`run_until_signal`] (or the fleet's own select) sees a
/// signal at once; the read left running is abandoned (`execute` does not wait for it).
pub(crate) async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(Error::usage(format!("reading the files stopped: {e}"))),
        },
    }
}

/// The interrupt's message, for [`run_until_signal`] and each target of a [`fleet`].
pub(crate) use crate::db::inflight::interrupt_error;

/// Dispatch: one arm per subcommand, each the subcommand's `run` (or its `produce`, then
/// [`show`]), on the one database its flags name. A command given `--targets` never gets here:
/// `run_until_signal` hands it to [`fleet`].
pub async fn run(cli: &Cli) -> Result<i32> {
    let global = &cli.global;
    let format = global.format;
    let json = format == Format::Json;
    match &cli.command {
        Command::Migrate(args) => {
            let progress = Reporter::for_stderr(json, "applying");
            Ok(show(
                format,
                migrate::produce(args, global, &progress).await?,
            ))
        }
        Command::Rollback(args) => {
            let progress = Reporter::for_stderr(json, "rolling back");
            Ok(show(
                format,
                rollback::produce(args, global, &progress).await?,
            ))
        }
        Command::Status(args) => Ok(show(format, status::produce(args).await?)),
        Command::Verify(args) => Ok(show(format, verify::produce(args).await?)),
        Command::Lint(args) => Ok(show(format, lint::produce(args).await?)),
        Command::Baseline(args) => baseline::run(args, global).await,
        Command::Dump(args) => dump::run(args, global).await,
        Command::New(args) => new::run(args, global),
        Command::Partition(command) => partition::run(command, global).await,
        Command::Completions(args) => completions::run(args, global),
        Command::Man(args) => man::run(args, global),
    }
}

/// What a command produced for one database, before anything is printed: its report and how
/// it ended. A command without `--targets` prints it ([`show`]); a fleet puts each target's
/// into one report (`output::fleet`).
pub(crate) struct Produced<R> {
    /// None only when `end` says why there is none ([`End::Refused`]).
    pub report: Option<R>,
    pub end: End,
}

/// How a command's run ended.
pub(crate) enum End {
    /// It ran; this is its exit code (0, or 1 when a check failed).
    Code(i32),
    /// It ran, and the report describes these failures (one table failing does not stop the
    /// others); printed on stderr after the report.
    Failures(Vec<Error>),
    /// It failed part of the way; the report says what it did before.
    Failed(Error),
    /// migrate refused the lint errors of what it was about to apply; nothing was applied.
    Refused {
        findings: crate::lint::Report,
        error: Error,
    },
}

impl<R> Produced<R> {
    fn ran(report: R, code: i32) -> Produced<R> {
        Produced {
            report: Some(report),
            end: End::Code(code),
        }
    }

    /// The exit code of the run, as the command without --targets exits.
    pub fn exit_code(&self) -> i32 {
        match &self.end {
            End::Code(code) => *code,
            End::Failures(failures) if failures.is_empty() => 0,
            End::Failures(failures) => failures.iter().map(Error::exit_code).max().unwrap_or(2),
            End::Failed(error) | End::Refused { error, .. } => error.exit_code(),
        }
    }
}

/// A command's report, as it is shown.
pub(crate) trait Shown: Serialize + Sized {
    /// The human rendering (what stdout shows without --format json).
    fn human(&self) -> String;

    /// Prints the report on stdout in `format`.
    fn emit(&self, format: Format) {
        output::emit(format, self, Self::human);
    }

    /// One line for a fleet's table: what the run changed, or found.
    fn changed(&self) -> String;
}

/// Prints what a command produced for the one database it ran on, as every command always has;
/// returns its exit code.
fn show<R: Shown>(format: Format, produced: Produced<R>) -> i32 {
    let code = produced.exit_code();
    match (produced.report, produced.end) {
        (Some(report), End::Code(_)) => report.emit(format),
        (Some(report), End::Failures(failures)) => {
            report.emit(format);
            if !failures.is_empty() {
                output::failures(&failures);
            }
        }
        (Some(report), End::Failed(error)) => {
            output::failed_run(format, &report, R::human, &error);
        }
        (_, End::Refused { findings, error }) => output::lint_refused(format, &findings, &error),
        (None, End::Failed(error)) => output::error(format, &error),
        (None, _) => {}
    }
    code
}

/// The connection of a command that takes no lock.
fn unlocked(connect: &ConnectArgs) -> Result<DbConfig> {
    DbConfig::from_args(connect, &LockArgs::default(), Access::Read)
}

/// A run that failed: with the report of what it did before, that report and the error (shown
/// as `output::failed_run` shows them); without one, the error goes the usual way.
fn report_failure<R>(failed: Failed<R>) -> Result<Produced<R>> {
    match failed.report {
        Some(report) => Ok(Produced {
            report: Some(report),
            end: End::Failed(failed.error),
        }),
        None => Err(failed.error),
    }
}
