//! `--targets FILE`: one command on every database of a fleet file (docs/fleet.md), in one
//! process and one runtime. The file and every target's connection string are checked before
//! anything connects; then [`crate::fleet::schedule::Rollout`] decides what starts when, each
//! target's run is the command's own (`produce`, as without --targets) inside
//! [`crate::db::inflight::for_target`], and `output::fleet` prints one report. SIGINT/SIGTERM
//! cancels the statement of every target in flight, drops their work (their transactions roll
//! back, their locks go with their sessions) and exits 130.

use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use super::{End, Produced, Shown, Signals};
use crate::cli::{
    Cli, Command, ConnectArgs, FleetArgs, From, GlobalArgs, LintArgs, LockArgs, MigrateArgs,
    Origin, PartitionCommand, PartitionCreateArgs, PartitionPruneArgs, PartitionStatusArgs,
    RollbackArgs, StatusArgs, VerifyArgs,
};
use crate::db::inflight::{self, TargetId};
use crate::db::DbConfig;
use crate::error::{Error, Result};
use crate::fleet::schedule::{Rollout, State};
use crate::fleet::{self, Fleet};
use crate::output::{self, fleet::Row, progress::Reporter};

/// The fleet flags of the command, when it was given `--targets` (or DHCTL_TARGETS). `--only`
/// and `--parallel` without it are refused: they would otherwise be ignored.
pub(super) fn requested(cli: &Cli) -> Result<Option<&FleetArgs>> {
    let command = &cli.command;
    let args = match command {
        Command::Migrate(a) => &a.fleet,
        Command::Rollback(a) => &a.fleet,
        Command::Status(a) => &a.fleet,
        Command::Verify(a) => &a.fleet,
        Command::Lint(a) => &a.fleet,
        Command::Partition(PartitionCommand::Create(a)) => &a.fleet,
        Command::Partition(PartitionCommand::Prune(a)) => &a.fleet,
        Command::Partition(PartitionCommand::Status(a)) => &a.fleet,
        _ => return Ok(None),
    };
    if args.targets.is_none() {
        if !args.only.is_empty() || args.parallel.is_some() {
            return Err(Error::usage_hint(
                "--only and --parallel need --targets",
                "name the fleet file with --targets FILE (or DHCTL_TARGETS)",
            ));
        }
        return Ok(None);
    }
    if let Command::Lint(a) = command {
        if !a.pending {
            // A fleet file exported for the other commands does not stop an offline lint; one
            // given on the command line is a mistake worth naming.
            let from_environment = std::env::var_os("DHCTL_TARGETS")
                .is_some_and(|v| Some(std::path::Path::new(&v)) == args.targets.as_deref());
            if from_environment && args.only.is_empty() && args.parallel.is_none() {
                return Ok(None);
            }
            return Err(Error::usage_hint(
                "lint --targets needs --pending: an offline lint reads no database",
                "run `dhctl lint --pending --targets FILE`, or lint offline once without --targets",
            ));
        }
    }
    refuse_two_destinations(cli.origin)?;
    Ok(Some(args))
}

/// A fleet file and a connection string given together name two different destinations: the
/// command would run on the fleet and silently ignore the one database the operator named
/// (`DHCTL_TARGETS=prod.toml dhctl rollback --database-url …/staging` rolled back production).
/// Refused unless `--targets` on the command line meets a DATABASE_URL from the environment (a
/// pod's default connection string, which an explicit fleet file overrides).
fn refuse_two_destinations(origin: Origin) -> Result<()> {
    match (origin.targets, origin.database_url) {
        (_, From::Absent) | (From::Absent, _) | (From::CommandLine, From::Environment) => Ok(()),
        (From::CommandLine, From::CommandLine) => Err(Error::usage_hint(
            "--targets and --database-url both given: one command runs on a fleet or on one database",
            "drop --database-url to run on the fleet file's targets, or drop --targets to run on that one database",
        )),
        (From::Environment, From::CommandLine) => Err(Error::usage_hint(
            "--database-url given while DHCTL_TARGETS names a fleet file: one command runs on a fleet or on one database",
            "unset DHCTL_TARGETS (or run `env -u DHCTL_TARGETS dhctl …`) to run on that one database, or drop --database-url to run on the fleet",
        )),
        (From::Environment, From::Environment) => Err(Error::usage_hint(
            "DATABASE_URL and DHCTL_TARGETS are both set: one command runs on a fleet or on one database",
            "unset one of them, or give the fleet file explicitly with --targets FILE (it then wins over DATABASE_URL)",
        )),
    }
}

