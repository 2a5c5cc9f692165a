//! migrate, status, rollback and new, end to end against real PostgreSQL.

use std::time::{Duration, Instant};

use crate::harness::migrated_without_partitions as migrated;
use crate::harness::*;

/// The dhctl advisory lock key (src/db/lock.rs), as a test session would take it.
const LOCK_KEY: i64 = 0x6468_6374_6c5f_6d67;

/// A migration that sleeps 30 s while a table named sleep_flag exists, so a test can catch
/// dhctl mid-migration and a later run completes at once.
const SLEEPY: (&str, &str) = (
    "20240101000006_sleepy.sql",
    "-- migrate:up\nCREATE TABLE sleepy_made();\nSELECT pg_sleep(30) FROM pg_class WHERE relname = 'sleep_flag';\n-- migrate:down\nDROP TABLE sleepy_made;\n",
);

/// Starts `dhctl migrate` with [`SLEEPY`] pending and returns once its backend sleeps:
/// the migrations folder, the running dhctl and its backend's pid.
fn migrate_until_asleep(db: &TestDb) -> (tempfile::TempDir, std::process::Child, i32) {
    db.exec("CREATE TABLE sleep_flag()");
    let dir = migrations_with(&[SLEEPY]);
    let child = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .spawn();
    let backend = sleeping_backend(db);
    (dir, child, backend)
}

/// Waits until a dhctl backend is running pg_sleep in `db`, returning its pid.
fn sleeping_backend(db: &TestDb) -> i32 {
    let mut pid = None;
    let found = wait_until(Duration::from_secs(20), || {
        pid = db
            .column(&format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'dhctl' AND query LIKE '%pg_sleep%' AND state = 'active'",
                db.name
            ))
            .into_iter()
            .next()
            .map(|p| p.parse().unwrap());
        pid.is_some()
    });
    assert!(found, "dhctl never reached the sleeping migration");
    pid.unwrap()
}

fn advisory_lock_holders(db: &TestDb) -> usize {
    db.column(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{}'",
        db.name
    ))[0]
        .parse()
        .unwrap()
}

