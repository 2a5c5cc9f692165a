//! `dhctl baseline`: adopting a database made without dhctl (by hand, from a dump, by dbmate).
//! The schema is checked first (verify's rebuild and comparison); history rows are written only
//! when it matches, in one transaction, with refinery's checksums.

use std::path::Path;

use crate::harness::*;

/// The up sections of the shipped migrations through `through` (a version), as psql would run
/// them from the files: what an operator who built the database by hand ran.
fn up_sections(through: i64) -> String {
    let mut files: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut sql = String::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name[..14].parse().unwrap();
        if version > through {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let up = text.split("-- migrate:down").next().unwrap();
        sql.push_str(up);
        sql.push('\n');
    }
    sql
}

/// A database built by hand to what the shipped migrations build through `through`.
fn hand_built(label: &str, through: i64) -> TestDb {
    let db = TestDb::new(label);
    db.exec(&up_sections(through));
    db
}

fn history_rows(db: &TestDb) -> Vec<(String, String, String)> {
    let mut client = db.client();
    client
        .query(
            "SELECT version::text, name, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// docs/json.md defines every field of baseline's document (as cli.rs checks the others').
fn every_key_is_in_the_vocabulary(document: &serde_json::Value) {
    fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
            _ => {}
        }
    }
    let vocabulary =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
            .unwrap();
    let mut found = Vec::new();
    keys(document, &mut found);
    let undocumented: Vec<&String> = found
        .iter()
        .filter(|k| !vocabulary.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/json.md does not define {undocumented:?}"
    );
}

fn history_table_exists(db: &TestDb) -> bool {
    db.value("SELECT to_regclass('refinery_schema_history') IS NOT NULL") == "t"
}

#[test]
fn adopts_a_hand_built_database_with_the_checksums_migrate_would_write() {
    let db = hand_built("bl_adopt", 20240101000005);
    // A partition the maintainer added is not a difference.
    db.exec(
        "CREATE TABLE request_logs_2030_01 PARTITION OF request_logs \
         FOR VALUES FROM ('2030-01-01 00:00:00+00') TO ('2030-02-01 00:00:00+00')",
    );
    let dry = dhctl(&db.url)
        .args([
            "baseline",
            "--version",
            "20240101000005",
            "--dry-run",
            "--format",
            "json",
        ])
        .run();
    dry.expect_code(0);
    let json = dry.json();
    every_key_is_in_the_vocabulary(&json);
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["recorded"], false);
    assert_eq!(json["steps"].as_array().unwrap().len(), 5);
    assert_eq!(json["differences"].as_array().unwrap().len(), 0);
    assert!(!history_table_exists(&db), "a dry run writes nothing");

    let run = dhctl(&db.url)
        .args(["baseline", "--version", "20240101000005"])
        .run();
    run.expect_code(0);
    assert!(
        run.stdout.contains("recorded 5 migration(s)"),
        "{}",
        run.stdout
    );
    let adopted = history_rows(&db);

    // The same rows a real migrate writes.
    let migrated = TestDb::new("bl_ref");
    dhctl(&migrated.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(adopted, history_rows(&migrated));

    dhctl(&db.url)
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
    let verify = dhctl(&db.url)
        .args([
            "verify",
            "--format",
            "json",
            "--now",
            "2030-01-15T00:00:00Z",
        ])
        .run();
    let schema = verify.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "schema")
        .unwrap()
        .clone();
    assert_eq!(schema["status"], "pass", "{schema}");

    // Once adopted, a second baseline is refused.
    let again = dhctl(&db.url)
        .args([
            "baseline",
            "--version",
            "20240101000005",
            "--format",
            "json",
        ])
        .run();
    again.expect_code(2);
    assert!(again.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already has 5 row(s)"));
}

#[test]
fn a_partial_baseline_leaves_the_rest_pending() {
    let db = hand_built("bl_partial", 20240101000003);
    dhctl(&db.url)
        .args(["baseline", "--version", "20240101000003"])
        .run()
        .expect_code(0);
    assert_eq!(
        db.history(),
        vec![20240101000001, 20240101000002, 20240101000003]
    );
    let migrate = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    migrate.expect_code(0);
    assert_eq!(migrate.json()["steps"].as_array().unwrap().len(), 2);
}

