//! Session isolation (issue 10 §1): whatever a migration SETs, in either transaction mode and in
//! its up or its down section, neither changes how dhctl records it nor outlives it. A probe
//! migration after it records the session it found; rollback and a second migrate must work.

use std::time::Duration;

use crate::harness::*;

/// The session a migration must start from: dhctl's settings (TimeZone, DateStyle,
/// IntervalStyle, lock_timeout from --lock-timeout 2s, application_name) and the server's
/// defaults for everything else.
const PROBE: &str = "concat_ws('|', current_setting('search_path'), current_setting('lock_timeout'), \
    current_setting('statement_timeout'), current_setting('TimeZone'), current_setting('DateStyle'), \
    current_setting('IntervalStyle'), current_setting('default_transaction_read_only'), \
    current_setting('application_name'), current_setting('client_min_messages'), \
    current_setting('row_security'), current_setting('check_function_bodies'), \
    current_setting('idle_in_transaction_session_timeout'), current_setting('client_encoding'), \
    current_user, session_user, \
    (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'dhctl%'), \
    (SELECT count(*) FROM pg_listening_channels()), \
    (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()))";

const EXPECTED: &str = "\"$user\", public|2s|0|UTC|ISO, MDY|postgres|off|dhctl|notice|on|on|0|UTF8|postgres|postgres|0|0|0";

/// pg_dump's header, as every pg_dump-style migration file starts.
pub const PG_DUMP_HEADER: &str = "SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
SET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\n\
SET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
SET check_function_bodies = false;\nSET xmloption = content;\nSET client_min_messages = warning;\n\
SET row_security = off;\n";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Wrapped,
    Unwrapped,
}

impl Mode {
    fn marker(self, section: &str) -> String {
        match self {
            Mode::Wrapped => format!("-- migrate:{section}"),
            Mode::Unwrapped => format!("-- migrate:{section} transaction:false"),
        }
    }
}

/// Migration 1 ends its up and its down section with `setting`; migration 2 records the session
/// it starts in and, unqualified, must land in public. Migrate, check, roll everything back,
/// migrate again.
fn nothing_outlives(label: &str, setting: &str, prepare: impl Fn(&TestDb)) {
    for mode in [Mode::Wrapped, Mode::Unwrapped] {
        let db = TestDb::new(label);
        prepare(&db);
        let dir = folder(&[
            (
                "20300101000001_sets.sql",
                format!(
                    "{}\nCREATE TABLE public.after_setting (id int);\n{setting}\n{}\nDROP TABLE public.after_setting;\n{setting}\n",
                    mode.marker("up"),
                    mode.marker("down")
                ),
            ),
            (
                "20300101000002_probe.sql",
                format!(
                    "{}\nCREATE TEMP TABLE scratch (id int);\nPREPARE dhctl_probe AS SELECT 1;\n\
                     CREATE TABLE probe AS SELECT {PROBE} AS seen;\nDEALLOCATE dhctl_probe;\n{}\nDROP TABLE probe;\n",
                    mode.marker("up"),
                    mode.marker("down")
                ),
            ),
        ]);
        let run = |args: &[&str]| dhctl(&db.url).migrations_dir(dir.path()).args(args).run();
        run(&["migrate", "--no-partitions", "--lock-timeout", "2s"]).expect_code(0);
        assert_eq!(db.history().len(), 2, "{label} {mode:?}: both recorded");
        // The probe's own temp table and prepared statement count as one each.
        let expected = EXPECTED.replace("|0|0|0", "|1|0|1");
        assert_eq!(
            db.value("SELECT seen FROM public.probe"),
            expected,
            "{label} {mode:?}: the next migration starts from dhctl's session"
        );
        assert_eq!(
            db.value("SELECT count(*) FROM pg_class WHERE relname = 'refinery_schema_history'"),
            "1",
            "{label} {mode:?}: one history table"
        );
        let status = run(&["status", "--format", "json", "--exit-code"]);
        status.expect_code(0);
        run(&["rollback", "--all"]).expect_code(0);
        assert!(db.history().is_empty(), "{label} {mode:?}: downs recorded");
        run(&["migrate", "--no-partitions", "--lock-timeout", "2s"]).expect_code(0);
        assert_eq!(db.history().len(), 2, "{label} {mode:?}: migrate again");
    }
}

