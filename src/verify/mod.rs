//! `dhctl verify`: is this database exactly what the migrations say? A list of checks, each
//! reported pass or fail with details, over facts gathered once: the history diff, the live
//! database's snapshot and the snapshot of what the applied migrations produce (rebuilt in a
//! scratch database, see [`scratch`]). Takes no lock and never touches a live object beyond
//! reading the catalog and the history.
//!
//! Adding a check: a [`Kind`] variant (its name and the exit code its failure means), a place in
//! [`CHECKS`], and an arm in `checks::run` with its function; the function may read the
//! [`Context`] or query through `ctx.session.client`.

mod checks;
pub mod compare;
pub mod live;
pub mod pipeline;
pub mod replay;
pub mod scratch;
pub mod snapshot;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::ident::{quote_ident, TableName};
use crate::db::{connect, CreateDatabase, DbConfig, Session};
use crate::error::{Error, Result};
use crate::migrations::history::{self, HistoryRow};
use crate::migrations::status::{self, Counts, Entry, State};
use crate::migrations::{dbmate, Catalog, Migration};
use crate::partitions::policy::Policy;

use live::Facts;
use replay::Build;
use scratch::{ScratchUrl, Unavailable};
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
pub enum Status {
    Pass,
    Fail,
    /// Could not be judged (an earlier check failed, or no scratch database); the summary says
    /// why and the details how to make it run. Fails verify only with `--require-all`.
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: Kind,
    pub status: Status,
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
    /// The main schema (where the history table lives); objects elsewhere are named with their
    /// schema.
    pub schema: String,
    /// True when verify exits 0: every check passed, or was skipped without `--require-all`.
    pub passed: bool,
    /// sha256 of the live schema's normalised snapshot, `sha256:<hex>`.
    pub fingerprint: String,
    /// Where the schema check rebuilt the migrations (`database`: a scratch database verify
    /// created and dropped; `url`: the one given with --scratch-url); absent when it did not
    /// rebuild them.
    pub scratch: Option<scratch::Scratch>,
    /// With --require-all a skipped check fails verify (exit 1).
    pub require_all: bool,
    pub checks: Vec<Check>,
    pub duration_ms: f64,
}

impl VerifyReport {
    /// 0 when every check passed, else the highest failure code (4 history drift, 1 other);
    /// a skipped check counts as a failure (1) only with `--require-all`.
    pub fn exit_code(&self) -> i32 {
        self.checks
            .iter()
            .filter_map(|c| match c.status {
                Status::Fail => Some(c.name.failure_code()),
                Status::Skipped if self.require_all => Some(1),
                _ => None,
            })
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
    /// Rebuild in this (empty) database instead of creating one.
    pub scratch_url: Option<ScratchUrl>,
    /// A skipped check fails verify.
    pub require_all: bool,
}

impl Options {
    /// `--now` (typed by clap) and `--expect-fingerprint`, which must be sha256 hex.
    pub fn parse(now: Option<DateTime<Utc>>, expect_fingerprint: Option<&str>) -> Result<Options> {
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
            scratch_url: None,
            require_all: false,
        })
    }

    /// `--scratch-url` (DHCTL_VERIFY_SCRATCH_URL) and `--require-all`.
    pub fn with_scratch(mut self, scratch_url: Option<&str>, require_all: bool) -> Result<Options> {
        self.scratch_url = scratch_url.map(ScratchUrl::parse).transpose()?;
        self.require_all = require_all;
        Ok(self)
    }
}

/// What the applied migrations produce, if it could be rebuilt.
pub enum Expected {
    Built(Snapshot),
    /// The history has drifted: the applied SQL is unknown.
    Drift,
    /// No scratch database to rebuild in.
    Unavailable(Unavailable),
}

/// Everything the checks judge, gathered in a few round trips before any check runs.
pub struct Context<'a> {
    pub session: &'a Session,
    pub catalog: &'a Catalog,
    /// The partition policies whose tables the partitions check inspects.
    pub policies: &'a [Policy],
    pub options: &'a Options,
    pub facts: Facts,
    /// False when the database has no history table yet.
    pub history_table: bool,
    /// The status diff: one entry per migration in the catalog or the history.
    pub entries: Vec<Entry>,
    pub live: Snapshot,
    pub expected: Expected,
    /// What the scratch build adapted or left out, and what happened to the scratch database.
    pub build_notes: Vec<String>,
    pub scratch: Option<scratch::Scratch>,
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
    let mut report = VerifyReport {
        database: cfg.display_target(),
        schema: ctx.facts.live.clone(),
        passed: false,
        fingerprint: ctx.live.fingerprint(),
        scratch: ctx.scratch,
        require_all: options.require_all,
        checks,
        duration_ms: 0.0,
    };
    report.passed = report.exit_code() == 0;
    report.duration_ms = crate::report::ms(started.elapsed());
    Ok(report)
}

