//! Migration folders as dbmate users have them: dbmate's names, empty sections, markers that are
//! not markers, and folder entries that only look like migrations, end to end.

use std::path::Path;

use crate::harness::{dhctl, folder, TestDb};

fn run(db: &TestDb, dir: &Path, args: &[&str]) -> crate::harness::Run {
    dhctl(&db.url)
        .migrations_dir(dir)
        .args(args)
        .args(["--format", "json"])
        .run()
}

/// What a dbmate project holds: names with leading digits of any length, dashes and capitals,
/// an empty down, a comment-only up, a marker-looking line inside a function body.
const DBMATE_FOLDER: &[(&str, &str)] = &[
    (
        "001_Initial_Setup.sql",
        "-- migrate:up\nCREATE SCHEMA app;\n-- migrate:down\nDROP SCHEMA app;\n",
    ),
    (
        "002_create-things.sql",
        "-- migrate:up\nCREATE TABLE app.things (id int);\nCREATE FUNCTION app.f() RETURNS text LANGUAGE sql AS $$\n-- migrate:down\nSELECT 'body'\n$$;\n-- migrate:down\nDROP FUNCTION app.f();\nDROP TABLE app.things;\n",
    ),
    (
        "010_views_moved.sql",
        "-- migrate:up\n-- the views now live in 020\n-- migrate:down\n",
    ),
    (
        "202508140123_seed.sql",
        "-- migrate:up\nINSERT INTO app.things VALUES (1);\n-- migrate:down\n-- dbmate's empty down: nothing to undo\n",
    ),
];

#[test]
fn a_dbmate_folder_migrates_rolls_back_all_the_way_and_migrates_again() {
    let db = TestDb::new("files_dbmate");
    let dir = folder(DBMATE_FOLDER);
    let migrated = run(&db, dir.path(), &["migrate", "--no-partitions"]);
    migrated.expect_code(0);
    let steps = migrated.json()["steps"].as_array().unwrap().clone();
    let versions: Vec<i64> = steps
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 10, 202508140123]);
    assert_eq!(steps[1]["name"], "create_things");
    assert_eq!(
        db.value("SELECT app.f()"),
        "body",
        "the marker-like line stayed in the body"
    );
    assert_eq!(
        db.column("SELECT name FROM refinery_schema_history ORDER BY version"),
        vec!["Initial_Setup", "create_things", "views_moved", "seed"]
    );

    let status = run(&db, dir.path(), &["status", "--exit-code"]);
    status.expect_code(0);
    assert!(status.json()["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["state"] == "applied"));

    // The empty down of the newest and the comment-only down of 010 are no-op downs.
    let back = run(&db, dir.path(), &["rollback", "--steps", "4"]);
    back.expect_code(0);
    assert_eq!(back.json()["steps"].as_array().unwrap().len(), 4);
    assert!(db.history().is_empty());
    assert_eq!(
        db.value("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'"),
        "0"
    );

    run(&db, dir.path(), &["migrate", "--no-partitions"]).expect_code(0);
    assert_eq!(db.history(), vec![1, 2, 10, 202508140123]);
    assert_eq!(db.value("SELECT count(*) FROM app.things"), "1");
}

#[test]
fn a_file_without_a_down_marker_still_refuses_rollback() {
    let db = TestDb::new("files_nodown");
    let dir = folder(&[("1_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n")]);
    run(&db, dir.path(), &["migrate", "--no-partitions"]).expect_code(0);
    run(&db, dir.path(), &["rollback"]).expect_code(2);
    assert_eq!(db.history(), vec![1]);
}

/// Each of these would have run the down section (or another tool's) as part of up.
#[test]
fn near_miss_markers_stop_migrate_before_anything_runs() {
    for (i, line) in [
        "    -- migrate:down",
        "-- migrate down",
        "-- Migrate:down",
        "-- +goose Down",
        "-- +migrate Down",
    ]
    .into_iter()
    .enumerate()
    {
        let db = TestDb::new(&format!("files_near{i}"));
        let text = format!("-- migrate:up\nCREATE TABLE a (id int);\n{line}\nDROP TABLE a;\n");
        let dir = folder(&[("20240101000001_a.sql", &text)]);
        let out = run(&db, dir.path(), &["migrate", "--no-partitions"]);
        out.expect_code(2);
        let error = &out.json()["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("20240101000001_a.sql: line 3: "),
            "{line}: {message}"
        );
        assert!(error["hint"].as_str().unwrap().contains("-- migrate:up"));
        assert!(db.tables().is_empty(), "{line}: nothing ran");
    }
}

/// A NUL byte passed validation and failed at run time after earlier files were applied; now
/// it is found before connecting: the database migrate would create is never created.
#[test]
fn a_nul_byte_is_refused_before_connecting() {
    let db = TestDb::unique("files_nul");
    let dir = folder(&[
        ("1_a.sql", "CREATE TABLE a (id int);\n"),
        ("2_b.sql", "-- migrate:up\nSELECT 1;\nSELECT '\0';\n"),
    ]);
    let out = run(&db, dir.path(), &["migrate", "--no-partitions"]);
    out.expect_code(2);
    let message = out.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("2_b.sql: line 3: a NUL byte"), "{message}");
    assert!(!db.exists(), "validation happens before any connection");
}

#[test]
fn folder_entries_that_look_like_migrations_are_errors_naming_them() {
    let db = TestDb::unique("files_entries");
    let dir = folder(&[("1_a.sql", "SELECT 1;\n"), ("2_b.SQL", "SELECT 2;\n")]);
    std::fs::create_dir(dir.path().join("3_c.sql")).unwrap();
    std::os::unix::fs::symlink("gone.sql", dir.path().join("4_d.sql")).unwrap();
    let out = run(&db, dir.path(), &["migrate", "--no-partitions"]);
    out.expect_code(2);
    let message = out.json()["error"]["message"].as_str().unwrap().to_string();
    for name in ["2_b.SQL", "3_c.sql", "4_d.sql"] {
        assert!(message.contains(name), "{name}: {message}");
    }
    assert!(!db.exists());
}

#[test]
fn a_missing_migrations_dir_gets_a_hint() {
    let db = TestDb::unique("files_missing");
    let out = run(&db, Path::new("/nonexistent/dhctl-migrations"), &["status"]);
    out.expect_code(2);
    let error = &out.json()["error"];
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert!(error["hint"].as_str().unwrap().contains("--migrations-dir"));
}

#[test]
fn naming_errors_get_the_naming_hint_and_marker_errors_do_not() {
    let db = TestDb::unique("files_hints");
    let naming = folder(&[("create_users.sql", "SELECT 1;\n")]);
    let out = run(&db, naming.path(), &["status"]);
    out.expect_code(2);
    assert!(out.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("dhctl new"));
    let marker = folder(&[("1_a.sql", "-- migrate:up\nSELECT 1;\n-- migrate:up\n")]);
    let out = run(&db, marker.path(), &["status"]);
    out.expect_code(2);
    let hint = out.json()["error"]["hint"].as_str().unwrap().to_string();
    assert!(!hint.contains("dhctl new"), "{hint}");
    assert!(hint.contains("-- migrate:down"), "{hint}");
}
