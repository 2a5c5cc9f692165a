//! `dhctl lint` on the corpus in tests/lint/: each case (a migration file, or a folder of
//! migrations applied in order after the shipped ones) says which rules it must raise
//! (`-- expect: RULE…`) and which it shows silent (`-- guards: RULE…`). Every case is linted;
//! every case that can apply is applied with `migrate` to a database whose tables hold rows
//! (the safe ones without --allow-unsafe, so lint lets them through), and every table the lock
//! plan says is rewritten must get a new relfilenode, every other one must keep its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::harness::*;

/// One corpus case.
struct Case {
    name: String,
    /// (file name in the migrations folder, contents).
    files: Vec<(String, String)>,
    expect: BTreeSet<String>,
    guards: BTreeSet<String>,
    applies: bool,
}

fn corpus() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let files: Vec<(String, String)> = if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                files.sort();
                files
                    .iter()
                    .map(|f| {
                        let file = f.file_name().unwrap().to_string_lossy().into_owned();
                        (file, std::fs::read_to_string(f).unwrap())
                    })
                    .collect()
            } else {
                vec![(
                    format!("20250101000000_{name}.sql"),
                    std::fs::read_to_string(&path).unwrap(),
                )]
            };
            let directive = |key: &str| -> BTreeSet<String> {
                files
                    .iter()
                    .flat_map(|(_, text)| text.lines())
                    .filter_map(|l| l.strip_prefix(key))
                    .flat_map(|rest| rest.split_whitespace().map(str::to_string))
                    .collect()
            };
            let applies = !directive("-- applies:").contains("no");
            Case {
                expect: directive("-- expect:"),
                guards: directive("-- guards:"),
                applies,
                files,
                name,
            }
        })
        .collect()
}

/// The shipped migrations plus the case's files.
fn folder(case: &Case) -> tempfile::TempDir {
    let extra: Vec<(&str, &str)> = case
        .files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    migrations_with(&extra)
}

/// Rows in every table a case touches, so a NOT NULL without default fails as it would in
/// production and a rewrite has data to rewrite.
const ROWS: &str = "
INSERT INTO api_keys (name, key_hash, key_prefix, created_by)
    SELECT 'key ' || g, md5(g::text), 'dh_' || g, 'ops' FROM generate_series(1, 50) g;
INSERT INTO request_logs (api_key_id, request_id, method, path, response_status, created_at)
    SELECT (SELECT id FROM api_keys LIMIT 1), 'req-' || g, 'GET', '/v1/x', 200, '2024-01-15 00:00:00+00'
    FROM generate_series(1, 50) g;
INSERT INTO audit_logs (action, resource_type, resource_id, user_agent)
    SELECT 'update', 'api_key', g::text, 'cli' FROM generate_series(1, 50) g;
INSERT INTO webhooks (url, secret, events, description) VALUES ('https://example.test/h', 's', '{a}', 'd');
";

/// relfilenode of every table (partitions included; 0 for a partitioned parent), by name.
fn relfilenodes(db: &TestDb) -> BTreeMap<String, String> {
    db.column(
        "SELECT c.relname || '=' || c.relfilenode FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .into_iter()
    .filter_map(|row| {
        row.split_once('=')
            .map(|(name, node)| (name.to_string(), node.to_string()))
    })
    .collect()
}

/// Ordinary tables a lock on `relation` covers: itself, or its partitions (pg_partition_tree
/// lists nothing for a table that is not partitioned).
fn leaves(db: &TestDb, relation: &str) -> Vec<String> {
    db.column(&format!(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND (c.oid = to_regclass('public.{relation}') \
         OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass('public.{relation}')))) ORDER BY 1"
    ))
}

