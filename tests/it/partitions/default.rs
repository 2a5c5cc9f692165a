//! A DEFAULT partition made by other hands: create attaches next to it while it holds no rows of
//! the new period, refuses only that table when it does, and drain-default moves its rows into
//! partitions of their own while inserts go on.

use super::foreign::{attached, policies, scratch, server_month, with};
use crate::harness::*;

#[test]
fn one_table_refused_does_not_stop_the_others_and_the_report_has_each_outcome() {
    let db = TestDb::new("fisolate");
    scratch(&db, "blocked");
    scratch(&db, "fine");
    let dir = policies(&[("blocked", None), ("fine", None)]);
    db.exec(
        "CREATE TABLE blocked_default PARTITION OF blocked DEFAULT; \
         INSERT INTO blocked SELECT 1, now();",
    );
    let run = with(&db, &dir, &["partition", "create", "--format", "json"]);
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["tables"][0]["exit_code"], 2);
    let error = doc["tables"][0]["error"].as_str().unwrap();
    assert!(error.contains("blocked_default"), "{error}");
    let hint = doc["tables"][0]["hint"].as_str().unwrap();
    assert!(hint.contains("drain-default"), "{hint}");
    assert_eq!(doc["tables"][1]["exit_code"], 0);
    assert_eq!(attached(&db, "fine").len(), 3);
    assert_eq!(attached(&db, "blocked"), ["public.blocked_default"]);
    // status shows the default's rows per period.
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    let doc = status.json();
    let rows = &doc["tables"][0]["default_partition"]["rows"];
    assert_eq!(rows[0]["rows"], 1, "{rows}");
    // The problem line (what verify reports) has the count per period too.
    let month = server_month(&db, 0).replace('_', "-");
    let problems = doc["tables"][0]["problems"].to_string();
    assert!(problems.contains(&format!("{month}: 1")), "{problems}");
}

#[test]
fn an_empty_default_partition_does_not_stop_create_or_migrate() {
    let db = TestDb::new("femptydef");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db.exec("CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    let run = dhctl(&db.url)
        .args(["partition", "create", "--ahead", "4", "--format", "json"])
        .run();
    run.expect_code(0);
    assert_eq!(
        run.json()["tables"][0]["steps"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn drain_default_moves_rows_into_their_own_partitions_while_inserts_go_on() {
    let db = TestDb::new("fdrain");
    db.exec(
        "CREATE TABLE dr (id bigint, created_at timestamptz NOT NULL, total int, \
             doubled int GENERATED ALWAYS AS (total * 2) STORED) PARTITION BY RANGE (created_at); \
         CREATE TABLE dr_default PARTITION OF dr DEFAULT; \
         INSERT INTO dr (id, created_at, total) \
             SELECT g, '2024-01-10 00:00:00+00', 1 FROM generate_series(1, 3) g; \
         INSERT INTO dr (id, created_at, total) SELECT g, now(), 2 FROM generate_series(1, 2500) g;",
    );
    let dir = policies(&[("dr", None)]);
    let dry = with(
        &db,
        &dir,
        &[
            "partition",
            "drain-default",
            "--table",
            "dr",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    dry.expect_code(0);
    assert_eq!(
        dry.json()["tables"][0]["steps"].as_array().unwrap().len(),
        2
    );
    assert_eq!(db.value("SELECT count(*) FROM ONLY dr_default"), "2503");

    // The gateway keeps inserting rows of the current month meanwhile; none may be lost.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inserter = {
        let stop = std::sync::Arc::clone(&stop);
        let mut client = db.client();
        std::thread::spawn(move || {
            let mut done = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                client
                    .batch_execute("INSERT INTO dr (id, created_at, total) VALUES (-1, now(), 3)")
                    .expect("an insert during the drain");
                done += 1;
            }
            done
        })
    };
    let run = with(
        &db,
        &dir,
        &[
            "partition",
            "drain-default",
            "--table",
            "dr",
            "--batch",
            "1000",
            "--format",
            "json",
        ],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let inserted = inserter.join().unwrap();
    run.expect_code(0);
    let doc = run.json();
    let steps = doc["tables"][0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], "dr_2024_01");
    assert_eq!(steps[0]["rows"], 3);
    assert_eq!(db.value("SELECT count(*) FROM ONLY dr_default"), "0");
    assert_eq!(
        db.value("SELECT count(*) FROM dr WHERE id = -1"),
        inserted.to_string()
    );
    assert_eq!(db.value("SELECT count(*) FROM dr WHERE id > 0"), "2503");
    assert_eq!(
        db.value("SELECT sum(doubled) FROM dr WHERE id > 0"),
        "10006"
    );
    let current = format!("public.dr_{}", server_month(&db, 0));
    assert!(
        attached(&db, "dr").contains(&current),
        "{:?}",
        attached(&db, "dr")
    );
    assert!(doc["tables"][0]["notes"][0]
        .as_str()
        .unwrap()
        .contains("holds no rows"));
    // With the empty default dropped, create and prune maintain the table as any other.
    db.exec("DROP TABLE dr_default");
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    assert_eq!(attached(&db, "dr").len(), 4);
}