#[test]
fn search_path_set_by_a_migration_does_not_outlive_it() {
    nothing_outlives(
        "sp",
        "CREATE SCHEMA IF NOT EXISTS app;\nSET search_path TO app;\nCREATE TABLE IF NOT EXISTS t (id int);",
        |_| {},
    );
}

#[test]
fn pg_dumps_set_config_search_path_does_not_outlive_it() {
    nothing_outlives(
        "sc",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        |_| {},
    );
}

#[test]
fn set_local_does_not_outlive_it() {
    nothing_outlives(
        "local",
        "SET LOCAL search_path TO pg_catalog;\nSET LOCAL statement_timeout = 600000;\nSET LOCAL lock_timeout = 0;",
        |_| {},
    );
}

#[test]
fn pg_dumps_full_header_does_not_outlive_it() {
    nothing_outlives("dump", PG_DUMP_HEADER, |_| {});
}

#[test]
fn statement_timeout_does_not_outlive_it() {
    nothing_outlives("st", "SET statement_timeout = 600000;", |_| {});
}

#[test]
fn default_transaction_read_only_does_not_outlive_it() {
    nothing_outlives("ro", "SET default_transaction_read_only = on;", |_| {});
}

#[test]
fn time_zone_and_date_styles_do_not_outlive_it() {
    nothing_outlives(
        "tz",
        "SET TimeZone = 'America/New_York';\nSET DateStyle = 'German, DMY';\nSET IntervalStyle = 'sql_standard';\nSET extra_float_digits = -3;",
        |_| {},
    );
}

#[test]
fn temp_tables_prepared_statements_and_listen_do_not_outlive_it() {
    nothing_outlives(
        "temp",
        "CREATE TEMP TABLE IF NOT EXISTS scratch (id int);\nPREPARE dhctl_probe AS SELECT 2;\nLISTEN dhctl_channel;\nDEALLOCATE dhctl_probe;\nPREPARE dhctl_other AS SELECT 3;",
        |_| {},
    );
}

/// A role the migration switches to: it may create in public but not write dhctl's history.
fn switched_role(label: &str) -> Role {
    Role::new(label, "")
}

#[test]
fn set_role_works_for_the_migration_and_history_is_written_as_dhctl() {
    let role = switched_role("setrole");
    let setting = format!("SET ROLE \"{}\";", role.name);
    let grant = |db: &TestDb| {
        db.exec(&format!(
            "GRANT CREATE ON SCHEMA public TO \"{}\"",
            role.name
        ))
    };
    nothing_outlives("role", &setting, grant);
    // The migration's own statement ran as the role it chose.
    let db = TestDb::new("roleown");
    grant(&db);
    let dir = folder(&[(
        "20300101000001_as_role.sql",
        format!("-- migrate:up\n{setting}\nCREATE TABLE public.made_by_role (id int);\n"),
    )]);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_role'"),
        role.name
    );
    assert_eq!(db.history().len(), 1);
}

#[test]
fn set_session_authorization_does_not_outlive_it() {
    let role = switched_role("sessauth");
    let setting = format!("SET SESSION AUTHORIZATION \"{}\";", role.name);
    nothing_outlives("auth", &setting, |db| {
        db.exec(&format!(
            "GRANT CREATE ON SCHEMA public TO \"{}\"",
            role.name
        ))
    });
}