#[test]
fn migrate_creates_the_gateway_schema_and_a_second_run_changes_nothing() {
    let db = migrated("schema");
    let tables = db.tables();
    for t in GATEWAY_TABLES {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
    assert_eq!(db.history().len(), 5);
    // The seed's columns, in order, with their types and nullability.
    let columns = |table: &str| {
        db.column(&format!(
            "SELECT column_name || ' ' || data_type || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END \
             FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
        ))
        .join(", ")
    };
    assert_eq!(
        columns("api_keys"),
        "id uuid not null, name character varying not null, key_hash character varying not null, \
         key_prefix character varying not null, scopes ARRAY not null, rate_limit_tier character varying, \
         is_active boolean, expires_at timestamp with time zone, last_used_at timestamp with time zone, \
         created_at timestamp with time zone, updated_at timestamp with time zone, created_by character varying, metadata jsonb"
    );
    assert_eq!(
        columns("request_logs"),
        "id uuid not null, api_key_id uuid, request_id character varying not null, method character varying not null, \
         path character varying not null, query_params jsonb, request_headers jsonb, request_body jsonb, \
         response_status integer, response_headers jsonb, response_body jsonb, response_time_ms integer, \
         ip_address inet, user_agent character varying, created_at timestamp with time zone not null"
    );
    assert_eq!(
        columns("webhooks"),
        "id uuid not null, api_key_id uuid, url character varying not null, secret character varying not null, \
         events ARRAY not null, is_active boolean, description character varying, \
         created_at timestamp with time zone, updated_at timestamp with time zone"
    );
    assert_eq!(
        columns("webhook_events"),
        "id uuid not null, name character varying not null, description character varying, payload_schema jsonb, \
         created_at timestamp with time zone"
    );
    assert_eq!(
        columns("webhook_deliveries"),
        "id uuid not null, webhook_id uuid not null, event_type character varying not null, payload jsonb not null, \
         response_status integer, response_body text, response_time_ms integer, attempt_count integer, \
         next_retry_at timestamp with time zone, status character varying, error_message text, \
         created_at timestamp with time zone not null, delivered_at timestamp with time zone"
    );
    assert_eq!(
        columns("rate_limits"),
        "id uuid not null, api_key_id uuid, endpoint_pattern character varying, requests_per_minute integer, \
         requests_per_hour integer, requests_per_day integer, created_at timestamp with time zone, \
         updated_at timestamp with time zone"
    );
    assert_eq!(
        columns("audit_logs"),
        "id uuid not null, api_key_id uuid, action character varying not null, resource_type character varying not null, \
         resource_id character varying, old_values jsonb, new_values jsonb, ip_address inet, \
         user_agent character varying, created_at timestamp with time zone"
    );
    // The seed's indexes and constraints, and the partitioning.
    let indexes =
        db.column("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1");
    for index in [
        "idx_api_keys_key_prefix",
        "idx_api_keys_is_active",
        "idx_api_keys_expires_at",
        "idx_webhooks_api_key_id",
        "idx_webhooks_is_active",
        "idx_webhook_deliveries_webhook_id",
        "idx_webhook_deliveries_status",
        "idx_webhook_deliveries_next_retry",
        "idx_audit_logs_api_key_id",
        "idx_audit_logs_resource",
        "idx_audit_logs_created_at",
        "api_keys_key_hash_key",
        "webhook_events_name_key",
        "rate_limits_api_key_id_endpoint_pattern_key",
    ] {
        assert!(
            indexes.contains(&index.to_string()),
            "{index} missing from {indexes:?}"
        );
    }
    assert_eq!(
        db.column("SELECT relname || ':' || pg_get_partkeydef(oid) FROM pg_class WHERE relkind = 'p' ORDER BY 1"),
        vec!["request_logs:RANGE (created_at)", "webhook_deliveries:RANGE (created_at)"]
    );
    assert_eq!(
        db.value("SELECT confdeltype FROM pg_constraint WHERE conname = 'fk_webhook'"),
        "c"
    );
    assert_eq!(db.value("SELECT column_default FROM information_schema.columns WHERE table_name = 'api_keys' AND column_name = 'rate_limit_tier'"), "'standard'::character varying");
    let again = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    again.expect_code(0);
    assert_eq!(again.json()["steps"].as_array().unwrap().len(), 0);
    assert_eq!(again.json()["applied_before"], 5);
}

#[test]
fn eight_runners_at_once_apply_every_migration_exactly_once() {
    for _round in 0..5 {
        let db = TestDb::new("race");
        race(8, || dhctl(&db.url).args(["migrate", "--no-partitions"]));
        assert_eq!(
            db.history(),
            vec![
                20240101000001,
                20240101000002,
                20240101000003,
                20240101000004,
                20240101000005
            ]
        );
        assert_eq!(
            db.value("SELECT count(*) FROM refinery_schema_history"),
            "5"
        );
    }
}

#[test]
fn eight_runners_race_to_create_a_missing_database() {
    let db = TestDb::unique("race_create");
    race(8, || dhctl(&db.url).args(["migrate", "--no-partitions"]));
    assert_eq!(db.history().len(), 5);
}

#[test]
fn a_failing_migration_names_file_and_line_and_leaves_nothing_behind() {
    let db = TestDb::new("syntax");
    let bad = "-- migrate:up\nCREATE TABLE half_done (id int);\nSELEC 1;\n-- migrate:down\nDROP TABLE half_done;\n";
    let dir = migrations_with(&[("20240101000006_broken.sql", bad)]);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("20240101000006_broken.sql:3"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("42601"), "{}", run.stderr);
    assert_eq!(db.history().len(), 5, "earlier migrations stay applied");
    assert!(
        !db.tables().contains(&"half_done".to_string()),
        "nothing of the failing migration remains"
    );
    std::fs::write(
        dir.path().join("20240101000006_broken.sql"),
        bad.replace("SELEC 1", "SELECT 1"),
    )
    .unwrap();
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 6);
}

