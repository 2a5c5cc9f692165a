//! Faults an adversarial review found in verify, dhctl-health and the migration runner: each
//! test failed before its fix.

use crate::harness::*;
use crate::verify::{assert_the_other_checks_pass, check, details, migrate_as_owner};

/// 16 hex digits unique to this test process and `n` (database names are cluster-wide).
fn hex(n: u64) -> String {
    format!("{:016x}", (u64::from(std::process::id()) << 16) | n)
}

#[test]
fn stale_scratch_cleanup_drops_only_marked_databases_and_survives_odd_pids() {
    let owner = Role::creator("advstale");
    let db = TestDb::owned_by("advstale", &owner);
    let url = owner.url_for(&db);
    migrate_as_owner(&url, None);
    // A user's database that merely looks like a scratch one (pid 1 is never a backend).
    let users = format!("dhctl_verify_1_{}", hex(1));
    // Left-overs verify marked: one with a pid that does not fit int4.
    let odd = format!("dhctl_verify_99999999999_{}", hex(2));
    let plain = format!("dhctl_verify_1_{}", hex(3));
    let mut admin = connect(&server_url());
    for name in [&users, &odd, &plain] {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" OWNER \"{}\"",
                owner.name
            ))
            .unwrap();
    }
    for name in [&odd, &plain] {
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE \"{name}\" IS 'dhctl verify scratch database, dropped when verify ends'"
            ))
            .unwrap();
    }
    connect(&with_dbname(&server_url(), &users))
        .batch_execute("CREATE TABLE precious (a int); INSERT INTO precious VALUES (1)")
        .unwrap();

    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    let notes = check(&run.json(), "schema")["notes"].to_string();
    assert!(
        database_exists(&users),
        "a user's database is kept: {notes}"
    );
    assert!(!database_exists(&odd), "an odd pid stops nothing: {notes}");
    assert!(!database_exists(&plain), "{notes}");
    assert!(
        notes.contains(&format!("dropped scratch database {odd}")),
        "{notes}"
    );
    // verify's own scratch database is marked, then dropped.
    let left = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE pg_get_userbyid(datdba) = $1 \
             AND datname <> $2 AND datname <> $3",
            &[&owner.name, &users, &db.name],
        )
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    admin
        .batch_execute(&format!("DROP DATABASE \"{users}\" WITH (FORCE)"))
        .unwrap();
    drop(db);
    drop(owner);
}

#[test]
fn an_untrusted_extension_an_admin_installed_does_not_stop_verify_for_a_createdb_role() {
    let owner = Role::creator("advext");
    let db = TestDb::owned_by("advext", &owner);
    let url = owner.url_for(&db);
    db.exec("CREATE EXTENSION pg_buffercache");
    migrate_as_owner(&url, None);
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    let report = run.json();
    let schema = check(&report, "schema");
    assert_eq!(schema["status"], "pass", "{report:#}");
    assert!(
        schema["notes"].to_string().contains("pg_buffercache"),
        "the skipped extension is named: {schema:#}"
    );
    assert_the_other_checks_pass(&report);
    // A real difference is still found.
    db.exec("ALTER TABLE api_keys ADD COLUMN label text");
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["column api_keys.label: in the database, not in the migrations"]
    );
    drop(db);
    drop(owner);
}

#[test]
fn check_url_with_userinfo_is_a_usage_error_that_never_shows_it() {
    for url in [
        "http://u:SECRETX@127.0.0.1:1/",
        "http://u:SECRETX@127.0.0.1/health",
        "http://SECRETX@localhost:1/",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dhctl-health"))
            .args(["--check-url", url, "--timeout-ms", "500"])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(
            !stdout.contains("SECRETX") && !stderr.contains("SECRETX"),
            "{url}: {stdout}{stderr}"
        );
        assert!(stderr.contains("user name or password"), "{stderr}");
    }
}

/// A section whose last statement sets a 1 ms timeout: dhctl's checks and history write run
/// after it, and must neither be cancelled nor find the session gone.
///
/// `idle_session_timeout = 1` is also a race inside the server: the backend arms the 1 ms timer
/// before it reads the message dhctl already sent, and a backend descheduled for a millisecond
/// on a loaded machine ends the session however quickly dhctl answered. So that case gets three
/// tries, and a try that loses the race must fail the honest way (exit 2, the statements kept,
/// the migration not recorded); statement_timeout is deterministic and gets one.
#[test]
fn a_section_ending_with_a_one_millisecond_timeout_is_recorded() {
    for (label, setting, header, tries) in [
        (
            "advst",
            "statement_timeout",
            "-- migrate:up transaction:false",
            1,
        ),
        (
            "advis",
            "idle_session_timeout",
            "-- migrate:up transaction:false",
            3,
        ),
        ("advstw", "statement_timeout", "-- migrate:up", 1),
    ] {
        let dir = folder(&[
            (
                "20300101000001_timeout.sql",
                format!("{header}\nCREATE TABLE public.first (id int);\nSET {setting} = 1;\n"),
            ),
            (
                "20300101000002_after.sql",
                "-- migrate:up\nCREATE TABLE public.second (id int);\n".to_string(),
            ),
        ]);
        let mut recorded = false;
        for _ in 0..tries {
            let db = TestDb::new(label);
            let run = dhctl(&db.url)
                .migrations_dir(dir.path())
                .args(["migrate", "--no-partitions", "--format", "json"])
                .run();
            if run.code != 0 && setting == "idle_session_timeout" {
                let hint = run.json()["error"]["hint"].to_string();
                assert_eq!(run.code, 2, "{setting}: {}", run.stdout);
                assert!(
                    hint.contains("statements were kept") && hint.contains("not recorded"),
                    "{setting}: {}",
                    run.stdout
                );
                assert_eq!(db.history(), Vec::<i64>::new(), "{setting}");
                continue;
            }
            assert_eq!(run.code, 0, "{setting} {header}: {}", run.stdout);
            assert_eq!(
                db.history(),
                vec![20300101000001, 20300101000002],
                "{setting} {header}"
            );
            assert_eq!(
                db.tables(),
                vec!["first", "refinery_schema_history", "second"]
            );
            recorded = true;
            break;
        }
        assert!(recorded, "{setting} {header}: every try lost the session");
    }
}