/// Runs the command on the fleet `args` names; `signals` are SIGINT and SIGTERM.
pub(super) async fn run(cli: &Cli, args: &FleetArgs, signals: &mut Signals) -> Result<i32> {
    let Some(path) = args.targets.as_deref() else {
        return Err(Error::usage("no fleet file given"));
    };
    let shown = path.display().to_string();
    // Read off the runtime's thread: a FIFO nobody writes to (or a stalled network mount) would
    // otherwise block it, and SIGINT/SIGTERM with it. `<(…)` and /dev/stdin stay usable.
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned));
    let text = tokio::select! {
        read = read => match read {
            Ok(Ok(text)) => text,
            Ok(Err(source)) => return Err(Error::Io { path: path.to_path_buf(), source }),
            Err(e) => return Err(Error::usage(format!("{shown}: cannot read the fleet file: {e}"))),
        },
        () = signals.recv() => return Err(Error::InterruptedIdle),
    };
    let fleet = fleet::parse(&shown, &text, &|key| std::env::var(key).ok())?;
    let waves = fleet::schedule(&fleet, &args.only)?;
    let parallel = args.parallel.map_or(fleet.parallel, |n| n as usize);
    let plan = Plan {
        fleet: &fleet,
        file: &shown,
        rollout: Rollout::new(waves, fleet.targets.len(), parallel, fleet.on_error),
        parallel,
    };
    let global = &cli.global;
    match &cli.command {
        Command::Migrate(a) => plan.roll(a, global, signals).await,
        Command::Rollback(a) => plan.roll(a, global, signals).await,
        Command::Status(a) => plan.roll(a, global, signals).await,
        Command::Verify(a) => plan.roll(a, global, signals).await,
        Command::Lint(a) => plan.roll(a, global, signals).await,
        Command::Partition(PartitionCommand::Create(a)) => plan.roll(a, global, signals).await,
        Command::Partition(PartitionCommand::Prune(a)) => plan.roll(a, global, signals).await,
        Command::Partition(PartitionCommand::Status(a)) => plan.roll(a, global, signals).await,
        _ => Err(Error::usage("this command does not take --targets")),
    }
}

/// A command's flags, as a fleet runs the command on one target.
trait OnTarget: Clone + Send + 'static {
    type Report: Shown;
    /// The progress lines' verb.
    const VERB: &'static str;
    /// Connections one target's run holds open at once.
    const CONNECTIONS: usize = 1;
    /// What every target's run reads before it connects (the migrations, the policies), read
    /// once for the fleet by [`OnTarget::prepare`] after the fleet file is checked and before
    /// any target connects.
    type Shared: Send + 'static;
    fn prepare(&self) -> Result<Self::Shared>;
    fn connect(&mut self) -> &mut ConnectArgs;
    fn produce<'a>(
        &'a self,
        shared: &'a Self::Shared,
        global: &'a GlobalArgs,
        progress: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>>;
}

impl OnTarget for MigrateArgs {
    type Report = super::migrate::MigrateRun;
    const VERB: &'static str = "applying";
    type Shared = super::migrate::Loaded;
    /// The migrations, the policies and the offline lint: the same for every target.
    fn prepare(&self) -> Result<Self::Shared> {
        super::migrate::Loaded::read(self)
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        loaded: &'a Self::Shared,
        global: &'a GlobalArgs,
        progress: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::migrate::produce_on(self, global, progress, loaded).boxed_local()
    }
}

impl OnTarget for RollbackArgs {
    type Report = crate::migrations::rollback::RollbackReport;
    const VERB: &'static str = "rolling back";
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        global: &'a GlobalArgs,
        progress: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::rollback::produce(self, global, progress).boxed_local()
    }
}

impl OnTarget for StatusArgs {
    type Report = crate::migrations::StatusReport;
    const VERB: &'static str = "reading";
    type Shared = crate::migrations::catalog::Catalog;
    /// The migrations, read once: every target is compared with the same files.
    fn prepare(&self) -> Result<Self::Shared> {
        crate::migrations::catalog::load(&self.migrations.source())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        catalog: &'a Self::Shared,
        _: &'a GlobalArgs,
        _: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::status::produce_with(self, catalog).boxed_local()
    }
}

