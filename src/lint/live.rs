//! `dhctl lint --pending`: connect (no lock, nothing written), lint only the migrations not yet
//! applied, and weigh each finding by the live size of the tables it locks: a finding about
//! locking, scanning or rewriting an existing table stays an error when the table (all its
//! partitions counted) is at least `--small-table`, and becomes a warning below it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use tokio_postgres::types::Type;

use super::files::{self, Options};
use super::{Report, Rule, Severity};
use crate::db::DbConfig;
use crate::db::{self, CreateDatabase};
use crate::migrations::catalog;
use crate::migrations::history::{self, Use};
use crate::migrations::status::{self, State};
use crate::partitions::policy;
use crate::{Error, Result};

/// `--small-table`'s default: 10 MiB on disk. Below it, an index build or a rewrite takes well
/// under a second on any server dhctl supports, shorter than the default lock_timeout (2s) that
/// every other session's wait is compared with.
pub const SMALL_TABLE_DEFAULT: u64 = 10 * 1024 * 1024;

/// Lints the pending migrations of the database `cfg` names with its live sizes.
pub async fn pending_live(cfg: &DbConfig, options: &Options, small_table: u64) -> Result<Report> {
    let catalog = catalog::load(&options.migrations)?;
    let managed = files::managed_tables(&policy::load(&options.partitions)?);
    let session = db::connect(cfg, CreateDatabase::Never).await?;
    let history = history::read(&session.client, cfg.history_table.as_ref(), Use::Read).await?;
    let pending: Vec<i64> = status::diff(&catalog, &history.rows)
        .iter()
        // Out-of-order migrations are not applied either: migrate --allow-out-of-order runs them.
        .filter(|e| matches!(e.state, State::Pending | State::OutOfOrder))
        .map(|e| e.version)
        .collect();
    let catalog = Arc::new(catalog);
    let lint = |existing: BTreeSet<String>| {
        let (catalog, pending, managed) = (Arc::clone(&catalog), pending.clone(), managed.clone());
        let (source, plan) = (options.migrations.clone(), options.plan);
        off_thread(move || {
            files::pending_in(&catalog, &source, &pending, &managed, plan, &existing)
        })
    };
    let mut report = if pending.is_empty() {
        Report::default()
    } else {
        lint(BTreeSet::new()).await?
    };
    let mut names = relations(&report);
    let mut sizes = table_sizes(&session.client, &names).await?;
    let existing = existing_behind_if_not_exists(&report, &session.client).await?;
    if !existing.is_empty() {
        report = lint(existing).await?;
        names = relations(&report);
        sizes = table_sizes(&session.client, &names).await?;
    }
    let absent = absent(&sizes, &names, &report.created);
    weigh(
        &mut report,
        &missing_as_empty(sizes, &absent),
        &absent,
        small_table,
    );
    report.server_version = Some(session.server_version);
    Ok(report)
}

/// The offline half of migrate's lint (parsing the catalog and linting the pending migrations),
/// kept per set of pending versions and managed tables. It depends on nothing else, so the
/// databases of a fleet that have the same migrations pending (the usual case) share one parse
/// instead of each parsing every migration again; the live half (table sizes, weighing) stays
/// per database. A memo belongs to one catalog: a fleet makes one per run, after reading the
/// migrations once.
#[derive(Default)]
pub struct Memo {
    #[allow(clippy::type_complexity)]
    kept: Mutex<Vec<((Vec<i64>, Vec<String>), Arc<OnceCell<Report>>)>>,
}

impl Memo {
    /// The cell for this set of pending versions and managed tables; the first target to need
    /// it fills it while the others with the same key wait for that one parse.
    fn cell(&self, pending: &[i64], managed: &[String]) -> Arc<OnceCell<Report>> {
        let Ok(mut kept) = self.kept.lock() else {
            return Arc::new(OnceCell::new());
        };
        if let Some((_, cell)) = kept
            .iter()
            .find(|((p, m), _)| p.as_slice() == pending && m.as_slice() == managed)
        {
            return Arc::clone(cell);
        }
        let cell = Arc::new(OnceCell::new());
        kept.push(((pending.to_vec(), managed.to_vec()), Arc::clone(&cell)));
        cell
    }

