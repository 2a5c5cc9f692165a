//! Bad policies and arguments: exit 2, a message naming the file and key, nothing changed.

use super::*;
use crate::harness::*;

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
            // Refused by clap's value parser, in clap's words, before anything is read.
            "invalid value 'tomorrow' for '--now <TIMESTAMP>'".into(),
        ),
        (
            vec![],
            // RFC 3339 allows a leap second; taken, it was January's last second to dhctl and
            // February's first to PostgreSQL, and came back as `…:60Z` in JSON.
            vec!["--now".into(), "2030-01-31T23:59:60Z".into()],
            "is a leap second".into(),
        ),
    ];
    for (files, extra, wanted) in cases {
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let dir = folder(&files);
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

#[test]
fn a_table_with_a_default_partition_holding_rows_is_refused_by_name_with_the_fix() {
    let db = migrated("pdefault");
    create(&db, "2024-01-15T00:00:00Z").expect_code(0);
    db.exec(
        "CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT; \
         INSERT INTO request_logs (request_id, method, path, created_at) \
             VALUES ('r1', 'GET', '/', '2026-11-20 00:00:00+00');",
    );
    let before = everything(&db);
    for (command, now) in [("create", NOW), ("prune", "2026-11-15T00:00:00Z")] {
        let run = dhctl(&db.url)
            .args([
                "partition",
                command,
                "--now",
                now,
                "--table",
                "request_logs",
            ])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("request_logs_default"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("drain-default"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("fix the policy file"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(everything(&db), before);
}