impl OnTarget for VerifyArgs {
    type Report = crate::verify::VerifyReport;
    const VERB: &'static str = "verifying";
    /// The live database and the scratch database the schema is rebuilt in.
    const CONNECTIONS: usize = 2;
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        _: &'a GlobalArgs,
        _: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::verify::produce(self).boxed_local()
    }
}

impl OnTarget for LintArgs {
    type Report = crate::lint::Report;
    const VERB: &'static str = "linting";
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        _: &'a GlobalArgs,
        _: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::lint::produce(self).boxed_local()
    }
}

impl OnTarget for PartitionCreateArgs {
    type Report = crate::partitions::RunReport;
    const VERB: &'static str = "creating";
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        _: &'a GlobalArgs,
        progress: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        async move {
            let outcome = super::partition::create(self, progress).await?;
            Ok(super::partition::ran(outcome))
        }
        .boxed_local()
    }
}

impl OnTarget for PartitionPruneArgs {
    type Report = crate::partitions::RunReport;
    const VERB: &'static str = "pruning";
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        _: &'a GlobalArgs,
        progress: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        async move {
            let outcome = super::partition::prune(self, progress).await?;
            Ok(super::partition::ran(outcome))
        }
        .boxed_local()
    }
}

impl OnTarget for PartitionStatusArgs {
    type Report = super::partition::Located;
    const VERB: &'static str = "reading";
    type Shared = ();
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    fn connect(&mut self) -> &mut ConnectArgs {
        &mut self.connect
    }
    fn produce<'a>(
        &'a self,
        &(): &'a Self::Shared,
        _: &'a GlobalArgs,
        _: &'a Reporter,
    ) -> LocalBoxFuture<'a, Result<Produced<Self::Report>>> {
        super::partition::status(self).boxed_local()
    }
}

/// A fleet about to run: the file, and the rollout of the targets `--only` selected.
struct Plan<'f> {
    fleet: &'f Fleet,
    file: &'f str,
    rollout: Rollout,
    parallel: usize,
}

/// How one target's run ended.
enum Ran<R> {
    Produced(Produced<R>),
    Failed(Error),
}

