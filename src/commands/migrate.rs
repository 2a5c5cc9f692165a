//! `dhctl migrate`: apply the pending migrations, then ensure the partitions every policy wants
//! under the same lock, so the gateway can write today's rows at once. The one place the
//! `migrations` and `partitions` domains meet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{End, Produced, Shown};
use crate::cli::{GlobalArgs, MigrateArgs};
use crate::db::replicas::{self, Replicas};
use crate::db::{Access, CreateDatabase, DbConfig, Locked};
use crate::error::{Error, Result};
use crate::lint;
use crate::migrations::catalog::{self, Catalog, Migration};
use crate::migrations::migrate::{self, Gate, MigrateReport};
use crate::output::{human, progress::Reporter};
use crate::partitions::{self, policy, CreateOptions, Policy, RunReport};
use crate::progress::Progress;
use crate::report::{Failed, Mode, Sql};

/// What `dhctl migrate` reports: the migrations, then the partitions ensured after them.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateRun {
    #[serde(flatten)]
    pub migrations: MigrateReport,
    /// The lint of the pending migrations, with their lock plan (null when nothing is pending).
    pub lint: Option<lint::Report>,
    /// Null with --no-partitions or --dry-run; named apart from partition status's list of
    /// partitions (docs/json.md).
    pub partition_create: Option<RunReport>,
    /// `--wait-replicas`: how far each standby had replayed at the end; null without it or in
    /// a dry run.
    pub replicas: Option<Replicas>,
}

impl MigrateRun {
    /// The migrations, before (or without) partitions.
    fn of(migrations: MigrateReport) -> MigrateRun {
        MigrateRun {
            migrations,
            lint: None,
            partition_create: None,
            replicas: None,
        }
    }

    fn render(&self) -> String {
        let mut out = human::migrate(
            &self.migrations,
            self.lint.as_ref(),
            self.partition_create.as_ref(),
        );
        if let Some(replicas) = &self.replicas {
            out.push_str(&human::replicas(replicas));
        }
        out
    }
}

/// migrate lints the migrations it is about to apply (never the applied ones), weighed by the
/// live size of the tables they lock, and refuses error findings unless `--allow-unsafe`; a dry
/// run shows them with the lock plan. The report is kept for the run's output.
struct LintGate<'m> {
    refuse: bool,
    /// Tables whose partitions a policy manages (empty with --no-partitions).
    managed: Vec<String>,
    /// Below this size on disk a table is small: its locking findings are warnings.
    small_table: u64,
    report: Mutex<Option<lint::Report>>,
    /// The offline lint, shared by a fleet's databases (see [`Loaded`]).
    memo: &'m lint::Memo,
}

impl LintGate<'_> {
    fn take(&self) -> Option<lint::Report> {
        self.report.lock().ok().and_then(|mut r| r.take())
    }
}

impl Gate for LintGate<'_> {
    fn check<'a>(
        &'a self,
        client: Option<&'a tokio_postgres::Client>,
        catalog: &'a Catalog,
        pending: &'a [&'a Migration],
        mode: Mode,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>> {
        Box::pin(async move {
            let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
            let report = lint::pending_weighed(
                client,
                catalog,
                &versions,
                &self.managed,
                self.small_table,
                self.memo,
            )
            .await?;
            let errors = report.errors;
            if let Ok(mut kept) = self.report.lock() {
                *kept = Some(report);
            }
            if errors > 0 && mode == Mode::Apply && self.refuse {
                return Err(Error::Unsafe { errors });
            }
            Ok(())
        })
    }
}

/// The partitions `migrate` ensures after migrating.
struct Ensure<'a> {
    policies: &'a [Policy],
    /// "Now" for the partition plan; None for the server's clock.
    now: Option<DateTime<Utc>>,
}

/// What `migrate` reads before it connects: the migrations, the partition policies, and the
/// offline half of the lint gate. A fleet (`--targets`) reads it once for all its databases
/// (docs/fleet.md): every target then gets the same files, read before the first one connects.
pub(crate) struct Loaded {
    catalog: Catalog,
    /// None with --no-partitions.
    policies: Option<Vec<Policy>>,
    memo: lint::Memo,
}