    /// How many different lints this memo has made (one per key).
    pub fn parsed(&self) -> usize {
        self.kept
            .lock()
            .map(|kept| kept.iter().filter(|(_, c)| c.initialized()).count())
            .unwrap_or(0)
    }
}

/// migrate's lint: the pending migrations, weighed by the live size of the tables they lock
/// (`client` None: the database does not exist yet, so every table is new). `memo` keeps the
/// offline lint for the other databases of a fleet (it must have been made for `catalog`).
pub async fn pending_weighed(
    client: Option<&tokio_postgres::Client>,
    catalog: &catalog::Catalog,
    pending: &[i64],
    managed: &[String],
    small_table: u64,
    memo: &Memo,
) -> Result<Report> {
    let cell = memo.cell(pending, managed);
    let offline = cell
        .get_or_try_init(|| {
            let (catalog, pending, managed) = (catalog.clone(), pending.to_vec(), managed.to_vec());
            off_thread(move || files::pending(&catalog, &pending, &managed, &BTreeSet::new()))
        })
        .await?;
    let mut report = offline.clone();
    if let Some(client) = client {
        // A table a pending migration creates with IF NOT EXISTS and the database already has:
        // lint again knowing it exists (not memoized: it depends on this database).
        let existing = existing_behind_if_not_exists(&report, client).await?;
        if !existing.is_empty() {
            let (catalog, pending, managed) = (catalog.clone(), pending.to_vec(), managed.to_vec());
            report =
                off_thread(move || files::pending(&catalog, &pending, &managed, &existing)).await?;
        }
    }
    let names = relations(&report);
    let (sizes, absent) = match client {
        Some(client) => {
            let sizes = table_sizes(client, &names).await?;
            let absent = absent(&sizes, &names, &report.created);
            (sizes, absent)
        }
        // No database yet: every table is one the run creates.
        None => (HashMap::new(), names.iter().cloned().collect()),
    };
    weigh(
        &mut report,
        &missing_as_empty(sizes, &absent),
        &absent,
        small_table,
    );
    Ok(report)
}

/// Runs the lint off the runtime's one thread: it is CPU work that can take long on a large or
/// pathological file, and on that thread it would keep the signal handler (Ctrl-C, SIGTERM:
/// cancel and exit 130) from running until it ended.
async fn off_thread(lint: impl FnOnce() -> Result<Report> + Send + 'static) -> Result<Report> {
    tracing::debug!("linting the pending migrations");
    tokio::task::spawn_blocking(lint)
        .await
        .map_err(|e| Error::usage(format!("the lint stopped: {e}")))?
}

/// The tables the report's migrations create with IF NOT EXISTS that the database already has:
/// there the statement makes nothing, and what follows it acts on the existing (maybe large)
/// table, which the lint must weigh like any other.
async fn existing_behind_if_not_exists(
    report: &Report,
    client: &tokio_postgres::Client,
) -> Result<BTreeSet<String>> {
    if report.if_not_exists.is_empty() {
        return Ok(BTreeSet::new());
    }
    let names: Vec<String> = report.if_not_exists.iter().cloned().collect();
    let sizes = table_sizes(client, &names).await?;
    Ok(names
        .into_iter()
        .filter(|n| sizes.contains_key(n))
        .collect())
}

/// A table a pending statement locks that does not exist yet but a pending migration creates
/// is empty when this run starts.
fn missing_as_empty(
    mut sizes: HashMap<String, u64>,
    absent: &BTreeSet<String>,
) -> HashMap<String, u64> {
    for name in absent {
        sizes.entry(name.clone()).or_insert(0);
    }
    sizes
}

