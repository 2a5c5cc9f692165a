//! Adversarial tests of the failover change (issue 16, docs/failover.md): each one fails on
//! main at 1b0bf1e and names the finding it demonstrates.

use std::time::{Duration, Instant};

use crate::cluster::{chown_postgres, primary_and_standby, Cluster, PRIMARY_CONF, REPLICATION_HBA};
use crate::harness::{dhctl, migrations_with, shipped_migrations, wait_until};

/// F1: `--wait` is not honoured when the database does not exist yet on the standby that
/// answers during a failover (first deploy, or a DNS endpoint still pointing at the demoted
/// node). The standby's 3D000 outranks its "standby in recovery", `connect` goes down the
/// create-database path, `create_database` finds no writable host and returns at once: exit 2
/// within milliseconds although `--wait 60s` was given and the hint itself recommends --wait.
#[test]
fn adv_wait_rides_a_failover_when_the_database_does_not_exist_yet() {
    let primary = Cluster::primary();
    let standby = Cluster::standby_of(&primary, "standby1");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/fresh?connect_timeout=2",
        primary.port, standby.port
    );
    primary.stop();
    let mut child = dhctl(&url)
        .args(["migrate", "--format", "json", "--wait", "60s"])
        .spawn();
    std::thread::sleep(Duration::from_secs(3));
    let early = child.try_wait().unwrap();
    if early.is_some() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "migrate --wait 60s gave up after < 3 s during a failover (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    standby.promote();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        standby.value("fresh", "SELECT count(*) FROM refinery_schema_history"),
        shipped_migrations().to_string()
    );
}

/// F2: a WAL archiver streaming with pg_receivewal (Barman's streaming archiver, a common
/// companion of a primary) is a physical walsender that never reports a replay position.
/// `--wait-replicas` counts it as a standby, so every run times out with exit 2, and reports it
/// as "0 bytes behind" (`greatest(NULL, 0)` is 0 in SQL): lag_bytes is 0, not the null
/// docs/failover.md and the Standby struct promise when no replay position was reported.
#[test]
fn adv_wait_replicas_is_not_defeated_by_pg_receivewal() {
    // scripts/pg-matrix's embedded-postgres bundles ship no pg_receivewal; the machine's own
    // major (the README's test command) runs this test in full.
    if !crate::cluster::pg_bin().join("pg_receivewal").exists() {
        eprintln!("no pg_receivewal beside this major's server: skipped here");
        return;
    }
    let (primary, standby) = primary_and_standby();
    let wal = tempfile::tempdir().unwrap();
    chown_postgres(wal.path());
    let mut receivewal = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(crate::cluster::pg_bin().join("pg_receivewal"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
        ])
        .arg(wal.path())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || primary.value(
        "postgres",
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'"
    ) == "1"));
    let run = dhctl(&primary.url("app"))
        .args(["migrate", "--format", "json", "--wait-replicas", "5s"])
        .run();
    // SIGTERM, not kill(): runuser forks pg_receivewal and forwards SIGTERM to it, but a
    // SIGKILL would stop runuser alone and leave pg_receivewal streaming after the test.
    crate::harness::send_signal(&receivewal, "-TERM");
    let _ = receivewal.wait();
    drop(standby);
    let doc = run.json();
    let replicas = if doc["replicas"].is_null() {
        &doc["report"]["replicas"]
    } else {
        &doc["replicas"]
    };
    for s in replicas["standbys"].as_array().unwrap() {
        if s["replay_lsn"].is_null() {
            assert!(
                s["lag_bytes"].is_null(),
                "lag_bytes must be null without a replay position (docs/json.md): {s}"
            );
        }
    }
    assert_eq!(
        run.code, 0,
        "pg_receivewal is not a standby that replays; the real standby caught up: {doc}"
    );
}