#[test]
fn the_corpus_gets_its_expected_verdicts_and_safe_cases_apply() {
    let cases = corpus();
    assert!(cases.len() >= 30, "the corpus is in tests/lint/");
    let mut expected_somewhere = BTreeSet::new();
    let mut guarded_somewhere = BTreeSet::new();
    // Relfilenodes compared against the plan's claims, so a check that never runs cannot pass.
    let mut checked = 0;
    for case in &cases {
        let dir = folder(case);
        let targets: Vec<PathBuf> = case.files.iter().map(|(n, _)| dir.path().join(n)).collect();
        let run = dhctl("postgres://nobody@127.0.0.1:1/none")
            .args(["lint", "--plan", "--format", "json"])
            .args(&targets)
            .migrations_dir(dir.path())
            .run();
        let report = run.json();
        let found: BTreeSet<String> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(found, case.expect, "{}: {report:#}", case.name);
        for f in report["findings"].as_array().unwrap() {
            let warning = [
                "rename-breaks-gateway",
                "drop-breaks-gateway",
                "not-rerunnable",
                "unused-allow",
            ]
            .contains(&f["rule"].as_str().unwrap());
            let want = if warning { "warning" } else { "error" };
            assert_eq!(f["severity"], want, "{}: {f}", case.name);
        }
        let errors = report["errors"].as_u64().unwrap();
        assert_eq!(run.code, i32::from(errors > 0), "{}: {run:?}", case.name);
        for rule in &case.guards {
            assert!(!found.contains(rule), "{}: {rule} fired", case.name);
        }
        expected_somewhere.extend(case.expect.iter().cloned());
        guarded_somewhere.extend(case.guards.iter().cloned());
        if case.applies {
            checked += apply(case, dir.path(), &report);
        }
    }
    let rules: BTreeSet<String> = [
        "index-without-concurrently",
        "index-on-partitioned-table",
        "drop-index-without-concurrently",
        "reindex-without-concurrently",
        "concurrently-in-transaction",
        "vacuum-in-transaction",
        "add-column-not-null",
        "add-column-volatile-default",
        "column-type-rewrite",
        "set-not-null-scan",
        "constraint-without-not-valid",
        "validate-in-same-transaction",
        "constraint-builds-index",
        "rewrite-under-lock",
        "detach-without-concurrently",
        "not-rerunnable",
        "rename-breaks-gateway",
        "drop-breaks-gateway",
        "manual-partition-change",
        "unused-allow",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(
        expected_somewhere, rules,
        "every rule has a case where it fires"
    );
    assert_eq!(
        guarded_somewhere, rules,
        "every rule has a case where it must not fire"
    );
    assert!(checked >= 20, "only {checked} relfilenodes were compared");
}

/// Applies a case to a database with rows and checks the plan's rewrite claims against the
/// relfilenodes PostgreSQL reports.
fn apply(case: &Case, dir: &Path, report: &serde_json::Value) -> usize {
    let db = TestDb::new("lint");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db.exec(ROWS);
    let before = relfilenodes(&db);
    let mut migrate = dhctl(&db.url).args(["migrate", "--no-partitions"]);
    let safe = report["errors"] == 0;
    if !safe {
        migrate = migrate.args(["--allow-unsafe"]);
    }
    let run = migrate.migrations_dir(dir).run();
    assert_eq!(run.code, 0, "{} must apply: {run:?}", case.name);
    let after = relfilenodes(&db);
    let mut checked = 0;
    for step in report["plan"].as_array().unwrap() {
        for lock in step["locks"].as_array().unwrap() {
            let relation = lock["relation"].as_str().unwrap();
            if !before.contains_key(relation) {
                continue;
            }
            let rewrite = lock["effect"] == "rewrite";
            for leaf in leaves(&db, relation) {
                let (Some(old), Some(new)) = (before.get(&leaf), after.get(&leaf)) else {
                    continue;
                };
                checked += 1;
                assert_eq!(
                    old != new,
                    rewrite,
                    "{}: {} says {relation} is {}rewritten, but {leaf}'s relfilenode went {old} -> {new}",
                    case.name,
                    step["statement"],
                    if rewrite { "" } else { "not " }
                );
            }
        }
    }
    checked
}

#[test]
fn pending_lints_only_unapplied_migrations_and_weighs_findings_by_live_size() {
    let db = TestDb::new("lintpending");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db.exec(ROWS);
    let dir = migrations_with(&[(
        "20250101000000_index.sql",
        "-- migrate:up\nCREATE INDEX idx_audit_logs_action ON audit_logs (action);\n",
    )]);
    // Offline every existing table is large: an error.
    dhctl(&db.url)
        .args(["lint"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(1);
    // Connected, audit_logs (50 rows) is below the default 10MB: a warning naming its size.
    let run = dhctl(&db.url)
        .args(["lint", "--pending", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["files"], 1, "only the pending migration: {report}");
    assert!(report["server_version"].as_i64().unwrap() >= 140000);
    let finding = &report["findings"][0];
    assert_eq!(finding["rule"], "index-without-concurrently");
    assert_eq!(finding["severity"], "warning");
    let size = finding["locks"][0]["size_bytes"].as_u64().unwrap();
    assert!(size > 0 && size < 10 << 20, "{finding}");
    // A threshold below the table's size makes it large again.
    dhctl(&db.url)
        .args(["lint", "--pending", "--small-table", "1kB"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(1);
    // Nothing pending: nothing linted.
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--allow-unsafe"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["lint", "--pending", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["files"], 0);
}

#[test]
fn migrate_refuses_error_findings_before_applying_anything() {
    let db = TestDb::new("lintgate");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let dir = migrations_with(&[
        (
            "20250101000000_table.sql",
            "-- migrate:up\nCREATE TABLE notes (id int);\n",
        ),
        (
            "20250101000001_rewrite.sql",
            "-- migrate:up\nALTER TABLE request_logs ALTER COLUMN response_status TYPE bigint;\n",
        ),
    ]);
    // request_logs is empty here: small, so the rewrite is only a warning by default.
    let run = dhctl(&db.url)
        .args([
            "migrate",
            "--no-partitions",
            "--dry-run",
            "--format",
            "json",
        ])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    let lint = &run.json()["lint"];
    assert_eq!(lint["findings"][0]["severity"], "warning", "{lint}");
    let size = lint["findings"][0]["locks"][0]["size_bytes"]
        .as_u64()
        .unwrap();
    assert!(size < 10 << 20, "{lint}");
    // With every table counted as large, it is an error and nothing is applied.
    let run = dhctl(&db.url)
        .args([
            "migrate",
            "--no-partitions",
            "--small-table",
            "0",
            "--format",
            "json",
        ])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(1);
    let error = run.json();
    assert_eq!(error["lint"]["findings"][0]["rule"], "column-type-rewrite");
    assert_eq!(
        db.history().len(),
        5,
        "nothing of the pending migrations was applied"
    );
    assert!(!db.tables().contains(&"notes".to_string()));
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--small-table", "0"])
        .env("DHCTL_ALLOW_UNSAFE", "true")
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 7);
}

/// Two migrations on top of the seed's five: one creates `notes`, the next one (`change`) does
/// what would be an error on an existing table. Offline, notes exists when `change` runs and
/// may be large: `dhctl lint` exits 1. migrate knows the run itself creates notes: empty, so a
/// warning, and both apply.
fn refused_offline_applied_by_a_run_that_creates_the_table(label: &str, change: &str) {
    let db = TestDb::new(label);
    let dir = migrations_with(&[
        (
            "20250101000000_notes.sql",
            "-- migrate:up\nCREATE TABLE notes (id int);\n",
        ),
        ("20250101000001_notes_change.sql", change),
    ]);
    dhctl(&db.url)
        .args(["lint"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(1);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 7);
}

#[test]
fn a_fresh_database_is_not_refused_for_indexing_tables_the_run_creates() {
    refused_offline_applied_by_a_run_that_creates_the_table(
        "lintfresh",
        "-- migrate:up\nCREATE INDEX idx_notes_id ON notes (id);\n",
    );
}

#[test]
fn a_fresh_database_is_not_refused_for_a_not_null_column_on_a_table_the_run_creates() {
    // The shape of real catalogs (the subway corpus: 14 such statements).
    refused_offline_applied_by_a_run_that_creates_the_table(
        "lintfreshnn",
        "-- migrate:up\nALTER TABLE notes ADD COLUMN key text NOT NULL;\n",
    );
}

#[test]
fn a_name_the_linter_cannot_resolve_is_not_counted_as_an_empty_new_table() {
    // After SET search_path the unqualified name is ops.big, which holds rows; the linter reads
    // public.big, which does not exist. It must not count as a table the run creates.
    let db = TestDb::new("lintsearchpath");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db.exec(
        "CREATE SCHEMA ops; CREATE TABLE ops.big (id int); \
         INSERT INTO ops.big SELECT g FROM generate_series(1, 1000) g; ANALYZE ops.big;",
    );
    let dir = migrations_with(&[(
        "20250101000000_index.sql",
        "-- migrate:up\nSET search_path TO ops;\nCREATE INDEX idx_big_id ON big (id);\n",
    )]);
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--small-table", "1kB"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(1);
    assert_eq!(db.history().len(), 5, "nothing applied");
}

#[test]
fn a_path_that_is_not_a_regular_file_is_refused_instead_of_read() {
    // A FIFO named like a migration would block the read forever (and a device never ends).
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("20300101000000_pipe.sql");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for path in [fifo.as_path(), dir.path()] {
        let run = dhctl("postgres://unused@127.0.0.1:1/none")
            .args(["lint"])
            .args([path])
            .run();
        run.expect_code(2);
        assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    }
}

#[test]
fn sigterm_stops_a_long_lint() {
    // A 200,000-term sum takes the parser minutes (its time grows with the square of the
    // length). The lint runs off the runtime's thread, so SIGTERM ends dhctl (130) at once
    // instead of after the lint. dhctl logs "linting" only after its signal handlers are
    // registered, so the signal is sent then.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("20300101000000_long.sql");
    let sum = vec!["1"; 200_000].join("+");
    std::fs::write(&file, format!("-- migrate:up\nSELECT {sum};\n")).unwrap();
    let child = dhctl("postgres://unused@127.0.0.1:1/none")
        .args(["lint", "-v"])
        .args([&file])
        .spawn();
    let code = sigterm_once_it_logs(child, "linting");
    assert_eq!(code, Some(Some(130)), "dhctl went on linting after SIGTERM");
}

#[test]
fn sigterm_during_migrates_lint_exits_130_with_nothing_applied_and_the_lock_released() {
    // The same long file as above, pending: migrate lints it under the lock, off the runtime's
    // thread, so SIGTERM cancels the run at once; nothing is applied and the lock goes with the
    // session.
    let db = TestDb::new("lintsigterm");
    let sum = vec!["1"; 200_000].join("+");
    let long = format!("-- migrate:up\nSELECT {sum};\n");
    let dir = migrations_with(&[("20300101000000_long.sql", long.as_str())]);
    let child = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "-v"])
        .spawn();
    let code = sigterm_once_it_logs(child, "linting the pending migrations");
    assert_eq!(
        code,
        Some(Some(130)),
        "migrate went on linting after SIGTERM"
    );
    assert_eq!(
        db.tables(),
        Vec::<String>::new(),
        "nothing applied, not even the seed's, nor a history table"
    );
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    assert!(
        wait_until(std::time::Duration::from_secs(30), || db.value(held) == "0"),
        "the advisory lock outlived dhctl"
    );
}

/// Waits for `child` (spawned with -v) to log `started`, which dhctl does only once its signal
/// handlers are registered, sends it SIGTERM and returns its exit code. Bounded, so a
/// regression fails instead of hanging the suite for the lint's minutes.
fn sigterm_once_it_logs(mut child: std::process::Child, started: &str) -> Option<Option<i32>> {
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains(started))),
        "dhctl never logged {started:?}"
    );
    send_signal(&child, "-TERM");
    let mut code = None;
    let ended = wait_until(std::time::Duration::from_secs(60), || {
        code = child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    code
}

#[test]
fn create_table_if_not_exists_of_an_existing_large_table_hides_nothing() {
    // audit_extra exists (made by hand) with rows: CREATE TABLE IF NOT EXISTS makes nothing,
    // and the index after it is built on the live table, blocking its writes. The lint must
    // weigh it like any existing table: lint --pending errs, migrate refuses.
    let db = TestDb::new("lintifne");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db.exec(
        "CREATE TABLE audit_extra (id int, note text); \
         INSERT INTO audit_extra SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g; \
         ANALYZE audit_extra;",
    );
    let dir = migrations_with(&[(
        "20250101000000_extra.sql",
        "-- migrate:up\nCREATE TABLE IF NOT EXISTS audit_extra (id int, note text);\n\
         CREATE INDEX audit_extra_id ON audit_extra (id);\n",
    )]);
    let pending = dhctl(&db.url)
        .args(["lint", "--pending", "--small-table", "1MB"])
        .migrations_dir(dir.path())
        .run();
    pending.expect_code(1);
    assert!(pending.stdout.contains("audit_extra"), "{}", pending.stdout);
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--small-table", "1MB"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(1);
    assert_eq!(db.history().len(), 5, "nothing applied");
    assert_eq!(
        db.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'audit_extra_id'"),
        "0"
    );

    // On a database without the table, the same migration creates it: nothing to refuse.
    let fresh = TestDb::new("lintifnefresh");
    dhctl(&fresh.url)
        .args(["migrate", "--no-partitions", "--small-table", "1MB"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
}