impl Plan<'_> {
    /// Each selected target's flags: the command's, with the target's connection string, every
    /// one parsed (no connection made) so that a bad one stops the fleet before anything runs.
    fn flags<A: OnTarget>(&self, args: &A) -> Result<Vec<Option<A>>> {
        let mut flags: Vec<Option<A>> = vec![None; self.fleet.targets.len()];
        let mut seen: Vec<(Vec<String>, usize)> = Vec::new();
        for (_, i) in self.rollout.targets() {
            let target = &self.fleet.targets[i];
            let mut one = args.clone();
            one.connect().database_url = Some(target.url.clone());
            let parsed =
                DbConfig::from_args(one.connect(), &LockArgs::default(), crate::db::Access::Read);
            if let Ok(config) = &parsed {
                let database = same_database(&config.pg);
                if let Some(&(_, other)) = seen.iter().find(|(d, _)| *d == database) {
                    let first: &fleet::Target = &self.fleet.targets[other];
                    return Err(Error::usage_hint(
                        format!(
                            "{}: targets \"{}\" and \"{}\" name the same database \
                             (same host, port and database name)",
                            self.file, first.name, target.name
                        ),
                        "list each database once: run on both would apply every change twice, \
                         the second time racing the first for its lock",
                    ));
                }
                seen.push((database, i));
            }
            if let Err(e) = parsed {
                // The parser's messages never quote the string (no password); they name it
                // DATABASE_URL, which here is the target's `url` or its url_env variable.
                return Err(Error::Usage {
                    message: format!(
                        "{}: target \"{}\" ({}): {}",
                        self.file,
                        target.name,
                        target.source,
                        target_words(&e.to_string(), "the connection string")
                    ),
                    hint: e.hint().map(|hint| {
                        let place = match target.source.strip_prefix("url_env ") {
                            Some(var) => format!("{var} (the target's url_env)"),
                            None => format!("the target's url in {}", self.file),
                        };
                        target_words(&hint, &place)
                    }),
                });
            }
            flags[i] = Some(one);
        }
        Ok(flags)
    }

    async fn roll<A: OnTarget>(
        mut self,
        args: &A,
        global: &GlobalArgs,
        signals: &mut Signals,
    ) -> Result<i32> {
        let format = global.format;
        // The fleet's duration includes the shared read: it is part of the run.
        let began = Instant::now();
        let flags = self.flags(args)?;
        // The shared read runs off the runtime's thread (see `off_thread`), raced with the
        // signals: SIGINT/SIGTERM during it exits 130 before any target has started (no
        // session is open, nothing ran; the read left running is abandoned).
        let owned = args.clone();
        let prepared = super::off_thread(move || owned.prepare());
        let shared = tokio::select! {
            shared = prepared => shared?,
            () = signals.recv() => return Err(Error::InterruptedIdle),
        };
        let json = format == crate::cli::Format::Json;
        let reporters: Vec<Reporter> = (0..flags.len())
            .map(|_| Reporter::kept(json, A::VERB))
            .collect();
        let mut ran: Vec<Option<(Ran<A::Report>, Duration)>> =
            (0..flags.len()).map(|_| None).collect();
        let mut started = vec![None::<Instant>; flags.len()];
        inflight::reset_peak();
        let mut running = FuturesUnordered::new();
        let mut interrupted = false;
        loop {
            while let Some(i) = self.rollout.start() {
                let Some(one) = flags[i].as_ref() else {
                    // Every scheduled target has its flags (see `flags`); never left running.
                    self.rollout.finish(i, false);
                    continue;
                };
                started[i] = Some(Instant::now());
                let work =
                    inflight::for_target(TargetId(i), one.produce(&shared, global, &reporters[i]));
                running.push(work.map(move |result| (i, result)).boxed_local());
            }
            if self.rollout.is_over() {
                break;
            }
            tokio::select! {
                Some((i, result)) = running.next() => {
                    let took = started[i].map(|s| s.elapsed()).unwrap_or_default();
                    let outcome = match result {
                        Ok(produced) => Ran::Produced(produced),
                        Err(error) => Ran::Failed(error),
                    };
                    let code = exit_code(&outcome);
                    let target = &self.fleet.targets[i];
                    output::fleet::target_ended(
                        &target.name,
                        &target.group,
                        &reporters[i].taken(),
                        &errors(&outcome),
                    );
                    ran[i] = Some((outcome, took));
                    self.rollout.finish(i, code != 0);
                }
                () = signals.recv() => {
                    interrupted = true;
                    self.rollout.stop();
                    // Every target's statement, while its session is still open (each request
                    // bounded, all at once); then the work is dropped, and each session with it.
                    let cancels = super::cancel_in_flight(signals).await;
                    running.clear();
                    super::drop_scratch(signals).await;
                    for (i, slot) in ran.iter_mut().enumerate() {
                        if self.rollout.state(i) == State::Running {
                            let took = started[i].map(|s| s.elapsed()).unwrap_or_default();
                            let error = super::interrupt_error(Some(TargetId(i)), &cancels);
                            // Its progress so far (what it applied before the signal) and how
                            // it ended, as for a target that ended on its own.
                            let target = &self.fleet.targets[i];
                            output::fleet::target_ended(
                                &target.name,
                                &target.group,
                                &reporters[i].taken(),
                                &[&error],
                            );
                            *slot = Some((Ran::Failed(error), took));
                        }
                    }
                    break;
                }
            }
        }
        drop(running);
        let peak = inflight::peak_connections();
        let rows: Vec<Row<'_, A::Report>> = self
            .rollout
            .targets()
            .map(|(group, i)| row(&self.fleet.targets[i].name, group, ran[i].as_ref()))
            .collect();
        let exit_code = if interrupted {
            130
        } else {
            fleet::worst(rows.iter().filter_map(|r| r.exit_code))
        };
        let totals = output::fleet::Totals {
            exit_code,
            interrupted,
            parallel: self.parallel,
            peak,
            limit: self.parallel * A::CONNECTIONS,
            took: began.elapsed(),
        };
        output::fleet::emit(format, &rows, &totals);
        Ok(exit_code)
    }
}

/// A connection-string error worded for DATABASE_URL, reworded for a fleet target whose string
/// is `place`: "no database given: DATABASE_URL names no user" becomes "the connection string
/// names no user" (the database is given: the target).
fn target_words(text: &str, place: &str) -> String {
    text.replace("no database given: ", "")
        .replace("DATABASE_URL: ", "")
        .replace("DATABASE_URL", place)
}