/// F3: with `synchronous_commit = off` for the database (or role), the run's commits are not
/// flushed when `--wait-replicas` reads `pg_current_wal_lsn()`, which is the WAL *write*
/// position: the target can lie before the migration's own commit record, the standby "has
/// replayed" it at once, migrate exits 0 saying every standby caught up, and the standby does
/// not have the migration. `pg_current_wal_insert_lsn()` (or flushing) would not.
/// wal_writer_delay = 10s makes the window wide; without it it is up to 200 ms.
#[test]
fn adv_wait_replicas_with_asynchronous_commit_returns_before_the_standby_has_the_migration() {
    let primary = Cluster::start(
        &format!("{PRIMARY_CONF}wal_writer_delay = '10s'\n"),
        REPLICATION_HBA,
        &[],
    );
    primary
        .admin()
        .batch_execute("CREATE DATABASE app")
        .unwrap();
    primary
        .admin()
        .batch_execute("ALTER DATABASE app SET synchronous_commit = off")
        .unwrap();
    let standby = Cluster::standby_of(&primary, "standby1");
    let mut files: Vec<(String, String)> = Vec::new();
    for n in 1..=4 {
        files.push((
            format!("2030010100000{n}_adv_w{n}.sql"),
            // Tiny on purpose: the history row and the commit record stay on one WAL page,
            // so the WAL writer is not woken to write it before the 10 s delay.
            format!("-- migrate:up\nSELECT {n};\n-- migrate:down\nSELECT {n};\n"),
        ));
    }
    let mut dirs = Vec::new();
    for upto in 1..=files.len() {
        let extra: Vec<(&str, &str)> = files[..upto]
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        dirs.push(migrations_with(&extra));
    }
    for (n, dir) in dirs.iter().enumerate() {
        // Idle and caught up before each run.
        assert!(wait_until(Duration::from_secs(60), || {
            primary.value(
            "postgres",
            "SELECT coalesce((SELECT replay_lsn = pg_current_wal_lsn() FROM pg_stat_replication), false)"
        ) == "t"
        }));
        let started = Instant::now();
        let run = dhctl(&primary.url("app"))
            .migrations_dir(dir.path())
            .args([
                "migrate",
                "--no-partitions",
                "--format",
                "json",
                "--wait-replicas",
                "60s",
            ])
            .run();
        run.expect_code(0);
        let table = format!("version 2030010100000{}", n + 1);
        let on_standby = if n == 0 {
            // The first run also creates the history table and the shipped tables.
            "t".to_string()
        } else {
            standby.value(
                "app",
                &format!(
                    "SELECT count(*) = 1 FROM refinery_schema_history WHERE version = 2030010100000{}",
                    n + 1
                ),
            )
        };
        assert_eq!(
            on_standby,
            "t",
            "migrate --wait-replicas exited 0 after {:?} saying every standby caught up, but the \
             standby's history does not have {table}: {}",
            started.elapsed(),
            run.stdout
        );
    }
}

/// F4 (documented, disputed): a standby that is behind and disconnects during the wait (a
/// restart, a network blip) drops out of pg_stat_replication, and migrate --wait-replicas then
/// exits 0 with "no standby is streaming from this server: nothing to wait for" and
/// `caught_up: true`, although that standby never replayed the migration and comes back
/// serving the old schema. The standbys seen at the first look should be remembered.
#[test]
fn adv_wait_replicas_does_not_report_success_when_the_lagging_standby_disconnects() {
    let (primary, standby) = primary_and_standby();
    standby.pause_replay();
    let child = dhctl(&primary.url("app"))
        .args(["migrate", "--format", "json", "--wait-replicas", "60s"])
        .spawn();
    assert!(wait_until(Duration::from_secs(60), || {
        primary.value(
            "app",
            "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
        ) == "t"
    }));
    std::thread::sleep(Duration::from_secs(2));
    standby.stop();
    let out = child.wait_with_output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the standby never replayed the migration, yet: {doc}"
    );
}
