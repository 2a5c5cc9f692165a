//! partition create, prune and status (and migrate's partition step), end to end against real
//! PostgreSQL: bounds read back from the catalog, lock safety under contention, pending detaches,
//! concurrent runners and refusals that leave the database unchanged.

use std::time::Duration;

use crate::harness::*;

const NOW: &str = "2026-11-15T10:00:00Z";

/// `name FROM .. TO ..` of every partition of `table`, bounds printed in UTC whatever the
/// database's TimeZone is.
fn bounds(db: &TestDb, table: &str) -> Vec<String> {
    let mut c = db.client();
    c.batch_execute("SET TimeZone = 'UTC'").unwrap();
    c.query(
        "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::text::regclass ORDER BY 1",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn month(table: &str, name: &str, from: &str, to: &str) -> String {
    format!("{table}_{name} FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')")
}

/// The expected partitions of `table` after `create --now 2026-11-15T10:00:00Z`.
fn four_months(table: &str) -> Vec<String> {
    vec![
        month(table, "2024_01", "2024-01-01", "2024-02-01"),
        month(table, "2026_11", "2026-11-01", "2026-12-01"),
        month(table, "2026_12", "2026-12-01", "2027-01-01"),
        month(table, "2027_01", "2027-01-01", "2027-02-01"),
        month(table, "2027_02", "2027-02-01", "2027-03-01"),
    ]
}

/// Every relation in public with its partition bound: "did anything change?" in one value.
fn everything(db: &TestDb) -> Vec<String> {
    db.column(
        "SELECT relname || ' ' || relkind::text || ' ' || coalesce(pg_get_expr(relpartbound, oid), '') \
         FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
    )
}

fn migrated(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db
}

fn create(db: &TestDb, now: &str) -> Run {
    dhctl(&db.url)
        .args(["partition", "create", "--now", now])
        .run()
}

#[test]
fn migrate_makes_four_months_on_utc_bounds_and_a_second_run_does_nothing() {
    let db = TestDb::new("pmig");
    let run = dhctl(&db.url)
        .args(["migrate", "--now", NOW, "--format", "json"])
        .run();
    run.expect_code(0);
    let created = &run.json()["partitions"]["tables"];
    assert_eq!(
        created[0]["steps"].as_array().unwrap().len(),
        4,
        "{created}"
    );
    for table in ["request_logs", "webhook_deliveries"] {
        assert_eq!(bounds(&db, table), four_months(table));
    }
    let again = dhctl(&db.url)
        .args(["migrate", "--now", NOW, "--format", "json"])
        .run();
    again.expect_code(0);
    assert!(again.json()["partitions"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["steps"].as_array().unwrap().is_empty()));
    let quiet = create(&db, NOW);
    quiet.expect_code(0);
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
}

#[test]
fn bounds_stay_utc_when_the_database_time_zone_is_far_from_utc() {
    let db = TestDb::new("ptz");
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET TimeZone = 'Pacific/Kiritimati'",
        db.name
    ));
    dhctl(&db.url)
        .args(["migrate", "--now", NOW])
        .run()
        .expect_code(0);
    for table in ["request_logs", "webhook_deliveries"] {
        assert_eq!(bounds(&db, table), four_months(table));
    }
    // 06:00 on Dec 1 in UTC is still 20:00 on Nov 30 at UTC-10: the period is December.
    let run = dhctl(&db.url)
        .args([
            "partition",
            "create",
            "--now",
            "2026-11-30T20:00:00-10:00",
            "--ahead",
            "3",
            "--format",
            "json",
        ])
        .run();
    run.expect_code(0);
    let steps = run.json()["tables"][0]["steps"].clone();
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    assert_eq!(steps[0]["name"], "request_logs_2027_03");
    assert_eq!(steps[0]["from"], "2027-03-01T00:00:00Z");
}

