//! `dhctl baseline`: adopt a database made without dhctl. Where the `verify` domain (the
//! rebuild of the migrations in a scratch database and the comparison) meets the `migrations`
//! domain (which versions, and the history rows): the schema must be exactly what the chosen
//! migrations build before a single row is written, and all of it happens under the lock.

use std::time::Instant;

use serde::Serialize;

use crate::cli::{BaselineArgs, GlobalArgs};
use crate::db::{Access, CreateDatabase, DbConfig, Locked};
use crate::error::{Error, Result};
use crate::migrations::baseline::{self, BaselineReport, Recorded, Source};
use crate::migrations::history::{self, Use};
use crate::migrations::{catalog, dbmate, Migration};
use crate::output::{self, human};
use crate::report::{ms, Mode};
use crate::verify::scratch::{Scratch, ScratchUrl};
use crate::verify::{self, compare, live, pipeline, Expected};

/// What `dhctl baseline` reports: the migrations' report and where they were rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineRun {
    #[serde(flatten)]
    pub baseline: BaselineReport,
    /// Where the migrations were rebuilt (as verify's `scratch`).
    pub scratch: Option<Scratch>,
}

impl BaselineRun {
    fn render(&self) -> String {
        human::baseline(&self.baseline)
    }
}

pub async fn run(args: &BaselineArgs, global: &GlobalArgs) -> Result<i32> {
    let started = Instant::now();
    let catalog = catalog::load(&args.migrations.source())?;
    // A bad --version is refused before connecting.
    if let Some(version) = args.version {
        baseline::up_to(&catalog, version)?;
    }
    let scratch_url = args
        .scratch_url
        .as_deref()
        .map(ScratchUrl::parse)
        .transpose()?;
    let cfg = DbConfig::from_args(&args.connect, &args.locks, Access::Write)?;
    let mode = Mode::dry_run_if(args.dry_run);
    let locked = Locked::open(&cfg, CreateDatabase::Never).await?;
    let result = adopt(&locked, &cfg, &catalog, args, scratch_url.as_ref(), mode).await;
    let mut run = locked.finish(result).await?;
    run.baseline.duration_ms = ms(started.elapsed());
    output::emit(global.format, &run, BaselineRun::render);
    Ok(if run.baseline.differences.is_empty() {
        0
    } else {
        1
    })
}

async fn adopt(
    locked: &Locked,
    cfg: &DbConfig,
    catalog: &catalog::Catalog,
    args: &BaselineArgs,
    scratch_url: Option<&ScratchUrl>,
    mode: Mode,
) -> Result<BaselineRun> {
    let session = &locked.session;
    let client = &session.client;
    let history::History { mut located, rows } =
        history::read(client, cfg.history_table.as_ref(), Use::Write).await?;
    if !rows.is_empty() {
        return Err(baseline::refuse_history(&located.table, rows.len()));
    }
    let dbmate_table = dbmate::find(client, &catalog.versions()).await?;
    let (source, migrations): (Source, Vec<&Migration>) = match args.version {
        Some(version) => (Source::Version, baseline::up_to(catalog, version)?),
        None => {
            let table = dbmate_table.as_ref().ok_or_else(|| {
                Error::usage_hint(
                    format!(
                        "--from-dbmate: this database has no dbmate {} table (one that records a version of these migrations); nothing was changed",
                        dbmate::TABLE
                    ),
                    "give the newest migration the database has with --version VERSION instead",
                )
            })?;
            let versions = dbmate::versions(client, table).await?;
            (
                Source::Dbmate,
                baseline::of_versions(catalog, &versions, table)?,
            )
        }
    };
    let facts = live::facts(client, &located.table.sql()).await?;
    let mut live = pipeline::live_snapshot(client, &facts, cfg.lock_timeout).await?;
    let (expected, notes, scratch) =
        verify::rebuild_expected(cfg, session, &facts, &migrations, scratch_url).await?;
    let expected = match expected {
        Expected::Built(snapshot) => snapshot,
        Expected::Unavailable(why) => {
            return Err(Error::usage_hint(
                format!(
                    "baseline cannot check the schema, so it records nothing: {}",
                    why.reason
                ),
                why.fix,
            ))
        }
        Expected::Drift => return Err(Error::usage("baseline: the history cannot have drifted")),
    };
    // dbmate's own bookkeeping table is not part of the schema the migrations build (verify's
    // rule, shared).
    if let Some(table) = &dbmate_table {
        verify::leave_out_dbmate(&mut live, &expected, table, &facts.live);
    }
    let differences: Vec<String> = compare::differences(&expected, &live)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut report = BaselineReport {
        database: cfg.display_target(),
        dry_run: mode == Mode::DryRun,
        source,
        dbmate_table: match source {
            Source::Dbmate => dbmate_table.as_ref().map(ToString::to_string),
            Source::Version => None,
        },
        steps: migrations.iter().map(|m| Recorded::of(m)).collect(),
        differences,
        recorded: false,
        notes,
        duration_ms: 0.0,
    };
    if report.differences.is_empty() && mode == Mode::Apply {
        baseline::record(client, &mut located, &migrations).await?;
        report.recorded = true;
    }
    Ok(BaselineRun {
        baseline: report,
        scratch,
    })
}
