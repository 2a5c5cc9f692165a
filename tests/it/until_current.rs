//! `dhctl status --until-current DUR`: an application's init container waits while a Job
//! migrates. Exit 0 once nothing is pending, 1 when the time runs out, 4 at once on drift; a
//! database or history table that does not exist yet is waited for.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use crate::harness::*;

/// The waiter's stderr, line by line, as it writes them.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded, wide) for a line containing `wanted`; panics with what came instead.
fn expect_line(lines: &Receiver<String>, wanted: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {wanted:?} on stderr ({e}); saw {seen:?}"),
        }
    }
}

/// The exit code and stdout of a waiter, which must end within a wide bound.
fn finish(mut child: Child) -> (i32, String) {
    let ended = wait_until(Duration::from_secs(120), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
        panic!("the waiter did not exit");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_waiter_started_before_the_database_exists_exits_0_once_migrate_is_done() {
    let db = TestDb::unique("uc_new");
    let mut waiter = dhctl(&db.url)
        .args(["status", "--until-current", "10m", "--format", "json"])
        .spawn();
    let lines = stderr_lines(&mut waiter);
    expect_line(&lines, "waiting: the database does not exist yet");
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "still waiting after it said so"
    );
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let (code, stdout) = finish(waiter);
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["counts"]["pending"], 0);
    assert_eq!(report["counts"]["applied"], 5);
    assert_eq!(report["history_table"], true);
}

#[test]
fn a_waiter_on_a_database_without_history_waits_and_reports_one_line_per_change() {
    let db = TestDb::new("uc_empty");
    let mut waiter = dhctl(&db.url)
        .args(["status", "--until-current", "10m"])
        .spawn();
    let lines = stderr_lines(&mut waiter);
    expect_line(&lines, "waiting: 5 pending (no history table yet)");
    assert!(waiter.try_wait().unwrap().is_none());
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--to", "20240101000002"])
        .run()
        .expect_code(0);
    expect_line(&lines, "waiting: 3 pending");
    assert!(waiter.try_wait().unwrap().is_none());
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    expect_line(&lines, "current: 5 applied");
    let (code, stdout) = finish(waiter);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("5 applied, 0 pending"), "{stdout}");
    // One line per state: the three states seen, nothing repeated per poll.
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn exits_1_when_the_time_runs_out_with_migrations_pending() {
    let db = TestDb::new("uc_timeout");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--to", "20240101000003"])
        .run()
        .expect_code(0);
    let run = dhctl(&db.url)
        .args(["status", "--until-current", "2s", "--format", "json"])
        .run();
    run.expect_code(1);
    assert_eq!(run.json()["counts"]["pending"], 2);
    assert!(run.stderr.contains("waiting: 2 pending"), "{}", run.stderr);
    // A database that never appears: everything is pending when the time runs out.
    let never = TestDb::unique("uc_never");
    let run = dhctl(&never.url)
        .args(["status", "--until-current", "1s", "--format", "json"])
        .run();
    run.expect_code(1);
    assert_eq!(run.json()["counts"]["pending"], 5);
    assert!(!never.exists());
}

#[test]
fn exits_4_at_once_on_drift() {
    let db = TestDb::new("uc_drift");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--to", "20240101000003"])
        .run()
        .expect_code(0);
    db.exec("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 20240101000002");
    // Pending migrations remain, but drift ends the wait at once rather than after 10 minutes.
    let waiter = dhctl(&db.url)
        .args(["status", "--until-current", "10m", "--format", "json"])
        .spawn();
    let (code, stdout) = finish(waiter);
    assert_eq!(code, 4, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["counts"]["modified"], 1);
}

#[test]
fn an_out_of_order_migration_is_waited_for_like_a_pending_one() {
    let db = TestDb::new("uc_ooo");
    let dir = migrations_with(&[("20240101000009_newer.sql", "CREATE TABLE newer (id int);\n")]);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    std::fs::write(
        dir.path().join("20240101000008_late.sql"),
        "CREATE TABLE late (id int);\n",
    )
    .unwrap();
    let run = dhctl(&db.url)
        .args(["status", "--until-current", "1s"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(1);
    assert!(
        run.stderr.contains("waiting: 0 pending, 1 out-of-order"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dropped_connection_is_reopened_within_the_wait() {
    let db = TestDb::new("uc_drop");
    let mut waiter = dhctl(&db.url)
        .args(["status", "--until-current", "10m"])
        .spawn();
    let lines = stderr_lines(&mut waiter);
    expect_line(&lines, "waiting: 5 pending");
    let mut admin = connect(&server_url());
    let terminated = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'dhctl') t",
            &[&db.name],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(terminated, 1, "the waiter holds one connection");
    expect_line(&lines, "reconnecting");
    expect_line(&lines, "waiting: 5 pending");
    assert!(waiter.try_wait().unwrap().is_none());
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let (code, stdout) = finish(waiter);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_dbmate_database_is_named_while_waiting_for_its_adoption() {
    let db = TestDb::new("uc_dbmate");
    db.exec(
        "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); \
         INSERT INTO schema_migrations VALUES ('20240101000001')",
    );
    let run = dhctl(&db.url)
        .args(["status", "--until-current", "1s", "--format", "json"])
        .run();
    run.expect_code(1);
    assert!(
        run.stderr.contains("migrated by dbmate") && run.stderr.contains("baseline --from-dbmate"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["dbmate_table"], "public.schema_migrations");
}

/// A peer that accepts the connection and never answers (a stalled proxy or TLS terminator),
/// with no connect_timeout in the URL: the waiter gives up when its own limit runs out, exit 2
/// naming that limit (docs/operations.md), not at some later connect_timeout or never.
#[test]
fn a_peer_that_accepts_and_never_answers_ends_the_wait_at_its_limit() {
    let db = TestDb::new("uc_silent");
    // Holds every accepted socket open, reads nothing, answers nothing.
    let silent = Silent::start(false);
    let url = with_host_port(&db.url, "127.0.0.1", silent.port);
    let mut child = dhctl(&url)
        .args(["status", "--until-current", "2s"])
        .spawn();
    let ended = wait_until(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "status --until-current 2s still running 30 s later");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Either layer may notice first: the waiter's own deadline, or the connection attempt that
    // the same deadline cut short (the host walk bounds each attempt by the time left).
    assert!(
        stderr.contains("no answer before --until-current 2s ran out")
            || stderr.contains("gave up after waiting 2.0s"),
        "{stderr}"
    );
}

/// --strict is an --exit-code option: with --until-current (which counts a database ahead of
/// this release as current) it is refused, exit 2, before connecting; a conflict that comes
/// from DHCTL_UNTIL_CURRENT names the variable.
#[test]
fn strict_and_exit_code_are_refused_with_until_current_naming_the_variable() {
    let db = TestDb::new("uc_strict");
    let run = dhctl(&db.url)
        .args(["status", "--until-current", "5s", "--strict"])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("--strict"), "{}", run.stderr);
    for extra in ["--exit-code", "--strict"] {
        let run = dhctl(&db.url)
            .args(["status", extra])
            .env("DHCTL_UNTIL_CURRENT", "5s")
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("DHCTL_UNTIL_CURRENT"),
            "{extra}: {}",
            run.stderr
        );
    }
}