#[test]
fn a_missing_middle_partition_is_recreated() {
    let db = migrated("pgap");
    create(&db, NOW).expect_code(0);
    db.exec("DROP TABLE request_logs_2026_12");
    let run = create(&db, NOW);
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "created request_logs_2026_12 [2026-12-01 00:00:00+00, 2027-01-01 00:00:00+00)\n"
    );
    assert_eq!(bounds(&db, "request_logs"), four_months("request_logs"));
}

#[test]
fn a_foreign_partition_overlapping_a_wanted_range_is_an_error_naming_both() {
    let db = migrated("pforeign");
    db.exec(
        "CREATE TABLE rl_custom PARTITION OF request_logs \
         FOR VALUES FROM ('2026-12-15 00:00:00+00') TO ('2027-01-15 00:00:00+00')",
    );
    let before = everything(&db);
    let run = create(&db, NOW);
    run.expect_code(2);
    assert!(
        run.stderr.contains("request_logs_2026_12"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("rl_custom"), "{}", run.stderr);
    assert_eq!(
        everything(&db),
        before,
        "nothing may change, in either table"
    );
}

#[test]
fn rows_dated_now_and_at_the_horizon_can_be_inserted_after_create() {
    let db = migrated("pinsert");
    create(&db, NOW).expect_code(0);
    db.exec(
        "INSERT INTO request_logs (request_id, method, path, created_at) VALUES \
           ('a', 'GET', '/', '2026-11-15 10:00:00+00'), ('b', 'GET', '/', '2027-02-28 23:59:59.999+00');
         INSERT INTO webhooks (id, url, secret, events) VALUES \
           ('00000000-0000-0000-0000-000000000001', 'https://x', 's', '{e}');
         INSERT INTO webhook_deliveries (webhook_id, event_type, payload, created_at) VALUES \
           ('00000000-0000-0000-0000-000000000001', 'e', '{}', '2026-11-15 10:00:00+00'),
           ('00000000-0000-0000-0000-000000000001', 'e', '{}', '2027-02-28 23:59:59.999+00');",
    );
    assert_eq!(
        db.value("SELECT tableoid::regclass::text FROM request_logs WHERE request_id = 'b'"),
        "request_logs_2027_02"
    );
    // Past the horizon there is no partition (and no DEFAULT one): the insert fails.
    let err = db
        .client()
        .batch_execute(
            "INSERT INTO request_logs (request_id, method, path, created_at) \
             VALUES ('c', 'GET', '/', '2027-03-01 00:00:00+00')",
        )
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23514", "{err}");
}

#[test]
fn create_succeeds_while_an_insert_holds_row_exclusive() {
    let db = migrated("prowex");
    let mut writer = db.client();
    let mut tx = writer.transaction().unwrap();
    tx.batch_execute(
        "INSERT INTO request_logs (request_id, method, path, created_at) \
         VALUES ('open', 'GET', '/', '2024-01-10 00:00:00+00')",
    )
    .unwrap();
    let run = dhctl(&db.url)
        .args([
            "partition",
            "create",
            "--now",
            NOW,
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "2",
        ])
        .run();
    run.expect_code(0);
    tx.commit().unwrap();
    assert_eq!(bounds(&db, "request_logs"), four_months("request_logs"));
}

#[test]
fn create_gives_up_behind_a_share_lock_without_blocking_the_gateway() {
    let db = migrated("pshare");
    db.exec(
        "INSERT INTO webhooks (id, url, secret, events) VALUES \
         ('00000000-0000-0000-0000-000000000001', 'https://x', 's', '{e}')",
    );
    let mut blocker = db.client();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE request_logs IN SHARE MODE")
        .unwrap();

    let child = dhctl(&db.url)
        .args([
            "partition",
            "create",
            "--now",
            NOW,
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "2",
        ])
        .spawn();
    // The gateway goes on: an insert into the other table and a read of the locked one, in a
    // loop while dhctl retries. Each must finish well within lock_timeout plus slack.
    let mut gateway = db.client();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let t = std::time::Instant::now();
        gateway
            .batch_execute(
                "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, created_at) VALUES \
                 ('00000000-0000-0000-0000-000000000001', 'e', '{}', '2024-01-10 00:00:00+00'); \
                 SELECT count(*) FROM request_logs;",
            )
            .unwrap();
        slowest = slowest.max(t.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    tx.rollback().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("request_logs_2026_11") && stderr.contains("3 attempts"),
        "{stderr}"
    );
    assert!(
        probes > 5 && slowest < Duration::from_millis(200 + 1500),
        "{probes} probes, slowest {slowest:?}"
    );
    // The locked table got nothing, not even a stray standalone child; the other got its set.
    assert_eq!(bounds(&db, "request_logs").len(), 1);
    assert!(!db.tables().contains(&"request_logs_2026_11".to_string()));
    assert_eq!(
        bounds(&db, "webhook_deliveries"),
        four_months("webhook_deliveries")
    );
}

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

fn names(db: &TestDb, table: &str) -> Vec<String> {
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
    assert_eq!(
        names(&db, "request_logs"),
        ["2027_10", "2027_11", "2028_11", "2028_12"]
    );
    // webhook_deliveries keeps 3 months (cutoff 2028-08-15); the current and next stay.
    assert_eq!(names(&db, "webhook_deliveries"), ["2028_11", "2028_12"]);
    let tables = db.tables();
    assert!(
        !tables.iter().any(|t| t.starts_with("request_logs_2027_09")),
        "{tables:?}"
    );
    let steps = &run.json()["tables"][0]["steps"];
    assert_eq!(steps.as_array().unwrap().len(), 6, "{steps}");
    assert!(steps
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["then"] == "drop"));
    // Nothing more to do: quiet.
    let again = dhctl(&db.url)
        .args(["partition", "prune", "--now", "2028-11-15T00:00:00Z"])
        .run();
    again.expect_code(0);
    assert_eq!(again.stdout, "");
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
        ])
        .run()
        .expect_code(0);
    assert_eq!(
        names(&db, "request_logs"),
        ["2027_01", "2027_02", "2027_09", "2027_10", "2027_11", "2028_11", "2028_12"]
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
    assert_eq!(
        dry.json()["tables"][0]["steps"].as_array().unwrap().len(),
        6
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
    assert_eq!(
        names(&db, "request_logs"),
        ["2027_10", "2027_11", "2028_11", "2028_12"]
    );
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
    // A reader's open transaction makes DETACH … CONCURRENTLY wait in its second phase; a
    // statement_timeout then interrupts it, leaving the detach pending.
    let mut reader = db.client();
    let mut tx = reader.transaction().unwrap();
    tx.batch_execute("SELECT count(*) FROM request_logs")
        .unwrap();
    // Separate calls: in one simple-query string the two would be an implicit transaction
    // block, which DETACH … CONCURRENTLY refuses.
    let mut detacher = db.client();
    detacher
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let err = detacher
        .batch_execute(
            "ALTER TABLE request_logs DETACH PARTITION request_logs_2024_01 CONCURRENTLY",
        )
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    tx.commit().unwrap();
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
fn eight_concurrent_creates_all_succeed_with_one_set_of_partitions() {
    let db = migrated("pconc");
    let children: Vec<_> = (0..8)
        .map(|_| {
            dhctl(&db.url)
                .args(["partition", "create", "--now", NOW])
                .spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for table in ["request_logs", "webhook_deliveries"] {
        assert_eq!(bounds(&db, table), four_months(table));
    }
}

#[test]
fn status_reports_partitions_runway_and_plans() {
    let db = TestDb::new("pstatus");
    dhctl(&db.url)
        .args(["migrate", "--now", NOW])
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["partition", "status", "--now", NOW, "--format", "json"])
        .run();
    run.expect_code(0);
    let doc = run.json();
    let t = &doc["tables"][0];
    assert_eq!(t["table"], "request_logs");
    assert_eq!(t["partitions"].as_array().unwrap().len(), 5);
    assert_eq!(t["coverage"]["runway"], 3);
    assert_eq!(t["coverage"]["gaps"].as_array().unwrap().len(), 0);
    assert_eq!(t["would_create"].as_array().unwrap().len(), 0);
    assert_eq!(t["would_prune"][0]["name"], "request_logs_2024_01");
    // A month later the runway is one shorter and create would add a month.
    let later = dhctl(&db.url)
        .args([
            "partition",
            "status",
            "--now",
            "2026-12-15T00:00:00Z",
            "--format",
            "json",
        ])
        .run()
        .json();
    assert_eq!(later["tables"][1]["coverage"]["runway"], 2);
    assert_eq!(
        later["tables"][1]["would_create"][0]["name"],
        "webhook_deliveries_2027_03"
    );
}

fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const GOOD: &str =
    "table = \"request_logs\"\ncolumn = \"created_at\"\ninterval = \"month\"\npremake = 3\n";

#[test]
fn bad_policies_and_arguments_exit_2_and_change_nothing() {
    let db = migrated("pbad");
    db.exec(
        "CREATE TABLE naive (id int, created_at timestamp) PARTITION BY RANGE (created_at); \
         CREATE TABLE by_list (id int, created_at timestamptz) PARTITION BY LIST (created_at);",
    );
    let before = everything(&db);
    let policy = |file: &str, text: String, wanted: &str| {
        (
            vec![(file.to_string(), text)],
            Vec::<String>::new(),
            wanted.to_string(),
        )
    };
    let cases = vec![
        policy(
            "request_logs.toml",
            format!("{GOOD}colour = \"red\"\n"),
            "key `colour`",
        ),
        policy(
            "request_logs.toml",
            GOOD.replace("month", "fortnight"),
            "key `interval`",
        ),
        policy(
            "request_logs.toml",
            GOOD.replace("premake = 3", "premake = 5000"),
            "key `premake`",
        ),
        policy(
            "request_logs.toml",
            GOOD.replace("\"created_at\"", "\"Created At\""),
            "key `column`",
        ),
        policy(
            "api_keys.toml",
            GOOD.replace("request_logs", "api_keys"),
            "api_keys is not a partitioned table",
        ),
        policy(
            "naive.toml",
            GOOD.replace("request_logs", "naive"),
            "timestamp without time zone",
        ),
        policy(
            "by_list.toml",
            GOOD.replace("request_logs", "by_list"),
            "partitioned by list",
        ),
        policy(
            "request_logs.toml",
            GOOD.replace("created_at", "id"),
            "partitioned on `created_at`, not `id`",
        ),
        policy(
            "nope.toml",
            GOOD.replace("request_logs", "nope"),
            "table nope does not exist",
        ),
        (
            vec![],
            vec!["--ahead".into(), "100000".into()],
            "--ahead 100000".into(),
        ),
        (
            vec![],
            vec!["--table".into(), "audit_logs".into()],
            "--table audit_logs".into(),
        ),
        (
            vec![],
            vec!["--now".into(), "tomorrow".into()],
            "--now `tomorrow`".into(),
        ),
    ];
    for (files, extra, wanted) in cases {
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let dir = policy_dir(&files);
        let mut cmd = dhctl(&db.url).args(["partition", "create"]).args(&extra);
        if !files.is_empty() {
            cmd = cmd.env("DHCTL_PARTITIONS_DIR", dir.path());
        }
        let run = cmd.run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(&wanted),
            "{wanted:?} not in {}",
            run.stderr
        );
        if let Some((file, _)) = files.first() {
            assert!(
                run.stderr.contains(file),
                "{file} not named in {}",
                run.stderr
            );
        }
        assert_eq!(everything(&db), before, "{wanted}");
    }
    let bad_retention = dhctl(&db.url)
        .args(["partition", "prune", "--retention", "13 fortnights"])
        .run();
    bad_retention.expect_code(2);
    assert!(
        bad_retention.stderr.contains("--retention"),
        "{}",
        bad_retention.stderr
    );
    assert_eq!(everything(&db), before);
}
