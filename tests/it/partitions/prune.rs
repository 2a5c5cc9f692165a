//! prune: retention edges, the current period, --keep-table, --dry-run, pending detaches.

use super::*;
use crate::harness::*;

/// Partitions 2024_01, 2026_11..2027_02, 2027_09..2027_11 and 2028_11..2028_12 in both tables.
fn spread(label: &str) -> TestDb {
    let db = migrated(label);
    create(&db, NOW).expect_code(0);
    dhctl(&db.url)
        .args([
            "partition",
            "create",
            "--now",
            "2027-09-15T00:00:00Z",
            "--ahead",
            "2",
        ])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args([
            "partition",
            "create",
            "--now",
            "2028-11-15T00:00:00Z",
            "--ahead",
            "1",
        ])
        .run()
        .expect_code(0);
    db
}

const SPREAD: [&str; 10] = [
    "2024_01", "2026_11", "2026_12", "2027_01", "2027_02", "2027_09", "2027_10", "2027_11",
    "2028_11", "2028_12",
];

/// What prune leaves of the spread when --now allows keeping only `by_now`: those plus every
/// partition that is current or future by the server's clock, which prune never takes.
fn left(db: &TestDb, by_now: &[&str]) -> Vec<String> {
    let current = db.value("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')");
    SPREAD
        .iter()
        .filter(|n| by_now.contains(n) || **n >= current.as_str())
        .map(|n| n.to_string())
        .collect()
}

pub fn names(db: &TestDb, table: &str) -> Vec<String> {
    bounds(db, table)
        .iter()
        .map(|b| {
            b.split(' ')
                .next()
                .unwrap()
                .trim_start_matches(&format!("{table}_"))
                .to_string()
        })
        .collect()
}

#[test]
fn prune_two_years_ahead_drops_exactly_the_partitions_past_retention() {
    let db = spread("pprune");
    let run = dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2028-11-15T00:00:00Z",
            "--format",
            "json",
        ])
        .run();
    run.expect_code(0);
    // request_logs keeps 13 months (cutoff 2027-10-15): 2027_09 ends before it, 2027_10 after.
    // --now lies past the server's clock, so what is current or future by the server's clock
    // stays whatever the retention says (issue 11 item 2).
    let rl = left(&db, &["2027_10", "2027_11", "2028_11", "2028_12"]);
    assert_eq!(names(&db, "request_logs"), rl);
    // webhook_deliveries keeps 3 months (cutoff 2028-08-15); the current and next stay.
    let wd = left(&db, &["2028_11", "2028_12"]);
    assert_eq!(names(&db, "webhook_deliveries"), wd);
    let tables = db.tables();
    assert!(
        !tables.iter().any(|t| t.starts_with("request_logs_2024_01")),
        "{tables:?}"
    );
    let doc = run.json();
    let steps = doc["tables"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), SPREAD.len() - rl.len(), "{doc}");
    assert!(steps.iter().all(|s| s["then"] == "drop"));
    // The partitions the server's clock saved are named, with why.
    let kept = doc["tables"][0]["kept"].as_array().unwrap();
    assert_eq!(kept.len(), rl.len() - 4, "{doc}");
    // Nothing more to do but to say again what is kept.
    let again = dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2028-11-15T00:00:00Z",
            "--format",
            "json",
        ])
        .run();
    again.expect_code(0);
    assert!(again.json()["tables"][0]["steps"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn prune_never_touches_the_current_or_a_future_period_even_with_a_tiny_retention() {
    let db = spread("pcur");
    dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2027-01-15T00:00:00Z",
            "--retention",
            "1 day",
            "--table",
            "request_logs",
        ])
        .run()
        .expect_code(0);
    assert_eq!(
        names(&db, "request_logs"),
        left(
            &db,
            &["2027_01", "2027_02", "2027_09", "2027_10", "2027_11", "2028_11", "2028_12"]
        )
    );
}

#[test]
fn prune_with_keep_table_leaves_them_detached_and_dry_run_changes_nothing() {
    let db = spread("pkeep");
    let before = everything(&db);
    let dry = dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2028-11-15T00:00:00Z",
            "--dry-run",
            "--format",
            "json",
        ])
        .run();
    dry.expect_code(0);
    assert_eq!(dry.json()["dry_run"], true);
    let rl = left(&db, &["2027_10", "2027_11", "2028_11", "2028_12"]);
    assert_eq!(
        dry.json()["tables"][0]["steps"].as_array().unwrap().len(),
        SPREAD.len() - rl.len()
    );
    assert_eq!(everything(&db), before);

    dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2028-11-15T00:00:00Z",
            "--keep-table",
            "--table",
            "request_logs",
        ])
        .run()
        .expect_code(0);
    assert_eq!(names(&db, "request_logs"), rl);
    assert_eq!(
        db.value(
            "SELECT relispartition::text FROM pg_class WHERE relname = 'request_logs_2024_01'"
        ),
        "false"
    );
    // --table left the other table alone.
    assert_eq!(names(&db, "webhook_deliveries").len(), 10);
}

#[test]
fn prune_finishes_a_detach_an_earlier_run_left_pending() {
    let db = migrated("ppending");
    create(&db, NOW).expect_code(0);
    interrupt_detach(&db, "request_logs", "request_logs_2024_01");
    assert_eq!(
        db.value("SELECT inhdetachpending::text FROM pg_inherits WHERE inhrelid = 'request_logs_2024_01'::regclass"),
        "true"
    );
    let run = dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            NOW,
            "--table",
            "request_logs",
            "--format",
            "json",
        ])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["tables"][0]["steps"][0]["action"], "finalize");
    assert!(!db.tables().contains(&"request_logs_2024_01".to_string()));
}

#[test]
fn a_table_that_cannot_be_pruned_does_not_stop_the_others() {
    let db = spread("pisolate");
    let before = names(&db, "request_logs");
    let mut blocker = db.client();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE request_logs IN SHARE MODE")
        .unwrap();
    let run = dhctl(&db.url)
        .args([
            "partition",
            "prune",
            "--now",
            "2028-11-15T00:00:00Z",
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "1",
            "--format",
            "json",
        ])
        .run();
    tx.rollback().unwrap();
    run.expect_code(2);
    let doc = run.json();
    assert!(doc["tables"][0]["error"]
        .as_str()
        .unwrap()
        .contains("request_logs_2024_01"));
    assert_eq!(doc["tables"][1]["error"], serde_json::Value::Null);
    assert_eq!(names(&db, "request_logs"), before);
    assert_eq!(
        names(&db, "webhook_deliveries"),
        left(&db, &["2028_11", "2028_12"])
    );
}