/// `SET lock_timeout = 0` (in every pg_dump header) must not turn off dhctl's lock_timeout for
/// the next migration: with a conflicting lock held, that migration still gives up.
#[test]
fn a_later_migration_still_gives_up_on_a_held_lock_after_lock_timeout_0() {
    for mode in [Mode::Wrapped, Mode::Unwrapped] {
        let db = TestDb::new("lt0");
        db.exec("CREATE TABLE held (id int)");
        let dir = folder(&[
            (
                "20300101000001_zero.sql",
                format!(
                    "{}\nSET lock_timeout = 0;\nCREATE TABLE public.first (id int);\n",
                    mode.marker("up")
                ),
            ),
            (
                "20300101000002_alter.sql",
                format!(
                    "{}\nALTER TABLE public.held ADD COLUMN x int;\n",
                    mode.marker("up")
                ),
            ),
        ]);
        let mut holder = db.client();
        let mut tx = holder.transaction().unwrap();
        tx.batch_execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        let mut child = dhctl(&db.url)
            .migrations_dir(dir.path())
            .args([
                "migrate",
                "--no-partitions",
                "--format",
                "json",
                "--lock-timeout",
                "100ms",
                "--lock-retries",
                "1",
            ])
            .spawn();
        let mut status = None;
        let finished = wait_until(Duration::from_secs(60), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
        }
        tx.rollback().unwrap();
        assert!(
            finished,
            "{mode:?}: dhctl queued behind the lock: SET lock_timeout = 0 leaked"
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode:?}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("55P03"), "{mode:?}: {message}");
        assert!(message.contains("20300101000002_alter.sql:2"), "{message}");
        assert_eq!(db.history(), vec![20300101000001], "{mode:?}");
    }
}

/// Issue 10 §4: without an error position from the server, the failing statement's own line.
#[test]
fn a_failure_without_a_position_names_the_statements_line() {
    for mode in [Mode::Wrapped, Mode::Unwrapped] {
        let db = TestDb::new("line");
        let dir = folder(&[(
            "20300101000001_grant.sql",
            format!(
                "{}\nCREATE TABLE public.granted (id int);\n\n-- grant to the reader\n\
                 GRANT SELECT ON public.granted\n  TO no_such_role_anywhere;\n",
                mode.marker("up")
            ),
        )]);
        let run = dhctl(&db.url)
            .migrations_dir(dir.path())
            .args(["migrate", "--no-partitions", "--format", "json"])
            .run();
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("20300101000001_grant.sql:5:"),
            "{mode:?}: {message}"
        );
    }
}

/// An open transaction is session state too: a `transaction:false` section that opens one and
/// never commits would take dhctl's history row with it when the session ends.
#[test]
fn a_transaction_false_section_that_leaves_a_transaction_open_is_refused() {
    let db = TestDb::new("opentx");
    let dir = folder(&[(
        "20300101000001_open.sql",
        "-- migrate:up transaction:false\nBEGIN;\nCREATE TABLE public.never_committed (id int);\n"
            .to_string(),
    )]);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("25001"), "{message}");
    assert!(message.contains("20300101000001_open.sql:"), "{message}");
    assert_eq!(
        db.value("SELECT to_regclass('public.never_committed') IS NULL"),
        "t"
    );
    assert!(db.history().is_empty());
}

/// The advisory lock is dhctl's bookkeeping too: a migration that releases it fails instead of
/// letting other runners in unnoticed (and, in a transaction, leaves nothing behind).
#[test]
fn a_migration_that_releases_dhctls_lock_is_refused() {
    for mode in [Mode::Wrapped, Mode::Unwrapped] {
        let db = TestDb::new("unlock");
        let dir = folder(&[(
            "20300101000001_unlock.sql",
            format!(
                "{}\nCREATE TABLE public.made (id int);\nSELECT pg_advisory_unlock_all();\n",
                mode.marker("up")
            ),
        )]);
        let run = dhctl(&db.url)
            .migrations_dir(dir.path())
            .args(["migrate", "--no-partitions", "--format", "json"])
            .run();
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("advisory lock"), "{mode:?}: {message}");
        if let Mode::Wrapped = mode {
            assert!(db.history().is_empty(), "not recorded");
            assert_eq!(
                db.value("SELECT to_regclass('public.made') IS NULL"),
                "t",
                "nothing kept"
            );
        }
    }
}