/// What makes two connection strings the same database, as written: each host with its port,
/// and the database name (the user's name when none is given). Two spellings of one host
/// (`localhost` and `127.0.0.1`) are not recognised.
fn same_database(pg: &tokio_postgres::Config) -> Vec<String> {
    let ports = pg.get_ports();
    let mut key: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let host = match host {
                tokio_postgres::config::Host::Tcp(h) => h.to_ascii_lowercase(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            format!("{host}:{port}")
        })
        .collect();
    key.sort();
    key.push(
        pg.get_dbname()
            .or(pg.get_user())
            .unwrap_or_default()
            .to_string(),
    );
    key
}

fn exit_code<R>(ran: &Ran<R>) -> i32 {
    match ran {
        Ran::Produced(p) => p.exit_code(),
        Ran::Failed(e) => e.exit_code(),
    }
}

/// The errors a target's run ended with, as its stderr block lists them.
fn errors<R>(ran: &Ran<R>) -> Vec<&Error> {
    match ran {
        Ran::Failed(e) => vec![e],
        Ran::Produced(p) => match &p.end {
            End::Code(_) => Vec::new(),
            End::Failures(failures) => failures.iter().collect(),
            End::Failed(e) | End::Refused { error: e, .. } => vec![e],
        },
    }
}

/// One target's row of the report; `ran` is None for a skipped one.
fn row<'a, R: Shown>(
    name: &'a str,
    group: &'a str,
    ran: Option<&'a (Ran<R>, Duration)>,
) -> Row<'a, R> {
    let mut row = Row {
        name,
        group,
        exit_code: None,
        took: None,
        summary: String::new(),
        detail: String::new(),
        result: None,
        error: None,
        lint: None,
    };
    let Some((ran, took)) = ran else {
        return row;
    };
    row.exit_code = Some(exit_code(ran));
    row.took = Some(*took);
    match ran {
        Ran::Failed(e) => row.error = Some(e),
        Ran::Produced(p) => {
            if let Some(report) = &p.report {
                row.summary = report.changed();
                row.detail = report.human();
                row.result = Some(report);
            }
            match &p.end {
                End::Code(_) => {}
                End::Failures(failures) => row.error = failures.first(),
                End::Failed(e) => row.error = Some(e),
                End::Refused { findings, error } => {
                    row.error = Some(error);
                    row.lint = Some(findings);
                    row.detail = output::lint::human(findings, false);
                }
            }
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_spellings_of_one_database_are_the_same_and_other_databases_are_not() {
        let key = |url: &str| same_database(&url.parse().unwrap());
        assert_eq!(
            key("postgres://u:p@DB1:5432/app"),
            key("host=db1 port=5432 dbname=app user=other")
        );
        assert_eq!(
            key("postgres://u@db1/app"),
            key("postgres://v@db1:5432/app")
        );
        assert_ne!(key("postgres://u@db1/app"), key("postgres://u@db1/app2"));
        assert_ne!(
            key("postgres://u@db1/app"),
            key("postgres://u@db1:5433/app")
        );
        assert_ne!(key("postgres://u@db1/app"), key("postgres://u@db2/app"));
    }

    #[test]
    fn a_connection_string_error_is_reworded_for_the_target() {
        assert_eq!(
            target_words(
                "no database given: DATABASE_URL names no user",
                "the connection string"
            ),
            "the connection string names no user"
        );
        assert_eq!(
            target_words(
                "set DATABASE_URL to postgres://…",
                "EU1 (the target's url_env)"
            ),
            "set EU1 (the target's url_env) to postgres://…"
        );
    }

    #[test]
    fn a_fleet_and_a_database_url_together_are_refused_unless_the_fleet_is_explicit() {
        let origin = |targets, database_url| Origin {
            targets,
            database_url,
        };
        for (targets, url, refused) in [
            (
                From::CommandLine,
                From::CommandLine,
                Some("--targets and --database-url"),
            ),
            (
                From::Environment,
                From::CommandLine,
                Some("--database-url given while DHCTL_TARGETS"),
            ),
            (
                From::Environment,
                From::Environment,
                Some("DATABASE_URL and DHCTL_TARGETS"),
            ),
            (From::CommandLine, From::Environment, None),
            (From::Environment, From::Absent, None),
            (From::CommandLine, From::Absent, None),
        ] {
            match (refuse_two_destinations(origin(targets, url)), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(expected)) => {
                    assert_eq!(e.exit_code(), 2);
                    assert!(e.to_string().contains(expected), "{e}");
                }
                (got, _) => panic!("{targets:?} {url:?}: {got:?}"),
            }
        }
    }
}