/// The relations a pending statement locks that do not exist when the run starts and that a
/// pending migration creates. A missing name no pending migration creates is not known to be
/// empty: the statement may reach another table than the linter's name says (a `SET
/// search_path` earlier in the migration, a table created by a DO block), so it keeps no size
/// and the offline verdict.
fn absent(
    sizes: &HashMap<String, u64>,
    names: &[String],
    created: &BTreeSet<String>,
) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| !sizes.contains_key(*n) && created.contains(*n))
        .cloned()
        .collect()
}

/// Every relation a finding or plan step locks.
fn relations(report: &Report) -> Vec<String> {
    let mut names = BTreeSet::new();
    let plan = report.plan.iter().flatten().flat_map(|s| s.locks.iter());
    for lock in report
        .findings
        .iter()
        .flat_map(|f| f.locks.iter())
        .chain(plan)
    {
        // Only plain names: "(every table)" and the like are not relations.
        if lock
            .relation
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$')
        {
            names.insert(lock.relation.clone());
        }
    }
    names.into_iter().collect()
}

/// Estimated size on disk of each relation that exists: pages of the table, its indexes and
/// TOAST (a partitioned table's partitions summed) as pg_class last recorded them (VACUUM,
/// ANALYZE, CREATE INDEX). Read from the catalogs only, so nothing waits on a lock the gateway
/// or a migration holds (pg_total_relation_size and pg_partition_tree would); every function and
/// operator is schema-qualified, so nothing planted in `public` runs. Unqualified names are the
/// gateway's, in `public`.
async fn table_sizes(
    client: &tokio_postgres::Client,
    names: &[String],
) -> Result<HashMap<String, u64>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let qualified: Vec<String> = names.iter().map(|n| qualified(n)).collect();
    // Typed parameters: no separate prepare round trip.
    let rows = client
        .query_typed(
            "WITH RECURSIVE tree(name, relid) AS ( \
                 SELECT r.name, c.oid \
                 FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), \
                                pg_catalog.unnest($2::pg_catalog.text[])) AS r(name, qualified) \
                 JOIN pg_catalog.pg_class c \
                   ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(r.qualified) \
               UNION ALL \
                 SELECT t.name, i.inhrelid FROM tree t \
                 JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) t.relid \
             ) \
             SELECT t.name, pg_catalog.sum(p.relpages)::pg_catalog.int8 \
                 OPERATOR(pg_catalog.*) pg_catalog.current_setting('block_size')::pg_catalog.int8 \
             FROM tree t \
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid \
             JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) c.oid \
               OR p.oid OPERATOR(pg_catalog.=) c.reltoastrelid \
               OR p.oid OPERATOR(pg_catalog.=) ANY (SELECT x.indexrelid FROM pg_catalog.pg_index x \
                                                   WHERE x.indrelid OPERATOR(pg_catalog.=) c.oid) \
             GROUP BY t.name",
            &[(&names, Type::TEXT_ARRAY), (&qualified, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| {
            Error::sql(
                "reading the sizes of the tables the pending migrations lock",
                &e,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| {
            let size: Option<i64> = row.get(1);
            let size = size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
            (row.get::<_, String>(0), size)
        })
        .collect())
}

/// `api_keys` → `"public"."api_keys"`, `auth.sessions` → `"auth"."sessions"`: every part quoted,
/// as the linter's names are already folded.
fn qualified(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let parts = if parts.len() == 1 {
        vec!["public", parts[0]]
    } else {
        parts
    };
    parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Findings whose harm grows with the table: locking it while building, scanning or rewriting.
/// The others (a statement that fails at run time, a NOT NULL column on a table with rows, a
/// non-rerunnable section, a breaking rename) are as bad on a small table.
fn grows_with_size(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::IndexWithoutConcurrently
            | Rule::IndexOnPartitionedTable
            | Rule::DropIndexWithoutConcurrently
            | Rule::ReindexWithoutConcurrently
            | Rule::AddColumnVolatileDefault
            | Rule::ColumnTypeRewrite
            | Rule::SetNotNullScan
            | Rule::ConstraintWithoutNotValid
            | Rule::ValidateInSameTransaction
            | Rule::ConstraintBuildsIndex
            | Rule::RewriteUnderLock
            | Rule::DetachWithoutConcurrently
    )
}

/// Fills each lock's `size_bytes` and turns an error into a warning when every table it locks
/// has a known size below `small_table`; a relation without one ("every table") keeps the
/// offline verdict. A NOT NULL column added without a default to a table that does not exist
/// when the run starts (`absent`: an earlier pending migration creates it, as every table of a
/// fresh database) is a warning too: the table holds only what the pending migrations insert,
/// and if they insert a row the statement fails in its own transaction, as psql's would.
pub(crate) fn weigh(
    report: &mut Report,
    sizes: &HashMap<String, u64>,
    absent: &BTreeSet<String>,
    small_table: u64,
) {
    let fill = |locks: &mut Vec<super::Lock>| {
        for lock in locks {
            lock.size_bytes = sizes.get(&lock.relation).copied();
        }
    };
    for step in report.plan.iter_mut().flatten() {
        fill(&mut step.locks);
    }
    for finding in &mut report.findings {
        fill(&mut finding.locks);
        let small = !finding.locks.is_empty()
            && finding
                .locks
                .iter()
                .all(|l| l.size_bytes.is_some_and(|s| s < small_table));
        if finding.severity == Severity::Error && grows_with_size(finding.rule) && small {
            finding.severity = Severity::Warning;
            finding.message.push_str(&format!(
                " (a warning: every table it locks is below --small-table, {})",
                human_size(small_table)
            ));
        }
        let altered = finding
            .locks
            .iter()
            .filter(|l| l.mode == super::LockMode::AccessExclusive);
        let created_by_this_run = altered.clone().next().is_some()
            && altered.clone().all(|l| absent.contains(&l.relation));
        if finding.rule == Rule::AddColumnNotNull
            && finding.severity == Severity::Error
            && created_by_this_run
        {
            finding.severity = Severity::Warning;
            finding.message.push_str(
                " (a warning: the table does not exist yet, an earlier pending migration creates it, so it holds only the rows pending migrations insert)",
            );
        }
    }
    report.count();
}

/// `--small-table`: bytes, or a number with kB, MB, GB (or KiB, MiB, GiB: the same, powers of
/// 1024, as PostgreSQL's size units are).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. 10MiB, 500kB or 1048576"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1 << 10,
        "mb" | "mib" | "m" => 1 << 20,
        "gb" | "gib" | "g" => 1 << 30,
        "tb" | "tib" | "t" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, kB, MB, GB or TB"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{Effect, Finding, Lock, LockMode};

    fn finding(rule: Rule, relations: &[&str]) -> Finding {
        Finding {
            file: "x.sql".into(),
            line: 1,
            rule,
            severity: rule.severity(),
            message: "m".into(),
            hint: "h".into(),
            statement: "s".into(),
            locks: relations
                .iter()
                .map(|r| Lock {
                    relation: r.to_string(),
                    mode: LockMode::Share,
                    effect: Effect::Scan,
                    size_bytes: None,
                })
                .collect(),
        }
    }

    /// The memo lints once per set of pending versions (and managed tables), and what it gives
    /// each caller is what an unshared lint gives.
    #[tokio::test]
    async fn the_memo_lints_once_per_pending_set_and_gives_what_a_fresh_lint_gives() {
        let catalog = catalog::parse_files(vec![
            (
                "1_first.sql".into(),
                b"CREATE TABLE first_table (id int);\n".to_vec(),
            ),
            (
                "2_second.sql".into(),
                b"CREATE INDEX second_index ON first_table (id);\n".to_vec(),
            ),
        ])
        .unwrap();
        let memo: &'static Memo = Box::leak(Box::default());
        let catalog = &catalog;
        let lint = |pending: &'static [i64], managed: &'static [String], memo: &'static Memo| {
            pending_weighed(None, catalog, pending, managed, 0, memo)
        };
        let both = lint(&[1, 2], &[], memo).await.unwrap();
        assert_eq!(memo.parsed(), 1);
        let again = lint(&[1, 2], &[], memo).await.unwrap();
        assert_eq!(memo.parsed(), 1, "the same pending set is linted once");
        let second = lint(&[2], &[], memo).await.unwrap();
        assert_eq!(memo.parsed(), 2, "another pending set is linted for itself");
        for (memoized, pending) in [(&both, &[1i64, 2][..]), (&again, &[1, 2]), (&second, &[2])] {
            let unshared = lint(pending, &[], Box::leak(Box::default())).await.unwrap();
            assert_eq!(memoized.files, unshared.files);
            assert_eq!(
                serde_json::to_string(memoized).unwrap(),
                serde_json::to_string(&unshared).unwrap()
            );
        }
        assert_eq!((both.files, second.files), (2, 1));
    }

    #[test]
    fn a_finding_on_small_tables_only_becomes_a_warning() {
        let mut report = Report {
            findings: vec![
                finding(Rule::IndexWithoutConcurrently, &["small"]),
                finding(Rule::IndexWithoutConcurrently, &["large"]),
                finding(Rule::ConstraintWithoutNotValid, &["small", "large"]),
                finding(
                    Rule::ConstraintWithoutNotValid,
                    &["small", "not_yet_created"],
                ),
                finding(Rule::AddColumnNotNull, &["small"]),
            ],
            ..Report::default()
        };
        let sizes = HashMap::from([("small".to_string(), 8192), ("large".to_string(), 1 << 30)]);
        weigh(&mut report, &sizes, &BTreeSet::new(), SMALL_TABLE_DEFAULT);
        let severities: Vec<Severity> = report.findings.iter().map(|f| f.severity).collect();
        assert_eq!(
            severities,
            [
                Severity::Warning,
                Severity::Error,
                Severity::Error,
                Severity::Error,
                Severity::Error
            ]
        );
        assert_eq!((report.errors, report.warnings), (4, 1));
        assert_eq!(report.findings[1].locks[0].size_bytes, Some(1 << 30));
        assert!(report.findings[0]
            .message
            .contains("below --small-table, 10 MiB"));
    }

    #[test]
    fn a_not_null_column_on_a_table_this_run_creates_is_a_warning() {
        let on = |relation: &str, absent: &[&str]| {
            let mut f = finding(Rule::AddColumnNotNull, &[relation, "referenced"]);
            f.locks[0].mode = LockMode::AccessExclusive;
            f.locks[1].mode = LockMode::ShareRowExclusive;
            let mut report = Report {
                findings: vec![f],
                ..Report::default()
            };
            let absent = absent.iter().map(|a| a.to_string()).collect();
            let sizes = HashMap::from([("existing".to_string(), 0), ("referenced".to_string(), 0)]);
            weigh(&mut report, &sizes, &absent, SMALL_TABLE_DEFAULT);
            report.findings[0].severity
        };
        // A fresh database: the table an earlier pending migration creates is empty.
        assert_eq!(on("created_in_run", &["created_in_run"]), Severity::Warning);
        // A table that exists may hold rows even when pg_class says 0 pages (never analysed).
        assert_eq!(on("existing", &[]), Severity::Error);
    }

    #[test]
    fn names_are_qualified_and_quoted_as_folded() {
        assert_eq!(qualified("api_keys"), "\"public\".\"api_keys\"");
        assert_eq!(qualified("auth.Mixed"), "\"auth\".\"Mixed\"");
    }

    #[test]
    fn sizes_take_postgresql_s_units() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("500kB"), Ok(500 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
    }
}
