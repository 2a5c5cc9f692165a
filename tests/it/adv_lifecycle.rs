//! Adversary findings on out-of-order rollback ordering, dbmate detection and baseline
//! (adv-lifecycle). Each test failed on main at 54e78de (the skew one as first written: it now
//! stages the skew through the session's TimeZone, see its comment) and names what it expects;
//! fixed on branch fix-lifecycle.

use crate::harness::*;

fn three() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        std::fs::write(
            dir.path().join(format!("2024010100000{i}_t{i}.sql")),
            format!(
                "-- migrate:up\nCREATE TABLE t{i} (id int);\n-- migrate:down\nDROP TABLE t{i};\n"
            ),
        )
        .unwrap();
    }
    dir
}

fn migrated(label: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(label);
    let dir = three();
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    (db, dir)
}

/// A database dbmate migrated with [`three`]: its three tables and dbmate's
/// `schema_migrations` in `schema` (made first unless it is `public`) listing them.
fn dbmate_migrated(label: &str, schema: &str) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(label);
    for i in 1..=3 {
        db.exec(&format!("CREATE TABLE t{i} (id int)"));
    }
    if schema != "public" {
        db.exec(&format!("CREATE SCHEMA {schema}"));
    }
    db.exec(&format!(
        "CREATE TABLE {schema}.schema_migrations (version varchar(128) PRIMARY KEY); \
         INSERT INTO {schema}.schema_migrations \
         VALUES ('20240101000001'), ('20240101000002'), ('20240101000003')"
    ));
    (db, three())
}