#[test]
fn a_session_the_server_ends_mid_migration_is_not_blamed_on_the_file() {
    // The backend ends while the pipelined statements run (here the migration ends its own
    // backend, as an operator's pg_terminate_backend would): nothing is kept, the next run
    // applies it, and the hint says the session ended rather than "fix the file".
    let db = TestDb::new("terminated");
    let up = "-- migrate:up\nCREATE TABLE before_it (id int);\n\
              SELECT pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid()) \
              FROM pg_catalog.pg_tables WHERE tablename = 'marker';\nCREATE TABLE after_it (id int);\n";
    db.exec("CREATE TABLE public.marker ()");
    let dir = migrations_with(&[("20240101000006_terminated.sql", up)]);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("20240101000006_terminated.sql:3:")
            && run.stderr.contains("the server ended dhctl's session")
            && !run.stderr.contains("fix the file"),
        "{}",
        run.stderr
    );
    let tables = db.tables();
    assert!(!tables.contains(&"before_it".to_string()), "{tables:?}");
    assert_eq!(db.history().len(), 5);
    db.exec("DROP TABLE public.marker");
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 6);
}

#[test]
fn a_section_may_set_its_transaction_s_isolation_level_first() {
    // SET TRANSACTION ISOLATION LEVEL must come before any query of the transaction; dhctl's own
    // look at the transaction (its id) must not be that query.
    let db = TestDb::new("isolation_first");
    let up = "-- migrate:up\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL transaction_deferrable = on;\n\
              CREATE TABLE isolated AS SELECT pg_catalog.current_setting('transaction_isolation') AS level;\n\
              -- migrate:down\nSET TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nDROP TABLE isolated;\n";
    let dir = migrations_with(&[("20240101000006_isolated.sql", up)]);
    let migrate = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run();
    migrate.expect_code(0);
    assert_eq!(db.value("SELECT level FROM isolated"), "serializable");
    assert_eq!(db.history().len(), 6);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["rollback"])
        .run()
        .expect_code(0);
    assert!(!db.tables().contains(&"isolated".to_string()));
    assert_eq!(db.history().len(), 5);
}

#[test]
fn a_rollback_to_savepoint_behind_a_failure_does_not_let_later_statements_run() {
    // ROLLBACK TO SAVEPOINT is the one statement an aborted transaction accepts, and it makes
    // the transaction usable again: sent in the same pipeline as a failure before it, it would
    // let every statement behind it run (a sequence's nextval stays, rollback or not), where
    // psql would have stopped at the failure.
    let db = TestDb::new("savepoint_pipeline");
    let bad = "-- migrate:up\nCREATE TABLE first_one (id int);\nSAVEPOINT s;\nSELECT 1/0;\nROLLBACK TO SAVEPOINT s;\nSELECT nextval('public.outside');\nCREATE TABLE after_it (id int);\n";
    the_pipeline_stops_at_the_failure(&db, "20240101000006_savepoint.sql", bad, 4, "22012");
    // A savepoint rolled back to on purpose still works, in each of its spellings (WORK and
    // TRANSACTION are noise words, not the end of the transaction): the statements behind it run.
    let good = "-- migrate:up\nCREATE TABLE first_one (id int);\nSAVEPOINT s;\nCREATE TABLE undone (id int);\nROLLBACK TO s;\nSAVEPOINT t;\nCREATE TABLE undone_too (id int);\nROLLBACK WORK TO SAVEPOINT t;\nSAVEPOINT u;\nCREATE TABLE undone_again (id int);\nrollback transaction to u;\nCREATE TABLE after_it (id int);\n";
    let dir = migrations_with(&[("20240101000006_savepoint.sql", good)]);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let tables = db.tables();
    assert!(
        tables.contains(&"first_one".to_string())
            && tables.contains(&"after_it".to_string())
            && !tables.iter().any(|t| t.starts_with("undone")),
        "{tables:?}"
    );
}

