//! `dhctl verify`: is this database exactly what the migrations say? A list of checks, each
//! reported pass or fail with details, over facts gathered once: the history diff, the live
//! schema's snapshot and the snapshot of what the applied migrations produce (rebuilt in a
//! scratch schema, see [`scratch`]). Takes no lock and changes nothing.
//!
//! Adding a check: a [`Kind`] variant (its name and the exit code its failure means), a place in
//! [`CHECKS`], and an arm in `checks::run` with its function; the function may read the
//! [`Context`] or query through `ctx.session.client`.

mod checks;
pub mod compare;
pub mod replay;
pub mod scratch;
pub mod snapshot;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::config::DbConfig;
use crate::db::{connect, CreateDatabase, Session};
use crate::error::{Error, Result};
use crate::migrations::history::{self, HistoryRow};
use crate::migrations::status::{self, Counts, Entry, State};
use crate::migrations::{Catalog, Migration};
use crate::partitions::policy::Policy;

use replay::Build;
use scratch::Schemas;
use snapshot::Snapshot;

/// One check of verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Every applied migration's file exists and is unchanged.
    History,
    /// No migration waits to be applied.
    Pending,
    /// The live schema equals what the applied migrations produce.
    Schema,
    /// Every partition policy's table is covered from the current period through the premake
    /// horizon, without gaps, on UTC period starts, with at least one period of runway.
    Partitions,
    /// The schema's fingerprint (and, with --expect-fingerprint, that it is the expected one).
    Fingerprint,
}

/// The checks, in the order they are reported.
pub const CHECKS: &[Kind] = &[
    Kind::History,
    Kind::Pending,
    Kind::Schema,
    Kind::Partitions,
    Kind::Fingerprint,
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::History => "history",
            Kind::Pending => "pending",
            Kind::Schema => "schema",
            Kind::Partitions => "partitions",
            Kind::Fingerprint => "fingerprint",
        }
    }

    /// The exit code a failure of this check means (DESIGN.md, "Exit codes"): drift in the
    /// history is 4, every other failed check 1.
    pub fn failure_code(self) -> i32 {
        match self {
            Kind::History => 4,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Could not be judged because an earlier check failed; the details say which.
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: Kind,
    pub status: Outcome,
    /// One line: what was found.
    pub summary: String,
    /// One line per problem, each naming its object.
    pub details: Vec<String>,
    /// What verify adapted or left out on the way (never a problem by itself).
    pub notes: Vec<String>,
}

/// What `dhctl verify` reports.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub database: String,
    /// The schema that was verified (where the history table lives).
    pub schema: String,
    /// True when every check passed.
    pub passed: bool,
    /// sha256 of the live schema's normalised snapshot, `sha256:<hex>`.
    pub fingerprint: String,
    /// Where the schema check rebuilt the migrations (`temporary` or `schema`); absent when it
    /// did not rebuild them.
    pub scratch: Option<replay::Scratch>,
    pub checks: Vec<Check>,
    pub duration_ms: f64,
}

impl VerifyReport {
    /// 0 when every check passed, else the highest failure code (4 history drift, 1 other).
    pub fn exit_code(&self) -> i32 {
        self.checks
            .iter()
            .filter(|c| c.status == Outcome::Fail)
            .map(|c| c.name.failure_code())
            .max()
            .unwrap_or(0)
    }
}

/// What the user asked for besides the database.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// "Now" for time-dependent checks (partitions); the server's clock when absent.
    pub now: Option<DateTime<Utc>>,
    /// Fail the fingerprint check unless the live schema has this fingerprint.
    pub expect_fingerprint: Option<String>,
}

impl Options {
    /// Validates the raw flags: `--now` must be RFC 3339, `--expect-fingerprint` sha256 hex.
    pub fn parse(now: Option<&str>, expect_fingerprint: Option<&str>) -> Result<Options> {
        let now = now
            .map(|text| crate::partitions::parse_now("--now", text))
            .transpose()?;
        let expect_fingerprint = expect_fingerprint
            .map(|text| {
                let hex = text.trim().to_ascii_lowercase();
                let hex = hex.strip_prefix("sha256:").unwrap_or(&hex).to_string();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(format!("sha256:{hex}"))
                } else {
                    Err(Error::usage_hint(
                        format!("--expect-fingerprint `{text}` is not a sha256 fingerprint"),
                        "pass what `dhctl verify` prints, e.g. sha256:3f2a… (64 hex digits)",
                    ))
                }
            })
            .transpose()?;
        Ok(Options {
            now,
            expect_fingerprint,
        })
    }
}

/// Everything the checks judge, gathered in a few round trips before any check runs.
pub struct Context<'a> {
    pub session: &'a Session,
    pub catalog: &'a Catalog,
    /// The partition policies whose tables the partitions check inspects.
    pub policies: &'a [Policy],
    pub options: &'a Options,
    pub schemas: Schemas,
    /// False when the database has no history table yet.
    pub history_table: bool,
    /// The status diff: one entry per migration in the catalog or the history.
    pub entries: Vec<Entry>,
    pub live: Snapshot,
    /// What the applied migrations produce; None when the history has drifted (the applied SQL
    /// is then unknown).
    pub expected: Option<Snapshot>,
    /// What the scratch build adapted or left out, and where it ran.
    pub build_notes: Vec<String>,
    pub scratch: Option<replay::Scratch>,
    pub applied: usize,
}