/// What `migrations` build, rebuilt in a scratch database (created and dropped, or
/// `scratch_url`) and snapshotted; with the build's notes and where it was built. Never touches
/// a live object. Used by verify's schema check and by `baseline`.
pub async fn rebuild_expected(
    cfg: &DbConfig,
    session: &Session,
    facts: &Facts,
    migrations: &[&Migration],
    scratch_url: Option<&ScratchUrl>,
) -> Result<(Expected, Vec<String>, Option<scratch::Scratch>)> {
    let client = &session.client;
    let mut build_notes = Vec::new();
    let build: Build = replay::plan(migrations)?;
    let db = match scratch::open(cfg, session, facts, scratch_url).await? {
        Err(unavailable) => return Ok((Expected::Unavailable(unavailable), build_notes, None)),
        Ok(db) => db,
    };
    let kind = db.kind;
    let rebuilt = pipeline::rebuild(db.client(), db.kind, &build, facts, cfg.lock_timeout).await;
    // Dropped on every path, the failed rebuild's included.
    let closing = db.close(client).await;
    build_notes.extend(closing);
    let expected = match rebuilt {
        Ok((snapshot, notes)) => {
            build_notes.extend(notes);
            build_notes.extend(build.notes);
            Expected::Built(snapshot)
        }
        // An extension this role may not create was left out, and a migration (probably one
        // using it) did not rebuild: the schema cannot be compared, other checks still can.
        Err(e @ Error::Sql { .. }) if !facts.uncreatable.is_empty() => {
            Expected::Unavailable(Unavailable {
                reason: format!(
                    "the migrations could not be rebuilt without the extension(s) \
                     {} that this role may not create (they need a superuser): {e}",
                    facts.uncreatable.join(", ")
                ),
                fix: "run as a role that may create them (a superuser)".into(),
            })
        }
        Err(e) => return Err(e),
    };
    Ok((expected, build_notes, Some(kind)))
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
    // checked before it is trusted; the main schema to verify is the one that holds it.
    let history = history::read(client, cfg.history_table.as_ref(), history::Use::Read).await?;
    let facts = live::facts(client, &history.located.table.sql()).await?;
    let history_table = history.located.exists;
    let history: Vec<HistoryRow> = history.rows;
    let entries = status::diff(catalog, &history);
    let drift = Counts::of(&entries).drift();
    // Replayed in the order they were applied (the order rollback undoes them in), not in
    // version order: after `migrate --allow-out-of-order` the two differ, and migrations that
    // do not commute (two CREATE OR REPLACE of one function) build something else.
    let applied: Vec<&Migration> = history::applied_order(&history)
        .rows
        .iter()
        .filter(|(h, _)| {
            entries
                .iter()
                .any(|e| e.version == h.version && e.state == State::Applied)
        })
        .filter_map(|(h, _)| catalog.get(h.version))
        .collect();
    let mut live = pipeline::live_snapshot(client, &facts, cfg.lock_timeout).await?;
    let (expected, build_notes, kind) = if drift {
        (Expected::Drift, Vec::new(), None)
    } else {
        rebuild_expected(cfg, session, &facts, &applied, options.scratch_url.as_ref()).await?
    };
    if let Expected::Built(built) = &expected {
        if let Some(table) = dbmate::find(client, &catalog.versions()).await? {
            leave_out_dbmate(&mut live, built, &table, &facts.live);
        }
    }
    Ok(Context {
        session,
        catalog,
        policies,
        options,
        facts,
        history_table,
        entries,
        live,
        expected,
        scratch: kind,
        build_notes,
        applied: applied.len(),
    })
}