/// Runs `migrate --format json` on `files` and returns (exit code, error message with its hint).
fn failed_migrate(db: &TestDb, files: &[(&str, String)]) -> (i32, String) {
    let dir = folder(files);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    let error = &run.json()["error"];
    (run.code, format!("{} {}", error["message"], error["hint"]))
}

#[test]
fn a_deferred_constraint_failing_at_commit_says_the_commit_failed() {
    let db = TestDb::new("advcommit");
    let (code, message) = failed_migrate(
        &db,
        &[(
            "20300101000001_deferred.sql",
            "-- migrate:up\n\
             CREATE TABLE public.parent (id int PRIMARY KEY);\n\
             CREATE TABLE public.child (parent int REFERENCES public.parent \
               DEFERRABLE INITIALLY DEFERRED);\n\
             INSERT INTO public.child VALUES (1);\n"
                .to_string(),
        )],
    );
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("failed at COMMIT"), "{message}");
    assert!(message.contains("nothing of it was kept"), "{message}");
    assert!(!message.contains("privileges"), "{message}");
    assert_eq!(db.value("SELECT to_regclass('public.child') IS NULL"), "t");
}

#[test]
fn a_migration_that_makes_its_transaction_read_only_is_named() {
    let db = TestDb::new("advro");
    let (code, message) = failed_migrate(
        &db,
        &[(
            "20300101000001_ro.sql",
            "-- migrate:up\nCREATE TABLE public.made (id int);\nSET transaction_read_only = on;\n"
                .to_string(),
        )],
    );
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("made its transaction read-only"),
        "{message}"
    );
    assert!(!message.contains("privileges"), "{message}");
    assert_eq!(db.value("SELECT to_regclass('public.made') IS NULL"), "t");
}

#[test]
fn releasing_the_lock_outside_a_transaction_says_it_was_recorded() {
    let db = TestDb::new("advunlock");
    let (code, message) = failed_migrate(
        &db,
        &[(
            "20300101000001_unlock.sql",
            "-- migrate:up transaction:false\nCREATE TABLE public.made (id int);\n\
             SELECT pg_advisory_unlock_all();\n"
                .to_string(),
        )],
    );
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("released dhctl's advisory lock"),
        "{message}"
    );
    assert!(message.contains("it was recorded"), "{message}");
    assert!(!message.contains("privileges"), "{message}");
    assert_eq!(db.history(), vec![20300101000001]);
}

#[test]
fn sigint_during_a_transaction_false_migration_says_earlier_statements_were_kept() {
    let db = TestDb::new("advsigint");
    let dir = folder(&[(
        "20300101000001_slow.sql",
        "-- migrate:up transaction:false\nCREATE TABLE public.made (id int);\n\
         SELECT pg_sleep(60);\n"
            .to_string(),
    )]);
    let child = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .spawn();
    let sleeping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event = 'PgSleep'",
        db.name
    );
    assert!(
        wait_until(std::time::Duration::from_secs(30), || db.value(&sleeping)
            == "1"),
        "the migration never reached its sleep"
    );
    send_signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("were kept"), "{message}");
    assert!(
        !message.contains("its transaction rolled back"),
        "{message}"
    );
    assert_eq!(
        db.value("SELECT to_regclass('public.made') IS NOT NULL"),
        "t"
    );
}

/// A migration that uses the extension the role cannot create does not rebuild without it: the
/// schema check is skipped with the reason, and the other checks still decide.
#[test]
fn a_migration_using_an_extension_the_role_cannot_create_skips_only_the_schema_check() {
    let owner = Role::creator("advextuse");
    let db = TestDb::owned_by("advextuse", &owner);
    let url = owner.url_for(&db);
    db.exec("CREATE EXTENSION pg_buffercache");
    let dir = migrations_with(&[(
        "20300101000001_buffers.sql",
        "-- migrate:up\nCREATE VIEW public.buffers AS SELECT count(*) AS n FROM pg_buffercache;\n",
    )]);
    migrate_as_owner(&url, Some(dir.path()));
    let run = dhctl(&url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    let report = run.json();
    let schema = check(&report, "schema");
    assert_eq!(schema["status"], "skipped", "{report:#}");
    assert!(
        schema["summary"]
            .as_str()
            .unwrap()
            .contains("pg_buffercache"),
        "{schema:#}"
    );
    assert_the_other_checks_pass(&report);
    drop(db);
    drop(owner);
}