/// Runs `dhctl verify`.
pub async fn run(
    cfg: &DbConfig,
    catalog: &Catalog,
    policies: &[Policy],
    options: &Options,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let session = connect(cfg, CreateDatabase::Never).await?;
    let ctx = gather(cfg, &session, catalog, policies, options).await?;
    let mut checks = Vec::with_capacity(CHECKS.len());
    for &kind in CHECKS {
        checks.push(checks::run(kind, &ctx).await?);
    }
    Ok(VerifyReport {
        database: cfg.display_target(),
        schema: ctx.schemas.live.clone(),
        passed: checks.iter().all(|c| c.status == Outcome::Pass),
        fingerprint: ctx.live.fingerprint(),
        scratch: ctx.scratch,
        checks,
        duration_ms: crate::migrations::migrate::ms(started.elapsed()),
    })
}

async fn gather<'a>(
    cfg: &DbConfig,
    session: &'a Session,
    catalog: &'a Catalog,
    policies: &'a [Policy],
    options: &'a Options,
) -> Result<Context<'a>> {
    let client = &session.client;
    // The history table is found by name in the catalog (never through search_path) and
    // checked before it is trusted; the schema to verify is the one that holds it.
    let history = history::read(client, cfg.history_table.as_ref(), history::Use::Read).await?;
    let schemas = schemas(client, &history.located.table).await?;
    let history_table = history.located.exists;
    let history: Vec<HistoryRow> = history.rows;
    let entries = status::diff(catalog, &history);
    let drift = Counts::of(&entries).drift();
    let applied: Vec<&Migration> = entries
        .iter()
        .filter(|e| e.state == State::Applied)
        .filter_map(|e| catalog.get(e.version))
        .collect();
    let build: Option<Build> = if drift {
        None
    } else {
        let mut build = replay::plan(&applied)?;
        if !schemas.temporary_allowed {
            build.scratch = replay::Scratch::Schema;
        }
        Some(build)
    };
    let snapshots = scratch::snapshots(client, &schemas, build.as_ref(), cfg.lock_timeout).await?;
    Ok(Context {
        session,
        catalog,
        policies,
        options,
        schemas,
        history_table,
        entries,
        live: snapshots.live,
        expected: snapshots.expected,
        scratch: build.as_ref().map(|b| b.scratch),
        build_notes: build.map(|b| b.notes).unwrap_or_default(),
        applied: applied.len(),
    })
}

/// The schema to verify: the history table's, or the first on search_path before one exists
/// (where `migrate` would put it); the schemas of installed extensions; and whether the role
/// may use a temporary schema (hardened databases revoke TEMP from PUBLIC). Refuses a read-only
/// session up front, rather than at the first CREATE of the rebuild.
async fn schemas(client: &Client, table: &history::TableName) -> Result<Schemas> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT n.nspname FROM pg_class c \
                              JOIN pg_namespace n ON n.oid = c.relnamespace \
                              WHERE c.oid = to_regclass($1)), current_schema())::text, \
                    ARRAY(SELECT DISTINCT n.nspname::text FROM pg_extension e \
                          JOIN pg_namespace n ON n.oid = e.extnamespace \
                          WHERE n.nspname <> 'pg_catalog' ORDER BY 1), \
                    has_database_privilege(current_database(), 'TEMP'), \
                    current_setting('transaction_read_only') = 'on'",
            &[&table.sql()],
        )
        .await
        .map_err(|e| Error::sql("finding the schema to verify", &e))?;
    let live: Option<String> = row.get(0);
    let live = live.ok_or_else(|| {
        Error::usage_hint(
            "there is no schema to verify: no refinery_schema_history table, and no schema on \
             search_path exists",
            "run `dhctl migrate`, or set the role's search_path to the gateway's schema",
        )
    })?;
    if row.get::<_, bool>(3) {
        return Err(Error::usage_hint(
            "the session is read-only (a standby, or default_transaction_read_only = on); verify \
             rebuilds the migrations in a scratch schema, which needs a writable primary",
            "run verify against the primary: it changes nothing there either (everything it \
             builds is rolled back)",
        ));
    }
    Ok(Schemas {
        live,
        extensions: row.get(1),
        temporary_allowed: row.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_their_flags() {
        let ok = Options::parse(Some("2026-12-01T00:00:00Z"), Some(&"A".repeat(64))).unwrap();
        assert_eq!(
            ok.expect_fingerprint,
            Some(format!("sha256:{}", "a".repeat(64)))
        );
        assert!(ok.now.is_some());
        assert_eq!(
            Options::parse(Some("tomorrow"), None)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            Options::parse(None, Some("sha256:xyz"))
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn history_drift_outranks_other_failures() {
        let check = |name, status| Check::new(name, status, "");
        let report = |checks| VerifyReport {
            database: String::new(),
            schema: String::new(),
            passed: false,
            fingerprint: String::new(),
            scratch: None,
            checks,
            duration_ms: 0.0,
        };
        let failed = report(vec![
            check(Kind::History, Outcome::Fail),
            check(Kind::Pending, Outcome::Fail),
            check(Kind::Schema, Outcome::Skipped),
        ]);
        assert_eq!(failed.exit_code(), 4);
        let pending = report(vec![
            check(Kind::History, Outcome::Pass),
            check(Kind::Pending, Outcome::Fail),
        ]);
        assert_eq!(pending.exit_code(), 1);
        let fine = report(vec![check(Kind::History, Outcome::Pass)]);
        assert_eq!(fine.exit_code(), 0);
    }
}