/// [`dbmate_migrated`] in `public`, then adopted with `baseline --from-dbmate`.
fn adopted_from_dbmate(label: &str) -> (TestDb, tempfile::TempDir) {
    let (db, dir) = dbmate_migrated(label, "public");
    dhctl(&db.url)
        .args(["baseline", "--from-dbmate"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    (db, dir)
}

fn rollback_plan(db: &TestDb, dir: &tempfile::TempDir) -> Vec<i64> {
    let run = dhctl(&db.url)
        .args(["rollback", "--dry-run", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect()
}

/// A history row whose applied_on is not strict RFC 3339 (written by hand with now()::text,
/// NULL, or anything else) sorts as the OLDEST row (None < Some), so one-step rollback undoes
/// the wrong migration and calls the others "applied out of order". docs/history.md and the
/// code comment say such rows "fall back to version order".
#[test]
fn adv_rollback_with_a_hand_written_applied_on_undoes_the_newest_version() {
    let (db, dir) = migrated("adv_lc_badtime");
    // As a DBA repairing the history by hand would write it (timestamptz's text form).
    db.exec("UPDATE refinery_schema_history SET applied_on = now()::text WHERE version = 20240101000003");
    assert_eq!(
        rollback_plan(&db, &dir),
        vec![20240101000003],
        "rollback must undo t3 (newest version, and applied last), not t2"
    );
    db.exec("UPDATE refinery_schema_history SET applied_on = NULL WHERE version = 20240101000003");
    assert_eq!(rollback_plan(&db, &dir), vec![20240101000003]);
    // The plan says it follows version order, in JSON and in the human output.
    let run = dhctl(&db.url)
        .args(["rollback", "--dry-run", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    let notes = run.json()["notes"].to_string();
    assert!(
        notes.contains("version order") && notes.contains("20240101000003"),
        "{notes}"
    );
    let human = dhctl(&db.url)
        .args(["rollback", "--dry-run"])
        .migrations_dir(dir.path())
        .run();
    assert!(
        human.stdout.contains("note: ") && human.stdout.contains("version order"),
        "{}",
        human.stdout
    );
    // Every row readable again: no note.
    db.exec(
        "UPDATE refinery_schema_history SET applied_on = '2026-01-01T00:00:00Z' WHERE version = 20240101000003",
    );
    let run = dhctl(&db.url)
        .args(["rollback", "--dry-run", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    assert_eq!(run.json()["notes"], serde_json::json!([]), "{}", run.stdout);
}

/// migrate and baseline write applied_on from the server's clock, in the text refinery writes
/// (time's RFC 3339: UTC `Z`, fraction without trailing zeros), so refinery can parse it.
#[test]
fn applied_on_is_the_servers_clock_in_refinerys_format() {
    let (db, _dir) = migrated("adv_lc_applied_on");
    let texts = db.column("SELECT applied_on FROM refinery_schema_history ORDER BY version");
    assert_eq!(texts.len(), 3);
    for text in &texts {
        let (whole, rest) = text.split_at(19);
        assert!(
            chrono::NaiveDateTime::parse_from_str(whole, "%Y-%m-%dT%H:%M:%S").is_ok(),
            "{text}"
        );
        let fraction = rest
            .strip_suffix('Z')
            .unwrap_or_else(|| panic!("{text}: no Z"));
        if !fraction.is_empty() {
            let digits = fraction.strip_prefix('.').unwrap();
            assert!(
                !digits.is_empty() && digits.len() <= 9 && !digits.ends_with('0'),
                "{text}"
            );
            assert!(digits.chars().all(|c| c.is_ascii_digit()), "{text}");
        }
        // The server wrote it: it is not after the server's own clock now.
        assert_eq!(
            db.value(&format!(
                "SELECT ('{text}'::timestamptz <= clock_timestamp())::text"
            )),
            "true"
        );
    }
}

/// applied_on was the runner's wall clock, so a runner whose clock was behind (a laptop, a pod
/// on a skewed node) applied t3 after t2 but recorded an earlier time: rollback undid t2 first,
/// leaving t3, and marked t2 "applied out of order". A skewed runner cannot be staged here (no
/// way to move this process's clock); what can be: the time is now written by the server in the
/// insert itself, in UTC whatever the session's TimeZone, so a second runner whose session sits
/// at UTC-3:30 still records t3 after t2, and rollback undoes t3, not out of order.
#[test]
fn adv_rollback_ordering_trusts_the_runner_clock() {
    let db = TestDb::new("adv_lc_skew");
    let dir = three();
    let early = tempfile::tempdir().unwrap();
    for i in 1..=2 {
        let name = format!("2024010100000{i}_t{i}.sql");
        std::fs::copy(dir.path().join(&name), early.path().join(&name)).unwrap();
    }
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(early.path())
        .run()
        .expect_code(0);
    let behind = with_param(&db.url, "options", "-c TimeZone=America/St_Johns");
    dhctl(&behind)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["rollback", "--dry-run", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    let step = &run.json()["steps"][0];
    assert_eq!(step["version"], 20240101000003_i64, "{}", run.stdout);
    assert!(step["predates"].is_null(), "{}", run.stdout);
}

/// Another application's Rails (or dbmate) schema_migrations in another schema of the same
/// database makes dhctl refuse to migrate a database it has never touched, and baseline
/// refuses both ways: the only way out is to drop the other application's table.
#[test]
fn adv_a_schema_migrations_of_another_app_blocks_migrate() {
    let db = TestDb::new("adv_lc_rails");
    db.exec(
        "CREATE SCHEMA billing; \
         CREATE TABLE billing.schema_migrations (version varchar PRIMARY KEY); \
         INSERT INTO billing.schema_migrations VALUES ('20230101120000'), ('20230202120000')",
    );
    let dir = three();
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
}

/// docs/baseline.md: "schema_migrations is left as it is ... and dhctl ignores the table from
/// then on". After baseline --from-dbmate and rollback --all, migrate refuses the database as
/// "migrated by dbmate" and baseline --from-dbmate refuses it too (schema differs).
#[test]
fn adv_after_adoption_and_rollback_all_migrate_is_refused_as_dbmate() {
    let (db, dir) = adopted_from_dbmate("adv_lc_dbm_rb");
    dhctl(&db.url)
        .args(["rollback", "--all"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
}

/// A TCP proxy to the test server that forwards until frozen, then keeps every socket open and
/// forwards nothing (a network partition without RST, a stalled pooler, a stopped backend).
struct Freezable {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Freezable {
    fn start() -> Freezable {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let (host, server_port) = server_host_port();
        let flag = Arc::clone(&frozen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect((host.as_str(), server_port)) else {
                    return;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while flag.load(Ordering::SeqCst) {
                                // Frozen: hold the bytes and the sockets, forward nothing.
                                std::thread::sleep(std::time::Duration::from_millis(50));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Freezable { port, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `status --until-current 3s` promises exit 1 when the time runs out. When the server stops
/// answering mid-wait (no RST: a partition, a stalled proxy), the history read blocks with no
/// bound and the waiter outlives its limit indefinitely (an init container stuck forever).
#[test]
fn adv_until_current_outlives_its_limit_when_the_server_stops_answering() {
    let (db, _) = migrated("adv_lc_frozen");
    let dir = three();
    std::fs::write(
        dir.path().join("20240101000004_t4.sql"),
        "-- migrate:up\nCREATE TABLE t4 (id int);\n",
    )
    .unwrap();
    let proxy = Freezable::start();
    let url = with_host_port(&db.url, "127.0.0.1", proxy.port);
    let child = dhctl(&url)
        .args(["status", "--until-current", "3s"])
        .migrations_dir(dir.path())
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    proxy.freeze();
    let (code, hung, _, _) = wait_at_most(child, std::time::Duration::from_secs(15));
    assert!(
        !hung,
        "status --until-current 3s still running 15 s after the server stopped answering"
    );
    assert_eq!(code, Some(1));
}

/// docs/baseline.md: dbmate's schema_migrations "is left as it is ... and dhctl ignores the
/// table from then on"; baseline's comparison leaves it out. verify does not: right after a
/// successful `baseline --from-dbmate` (schema "matches"), `dhctl verify` fails its schema check
/// with "table schema_migrations: in the database, not in the migrations" (exit 1). Seen on the
/// 280-file dbmate corpus too.
#[test]
fn adv_verify_fails_right_after_a_successful_baseline_from_dbmate() {
    let (db, dir) = adopted_from_dbmate("adv_lc_dbm_verify");
    let partitions = tempfile::tempdir().unwrap();
    let verify = dhctl(&db.url)
        .args(["verify", "--format", "json"])
        .env("DHCTL_PARTITIONS_DIR", partitions.path())
        .migrations_dir(dir.path())
        .run();
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

/// dbmate's `--migrations-table myschema.schema_migrations`: baseline finds the table "in any
/// schema" and leaves the table out of the comparison, but not its schema, so a database that
/// matches is refused (exit 1: `schema dbmate: in the database, not in the migrations`), and
/// the fix it suggests (make the database match) means dropping dbmate's schema.
#[test]
fn adv_baseline_refuses_a_dbmate_table_in_its_own_schema() {
    let (db, dir) = dbmate_migrated("adv_lc_dbm_schema", "dbmate");
    let run = dhctl(&db.url)
        .args(["baseline", "--from-dbmate", "--dry-run"])
        .migrations_dir(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stdout);
}

/// A catalog whose own migration creates a table named schema_migrations (text version column:
/// an application's data-migration bookkeeping, Rails' shape). baseline treats it as dbmate's
/// and removes it from the live snapshot only, so a database that is exactly what the
/// migrations build is refused with a false difference: "table schema_migrations: missing in
/// the database" while the table is there.
#[test]
fn adv_baseline_calls_an_existing_schema_migrations_table_missing() {
    let db = TestDb::new("adv_lc_own_sm");
    let dir = three();
    std::fs::write(
        dir.path().join("20240101000004_sm.sql"),
        "-- migrate:up\nCREATE TABLE schema_migrations (version text PRIMARY KEY, note text);\n\
         -- migrate:down\nDROP TABLE schema_migrations;\n",
    )
    .unwrap();
    db.exec(
        "CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int); \
         CREATE TABLE schema_migrations (version text PRIMARY KEY, note text)",
    );
    let run = dhctl(&db.url)
        .args(["baseline", "--version", "20240101000004", "--dry-run"])
        .migrations_dir(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stdout);
}

/// `migrate --allow-out-of-order` applies in history order (1, 3, then the late 2), but verify
/// rebuilds the applied migrations in version order (1, 2, 3). When the two do not commute (both
/// branches CREATE OR REPLACE one function or view), verify reports drift on a database that is
/// exactly what migrate applied: "function f(): body changed: migrations `SELECT 3`, database
/// `SELECT 2`" (exit 1), and docs/verify.md tells the user someone changed it by hand.
#[test]
fn adv_verify_after_allow_out_of_order_reports_false_drift() {
    let db = TestDb::new("adv_lc_ooo_verify");
    let all = tempfile::tempdir().unwrap();
    let early = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        let name = format!("2024010100000{i}_f{i}.sql");
        let text = format!(
            "-- migrate:up\nCREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT {i}';\n\
             -- migrate:down\nDROP FUNCTION IF EXISTS f();\n"
        );
        std::fs::write(all.path().join(&name), &text).unwrap();
        if i != 2 {
            std::fs::write(early.path().join(&name), &text).unwrap();
        }
    }
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(early.path())
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--allow-out-of-order"])
        .migrations_dir(all.path())
        .run()
        .expect_code(0);
    let partitions = tempfile::tempdir().unwrap();
    let verify = dhctl(&db.url)
        .args(["verify"])
        .env("DHCTL_PARTITIONS_DIR", partitions.path())
        .migrations_dir(all.path())
        .run();
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}