/// dbmate's bookkeeping table is not part of the schema the migrations build, so the
/// comparison leaves it out of the live side (`verify` and `baseline` both, with this one rule):
/// the table with everything on it, and its schema when that is not the main one, holds nothing
/// else, and the migrations do not create it. Unless the migrations create a table of that name
/// themselves: then it is theirs and compared like any other.
pub fn leave_out_dbmate(live: &mut Snapshot, expected: &Snapshot, table: &TableName, main: &str) {
    use snapshot::{ObjectKey, ObjectKind};
    // The snapshot names a schema as PostgreSQL's quote_ident prints it: bare when it needs no
    // quotes (keywords aside), else quoted. Both spellings are matched.
    let schemas = [table.schema.clone(), quote_ident(&table.schema)];
    let names: Vec<String> = if table.schema == main {
        vec![table.name.clone()]
    } else {
        schemas
            .iter()
            .map(|schema| format!("{schema}.{}", table.name))
            .collect()
    };
    let is_table = |key: &ObjectKey| key.kind == ObjectKind::Table && names.contains(&key.table);
    if expected.objects.keys().any(is_table) {
        return;
    }
    live.objects.retain(|key, _| !names.contains(&key.table));
    if table.schema == main {
        return;
    }
    let prefixes: Vec<String> = schemas.iter().map(|s| format!("{s}.")).collect();
    let holds_more = live.objects.keys().any(|key| {
        key.kind != ObjectKind::Schema
            && prefixes
                .iter()
                .any(|p| key.table.starts_with(p) || key.name.starts_with(p))
    });
    let is_schema =
        |key: &ObjectKey| key.kind == ObjectKind::Schema && schemas.contains(&key.table);
    if !holds_more && !expected.objects.keys().any(is_schema) {
        live.objects.retain(|key, _| !is_schema(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(rows: &[(&str, &str, &str)]) -> Snapshot {
        Snapshot::from_rows(rows.iter().map(|(kind, table, name)| {
            [*kind, *table, *name, "exists", "yes"].map(|c| Some(c.to_string()))
        }))
        .unwrap()
    }

    fn keys(s: &Snapshot) -> Vec<String> {
        s.objects.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn dbmate_bookkeeping_is_left_out_unless_the_migrations_create_it() {
        let main_table = TableName::parse("public.schema_migrations").unwrap();
        let live = || {
            snap(&[
                ("table", "t1", ""),
                ("table", "schema_migrations", ""),
                ("column", "schema_migrations", "version"),
            ])
        };
        let mut left = live();
        leave_out_dbmate(
            &mut left,
            &snap(&[("table", "t1", "")]),
            &main_table,
            "public",
        );
        assert_eq!(keys(&left), vec!["table t1"]);
        // The migrations create a table of that name: it is theirs, compared as any other.
        let theirs = snap(&[("table", "t1", ""), ("table", "schema_migrations", "")]);
        let mut kept = live();
        leave_out_dbmate(&mut kept, &theirs, &main_table, "public");
        assert_eq!(kept, live());
    }

    #[test]
    fn dbmate_schema_is_left_out_only_when_it_holds_nothing_else() {
        let table = TableName::parse("dbmate.schema_migrations").unwrap();
        let expected = snap(&[("table", "t1", "")]);
        let mut alone = snap(&[
            ("table", "t1", ""),
            ("schema", "dbmate", ""),
            ("table", "dbmate.schema_migrations", ""),
            (
                "index",
                "dbmate.schema_migrations",
                "schema_migrations_pkey",
            ),
        ]);
        leave_out_dbmate(&mut alone, &expected, &table, "public");
        assert_eq!(keys(&alone), vec!["table t1"]);
        let mut more = snap(&[
            ("table", "t1", ""),
            ("schema", "dbmate", ""),
            ("table", "dbmate.schema_migrations", ""),
            ("function", "", "dbmate.f()"),
        ]);
        leave_out_dbmate(&mut more, &expected, &table, "public");
        assert_eq!(
            keys(&more),
            vec!["schema dbmate", "table t1", "function dbmate.f()"]
        );
        // The migrations create the schema: it stays on both sides.
        let with_schema = snap(&[("table", "t1", ""), ("schema", "dbmate", "")]);
        let mut both = snap(&[
            ("table", "t1", ""),
            ("schema", "dbmate", ""),
            ("table", "dbmate.schema_migrations", ""),
        ]);
        leave_out_dbmate(&mut both, &with_schema, &table, "public");
        assert_eq!(keys(&both), vec!["schema dbmate", "table t1"]);
    }

    #[test]
    fn options_validate_their_flags() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap();
        let ok = Options::parse(Some(now.into()), Some(&"A".repeat(64))).unwrap();
        assert_eq!(
            ok.expect_fingerprint,
            Some(format!("sha256:{}", "a".repeat(64)))
        );
        assert!(ok.now.is_some());
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
            require_all: false,
            checks,
            duration_ms: 0.0,
        };
        let failed = report(vec![
            check(Kind::History, Status::Fail),
            check(Kind::Pending, Status::Fail),
            check(Kind::Schema, Status::Skipped),
        ]);
        assert_eq!(failed.exit_code(), 4);
        let pending = report(vec![
            check(Kind::History, Status::Pass),
            check(Kind::Pending, Status::Fail),
        ]);
        assert_eq!(pending.exit_code(), 1);
        let fine = report(vec![check(Kind::History, Status::Pass)]);
        assert_eq!(fine.exit_code(), 0);
        let mut skipped = report(vec![
            check(Kind::History, Status::Pass),
            check(Kind::Schema, Status::Skipped),
        ]);
        assert_eq!(skipped.exit_code(), 0, "skipped is not failed");
        skipped.require_all = true;
        assert_eq!(skipped.exit_code(), 1, "unless every check is required");
    }
}
