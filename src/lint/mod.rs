//! `dhctl lint`: what a migration will lock, rewrite, scan or break, known before it runs.
//!
//! Statements are parsed with squawk's PostgreSQL parser (`squawk-syntax`, a lossless tree with
//! every token), never matched with regular expressions. The rules are dhctl's own, configured
//! from what dhctl knows and a file-by-file linter does not (docs/lint.md):
//! - which section runs in a transaction (`transaction:false`), so CONCURRENTLY is wrong only
//!   where it would fail, and a non-transactional section must be rerunnable;
//! - that dhctl sets `lock_timeout` itself, so no rule asks for one;
//! - which tables earlier migrations created (existing, possibly large) and which this migration
//!   created (new and empty: building an index on one blocks nobody), which are partitioned, and
//!   which have their partitions managed by a policy in `partitions/`.
//!
//! [`lint`] is pure: migrations and policies in, a [`Report`] out. Offline, every existing table
//! is assumed large, so a finding about locking or rewriting one is an error.

mod allow;
mod files;
mod live;
pub mod locks;
mod rules;
mod schema;
mod sql;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::migrations::catalog::{Migration, Section, Transaction};
use crate::Error;

pub use files::{managed_tables, pending, run, Options};
pub use live::{parse_size, pending_live, pending_weighed, Memo, SMALL_TABLE_DEFAULT};
pub use locks::{Effect, Lock, LockMode};

/// How bad a finding is: an error fails `dhctl lint` (exit 1) and stops `migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// Every rule, by the name a finding and an allow comment use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    IndexWithoutConcurrently,
    IndexOnPartitionedTable,
    DropIndexWithoutConcurrently,
    ReindexWithoutConcurrently,
    ConcurrentlyInTransaction,
    VacuumInTransaction,
    AddColumnNotNull,
    AddColumnVolatileDefault,
    ColumnTypeRewrite,
    SetNotNullScan,
    ConstraintWithoutNotValid,
    ValidateInSameTransaction,
    ConstraintBuildsIndex,
    RewriteUnderLock,
    DetachWithoutConcurrently,
    NotRerunnable,
    RenameBreaksGateway,
    DropBreaksGateway,
    ManualPartitionChange,
    UnusedAllow,
    Unparseable,
}