impl Loaded {
    /// Reads and validates the migrations, then the policies (which a dry run validates too).
    pub(crate) fn read(args: &MigrateArgs) -> Result<Loaded> {
        let catalog = catalog::load(&args.migrations.source())?;
        Loaded::with_catalog(args, catalog)
    }

    fn with_catalog(args: &MigrateArgs, catalog: Catalog) -> Result<Loaded> {
        let policies = if args.no_partitions {
            None
        } else {
            Some(policy::load(&args.partitions.source())?)
        };
        Ok(Loaded {
            catalog,
            policies,
            memo: lint::Memo::default(),
        })
    }
}

/// `dhctl migrate` on the database `args` names; `progress` shows each step.
pub(crate) async fn produce(
    args: &MigrateArgs,
    global: &GlobalArgs,
    progress: &Reporter,
) -> Result<Produced<MigrateRun>> {
    // The order of the checks without --targets: the folder, the connection string, the
    // policies.
    // The files are read off the runtime's thread, so that a signal during a long read is
    // heard (see `off_thread`).
    let source = args.migrations.source();
    let catalog = super::off_thread(move || catalog::load(&source)).await?;
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let owned = args.clone();
    let loaded = super::off_thread(move || Loaded::with_catalog(&owned, catalog)).await?;
    produce_loaded(args, global, progress, &cfg, &loaded).await
}

/// `dhctl migrate` on the database `args` names with what was read before (once for a fleet).
pub(crate) async fn produce_on(
    args: &MigrateArgs,
    global: &GlobalArgs,
    progress: &Reporter,
    loaded: &Loaded,
) -> Result<Produced<MigrateRun>> {
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    produce_loaded(args, global, progress, &cfg, loaded).await
}

async fn produce_loaded(
    args: &MigrateArgs,
    global: &GlobalArgs,
    progress: &Reporter,
    cfg: &DbConfig,
    loaded: &Loaded,
) -> Result<Produced<MigrateRun>> {
    let catalog = &loaded.catalog;
    let mode = Mode::dry_run_if(args.dry_run);
    let create = if args.no_create_database || args.dry_run {
        CreateDatabase::Never
    } else {
        CreateDatabase::IfMissing
    };
    let options = migrate::Options {
        to: args.to,
        order: if args.allow_out_of_order {
            migrate::Order::AllowOutOfOrder
        } else {
            migrate::Order::Strict
        },
        mode,
        create,
        sql: Sql::shown_if(global.verbose),
    };
    // Policies were validated before anything changes. A dry run does not create partitions,
    // but lints with what the policies manage, as the real run would.
    let gate = LintGate {
        refuse: !args.allow_unsafe,
        managed: lint::managed_tables(loaded.policies.as_deref().unwrap_or_default()),
        small_table: args.small_table,
        report: Mutex::new(None),
        memo: &loaded.memo,
    };
    let policies = loaded.policies.as_deref().filter(|_| !args.dry_run);
    let ensure = policies.map(|policies| Ensure {
        policies,
        now: args.now,
    });
    let wait_replicas = args.wait_replicas.filter(|_| !args.dry_run);
    let outcome = migrate_and_ensure(
        cfg,
        catalog,
        &options,
        &gate,
        ensure.as_ref(),
        wait_replicas,
        progress,
    )
    .await;
    match outcome {
        Ok((mut run, failures)) => {
            run.lint = gate.take();
            Ok(Produced {
                report: Some(run),
                end: End::Failures(failures),
            })
        }
        Err(failed) => match (&failed.error, gate.take()) {
            (Error::Unsafe { .. }, Some(findings)) => Ok(Produced {
                report: None,
                end: End::Refused {
                    findings,
                    error: failed.error,
                },
            }),
            (_, findings) => {
                let failed = (*failed).map_report(|mut run| {
                    run.lint = findings;
                    run
                });
                super::report_failure(failed)
            }
        },
    }
}

impl Shown for MigrateRun {
    fn human(&self) -> String {
        self.render()
    }

