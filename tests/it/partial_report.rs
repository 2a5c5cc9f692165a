//! A migrate or rollback that fails part of the way still reports what it did before the
//! failure: in human output as the usual table before the error, in JSON under `report` in the
//! error document.

use crate::harness::*;

/// Three migrations; the third (up) and the first (down) fail with division by zero, so
/// migrate applies two and fails on the third, and `rollback --all` undoes two and fails on
/// the third it reaches.
fn three_migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "20240101000001_first.sql",
            "-- migrate:up\nCREATE TABLE first_made();\n-- migrate:down\nSELECT 1/0;\n",
        ),
        (
            "20240101000002_second.sql",
            "-- migrate:up\nCREATE TABLE second_made();\n-- migrate:down\nDROP TABLE second_made;\n",
        ),
        (
            "20240101000003_third.sql",
            "-- migrate:up\nCREATE TABLE third_made();\n-- migrate:down\nDROP TABLE third_made;\n",
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn failing_third(dir: &tempfile::TempDir) {
    std::fs::write(
        dir.path().join("20240101000003_third.sql"),
        "-- migrate:up\nSELECT 1/0;\n-- migrate:down\nSELECT 1;\n",
    )
    .unwrap();
}

fn applied(db: &TestDb) -> Vec<i64> {
    connect(&db.url)
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn versions(report: &serde_json::Value) -> Vec<i64> {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {report}"))
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect()
}

/// Runs migrate with the third migration failing.
fn migrated_until_the_third(format: &str) -> (TestDb, Run) {
    let db = TestDb::new(&format!("pmig{format}"));
    let dir = three_migrations();
    failing_third(&dir);
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", format])
        .migrations_dir(dir.path())
        .run();
    (db, run)
}

#[test]
fn a_failed_migrate_reports_the_migrations_it_applied_in_human_output() {
    let (db, run) = migrated_until_the_third("human");
    run.expect_code(2);
    assert!(run.stdout.contains("first"), "{}", run.stdout);
    assert!(run.stdout.contains("second"), "{}", run.stdout);
    assert!(!run.stdout.contains("third"), "{}", run.stdout);
    assert!(
        run.stdout.contains("applied 2 migration(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("error: migration 20240101000003_third.sql failed"),
        "{}",
        run.stderr
    );
    assert_eq!(applied(&db), vec![20240101000001, 20240101000002]);
}

#[test]
fn a_failed_migrate_reports_the_migrations_it_applied_in_json() {
    let (db, run) = migrated_until_the_third("json");
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(
        versions(&doc["report"]),
        vec![20240101000001, 20240101000002]
    );
    assert_eq!(doc["report"]["applied_before"], 0);
    assert!(doc["report"]["database"].is_string(), "{doc}");
    assert_eq!(doc["error"]["sqlstate"], "22012");
    assert_eq!(doc["error"]["exit_code"], 2);
    // The report comes before the error in the document.
    assert!(
        run.stdout.find("\"report\"") < run.stdout.find("\"error\""),
        "{}",
        run.stdout
    );
    assert_eq!(applied(&db), vec![20240101000001, 20240101000002]);
}

#[test]
fn a_migrate_that_fails_before_changing_anything_has_no_report() {
    let db = TestDb::new("pmign");
    let dir = folder(&[("20240101000001_broken.sql", "SELECT 1/0;\n")]);
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(2);
    let doc = run.json();
    assert!(doc.get("report").is_none(), "{doc}");
    assert_eq!(doc["error"]["sqlstate"], "22012");
}

/// Applies all three, then makes the first's down section the one that fails.
fn rolled_back_until_the_first(format: &str) -> (TestDb, Run) {
    let db = TestDb::new(&format!("prb{format}"));
    let dir = three_migrations();
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["rollback", "--all", "--format", format])
        .migrations_dir(dir.path())
        .run();
    (db, run)
}

#[test]
fn a_failed_rollback_reports_the_migrations_it_undid_in_human_output() {
    let (db, run) = rolled_back_until_the_first("human");
    run.expect_code(2);
    assert!(run.stdout.contains("third"), "{}", run.stdout);
    assert!(run.stdout.contains("second"), "{}", run.stdout);
    assert!(!run.stdout.contains("first"), "{}", run.stdout);
    assert!(
        run.stdout.contains("rolled back 2 migration(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("error: rolling back 20240101000001_first.sql failed"),
        "{}",
        run.stderr
    );
    assert_eq!(applied(&db), vec![20240101000001]);
}

#[test]
fn a_failed_rollback_reports_the_migrations_it_undid_in_json() {
    let (db, run) = rolled_back_until_the_first("json");
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(
        versions(&doc["report"]),
        vec![20240101000003, 20240101000002]
    );
    assert_eq!(doc["report"]["dry_run"], false);
    assert_eq!(doc["error"]["sqlstate"], "22012");
    assert_eq!(applied(&db), vec![20240101000001]);
}