impl Rule {
    pub const ALL: [Rule; 21] = [
        Rule::IndexWithoutConcurrently,
        Rule::IndexOnPartitionedTable,
        Rule::DropIndexWithoutConcurrently,
        Rule::ReindexWithoutConcurrently,
        Rule::ConcurrentlyInTransaction,
        Rule::VacuumInTransaction,
        Rule::AddColumnNotNull,
        Rule::AddColumnVolatileDefault,
        Rule::ColumnTypeRewrite,
        Rule::SetNotNullScan,
        Rule::ConstraintWithoutNotValid,
        Rule::ValidateInSameTransaction,
        Rule::ConstraintBuildsIndex,
        Rule::RewriteUnderLock,
        Rule::DetachWithoutConcurrently,
        Rule::NotRerunnable,
        Rule::RenameBreaksGateway,
        Rule::DropBreaksGateway,
        Rule::ManualPartitionChange,
        Rule::UnusedAllow,
        Rule::Unparseable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::IndexWithoutConcurrently => "index-without-concurrently",
            Rule::IndexOnPartitionedTable => "index-on-partitioned-table",
            Rule::DropIndexWithoutConcurrently => "drop-index-without-concurrently",
            Rule::ReindexWithoutConcurrently => "reindex-without-concurrently",
            Rule::ConcurrentlyInTransaction => "concurrently-in-transaction",
            Rule::VacuumInTransaction => "vacuum-in-transaction",
            Rule::AddColumnNotNull => "add-column-not-null",
            Rule::AddColumnVolatileDefault => "add-column-volatile-default",
            Rule::ColumnTypeRewrite => "column-type-rewrite",
            Rule::SetNotNullScan => "set-not-null-scan",
            Rule::ConstraintWithoutNotValid => "constraint-without-not-valid",
            Rule::ValidateInSameTransaction => "validate-in-same-transaction",
            Rule::ConstraintBuildsIndex => "constraint-builds-index",
            Rule::RewriteUnderLock => "rewrite-under-lock",
            Rule::DetachWithoutConcurrently => "detach-without-concurrently",
            Rule::NotRerunnable => "not-rerunnable",
            Rule::RenameBreaksGateway => "rename-breaks-gateway",
            Rule::DropBreaksGateway => "drop-breaks-gateway",
            Rule::ManualPartitionChange => "manual-partition-change",
            Rule::UnusedAllow => "unused-allow",
            Rule::Unparseable => "unparseable",
        }
    }

    /// The rule an allow comment names; the two about the lint itself cannot be allowed.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL
            .into_iter()
            .filter(|r| !matches!(r, Rule::UnusedAllow | Rule::Unparseable))
            .find(|r| r.name() == name)
    }

    /// Renames and drops break the running gateway's queries, but are sometimes the point of a
    /// migration (the contract step of expand/contract): warnings. A section that cannot be
    /// rerun only hurts after some other failure, so it warns rather than stopping migrate. An
    /// unused allow, and (migrate only) a migration the parser cannot read, are warnings too. Everything else locks, rewrites or fails: an error.
    pub fn severity(self) -> Severity {
        match self {
            Rule::RenameBreaksGateway
            | Rule::DropBreaksGateway
            | Rule::NotRerunnable
            | Rule::UnusedAllow
            | Rule::Unparseable => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One thing wrong with one statement.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The migration file as the user names it (`sql/2024…_x.sql`, or the PATH given).
    pub file: String,
    /// The line on which the statement starts (1-based, in the file).
    pub line: usize,
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    /// The safe pattern.
    pub hint: String,
    /// The statement, whitespace collapsed, shortened past 200 characters.
    pub statement: String,
    /// What the statement locks (the lock plan of this statement).
    pub locks: Vec<Lock>,
}

/// One statement of the lock plan (`--plan`).
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub file: String,
    pub line: usize,
    pub statement: String,
    pub locks: Vec<Lock>,
}

/// The result of linting: the findings, in file and line order, and the counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// How many migration files were linted.
    pub files: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Every statement's locks, with `--plan`; null otherwise.
    pub plan: Option<Vec<PlanStep>>,
    /// The server's version (`server_version_num`) with `--pending`; null offline.
    pub server_version: Option<i32>,
    /// The tables and indexes the linted migrations create (as the linter names them): a live
    /// lint counts one that does not exist yet as empty, and any other missing name as unknown.
    #[serde(skip)]
    pub created: std::collections::BTreeSet<String>,
    /// The tables the linted migrations create with IF NOT EXISTS, not knowing whether they
    /// exist: a live lint that finds one in the database lints again, with it as existing.
    #[serde(skip)]
    pub if_not_exists: std::collections::BTreeSet<String>,
}

impl Report {
    /// Counts the errors and warnings among the findings (after they change severity).
    pub fn count(&mut self) {
        self.errors = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        self.warnings = self.findings.len() - self.errors;
    }

    /// 0 when no finding is an error, 1 when one is (`dhctl lint`'s contract).
    pub fn exit_code(&self) -> i32 {
        i32::from(self.errors > 0)
    }
}

/// A migration and the name its findings carry.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub migration: &'a Migration,
    /// How the user names the file (a path relative to where dhctl runs, or `sql/…`).
    pub path: &'a str,
    /// Lint it, or only learn the tables it creates (an earlier migration).
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lint,
    ContextOnly,
}

/// Whether to collect the lock plan of every statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Collect,
    Skip,
}

/// What dhctl knows besides the files.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Tables whose partitions a policy in partitions/ creates and drops.
    pub managed: Vec<String>,
    pub unparseable: Unparseable,
    /// Tables the live database has (a live lint's second pass): `CREATE TABLE IF NOT EXISTS`
    /// of one makes nothing.
    pub existing: std::collections::BTreeSet<String>,
}