#[test]
fn statements_sent_behind_a_failing_one_never_run_and_the_error_names_the_failing_one() {
    // dhctl sends a migration's statements at once; the ones behind a failure must be refused
    // by the aborted transaction, not run. A sequence shows it: nextval is not rolled back.
    let db = TestDb::new("pipelined");
    let bad = "-- migrate:up\nCREATE TABLE first_one (id int);\n\nINSERT INTO nowhere VALUES (1);\nSELECT nextval('public.outside');\nCREATE TABLE after_it (id int);\n";
    the_pipeline_stops_at_the_failure(&db, "20240101000006_broken.sql", bad, 4, "42P01");
}

/// Applies `file` (whose statements use the sequence public.outside) on top of the seed's five:
/// it must fail at `line` with `sqlstate`, and nothing behind the failure may have run (nextval
/// is not rolled back, so the sequence shows it), nor anything of the migration be kept.
fn the_pipeline_stops_at_the_failure(
    db: &TestDb,
    file: &str,
    sql: &str,
    line: usize,
    sqlstate: &str,
) {
    db.exec("CREATE SEQUENCE public.outside");
    let dir = migrations_with(&[(file, sql)]);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!("{file}:{line}:")) && run.stderr.contains(sqlstate),
        "{}",
        run.stderr
    );
    assert_eq!(db.value("SELECT is_called FROM public.outside"), "f");
    let tables = db.tables();
    assert!(
        !tables.contains(&"first_one".to_string()) && !tables.contains(&"after_it".to_string()),
        "{tables:?}"
    );
    assert_eq!(db.history().len(), 5, "earlier migrations stay applied");
}

#[test]
fn kill_9_mid_migration_leaves_no_partial_migration_and_no_stale_lock() {
    let db = migrated("kill9");
    let (dir, mut child, backend) = migrate_until_asleep(&db);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // client_connection_check_interval makes the orphaned backend notice within about a second.
    let gone = wait_until(Duration::from_secs(10), || {
        db.value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}"
        )) == "0"
    });
    assert!(
        gone,
        "the killed runner's backend kept running its statement"
    );
    assert_eq!(advisory_lock_holders(&db), 0, "no stale lock");
    assert!(
        !db.tables().contains(&"sleepy_made".to_string()),
        "no partial migration"
    );
    db.exec("DROP TABLE sleep_flag");
    let next = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--lock-wait", "5s"])
        .run();
    next.expect_code(0);
    assert_eq!(db.history().len(), 6);
}

#[test]
fn a_terminated_backend_is_a_clear_error_and_the_next_run_completes() {
    let db = migrated("terminate");
    let (dir, child, backend) = migrate_until_asleep(&db);
    db.exec(&format!("SELECT pg_terminate_backend({backend})"));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("20240101000006_sleepy"), "{stderr}");
    assert!(stderr.contains("terminat"), "{stderr}");
    assert!(!db.tables().contains(&"sleepy_made".to_string()));
    db.exec("DROP TABLE sleep_flag");
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 6);
}

#[test]
fn sigint_cancels_the_running_migration_releases_the_lock_and_exits_130() {
    let db = migrated("sigint");
    let (_dir, child, backend) = migrate_until_asleep(&db);
    let signalled = Instant::now();
    send_signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = wait_until(Duration::from_secs(5), || {
        db.value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}"
        )) == "0"
    });
    assert!(
        gone && signalled.elapsed() < Duration::from_secs(10),
        "the cancelled backend lingered"
    );
    assert_eq!(advisory_lock_holders(&db), 0);
    assert!(!db.tables().contains(&"sleepy_made".to_string()));
}

#[test]
fn a_held_lock_makes_migrate_exit_3_naming_the_holder() {
    let db = TestDb::new("lockbusy");
    let mut holder = db.client();
    holder
        .batch_execute("SET application_name = 'dba-console'")
        .unwrap();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let run = dhctl(&db.url)
        .args([
            "migrate",
            "--no-partitions",
            "--lock-wait",
            "1s",
            "--format",
            "json",
        ])
        .run();
    run.expect_code(3);
    assert!(
        run.took >= Duration::from_millis(900) && run.took < Duration::from_secs(5),
        "took {:?}",
        run.took
    );
    let error = &run.json()["error"];
    assert_eq!(error["holder"]["pid"], holder_pid);
    assert_eq!(error["holder"]["application_name"], "dba-console");
    assert!(
        run.stderr.contains(&format!("pid {holder_pid}")),
        "{}",
        run.stderr
    );
    assert!(
        db.column("SELECT to_regclass('refinery_schema_history')::text")[0] == "NULL",
        "nothing was read or changed"
    );
}