#[test]
fn a_schema_that_differs_is_refused_with_each_difference_named_and_nothing_written() {
    let db = hand_built("bl_differ", 20240101000005);
    db.exec("ALTER TABLE api_keys ADD COLUMN label text; DROP INDEX idx_api_keys_key_prefix");
    let run = dhctl(&db.url)
        .args([
            "baseline",
            "--version",
            "20240101000005",
            "--format",
            "json",
        ])
        .run();
    run.expect_code(1);
    let differences: Vec<String> = run.json()["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(
        differences
            .iter()
            .any(|d| d.contains("column api_keys.label")),
        "{differences:?}"
    );
    assert!(
        differences
            .iter()
            .any(|d| d.contains("idx_api_keys_key_prefix")),
        "{differences:?}"
    );
    assert_eq!(run.json()["recorded"], false);
    assert!(!history_table_exists(&db), "nothing written");

    // Too old a version: the newer tables are differences too.
    let human = dhctl(&db.url)
        .args(["baseline", "--version", "20240101000004"])
        .run();
    human.expect_code(1);
    assert!(
        human.stdout.contains("nothing was recorded"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("table audit_logs"),
        "{}",
        human.stdout
    );
    assert!(!history_table_exists(&db));
}

#[test]
fn refuses_an_unknown_version_and_a_database_dhctl_already_manages() {
    let db = hand_built("bl_refuse", 20240101000005);
    let unknown = dhctl(&db.url)
        .args([
            "baseline",
            "--version",
            "20240101000009",
            "--format",
            "json",
        ])
        .run();
    unknown.expect_code(2);
    let error = &unknown.json()["error"];
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("20240101000009"));
    assert!(error["hint"].as_str().unwrap().contains("dhctl status"));
    assert!(!history_table_exists(&db));
    // Neither flag: a usage error.
    dhctl(&db.url).args(["baseline"]).run().expect_code(2);

    let managed = TestDb::new("bl_managed");
    dhctl(&managed.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let refused = dhctl(&managed.url)
        .args(["baseline", "--version", "20240101000005"])
        .run();
    refused.expect_code(2);
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
}

/// dbmate's table, as dbmate creates it, with these versions.
fn dbmate_history(db: &TestDb, versions: &[&str]) {
    db.exec("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)");
    for v in versions {
        db.exec(&format!("INSERT INTO schema_migrations VALUES ('{v}')"));
    }
}

#[test]
fn a_dbmate_database_is_named_by_status_refused_by_migrate_and_adopted_from_dbmate() {
    let db = hand_built("bl_dbmate", 20240101000004);
    dbmate_history(
        &db,
        &[
            "20240101000001",
            "20240101000002",
            "20240101000003",
            "20240101000004",
        ],
    );
    let status = dhctl(&db.url).args(["status"]).run();
    status.expect_code(0);
    assert!(
        status.stdout.contains("migrated by dbmate")
            && status.stdout.contains("dhctl baseline --from-dbmate"),
        "{}",
        status.stdout
    );
    let json = dhctl(&db.url)
        .args(["status", "--format", "json"])
        .run()
        .json();
    every_key_is_in_the_vocabulary(&json);
    assert_eq!(json["dbmate_table"], "public.schema_migrations");

    for dry_run in [true, false] {
        let mut args = vec!["migrate", "--no-partitions", "--format", "json"];
        if dry_run {
            args.push("--dry-run");
        }
        let migrate = dhctl(&db.url).args(args).run();
        migrate.expect_code(2);
        assert!(migrate.json()["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("baseline --from-dbmate"));
    }
    assert!(
        !history_table_exists(&db),
        "migrate refused before creating anything"
    );

    let adopt = dhctl(&db.url)
        .args(["baseline", "--from-dbmate", "--format", "json"])
        .run();
    adopt.expect_code(0);
    let json = adopt.json();
    every_key_is_in_the_vocabulary(&json);
    assert_eq!(json["source"], "dbmate");
    assert_eq!(json["dbmate_table"], "public.schema_migrations");
    assert_eq!(json["recorded"], true);
    assert_eq!(
        db.history(),
        vec![
            20240101000001,
            20240101000002,
            20240101000003,
            20240101000004
        ]
    );
    // Adopted: migrate applies the one dbmate had not.
    let migrate = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    migrate.expect_code(0);
    assert_eq!(migrate.json()["steps"][0]["version"], 20240101000005_i64);
}

#[test]
fn from_dbmate_refuses_a_version_without_a_file_and_a_database_without_dbmate() {
    let db = hand_built("bl_dbmate_unknown", 20240101000005);
    dbmate_history(&db, &["20240101000001", "20231231000000"]);
    let run = dhctl(&db.url)
        .args(["baseline", "--from-dbmate", "--format", "json"])
        .run();
    run.expect_code(2);
    assert!(run.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("20231231000000"));
    assert!(!history_table_exists(&db));

    let plain = hand_built("bl_no_dbmate", 20240101000005);
    let run = dhctl(&plain.url).args(["baseline", "--from-dbmate"]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("no dbmate schema_migrations"),
        "{}",
        run.stderr
    );
}

/// dbmate detection: only a schema_migrations that records a version of the catalog, and only
/// while dhctl has no history table. An empty one is ignored; two that overlap are refused by
/// name; a version too large for a number is called too large, not "not digits".
#[test]
fn dbmate_detection_needs_overlapping_versions_and_names_several_tables() {
    let empty = TestDb::new("bl_dbmate_empty");
    dbmate_history(&empty, &[]);
    let status = dhctl(&empty.url).args(["status", "--format", "json"]).run();
    assert!(status.json()["dbmate_table"].is_null(), "{}", status.stdout);
    dhctl(&empty.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);

    let two = TestDb::new("bl_dbmate_two");
    dbmate_history(&two, &["20240101000001"]);
    two.exec(
        "CREATE SCHEMA other; CREATE TABLE other.schema_migrations (version text PRIMARY KEY); \
         INSERT INTO other.schema_migrations VALUES ('20240101000002')",
    );
    let migrate = dhctl(&two.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    migrate.expect_code(2);
    let error = &migrate.json()["error"];
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("public.schema_migrations") && message.contains("other.schema_migrations"),
        "{message}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("--history-table"),
        "{error}"
    );
    assert!(!history_table_exists(&two));

    let huge = hand_built("bl_dbmate_huge", 20240101000001);
    dbmate_history(&huge, &["20240101000001", "99999999999999999999"]);
    let run = dhctl(&huge.url)
        .args(["baseline", "--from-dbmate", "--format", "json"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("too large") && !message.contains("not a migration version (digits)"),
        "{message}"
    );
}

/// The one rule verify and baseline share: dbmate's table in a schema of its own is left out
/// with its schema, but a schema that holds something else stays compared (and reported).
#[test]
fn a_dbmate_schema_that_holds_more_than_its_table_is_still_compared() {
    let db = hand_built("bl_dbmate_schema_more", 20240101000005);
    db.exec(
        "CREATE SCHEMA dbmate; CREATE TABLE dbmate.schema_migrations (version varchar(128) PRIMARY KEY); \
         INSERT INTO dbmate.schema_migrations VALUES ('20240101000001'), ('20240101000002'), \
         ('20240101000003'), ('20240101000004'), ('20240101000005'); \
         CREATE TABLE dbmate.extra (id int)",
    );
    let run = dhctl(&db.url)
        .args(["baseline", "--from-dbmate", "--dry-run", "--format", "json"])
        .run();
    run.expect_code(1);
    let differences = run.json()["differences"].to_string();
    // The schema stays compared (its extra table with it).
    assert!(differences.contains("schema dbmate"), "{differences}");
    assert!(!differences.contains("schema_migrations"), "{differences}");
}
