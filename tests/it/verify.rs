//! verify, end to end against real PostgreSQL: a fresh database passes, every hand-made change
//! is named, drift exits 4, pending exits 1, and a database owner with no other privilege can
//! verify without leaving a scratch schema behind, even when verify is killed mid-build.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn migrated(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db
}

fn verify_json(url: &str) -> (i32, Value) {
    let run = dhctl(url).args(["verify", "--format", "json"]).run();
    assert!(
        [0, 1, 4].contains(&run.code),
        "verify failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    (run.code, run.json())
}

fn check<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

fn details(check: &Value) -> Vec<String> {
    check["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

fn scratch_schemas(db: &TestDb) -> Vec<String> {
    db.column("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dhctl_verify%'")
}

#[test]
fn a_fresh_database_passes_with_the_same_fingerprint_as_another() {
    let (a, b) = (migrated("vfresh_a"), migrated("vfresh_b"));
    let (code, report) = verify_json(&a.url);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], true);
    assert_eq!(
        report["scratch"], "temporary",
        "plain tables and indexes rebuild in the session's temporary schema"
    );
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["history", "pending", "schema", "fingerprint"]);
    let (_, other) = verify_json(&b.url);
    let fingerprint = report["fingerprint"].as_str().unwrap();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    assert_eq!(fingerprint, other["fingerprint"].as_str().unwrap());
    assert!(scratch_schemas(&a).is_empty());

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
        assert!(scratch_schemas(&db).is_empty());
    }
}

#[test]
fn monthly_partitions_are_not_tables_of_the_schema() {
    let db = migrated("vparts");
    let (_, before) = verify_json(&db.url);
    db.exec(
        "CREATE TABLE request_logs_2026_11 PARTITION OF request_logs \
         FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')",
    );
    let (code, after) = verify_json(&db.url);
    assert_eq!(code, 0, "{after:#}");
    assert_eq!(before["fingerprint"], after["fingerprint"]);
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
    let run = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
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
    let run = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
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
fn a_concurrent_index_migration_is_rebuilt_without_concurrently_and_says_so() {
    let db = TestDb::new("vcic");
    let dir = migrations_with(&[(
        "20240101000006_index_webhooks_url.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY idx_webhooks_url ON webhooks (url);\n\
         -- migrate:down\nDROP INDEX idx_webhooks_url;\n",
    )]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    let report = run.json();
    let notes = check(&report, "schema")["notes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]
        .as_str()
        .unwrap()
        .starts_with("20240101000006_index_webhooks_url.sql:2: built without CONCURRENTLY"));
    db.exec("DROP INDEX idx_webhooks_url");
    let run = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["index idx_webhooks_url on webhooks: missing in the database"]
    );
}

#[test]
fn a_migration_that_cannot_be_rebuilt_is_an_error_naming_its_line() {
    let db = TestDb::new("vqualified");
    let dir = migrations_with(&[(
        "20240101000006_qualified.sql",
        "-- migrate:up\n-- Schema-qualified: it lands in public, not in the scratch schema.\n\
         CREATE TABLE public.qualified (id int);\n",
    )]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["verify"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("20240101000006_qualified.sql:3: relation \"qualified\" already exists"),
        "{}",
        run.stderr
    );
    assert!(scratch_schemas(&db).is_empty());
}

#[test]
fn functions_and_triggers_are_rebuilt_in_a_scratch_schema_and_compared() {
    let db = TestDb::new("vtrigger");
    let dir = migrations_with(&[(
        "20240101000006_touch_updated_at.sql",
        "-- migrate:up\n\
         CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n\
         CREATE TRIGGER api_keys_touch BEFORE UPDATE ON api_keys\n\
             FOR EACH ROW EXECUTE FUNCTION touch_updated_at();\n",
    )]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let verify = || {
        dhctl(&db.url)
            .args(["verify", "--format", "json"])
            .migrations_dir(dir.path())
            .run()
    };
    let run = verify();
    run.expect_code(0);
    let before = run.json();
    assert_eq!(before["scratch"], "schema");
    db.exec("DROP TRIGGER api_keys_touch ON api_keys");
    let run = verify();
    run.expect_code(1);
    let after = run.json();
    assert_eq!(
        details(check(&after, "schema")),
        vec!["trigger api_keys_touch on api_keys: missing in the database"]
    );
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    assert!(scratch_schemas(&db).is_empty());
}

#[test]
fn verify_takes_no_lock_and_runs_while_a_migration_holds_the_dhctl_lock() {
    let db = migrated("vnolock");
    let mut holder = db.client();
    let key = i64::from_be_bytes(*b"dhctl_mg");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .unwrap();
    let run = dhctl(&db.url).args(["verify", "--lock-wait", "0s"]).run();
    run.expect_code(0);
}

/// A login role with no privilege but owning `db` (and, as the database owner, its schema
/// public); dropped after the database.
struct Owner {
    name: String,
}

impl Owner {
    fn of(db: &TestDb) -> Owner {
        let name = format!("{}_owner", db.name);
        let mut admin = connect(&server_url());
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; \
                 ALTER DATABASE \"{}\" OWNER TO \"{name}\"",
                db.name
            ))
            .unwrap();
        Owner { name }
    }

    /// The test database's URL with this role as the user (trust authentication).
    fn url(&self, db: &TestDb) -> String {
        let url = db.url.clone();
        let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
        let host_start = url[scheme_end..]
            .find('@')
            .map(|i| scheme_end + i + 1)
            .unwrap_or(scheme_end);
        format!("{}{}@{}", &url[..scheme_end], self.name, &url[host_start..])
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&server_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.name));
        }
    }
}

