//! What create, prune and status say when something is in the way: each message names the
//! thing and the fix, and a dry run or status predicts the failure a real run would meet.

use super::foreign::{attached, policies, scratch, server_month, with};
use crate::harness::*;

#[test]
fn a_name_taken_by_another_tables_partition_is_predicted_and_named_as_such() {
    let db = TestDb::new("mtaken");
    scratch(&db, "mt");
    scratch(&db, "elsewhere");
    let month = server_month(&db, 0);
    db.exec(&format!(
        "CREATE TABLE mt_{month} PARTITION OF elsewhere FOR VALUES FROM \
         ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00')"
    ));
    let dir = policies(&[("mt", None)]);
    for args in [
        vec!["partition", "create", "--dry-run", "--format", "json"],
        vec!["partition", "create", "--format", "json"],
    ] {
        let run = with(&db, &dir, &args);
        run.expect_code(2);
        let doc = run.json();
        let error = doc["tables"][0]["error"].as_str().unwrap();
        assert!(error.contains("partition of elsewhere"), "{error}");
        assert!(!error.contains("not a partition"), "{error}");
    }
    assert!(attached(&db, "mt").is_empty());
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    let problems = status.json()["tables"][0]["problems"].to_string();
    assert!(problems.contains("partition of elsewhere"), "{problems}");
}

#[test]
fn a_maxvalue_partition_gives_a_runway_without_end_not_nothing() {
    let db = TestDb::new("mmax");
    scratch(&db, "forever");
    db.exec(
        "CREATE TABLE forever_rest PARTITION OF forever \
         FOR VALUES FROM ('2020-01-01 00:00:00+00') TO (MAXVALUE)",
    );
    let dir = policies(&[("forever", None)]);
    let status = with(&db, &dir, &["partition", "status"]);
    status.expect_code(0);
    assert!(status.stdout.contains("no end"), "{}", status.stdout);
    assert!(
        !status.stdout.contains("until nothing"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_retention_of_a_hundred_years_is_accepted_and_a_longer_one_named_plainly() {
    let db = TestDb::new("mlong");
    scratch(&db, "aged");
    let dir = policies(&[("aged", Some("100 years"))]);
    with(&db, &dir, &["partition", "prune"]).expect_code(0);
    let run = with(
        &db,
        &dir,
        &[
            "partition",
            "prune",
            "--table",
            "aged",
            "--retention",
            "101 years",
        ],
    );
    run.expect_code(2);
    assert!(run.stderr.contains("at most 100 years"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("longer than 100 years"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreadable_default_partition_refuses_only_its_own_table() {
    let role = Role::new("munread", "");
    let db = TestDb::owned_by("munread", &role);
    scratch(&db, "readable");
    scratch(&db, "guarded");
    db.exec(&format!(
        "ALTER TABLE readable OWNER TO \"{r}\"; ALTER TABLE guarded OWNER TO \"{r}\"; \
         CREATE TABLE guarded_default PARTITION OF guarded DEFAULT;",
        r = role.name
    ));
    let dir = policies(&[("guarded", None), ("readable", None)]);
    let run = dhctl(&role.url_for(&db))
        .env("DHCTL_PARTITIONS_DIR", dir.path())
        .args(["partition", "create", "--format", "json"])
        .run();
    run.expect_code(2);
    let doc = run.json();
    let error = doc["tables"][0]["error"].as_str().unwrap();
    assert!(error.contains("cannot tell"), "{error}");
    assert_eq!(doc["tables"][1]["exit_code"], 0, "{doc}");
    assert_eq!(attached(&db, "readable").len(), 3);
}