#[test]
fn a_conflicting_table_lock_is_retried_then_given_up_without_blocking_readers() {
    let db = migrated("tablelock");
    let alter = ("20240101000006_add_label.sql", "-- migrate:up\nALTER TABLE api_keys ADD COLUMN label text;\n-- migrate:down\nALTER TABLE api_keys DROP COLUMN label;\n");
    let dir = migrations_with(&[alter]);
    // A long transaction that has read api_keys: ACCESS SHARE, which ALTER TABLE must wait for.
    let mut long_reader = db.client();
    let mut tx = long_reader.transaction().unwrap();
    tx.query("SELECT count(*) FROM api_keys", &[]).unwrap();
    let child = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args([
            "migrate",
            "--no-partitions",
            "--lock-timeout",
            "300ms",
            "--lock-retries",
            "3",
        ])
        .spawn();
    // Meanwhile, the gateway keeps reading: each read may queue behind dhctl's lock request for at
    // most about lock_timeout.
    let mut reader = db.client();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        let t = Instant::now();
        reader.query("SELECT count(*) FROM api_keys", &[]).unwrap();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("55P03") && stderr.contains("4 attempts"),
        "{stderr}"
    );
    // dhctl stayed in its retry loop for at least four lock_timeouts; a reader queues behind one
    // lock request at most (about 300 ms), never behind the whole loop. A ratio of the run's own
    // time rather than a bound in milliseconds, so a loaded machine cannot fail it.
    let ran = started.elapsed();
    assert!(
        ran >= Duration::from_millis(4 * 300) && worst < ran / 2,
        "a reader was blocked for {worst:?} of the {ran:?} dhctl waited"
    );
    tx.rollback().unwrap();
    assert_eq!(db.history().len(), 5);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
}

#[test]
fn an_unreachable_server_fails_fast_and_never_shows_the_password() {
    let url = "postgres://postgres:hunter2@127.0.0.1:1/nowhere";
    let run = dhctl(url).args(["migrate"]).run();
    run.expect_code(2);
    assert!(run.took < Duration::from_secs(5), "took {:?}", run.took);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"));
    let waited = dhctl(url)
        .args(["migrate", "--wait", "2s", "--format", "json"])
        .run();
    waited.expect_code(2);
    assert!(
        waited.took >= Duration::from_millis(1900) && waited.took < Duration::from_secs(8),
        "took {:?}",
        waited.took
    );
    assert!(!waited.stderr.contains("hunter2") && !waited.stdout.contains("hunter2"));
}

#[test]
fn bad_credentials_fail_at_once_even_with_wait() {
    let db = TestDb::new("badrole");
    let url = with_user(
        &with_dbname(&server_url(), &db.name),
        "no_such_role_x",
        Some("pw"),
    );
    let run = dhctl(&url).args(["status", "--wait", "30s"]).run();
    run.expect_code(2);
    assert!(
        run.took < Duration::from_secs(5),
        "retried a permanent error: {:?}",
        run.took
    );
    assert!(run.stderr.contains("no_such_role_x"), "{}", run.stderr);
}

