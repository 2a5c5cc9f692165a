//! High availability: multi-host URLs, standbys and failover (docs/failover.md). A primary of
//! the test's own streams to a hot standby cloned with `pg_basebackup -R` (tests/it/cluster.rs);
//! the tests that need no standby use the shared server.

use std::io::BufRead;
use std::time::Duration;

use crate::cluster::{primary_and_standby, Cluster};
use crate::harness::{dhctl, send_signal, shipped_migrations, with_param, TestDb};

/// Rows in the history table of `app`, or 0 when there is none.
fn history_rows(cluster: &Cluster) -> usize {
    let exists = cluster.value(
        "app",
        "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
    );
    if exists != "t" {
        return 0;
    }
    cluster
        .value("app", "SELECT count(*) FROM refinery_schema_history")
        .parse()
        .unwrap()
}

fn json_keys(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                into.push(key.clone());
                json_keys(inner, into);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_keys(i, into)),
        _ => {}
    }
}

#[test]
fn a_multi_host_url_that_lists_the_standby_first_migrates_the_primary_and_waits_for_it() {
    let (primary, standby) = primary_and_standby();
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{},127.0.0.1:{}/app",
        standby.port, primary.port
    );
    let run = dhctl(&url)
        .args(["migrate", "--format", "json", "--wait-replicas", "60s"])
        .run();
    run.expect_code(0);
    let doc = run.json();
    eprintln!(
        "TIMING took {:?} replicas {} duration {}",
        run.took, doc["replicas"], doc["duration_ms"]
    );
    assert_eq!(history_rows(&primary), shipped_migrations());
    // The guarantee of --wait-replicas: when migrate returns, the standby has the schema.
    assert_eq!(history_rows(&standby), shipped_migrations());
    let replicas = &doc["replicas"];
    assert_eq!(replicas["caught_up"], true, "{doc}");
    let standbys = replicas["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1, "{doc}");
    assert_eq!(standbys[0]["application_name"], "standby1");
    assert_eq!(standbys[0]["client_addr"], "127.0.0.1");
    assert_eq!(standbys[0]["lag_bytes"], 0);
    assert_eq!(standbys[0]["caught_up"], true);
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    let vocabulary = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"),
    )
    .unwrap();
    let mut keys = Vec::new();
    json_keys(replicas, &mut keys);
    keys.push("replicas".into());
    for key in keys {
        assert!(
            vocabulary.contains(&format!("`{key}`")),
            "docs/json.md does not define {key}"
        );
    }

    // The key=value form, standby first: a second run finds the primary up to date.
    let pairs = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=app",
        standby.port, primary.port
    );
    let again = dhctl(&pairs).args(["migrate", "--format", "json"]).run();
    again.expect_code(0);
    assert_eq!(again.json()["steps"].as_array().unwrap().len(), 0);

    // A reading command asking for read-write lands on the primary, the second host: verify
    // rebuilds in a scratch database there and compares.
    let verify = dhctl(&format!("{url}?target_session_attrs=read-write"))
        .args(["verify", "--format", "json", "--require-all"])
        .run();
    verify.expect_code(0);
    assert_eq!(verify.json()["scratch"], "database");

    // A multi-host --scratch-url, standby first: the scratch database is looked for on the
    // writable host.
    primary
        .admin()
        .batch_execute("CREATE DATABASE scratch")
        .unwrap();
    let scratch = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/scratch",
        standby.port, primary.port
    );
    let on_standby = format!("postgres://postgres@127.0.0.1:{}/app", standby.port);
    assert!(crate::harness::wait_until(
        Duration::from_secs(60),
        || standby.value(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'scratch'"
        ) == "1"
    ));
    let verify = dhctl(&on_standby)
        .args([
            "verify",
            "--format",
            "json",
            "--require-all",
            "--scratch-url",
            &scratch,
        ])
        .run();
    verify.expect_code(0);
}