/// An applied migration that waits for an advisory lock the test holds, so that verify's
/// scratch build stops half-way, with the scratch schema created and uncommitted.
const WAIT_KEY: i64 = 74_040_001;

#[test]
fn a_database_owner_without_privileges_verifies_and_a_killed_verify_leaves_nothing() {
    let db = TestDb::new("vowner");
    let owner = Owner::of(&db);
    let url = owner.url(&db);
    assert_eq!(
        db.value(&format!(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = '{}'",
            owner.name
        )),
        "f"
    );
    // The function makes verify rebuild in a real scratch schema (dhctl_verify_…), not in
    // the temporary one: that is the schema that must not survive.
    let dir = migrations_with(&[(
        "20240101000006_wait_for_the_test.sql",
        &format!(
            "-- migrate:up\nCREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';\n\
             SELECT pg_advisory_xact_lock({WAIT_KEY});\n"
        ),
    )]);
    dhctl(&url)
        .args(["migrate", "--no-partitions", "--no-create-database"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'api_keys'"),
        owner.name
    );
    let run = dhctl(&url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["scratch"], "schema");
    assert!(scratch_schemas(&db).is_empty());

    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&WAIT_KEY])
        .unwrap();
    let mut child = dhctl(&url)
        .args(["verify", "--lock-timeout", "60s"])
        .migrations_dir(dir.path())
        .spawn();
    let waiting = format!(
        "SELECT a.pid::text || ' ' || (a.backend_xid IS NOT NULL)::text \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = {WAIT_KEY} \
           AND a.usename = '{}'",
        owner.name
    );
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen = db.column(&waiting).into_iter().next();
            seen.is_some()
        }),
        "verify never reached the waiting migration"
    );
    let seen = seen.unwrap();
    let (pid, wrote) = seen.split_once(' ').unwrap();
    assert_eq!(
        wrote, "true",
        "the backend has written (the scratch schema) before it waits"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock stays held: the backend must notice its client is gone by itself
    // (client_connection_check_interval), not because the wait ended.
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
    assert!(
        wait_until(Duration::from_secs(15), || db.value(&gone) == "0"),
        "the killed verify's backend is still there"
    );
    assert!(scratch_schemas(&db).is_empty());
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&WAIT_KEY])
        .unwrap();
    drop(holder);
    let after = dhctl(&url)
        .args(["verify"])
        .migrations_dir(dir.path())
        .run();
    after.expect_code(0);
    assert!(scratch_schemas(&db).is_empty());
    // The database goes first: a role that owns one cannot be dropped.
    drop(db);
    drop(owner);
}

#[test]
fn a_role_without_the_temp_privilege_rebuilds_in_a_scratch_schema() {
    let db = TestDb::new("vnotemp");
    let owner = Owner::of(&db);
    let url = owner.url(&db);
    dhctl(&url)
        .args(["migrate", "--no-partitions", "--no-create-database"])
        .run()
        .expect_code(0);
    db.exec(&format!(
        "REVOKE TEMPORARY ON DATABASE \"{}\" FROM PUBLIC, \"{}\"",
        db.name, owner.name
    ));
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    assert_eq!(run.json()["scratch"], "schema");
    assert!(scratch_schemas(&db).is_empty());
    drop(db);
    drop(owner);
}