#[test]
fn bad_catalogs_are_reported_by_file_before_connecting() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("bad_name.sql", b"SELECT 1;", "not a migration name"),
        ("20240101000005_dup.sql", b"SELECT 1;", "also used by"),
        (
            "20240101000006_empty.sql",
            b"-- migrate:up\n\n-- migrate:down\nSELECT 1;",
            "up section is empty",
        ),
        (
            "20240101000006_latin1.sql",
            b"SELECT '\xe9';",
            "not valid UTF-8",
        ),
        (
            "20240101000006_marker.sql",
            b"-- migrate:sideways\nSELECT 1;",
            "looks like a marker",
        ),
    ];
    let db = TestDb::new("badcatalog");
    for (name, bytes, expected) in cases {
        let dir = migrations_with(&[]);
        std::fs::write(dir.path().join(name), bytes).unwrap();
        // Against a real database: nothing may change.
        let run = dhctl(&db.url)
            .migrations_dir(dir.path())
            .args(["migrate"])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(name) && run.stderr.contains(expected),
            "{name}: {}",
            run.stderr
        );
        assert!(db.tables().is_empty(), "{name}: the database changed");
        // Against no server at all: the catalog error comes first, so no connection was tried.
        let offline = dhctl("postgres://postgres@127.0.0.1:1/x")
            .migrations_dir(dir.path())
            .args(["status"])
            .run();
        offline.expect_code(2);
        assert!(
            offline.stderr.contains(name) && !offline.stderr.contains("cannot connect"),
            "{name}: {}",
            offline.stderr
        );
    }
}

#[test]
fn an_edited_applied_file_is_drift_that_migrate_refuses() {
    let db = migrated("drift");
    let dir = migrations_with(&[]);
    let file = dir.path().join("20240101000003_create_webhooks.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("description VARCHAR(500),", "description VARCHAR(600),"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("20240101000006_more.sql"),
        "CREATE TABLE more_stuff();",
    )
    .unwrap();
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run();
    run.expect_code(4);
    assert!(
        run.stderr
            .contains("20240101000003_create_webhooks.sql was modified"),
        "{}",
        run.stderr
    );
    assert!(
        !db.tables().contains(&"more_stuff".to_string()),
        "migrate changed something"
    );
    let status = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    status.expect_code(4);
    let states: Vec<String> = status.json()["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states,
        ["applied", "applied", "modified", "applied", "applied", "pending"]
    );
    // CRLF line endings are not drift.
    let crlf_dir = migrations_with(&[]);
    for entry in std::fs::read_dir(crlf_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace('\n', "\r\n")).unwrap();
    }
    dhctl(&db.url)
        .migrations_dir(crlf_dir.path())
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
}

#[test]
fn a_deleted_applied_file_is_missing() {
    let db = migrated("missing");
    let dir = migrations_with(&[]);
    // An older file: a missing newest one would mean the database is ahead of the release.
    std::fs::remove_file(dir.path().join("20240101000003_create_webhooks.sql")).unwrap();
    let status = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    status.expect_code(4);
    assert_eq!(status.json()["migrations"][2]["state"], "missing");
    assert_eq!(status.json()["counts"]["missing"], 1);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(4);
}

