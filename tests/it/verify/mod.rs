//! verify, end to end against real PostgreSQL: a fresh database passes, every hand-made change
//! is named, drift exits 4, pending exits 1 (here); how migrations are rebuilt (`rebuild`);
//! migrations written like real projects' (`real`); the rebuild never touching a live object
//! (`isolation`); and roles without CREATEDB, --scratch-url, and killed or interrupted verifies
//! leaving no scratch database behind (`privilege`).

mod isolation;
mod privilege;
mod real;
mod rebuild;

use serde_json::Value;

use crate::harness::*;

pub fn migrated(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db
}

/// `dhctl migrate` from `dir`, which must succeed.
pub fn migrate_in(db: &TestDb, dir: &std::path::Path) {
    dhctl(&db.url)
        .args(["migrate"])
        .migrations_dir(dir)
        .run()
        .expect_code(0);
}

/// `dhctl verify --format json` against the migrations in `dir`.
pub fn verify_in(db: &TestDb, dir: &std::path::Path) -> Run {
    dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir)
        .run()
}

/// `dhctl migrate` as `url`'s role, which owns the database and may not create it, from `dir`
/// (the project's sql/ when none).
pub fn migrate_as_owner(url: &str, dir: Option<&std::path::Path>) {
    let mut migrate = dhctl(url).args(["migrate", "--no-create-database"]);
    if let Some(dir) = dir {
        migrate = migrate.migrations_dir(dir);
    }
    migrate.run().expect_code(0);
}

/// Every check but the schema check passed.
pub fn assert_the_other_checks_pass(report: &Value) {
    for other in ["history", "pending", "partitions", "fingerprint"] {
        assert_eq!(
            check(report, other)["status"],
            "pass",
            "{other}: {report:#}"
        );
    }
}

