//! Out-of-order migrations (a branch merged late adds a version older than the newest applied
//! one): status, verify and migrate --dry-run mark them alike, migrate refuses them (exit 2,
//! nothing applied) unless --allow-out-of-order, and rollback follows the history's order and
//! names them.

use crate::harness::*;

const LATE: &str = "20240101000006_late_branch.sql";
const NEWER: &str = "20240101000007_newer.sql";

fn late_sql() -> &'static str {
    "-- migrate:up\nCREATE TABLE late_branch (id int);\n-- migrate:down\nDROP TABLE late_branch;\n"
}

fn newer_sql() -> &'static str {
    "-- migrate:up\nCREATE TABLE newer (id int);\n-- migrate:down\nDROP TABLE newer;\n"
}

/// A database migrated through NEWER, and a folder that now also holds LATE (older than NEWER).
fn with_late_file(label: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(label);
    let before = migrations_with(&[(NEWER, newer_sql())]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(before.path())
        .run()
        .expect_code(0);
    let after = migrations_with(&[(NEWER, newer_sql()), (LATE, late_sql())]);
    (db, after)
}

#[test]
fn status_verify_and_dry_run_mark_it_out_of_order_and_name_what_it_predates() {
    let (db, dir) = with_late_file("ooo_mark");
    let status = dhctl(&db.url)
        .args(["status", "--format", "json", "--exit-code"])
        .migrations_dir(dir.path())
        .run();
    status.expect_code(1);
    let json = status.json();
    assert_eq!(json["counts"]["out_of_order"], 1);
    assert_eq!(json["counts"]["pending"], 0);
    let late = json["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == 20240101000006_i64)
        .unwrap();
    assert_eq!(late["state"], "out-of-order");
    assert_eq!(late["predates"], 20240101000007_i64);

    let human = dhctl(&db.url)
        .args(["status"])
        .migrations_dir(dir.path())
        .run();
    human.expect_code(0);
    assert!(human.stdout.contains("out-of-order"), "{}", human.stdout);
    assert!(
        human.stdout.contains(&format!(
            "{LATE} is out-of-order: older than 20240101000007"
        )),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("--allow-out-of-order"));

    let verify = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    verify.expect_code(1);
    let pending = verify.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pending")
        .unwrap()
        .clone();
    assert_eq!(pending["status"], "fail");
    assert!(
        pending["details"][0]
            .as_str()
            .unwrap()
            .contains("out-of-order: older than 20240101000007"),
        "{pending}"
    );
    assert!(pending["summary"]
        .as_str()
        .unwrap()
        .contains("--allow-out-of-order"));

    let dry = dhctl(&db.url)
        .args(["migrate", "--dry-run", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    dry.expect_code(0);
    let json = dry.json();
    assert_eq!(json["steps"][0]["version"], 20240101000006_i64);
    assert_eq!(json["steps"][0]["predates"], 20240101000007_i64);
    assert_eq!(json["out_of_order"][0]["state"], "out-of-order");
    assert_eq!(json["allow_out_of_order"], false);
    let dry_human = dhctl(&db.url)
        .args(["migrate", "--dry-run"])
        .migrations_dir(dir.path())
        .run();
    dry_human.expect_code(0);
    assert!(
        dry_human
            .stdout
            .contains("out-of-order: older than 20240101000007"),
        "{}",
        dry_human.stdout
    );
    assert!(dry_human.stdout.contains("migrate refuses them (exit 2)"));
    assert_eq!(db.value("SELECT to_regclass('late_branch') IS NULL"), "t");
}

#[test]
fn migrate_refuses_them_with_exit_2_and_applies_them_in_version_order_when_allowed() {
    let (db, dir) = with_late_file("ooo_refuse");
    // A pending migration newer than everything waits behind the refusal too.
    std::fs::write(
        dir.path().join("20240101000008_after.sql"),
        "CREATE TABLE after_all (id int);\n",
    )
    .unwrap();
    let refused = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    refused.expect_code(2);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(LATE) && message.contains("out-of-order"),
        "{message}"
    );
    assert!(message.contains("nothing was applied"), "{message}");
    assert!(refused.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("--allow-out-of-order"));
    assert_eq!(db.history().len(), 6, "nothing applied");
    // lint --pending lints them too: they are not applied.
    let lint = dhctl(&db.url)
        .args(["lint", "--pending", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    lint.expect_code(0);
    assert_eq!(lint.json()["files"], 2, "{}", lint.stdout);

    let allowed = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .env("DHCTL_ALLOW_OUT_OF_ORDER", "true")
        .migrations_dir(dir.path())
        .run();
    allowed.expect_code(0);
    let json = allowed.json();
    let steps: Vec<(i64, serde_json::Value)> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["version"].as_i64().unwrap(), s["predates"].clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (20240101000006, serde_json::json!(20240101000007_i64)),
            (20240101000008, serde_json::Value::Null),
        ]
    );
    assert_eq!(db.history().len(), 8);
    dhctl(&db.url)
        .args(["status", "--exit-code"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
}

#[test]
fn rollback_follows_the_order_of_application_and_names_the_out_of_order_one() {
    let (db, dir) = with_late_file("ooo_rollback");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--allow-out-of-order"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    // History: …0005, 0007, then 0006 (applied after 0007).
    let plan = dhctl(&db.url)
        .args([
            "rollback",
            "--to",
            "20240101000005",
            "--dry-run",
            "--format",
            "json",
        ])
        .migrations_dir(dir.path())
        .run();
    plan.expect_code(0);
    let steps: Vec<(i64, serde_json::Value)> = plan.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["version"].as_i64().unwrap(), s["predates"].clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (20240101000006, serde_json::json!(20240101000007_i64)),
            (20240101000007, serde_json::Value::Null),
        ]
    );
    let human = dhctl(&db.url)
        .args(["rollback", "--to", "20240101000005", "--dry-run"])
        .migrations_dir(dir.path())
        .run();
    assert!(
        human
            .stdout
            .contains("applied out of order, after 20240101000007"),
        "{}",
        human.stdout
    );
    // --to 0007: back to the state right after 0007 was applied, which undoes 0006.
    let run = dhctl(&db.url)
        .args(["rollback", "--to", "20240101000007", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["steps"][0]["version"], 20240101000006_i64);
    assert_eq!(run.json()["steps"].as_array().unwrap().len(), 1);
    assert_eq!(db.value("SELECT to_regclass('late_branch') IS NULL"), "t");
    assert_eq!(db.value("SELECT to_regclass('newer') IS NOT NULL"), "t");
}