#[test]
fn a_standby_serves_the_reading_commands_and_refuses_the_writing_ones() {
    let (primary, standby) = primary_and_standby();
    let on_standby = format!("postgres://postgres:hunter2@127.0.0.1:{}/app", standby.port);
    // Never migrated: status reads no history table, and creates none on the standby.
    let status = dhctl(&on_standby)
        .args(["status", "--format", "json"])
        .run();
    status.expect_code(0);
    assert_eq!(status.json()["history_table"], false);
    dhctl(&primary.url("app"))
        .args(["migrate", "--wait-replicas", "60s"])
        .run()
        .expect_code(0);
    let applied = history_rows(&primary);

    let status = dhctl(&on_standby)
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    status.expect_code(0);
    assert_eq!(
        status.json()["counts"]["applied"].as_u64().unwrap() as usize,
        applied
    );
    dhctl(&on_standby)
        .args(["partition", "status", "--format", "json"])
        .run()
        .expect_code(0);
    dhctl(&on_standby)
        .args(["lint", "--pending", "--format", "json"])
        .run()
        .expect_code(0);
    // verify: every check but the schema rebuild, which needs a writable server.
    let verify = dhctl(&on_standby)
        .args(["verify", "--format", "json"])
        .run();
    verify.expect_code(0);
    let checks = verify.json()["checks"].as_array().unwrap().clone();
    let schema = checks.iter().find(|c| c["name"] == "schema").unwrap();
    assert_eq!(schema["status"], "skipped", "{schema}");
    let summary = schema["summary"].as_str().unwrap();
    assert!(summary.contains("standby in recovery"), "{schema}");
    dhctl(&on_standby)
        .args(["verify", "--require-all"])
        .run()
        .expect_code(1);

    for command in [
        &["migrate"][..],
        &["rollback"],
        &["partition", "create"],
        &["partition", "prune"],
        &["partition", "drain-default", "--table", "request_logs"],
        &["migrate", "--dry-run"],
    ] {
        let run = dhctl(&on_standby)
            .args(command)
            .args(["--format", "json"])
            .run();
        run.expect_code(2);
        let error = &run.json()["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("127.0.0.1:{}", standby.port)),
            "{command:?}: {message}"
        );
        assert!(message.contains("standby in recovery"), "{message}");
        assert!(message.contains("nothing was changed"), "{message}");
        let hint = error["hint"].as_str().unwrap();
        assert!(hint.contains("target_session_attrs=read-write"), "{hint}");
        assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    }
    assert_eq!(history_rows(&primary), applied, "nothing was rolled back");

    // Listing both hosts with read-only sends a reading command to the standby.
    let read_only = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-only",
        primary.port, standby.port
    );
    let status = dhctl(&read_only).args(["status", "--format", "json"]).run();
    status.expect_code(0);
}

#[test]
fn a_wait_migrate_finishes_on_the_standby_promoted_after_the_primary_stopped() {
    let (primary, standby) = primary_and_standby();
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/app?connect_timeout=2",
        primary.port, standby.port
    );
    primary.stop();
    let mut child = dhctl(&url)
        .args(["migrate", "--format", "json", "--wait", "120s", "-v"])
        .spawn();
    // Observable state, not time: dhctl has tried both hosts and been refused by the standby.
    let stderr = child.stderr.take().unwrap();
    let (seen, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            all.push_str(&line);
            all.push('\n');
            let _ = seen.send(line);
        }
        all
    });
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("dhctl logged no refused attempt");
        if line.contains("retrying") && line.contains("standby in recovery") {
            break;
        }
    }
    assert_eq!(history_rows(&standby), 0, "nothing ran on the standby");
    standby.promote();
    let out = child.wait_with_output().unwrap();
    let logged = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{logged}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["steps"].as_array().unwrap().len(),
        shipped_migrations(),
        "{doc}"
    );
    assert_eq!(standby.value("app", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(history_rows(&standby), shipped_migrations());
}

#[test]
fn wait_replicas_times_out_naming_a_standby_whose_replay_is_paused() {
    let (primary, standby) = primary_and_standby();
    standby.pause_replay();
    let run = dhctl(&primary.url("app"))
        .args(["migrate", "--format", "json", "--wait-replicas", "1s"])
        .run();
    run.expect_code(2);
    let doc = run.json();
    // The migrations are committed on the primary, and the report says so.
    assert_eq!(history_rows(&primary), shipped_migrations());
    let report = &doc["report"];
    assert_eq!(
        report["steps"].as_array().unwrap().len(),
        shipped_migrations(),
        "{doc}"
    );
    assert_eq!(report["replicas"]["caught_up"], false, "{doc}");
    let standbys = report["replicas"]["standbys"].as_array().unwrap();
    assert_eq!(standbys[0]["caught_up"], false, "{doc}");
    assert!(standbys[0]["lag_bytes"].as_i64().unwrap() > 0, "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("standby1"), "{message}");
    assert_eq!(history_rows(&standby), 0, "replay is paused");
    // The lock was released before the wait: another runner gets it at once.
    dhctl(&primary.url("app"))
        .args(["migrate", "--lock-wait", "1s"])
        .run()
        .expect_code(0);
    standby.value("app", "SELECT pg_wal_replay_resume()");
    dhctl(&primary.url("app"))
        .args(["migrate", "--wait-replicas", "60s"])
        .run()
        .expect_code(0);
    assert_eq!(history_rows(&standby), shipped_migrations());
}

#[test]
fn a_database_read_only_by_setting_refuses_writes_and_serves_reads() {
    let db = TestDb::new("readonly");
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
        db.name
    ));
    let run = dhctl(&db.url).args(["migrate", "--format", "json"]).run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("read-only by setting"), "{message}");
    assert!(
        message.contains("default_transaction_read_only"),
        "{message}"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"),
        "0"
    );
    dhctl(&db.url)
        .args(["status", "--format", "json"])
        .run()
        .expect_code(0);
    // With a wait that runs out, the refusal says it waited.
    let run = dhctl(&db.url)
        .args(["migrate", "--format", "json", "--wait", "1s"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("gave up after waiting"), "{message}");
}