pub fn verify_json(url: &str) -> (i32, Value) {
    let run = dhctl(url).args(["verify", "--format", "json"]).run();
    assert!(
        [0, 1, 4].contains(&run.code),
        "verify failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    (run.code, run.json())
}

pub fn check<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

pub fn details(check: &Value) -> Vec<String> {
    check["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// Scratch databases owned by `owner` whose creating backend is gone: left behind. (A verify
/// still running has its creator alive; other tests' roles are not looked at.)
pub fn leftover_scratch_databases(owner: &str) -> Vec<String> {
    let mut admin = connect(&server_url());
    admin
        .query(
            "SELECT d.datname::text FROM pg_database d \
             WHERE d.datname LIKE 'dhctl\\_verify\\_%' AND pg_get_userbyid(d.datdba) = $1 \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                               WHERE a.pid::text = split_part(d.datname, '_', 3))",
            &[&owner],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every scratch database owned by `owner`, in use or not.
pub fn scratch_databases(owner: &str) -> Vec<String> {
    let mut admin = connect(&server_url());
    admin
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datname LIKE 'dhctl\\_verify\\_%' AND pg_get_userbyid(datdba) = $1",
            &[&owner],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_fresh_database_passes_with_the_same_fingerprint_as_another() {
    let (a, b) = (migrated("vfresh_a"), migrated("vfresh_b"));
    let (code, report) = verify_json(&a.url);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], true);
    assert_eq!(
        report["scratch"], "database",
        "the migrations are rebuilt in a scratch database verify creates"
    );
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["history", "pending", "schema", "partitions", "fingerprint"]
    );
    let (_, other) = verify_json(&b.url);
    let fingerprint = report["fingerprint"].as_str().unwrap();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    assert_eq!(fingerprint, other["fingerprint"].as_str().unwrap());
    assert!(leftover_scratch_databases("postgres").is_empty());

    let human = dhctl(&a.url).args(["verify"]).run();
    human.expect_code(0);
    assert!(human.stdout.contains(fingerprint), "{}", human.stdout);

    let expected = dhctl(&a.url)
        .args(["verify", "--expect-fingerprint", fingerprint])
        .run();
    expected.expect_code(0);
    let zeros = format!("sha256:{}", "0".repeat(64));
    let elsewhere = dhctl(&a.url)
        .args(["verify", "--format", "json", "--expect-fingerprint", &zeros])
        .run();
    elsewhere.expect_code(1);
    assert_eq!(check(&elsewhere.json(), "fingerprint")["status"], "fail");
}

#[test]
fn every_hand_made_change_is_named_and_changes_the_fingerprint() {
    let cases = [
        (
            "DROP INDEX idx_api_keys_key_prefix",
            "index idx_api_keys_key_prefix on api_keys: missing in the database",
        ),
        (
            "ALTER TABLE api_keys ADD COLUMN label text",
            "column api_keys.label: in the database, not in the migrations",
        ),
        (
            "ALTER TABLE api_keys ALTER COLUMN is_active SET DEFAULT false",
            "column api_keys.is_active: default changed: migrations `true`, database `false`",
        ),
        (
            "ALTER TABLE api_keys ALTER COLUMN name DROP NOT NULL",
            "column api_keys.name: NOT NULL dropped",
        ),
        (
            "ALTER TABLE webhooks DROP CONSTRAINT webhooks_api_key_id_fkey",
            "constraint webhooks_api_key_id_fkey on webhooks: missing in the database",
        ),
        (
            "CREATE TABLE api_keys_backup (id uuid PRIMARY KEY, name text)",
            "table api_keys_backup: in the database, not in the migrations",
        ),
    ];
    for (change, named) in cases {
        let db = migrated("vchange");
        let (code, before) = verify_json(&db.url);
        assert_eq!(code, 0, "{before:#}");
        db.exec(change);
        let (code, after) = verify_json(&db.url);
        assert_eq!(code, 1, "{change}: {after:#}");
        let schema = check(&after, "schema");
        assert_eq!(schema["status"], "fail", "{change}");
        assert_eq!(details(schema), vec![named.to_string()], "{change}");
        assert_ne!(before["fingerprint"], after["fingerprint"], "{change}");
        assert!(leftover_scratch_databases("postgres").is_empty());
    }
}

#[test]
fn monthly_partitions_are_not_tables_of_the_schema() {
    let db = migrated("vparts");
    let (_, before) = verify_json(&db.url);
    // A backfill partition far ahead: neither a table of the schema nor a coverage problem.
    db.exec(
        "CREATE TABLE request_logs_2031_01 PARTITION OF request_logs \
         FOR VALUES FROM ('2031-01-01 00:00:00+00') TO ('2031-02-01 00:00:00+00')",
    );
    let (code, after) = verify_json(&db.url);
    assert_eq!(code, 0, "{after:#}");
    assert_eq!(before["fingerprint"], after["fingerprint"]);
}

#[test]
fn a_dropped_future_partition_is_a_gap_named_by_the_partitions_check() {
    let db = TestDb::new("vgap");
    dhctl(&db.url)
        .args(["migrate", "--now", "2026-11-15T10:00:00Z"])
        .run()
        .expect_code(0);
    let run = |db: &TestDb| {
        let run = dhctl(&db.url)
            .args([
                "verify",
                "--format",
                "json",
                "--now",
                "2026-11-15T10:00:00Z",
            ])
            .run();
        (run.code, run.json())
    };
    let (code, report) = run(&db);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(check(&report, "partitions")["status"], "pass");
    db.exec("DROP TABLE webhook_deliveries_2027_01");
    let (code, report) = run(&db);
    assert_eq!(code, 1, "{report:#}");
    let partitions = check(&report, "partitions");
    assert_eq!(partitions["status"], "fail");
    let found = details(partitions);
    assert!(
        found.iter().any(|d| d.starts_with(
            "webhook_deliveries: no partition for 2027-01-01T00:00:00Z to 2027-02-01T00:00:00Z"
        )),
        "{found:#?}"
    );
    assert_eq!(
        check(&report, "schema")["status"],
        "pass",
        "a partition is not schema drift"
    );
}

#[test]
fn runway_below_one_period_fails_the_partitions_check() {
    let db = TestDb::new("vrunway");
    dhctl(&db.url)
        .args(["migrate", "--now", "2026-11-15T10:00:00Z"])
        .run()
        .expect_code(0);
    // February 2027 is the last month created: in it, no month ahead is covered.
    let run = dhctl(&db.url)
        .args([
            "verify",
            "--format",
            "json",
            "--now",
            "2027-02-10T00:00:00Z",
        ])
        .run();
    run.expect_code(1);
    let report = run.json();
    let found = details(check(&report, "partitions"));
    for table in ["request_logs", "webhook_deliveries"] {
        assert!(
            found
                .iter()
                .any(|d| d.starts_with(&format!("{table}: runway 0 period(s)"))),
            "{found:#?}"
        );
    }
    let bad = dhctl(&db.url).args(["verify", "--now", "yesterday"]).run();
    bad.expect_code(2);
    assert!(bad.stderr.contains("--now"), "{}", bad.stderr);
}

#[test]
fn an_edited_applied_migration_is_drift_and_exits_4() {
    let db = migrated("vdrift");
    let dir = migrations_with(&[]);
    let file = dir.path().join("20240101000003_create_webhooks.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "-- migrate:down",
            "CREATE INDEX idx_x ON webhooks(url);\n-- migrate:down",
        ),
    )
    .unwrap();
    let run = verify_in(&db, dir.path());
    run.expect_code(4);
    let report = run.json();
    let history = check(&report, "history");
    assert_eq!(history["status"], "fail");
    assert_eq!(
        details(history),
        vec!["migration 20240101000003_create_webhooks.sql was modified after it was applied"]
    );
    assert_eq!(check(&report, "schema")["status"], "skipped");
}

#[test]
fn a_pending_migration_fails_with_exit_1_and_the_rest_still_checks() {
    let db = migrated("vpending");
    let dir = migrations_with(&[(
        "20240101000006_add_api_keys_label.sql",
        "-- migrate:up\nALTER TABLE api_keys ADD COLUMN label text;\n",
    )]);
    let run = verify_in(&db, dir.path());
    run.expect_code(1);
    let report = run.json();
    let pending = check(&report, "pending");
    assert_eq!(pending["status"], "fail");
    assert_eq!(
        details(pending),
        vec!["20240101000006_add_api_keys_label.sql: pending"]
    );
    assert_eq!(check(&report, "schema")["status"], "pass");
}

#[test]
fn verify_takes_no_lock_and_runs_while_a_migration_holds_the_dhctl_lock() {
    let db = migrated("vnolock");
    let mut holder = db.client();
    let key = i64::from_be_bytes(*b"dhctl_mg");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .unwrap();
    let run = dhctl(&db.url).args(["verify"]).run();
    run.expect_code(0);
}

#[test]
fn row_level_security_and_its_policies_are_compared() {
    let db = TestDb::new("vrls");
    let dir = migrations_with(&[(
        "20240101000006_api_keys_rls.sql",
        "-- migrate:up\nALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;\n\
         CREATE POLICY own_keys ON api_keys FOR SELECT TO PUBLIC\n    \
         USING (created_by = current_user);\n",
    )]);
    migrate_in(&db, dir.path());
    let verify = || verify_in(&db, dir.path());
    verify().expect_code(0);
    db.exec("ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY; DROP POLICY own_keys ON api_keys");
    let run = verify();
    run.expect_code(1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec![
            "table api_keys: row level security dropped (the migrations have `enabled`)",
            "policy own_keys on api_keys: missing in the database",
        ]
    );
}

#[test]
fn a_read_only_session_skips_the_schema_check_and_the_others_decide() {
    let db = migrated("vreadonly");
    let url = with_param(&db.url, "options", "-c default_transaction_read_only=on");
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    let report = run.json();
    let schema = check(&report, "schema");
    assert_eq!(schema["status"], "skipped", "{report:#}");
    assert!(
        schema["summary"].as_str().unwrap().contains("read-only"),
        "{schema:#}"
    );
    assert_the_other_checks_pass(&report);
    assert_eq!(report["passed"], true);
    assert_eq!(report["scratch"], serde_json::Value::Null);

    let strict = dhctl(&url)
        .args(["verify", "--format", "json", "--require-all"])
        .run();
    strict.expect_code(1);
    assert_eq!(strict.json()["passed"], false);
    let human = dhctl(&url).args(["verify", "--require-all"]).run();
    human.expect_code(1);
    assert!(human.stdout.contains("skipped: schema"), "{}", human.stdout);
}