#[test]
fn status_exit_codes_and_json() {
    let db = TestDb::new("status");
    let fresh = dhctl(&db.url)
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    fresh.expect_code(1);
    assert_eq!(fresh.json()["history_table"], false);
    assert_eq!(fresh.json()["counts"]["pending"], 5);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--to", "20240101000004"])
        .run()
        .expect_code(0);
    let one_pending = dhctl(&db.url)
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    one_pending.expect_code(1);
    assert_eq!(one_pending.json()["counts"]["pending"], 1);
    assert_eq!(one_pending.json()["migrations"][0]["state"], "applied");
    assert!(one_pending.json()["migrations"][0]["applied_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    dhctl(&db.url).args(["status"]).run().expect_code(0);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let human = dhctl(&db.url).args(["status", "--exit-code"]).run();
    human.expect_code(0);
    assert!(
        human.stdout.contains("5 applied, 0 pending"),
        "{}",
        human.stdout
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let db = TestDb::new("dryrun");
    let run = dhctl(&db.url)
        .args(["migrate", "--dry-run", "--verbose", "--format", "json"])
        .run();
    run.expect_code(0);
    let plan = run.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["steps"].as_array().unwrap().len(), 5);
    assert!(plan["steps"][0]["sql"]
        .as_str()
        .unwrap()
        .contains("CREATE TABLE api_keys"));
    assert!(db.tables().is_empty());
    assert_eq!(
        db.column("SELECT to_regclass('refinery_schema_history')::text")[0],
        "NULL"
    );
}

#[test]
fn rollback_one_step_to_a_version_and_dry_run() {
    let db = migrated("rollback");
    let dry = dhctl(&db.url)
        .args(["rollback", "--dry-run", "--format", "json"])
        .run();
    dry.expect_code(0);
    assert_eq!(dry.json()["steps"][0]["version"], 20240101000005_i64);
    assert!(
        db.tables().contains(&"audit_logs".to_string()),
        "dry run changed something"
    );
    dhctl(&db.url).args(["rollback"]).run().expect_code(0);
    assert_eq!(db.history().len(), 4);
    assert!(
        !db.tables().contains(&"audit_logs".to_string())
            && !db.tables().contains(&"rate_limits".to_string())
    );
    dhctl(&db.url)
        .args(["rollback", "--to", "20240101000001"])
        .run()
        .expect_code(0);
    assert_eq!(db.history(), vec![20240101000001]);
    assert_eq!(db.tables(), vec!["api_keys", "refinery_schema_history"]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 5);
}

#[test]
fn rollback_refuses_without_a_down_section_before_running_any_sql() {
    let db = migrated("nodown");
    let dir = migrations_with(&[("20240101000006_one_way.sql", "CREATE TABLE one_way();")]);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["rollback", "--steps", "2"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("20240101000006_one_way.sql")
            && run.stderr.contains("no `-- migrate:down`"),
        "{}",
        run.stderr
    );
    assert_eq!(db.history().len(), 6, "nothing was rolled back");
    assert!(
        db.tables().contains(&"one_way".to_string())
            && db.tables().contains(&"audit_logs".to_string())
    );
}

#[test]
fn a_transaction_false_migration_runs_create_index_concurrently() {
    let db = migrated("cic");
    let cic = (
        "20240101000006_index_api_keys_name.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_name ON api_keys (name);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_created_by ON api_keys (created_by);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY IF EXISTS idx_api_keys_created_by;\nDROP INDEX CONCURRENTLY IF EXISTS idx_api_keys_name;\n",
    );
    let dir = migrations_with(&[cic]);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.value("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname IN ('idx_api_keys_name', 'idx_api_keys_created_by') AND i.indisvalid"), "2");
    assert_eq!(db.history().len(), 6);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["rollback"])
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname = 'idx_api_keys_name'"),
        "0"
    );
}

#[test]
fn migrate_creates_a_missing_database_unless_told_not_to() {
    let db = TestDb::unique("create");
    let refused = dhctl(&db.url)
        .args(["migrate", "--no-create-database"])
        .run();
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("does not exist"),
        "{}",
        refused.stderr
    );
    assert!(!db.exists());
    // A dry run shows what migrate would do to a database that does not exist yet.
    let dry = dhctl(&db.url)
        .args(["migrate", "--dry-run", "--format", "json"])
        .run();
    dry.expect_code(0);
    assert_eq!(dry.json()["creates_database"], true);
    assert_eq!(dry.json()["steps"].as_array().unwrap().len(), 5);
    assert!(!db.exists(), "the dry run created the database");
    let run = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["creates_database"], true);
    assert!(db.exists());
    assert_eq!(db.history().len(), 5);
    let again = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    assert_eq!(again.json()["creates_database"], false);
}