#[test]
fn wait_replicas_with_no_standby_says_so_and_succeeds() {
    let db = TestDb::new("nostandby");
    let run = dhctl(&db.url)
        .args(["migrate", "--format", "json", "--wait-replicas", "5s"])
        .run();
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["replicas"]["caught_up"], true);
    assert_eq!(doc["replicas"]["standbys"].as_array().unwrap().len(), 0);
    let human = dhctl(&db.url)
        .args(["migrate", "--wait-replicas", "5s"])
        .run();
    human.expect_code(0);
    assert!(
        human.stdout.contains("no standby is streaming"),
        "{}",
        human.stdout
    );
    // Without the flag the key is null.
    let plain = dhctl(&db.url).args(["migrate", "--format", "json"]).run();
    assert!(plain.json()["replicas"].is_null());
}

#[test]
fn unsupported_or_contradictory_target_session_attrs_are_refused_before_connecting() {
    let db = TestDb::new("attrs");
    for value in ["standby", "prefer-standby", "primary"] {
        let url = with_param(&db.url, "target_session_attrs", value);
        let run = dhctl(&url).args(["status", "--format", "json"]).run();
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(value), "{message}");
        assert!(
            message.contains("any, read-write and read-only"),
            "{message}"
        );
    }
    let url = with_param(&db.url, "target_session_attrs", "read-only");
    let run = dhctl(&url).args(["migrate", "--format", "json"]).run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("read-only"), "{message}");
    assert!(db.tables().is_empty());
    // The shared server is a primary: read-only finds no host for a reading command either.
    let run = dhctl(&url).args(["status", "--format", "json"]).run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("read-only"), "{message}");
}

/// Sends SIGINT to a running dhctl and returns its exit code and stdout.
fn interrupt(child: std::process::Child) -> (Option<i32>, String) {
    send_signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// F5: Ctrl-C while a migration's COMMIT waits for a synchronous standby that is gone: the
/// server keeps the commit ("already committed locally"), so dhctl must not claim a rollback.
#[test]
fn interrupting_a_commit_waiting_for_a_synchronous_standby_says_it_may_be_committed() {
    let primary = Cluster::primary_with_app();
    dhctl(&primary.url("app"))
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let dir = crate::harness::migrations_with(&[(
        "20300101000001_sync_commit.sql",
        "-- migrate:up\nCREATE TABLE sync_commit (id int);\n-- migrate:down\nDROP TABLE sync_commit;\n",
    )]);
    let mut admin = primary.admin();
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'gone'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let child = dhctl(&primary.url("app"))
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .spawn();
    primary.wait_for_event("SyncRep");
    let (code, stdout) = interrupt(child);
    assert_eq!(code, Some(130), "{stdout}");
    let committed = primary.value(
        "app",
        "SELECT count(*) FROM refinery_schema_history WHERE version = 20300101000001",
    );
    assert_eq!(
        committed, "1",
        "the server keeps a commit whose sync wait is cancelled"
    );
    assert!(!stdout.contains("rolled back"), "{stdout}");
    assert!(stdout.contains("may have completed"), "{stdout}");
    assert!(stdout.contains("dhctl status"), "{stdout}");
}

/// F6: Ctrl-C during `--wait-replicas`'s wait (everything committed) says so, exit 130.
#[test]
fn interrupting_the_wait_for_standbys_says_the_migrations_are_committed() {
    let (primary, standby) = primary_and_standby();
    standby.pause_replay();
    let child = dhctl(&primary.url("app"))
        .args(["migrate", "--format", "json", "--wait-replicas", "120s"])
        .spawn();
    // The run is waiting once its session shows the wait's query on pg_stat_replication.
    assert!(crate::harness::wait_until(Duration::from_secs(90), || {
        primary.value(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'app' AND query LIKE '%FROM pg_stat_replication r%'",
        ) == "1"
    }));
    let (code, stdout) = interrupt(child);
    assert_eq!(code, Some(130), "{stdout}");
    assert!(!stdout.contains("rolled back"), "{stdout}");
    assert!(
        stdout.contains("the migrations are committed on the primary"),
        "{stdout}"
    );
    assert_eq!(history_rows(&primary), shipped_migrations());
}

/// A primary that turns read-only during a run (default_transaction_read_only switched on, as
/// some failover managers do before demoting): the next migration fails with 25006, and the hint
/// does not blame the file.
#[test]
fn a_primary_turning_read_only_mid_run_is_not_blamed_on_the_file() {
    let primary = Cluster::primary_with_app();
    dhctl(&primary.url("app"))
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let dir = crate::harness::migrations_with(&[
        (
            "20300101000001_slow.sql",
            "-- migrate:up\nSELECT pg_sleep(5);\n-- migrate:down\nSELECT 1;\n",
        ),
        (
            "20300101000002_after.sql",
            "-- migrate:up\nCREATE TABLE after_read_only (id int);\n-- migrate:down\nDROP TABLE after_read_only;\n",
        ),
    ]);
    let child = dhctl(&primary.url("app"))
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .spawn();
    primary.wait_for_event("PgSleep");
    let mut admin = primary.admin();
    admin
        .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("25006"), "{stdout}");
    assert!(!stdout.contains("fix the file"), "{stdout}");
    assert!(
        stdout.contains("turned read-only during the run"),
        "{stdout}"
    );
}