    fn changed(&self) -> String {
        let m = &self.migrations;
        let steps = m.steps.len();
        let mut text = match (m.dry_run, steps) {
            (_, 0) => "nothing to apply".to_string(),
            (true, n) => format!("would apply {n} migration(s)"),
            (false, n) => format!("applied {n} migration(s)"),
        };
        if m.creates_database {
            // A dry run creates nothing: it would create the database.
            text = match m.dry_run {
                true => format!("would create the database, {text}"),
                false => format!("created the database, {text}"),
            };
        }
        if let Some(created) = &self.partition_create {
            let made: usize = created.tables.iter().map(|t| t.steps.len()).sum();
            if made > 0 {
                text.push_str(&format!(", {made} partition step(s)"));
            }
        }
        text
    }
}

/// `dhctl migrate` from start to end: connect (creating the database when `options.create`
/// allows), take the lock, apply the pending migrations, then, when `ensure` is given, create
/// what the policies want under the same lock; with `wait_replicas`, release the lock and wait
/// for the standbys. Returns the report and the partition failures it already describes (one
/// table failing does not undo the migrations or stop the other tables).
async fn migrate_and_ensure(
    cfg: &DbConfig,
    catalog: &Catalog,
    options: &migrate::Options,
    gate: &LintGate<'_>,
    ensure: Option<&Ensure<'_>>,
    wait_replicas: Option<Duration>,
    progress: &dyn Progress,
) -> Result<(MigrateRun, Vec<Error>), Box<Failed<MigrateRun>>> {
    let mut locked = match Locked::open(cfg, options.create).await {
        // A dry run against a database that does not exist yet: migrate would create it and
        // apply everything, which is the plan to show.
        Err(Error::MissingDatabase { .. }) if options.mode == Mode::DryRun => {
            let plan = migrate::plan_for_new_database(cfg, catalog, options, Some(gate)).await?;
            return Ok((MigrateRun::of(plan), Vec::new()));
        }
        other => other?,
    };
    let result = async {
        let migrations = migrate::run(&mut locked, cfg, catalog, options, Some(gate), progress)
            .await
            .map_err(|failed| Box::new(failed.map_report(MigrateRun::of)))?;
        let mut run = MigrateRun::of(migrations);
        let Some(wanted) = ensure else {
            return Ok((run, Vec::new()));
        };
        let create = CreateOptions {
            now: wanted.now,
            ahead: None,
            mode: Mode::Apply,
        };
        match partitions::ensure(&locked, cfg, wanted.policies, &create, progress).await {
            Ok(outcome) => {
                run.partition_create = Some(outcome.report);
                Ok((run, outcome.failures))
            }
            // The migrations stay applied: the error carries them.
            Err(error) => Err(Box::new(Failed {
                error,
                report: (!run.migrations.steps.is_empty()).then_some(run),
            })),
        }
    }
    .await;
    let Some(limit) = wait_replicas else {
        return locked.finish(result).await;
    };
    // The lock guards the schema, not the wait: released first, so the next runner (another
    // pod's init container) is not held up by a slow standby.
    let (released, session) = locked.release().await;
    let (mut run, failures) = result?;
    if let Err(error) = released {
        return Err(Box::new(Failed {
            error,
            report: Some(run),
        }));
    }
    match wait_for_standbys(&session.client, limit).await {
        Ok(seen) => {
            let behind = seen.check();
            run.replicas = Some(seen);
            match behind {
                Ok(()) => Ok((run, failures)),
                Err(error) => Err(Box::new(Failed {
                    error,
                    report: Some(run),
                })),
            }
        }
        Err(error) => Err(Box::new(Failed {
            error,
            report: Some(run),
        })),
    }
}

/// `--wait-replicas`: the commit every standby must replay, then the wait, both within `limit`.
async fn wait_for_standbys(client: &tokio_postgres::Client, limit: Duration) -> Result<Replicas> {
    use crate::db::inflight::{set_phase, Phase};
    let started = Instant::now();
    // Everything is committed: an interrupt from here on cuts short only the wait.
    set_phase(Some(Phase::WaitingForStandbys));
    let waited = async {
        let target = replicas::commit_lsn(client, limit).await?;
        replicas::wait(client, &target, started, limit).await
    }
    .await;
    set_phase(None);
    waited
}