#[test]
fn new_writes_a_timestamped_file_with_both_markers() {
    let dir = tempfile::tempdir().unwrap();
    let run = dhctl("postgres://unused@127.0.0.1:1/x")
        .migrations_dir(dir.path())
        .args(["new", "add_api_keys_label", "--format", "json"])
        .run();
    run.expect_code(0);
    let path = std::path::PathBuf::from(run.json()["path"].as_str().unwrap());
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.ends_with("_add_api_keys_label.sql")
            && name.len() == "20261126000000_add_api_keys_label.sql".len(),
        "{name}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("-- migrate:up") && text.contains("-- migrate:down"));
    let bad = dhctl("postgres://unused@127.0.0.1:1/x")
        .migrations_dir(dir.path())
        .args(["new", "Add Label"])
        .run();
    bad.expect_code(2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn every_subcommand_documents_itself_without_showing_the_password() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["rollback", "--help"],
        vec!["status", "--help"],
        vec!["verify", "--help"],
        vec!["new", "--help"],
        vec!["partition", "create", "--help"],
        vec!["partition", "prune", "--help"],
        vec!["partition", "status", "--help"],
    ] {
        let run = dhctl("postgres://u:sup3rsecret@127.0.0.1:1/x")
            .args(&args)
            .run();
        run.expect_code(0);
        assert!(run.stdout.contains("Usage:"), "{args:?}");
        assert!(
            !run.stdout.contains("sup3rsecret"),
            "{args:?} shows the password"
        );
    }
    let usage = dhctl("postgres://x@127.0.0.1:1/x")
        .args(["migrate", "--bogus"])
        .run();
    usage.expect_code(2);
}

#[test]
fn wait_keeps_retrying_until_the_server_appears() {
    use crate::health::support::{closed_port, Proxy};
    let db = TestDb::new("waitheal");
    let (host, server_port) = host_port(&db.url);
    let upstream: std::net::SocketAddr = format!("{host}:{server_port}").parse().unwrap();
    // The database is reached through a port where nothing listens yet.
    let port = closed_port();
    let url = with_host_port(&db.url, "127.0.0.1", port);
    let started = Instant::now();
    let child = dhctl(&url)
        .args(["migrate", "--no-partitions", "--wait", "30s"])
        .spawn();
    std::thread::sleep(Duration::from_millis(1500));
    let _proxy = Proxy::start(port, upstream);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(db.history().len(), 5);
}

#[test]
fn a_dotenv_file_configures_dhctl_and_the_environment_wins_over_it() {
    let db = migrated("dotenv");
    // From .env alone.
    let from_file = dhctl("unused")
        .without_database_url()
        .dotenv(&format!(
            "# comment\nDATABASE_URL={}\nDHCTL_FORMAT=json\n",
            db.url
        ))
        .args(["status", "--exit-code"])
        .run();
    from_file.expect_code(0);
    assert_eq!(from_file.json()["counts"]["applied"], 5);
    // A real variable wins over the file.
    let env_wins = dhctl(&db.url)
        .dotenv("DATABASE_URL=postgres://nobody@127.0.0.1:1/nowhere\n")
        .args(["status", "--exit-code"])
        .run();
    env_wins.expect_code(0);
    // A malformed file is an error naming it, before anything connects.
    let broken = dhctl(&db.url)
        .dotenv("DATABASE_URL='unterminated\n")
        .args(["status"])
        .run();
    broken.expect_code(2);
    assert!(broken.stderr.contains(".env"), "{}", broken.stderr);
    // No database at all: a clear usage error.
    let none = dhctl("unused")
        .without_database_url()
        .args(["status"])
        .run();
    none.expect_code(2);
    assert!(none.stderr.contains("DATABASE_URL"), "{}", none.stderr);
}

#[test]
fn rollback_retries_a_conflicting_lock_then_gives_up_leaving_everything_applied() {
    let db = migrated("rollbacklock");
    let mut reader = db.client();
    let mut tx = reader.transaction().unwrap();
    tx.query("SELECT count(*) FROM audit_logs", &[]).unwrap();
    let run = dhctl(&db.url)
        .args(["rollback", "--lock-timeout", "200ms", "--lock-retries", "1"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("rolling back 20240101000005_create_rate_limits_audit_logs.sql failed")
            && run.stderr.contains("55P03"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.history().len(),
        5,
        "the down section's transaction was rolled back"
    );
    assert!(db.tables().contains(&"rate_limits".to_string()));
    tx.rollback().unwrap();
    dhctl(&db.url).args(["rollback"]).run().expect_code(0);
    assert_eq!(db.history().len(), 4);
}