/// What a statement the parser cannot read does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unparseable {
    /// `dhctl lint`: exit 2 naming file:line; a linter that skipped it would pass what it never
    /// checked.
    #[default]
    Fail,
    /// migrate: a warning, and the server judges the SQL (a gap in the parser must never stop
    /// valid SQL from being applied; a real syntax error fails with the server's message).
    Warn,
}

/// Lints the targets among `inputs` (in version order; the others only teach the schema).
/// A bad allow comment in a target is an error naming file:line (exit 2).
pub fn lint(inputs: &[Input<'_>], context: &Context, plan: Plan) -> crate::Result<Report> {
    let mut schema = schema::Schema::new(&context.managed).with_existing(&context.existing);
    let mut report = Report {
        plan: (plan == Plan::Collect).then(Vec::new),
        ..Report::default()
    };
    for input in inputs {
        let up = sql::parse_section(&input.migration.up);
        let down = match (&input.migration.down, input.target) {
            (Some(section), Target::Lint) => Some((section, sql::parse_section(section))),
            _ => None,
        };
        let mut lint = input.target == Target::Lint;
        let error = up
            .syntax_error
            .as_ref()
            .or(down.as_ref().and_then(|(_, d)| d.syntax_error.as_ref()));
        if let (true, Some((line, message))) = (lint, error) {
            match context.unparseable {
                Unparseable::Fail => return Err(unparseable(input.path, *line, message)),
                Unparseable::Warn => {
                    report.files += 1;
                    report.findings.push(unparsed(input.path, *line, message));
                    lint = false;
                }
            }
        }
        schema.begin_migration();
        let mode = Mode {
            section: SectionKind::Up,
            transaction: input.migration.up.transaction,
        };
        let mut findings = Vec::new();
        let mut steps = Vec::new();
        rules::check_section(&up, &mode, &mut schema, &mut findings, &mut steps);
        if input.target == Target::Lint {
            report.created.extend(schema.created_here().cloned());
            report
                .if_not_exists
                .extend(schema.if_not_exists_here().cloned());
        }
        if !lint {
            continue;
        }
        report.files += 1;
        let mut findings = allow::apply(findings, &up, input.path)?;
        if let Some((section, parsed)) = &down {
            let mode = Mode {
                section: SectionKind::Down,
                transaction: section.transaction,
            };
            // The down runs against the schema as the up left it; what it drops is not learnt
            // (later migrations build on the up): check_section learns from up sections only.
            let mut down_findings = Vec::new();
            rules::check_section(
                parsed,
                &mode,
                &mut schema,
                &mut down_findings,
                &mut Vec::new(),
            );
            findings.extend(allow::apply(down_findings, parsed, input.path)?);
        }
        findings.sort_by_key(|f| f.line);
        for f in &mut findings {
            f.file = input.path.to_string();
        }
        report.findings.extend(findings);
        if let Some(plan) = report.plan.as_mut() {
            plan.extend(steps.into_iter().map(|mut s| {
                s.file = input.path.to_string();
                s
            }));
        }
    }
    report.count();
    Ok(report)
}

/// Which section a statement is in, and how it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub section: SectionKind,
    pub transaction: Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Up,
    Down,
}

/// A statement that does not parse: exit 2, naming file and line.
fn unparseable(path: &str, line: usize, detail: &str) -> Error {
    Error::usage_hint(
        format!("{path}:{line}: cannot lint this statement: {detail}"),
        "fix the statement's syntax; if PostgreSQL accepts it and dhctl's parser does not, \
         report it, and lint the other files by naming them (`dhctl lint FILE...`)",
    )
}

/// The warning migrate gives for a migration its parser cannot read.
fn unparsed(path: &str, line: usize, detail: &str) -> Finding {
    Finding {
        file: path.to_string(),
        line,
        rule: Rule::Unparseable,
        severity: Severity::Warning,
        message: format!("dhctl's parser cannot read this migration ({detail}), so it was not linted"),
        hint: "check it with `dhctl lint FILE`; if PostgreSQL accepts the statement, the migration applies as usual".into(),
        statement: String::new(),
        locks: Vec::new(),
    }
}

/// Maps a byte offset in a section to the file's line.
fn line_of(section: &Section, offset: usize) -> usize {
    section.first_line + section.sql[..offset].matches('\n').count()
}
