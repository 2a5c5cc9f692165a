//! Adversary findings against fleets (`--targets`, docs/fleet.md) and the rewritten signal path
//! (src/db/inflight.rs). Each test fails on main at 7dc43a4 and says what it expected.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::{fleet_dhctl, FleetFile};
use crate::harness::{
    connect, dhctl, dhctl_sessions, folder, host_port, send_signal, server_url,
    terminate_dhctl_sessions, wait_at_most, wait_for_dhctl_running, wait_until, with_host_port,
    TestDb,
};

/// A TCP proxy to the test server that forwards every connection until `stall` is set, and
/// after that accepts connections and never says a word: a server (or a load balancer in front
/// of it) that stopped answering while a session it had accepted earlier is still running.
fn stalling_proxy() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stall = Arc::new(AtomicBool::new(false));
    let (host, server_port) = host_port(&server_url());
    let flag = Arc::clone(&stall);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for client in listener.incoming().flatten() {
            if flag.load(Ordering::SeqCst) {
                held.push(client);
                continue;
            }
            let Ok(server) = TcpStream::connect((host.as_str(), server_port)) else {
                continue;
            };
            let pump = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pump(client.try_clone().unwrap(), server.try_clone().unwrap());
            pump(server, client);
        }
    });
    (port, stall)
}

/// Finding: one target whose server stops answering makes SIGINT/SIGTERM of the whole fleet
/// hang: the cancel request (sslmode=prefer, the default) sends an SSLRequest and waits for the
/// answer with no time limit, and every other target's session (its transaction aborted, its
/// advisory lock and table locks held) stays open until that answer comes. A second Ctrl-C is
/// swallowed too. Expected: the interrupt ends within a bounded time (e.g. connect_timeout),
/// and the healthy targets' sessions are closed at once.
#[test]
fn adv_a_server_that_stops_answering_does_not_hold_the_fleets_interrupt_hostage() {
    let migrations = folder(&[(
        "20240101000001_slow.sql",
        "CREATE TABLE slow_table (id int);\nSELECT pg_sleep(600);\n",
    )]);
    let stalled = TestDb::new("advfleetstall");
    let healthy = TestDb::new("advfleethealthy");
    let (port, stall) = stalling_proxy();
    let via_proxy = with_host_port(&stalled.url, "127.0.0.1", port);
    let file = FleetFile::new(&format!(
        "parallel = 2\n[[target]]\nname = \"stalled\"\nurl = \"{via_proxy}\"\n\
         [[target]]\nname = \"healthy\"\nurl = \"{}\"\n",
        healthy.url
    ));
    let child = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions"])
        .spawn();
    let names = vec![stalled.name.clone(), healthy.name.clone()];
    let mut admin = connect(&server_url());
    wait_for_dhctl_running(&mut admin, &names, "pg_sleep(600)", 2);
    stall.store(true, Ordering::SeqCst);
    send_signal(&child, "-INT");
    let healthy_name = vec![healthy.name.clone()];
    let healthy_gone = wait_until(Duration::from_secs(15), || {
        dhctl_sessions(&mut admin, &healthy_name) == 0
    });
    let (code, hung, stdout, stderr) = wait_at_most(child, Duration::from_secs(20));
    // Whatever happened, end the stalled server's statement.
    terminate_dhctl_sessions(&mut admin, &names);
    assert!(
        healthy_gone,
        "the healthy target's session (its aborted transaction and advisory lock) stayed open \
         15 s after SIGINT because another target's server does not answer"
    );
    assert!(
        !hung,
        "dhctl still running 20 s after SIGINT (killed): one silent server holds the whole \
         fleet's interrupt\n{stdout}\n{stderr}"
    );
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
}

/// Finding: `url_env` given a connection string instead of a variable name (an easy slip:
/// `url_env = "postgres://…"`) prints the whole string, password included, in the error and in
/// the hint. docs/fleet.md: "Messages never quote the file's text: a line may hold a password".
#[test]
fn adv_url_env_holding_a_connection_string_is_never_printed() {
    let file = FleetFile::new(
        "[[target]]\nname = \"eu-1\"\nurl_env = \"postgres://dhctl:s3cret-pw@eu1.db/datahub\"\n",
    );
    let out = fleet_dhctl(&file).args(["status"]).run();
    out.expect_code(2);
    assert!(
        !out.stderr.contains("s3cret-pw") && !out.stdout.contains("s3cret-pw"),
        "the password is printed:\n{}",
        out.stderr
    );
}

/// Finding: the TOML error scrubber drops text between double quotes only. serde's "unknown
/// variant" quotes the value in backticks (the whole string is printed), and a value with an
/// escaped quote (Debug shows it as \") toggles the scrubber, printing its tail.
#[test]
fn adv_a_toml_error_never_prints_a_value_in_backticks_or_after_an_escaped_quote() {
    for text in [
        "on_error = \"postgres://dhctl:s3cret-pw@eu1.db/datahub\"\n[[target]]\nname = \"a\"\nurl = \"x\"\n",
        "parallel = 'postgres://dhctl:s3\"cret-pw@eu1.db/datahub'\n[[target]]\nname = \"a\"\nurl = \"x\"\n",
    ] {
        let file = FleetFile::new(text);
        let out = fleet_dhctl(&file).args(["status"]).run();
        out.expect_code(2);
        assert!(
            !out.stderr.contains("cret-pw"),
            "a value from the file is printed:\n{}",
            out.stderr
        );
    }
}

/// Finding: an interrupted target's progress is thrown away. Without --targets, migrate prints
/// "done 20240101000001_first.sql" before the interrupt; in a fleet the target's stderr block
/// (its progress lines, kept while it ran) is printed only when the target ends normally, so
/// after Ctrl-C nothing says which migrations the interrupted target applied (JSON `result` is
/// null too): exactly what an operator needs after "interrupted during a transaction:false
/// migration … check the database".
#[test]
fn adv_an_interrupted_target_still_reports_what_it_applied() {
    let migrations = folder(&[
        ("20240101000001_first.sql", "CREATE TABLE first_table (id int);\n"),
        ("20240101000002_slow.sql", "-- migrate:up transaction:false\nCREATE TABLE IF NOT EXISTS slow_table (id int);\nSELECT pg_sleep(600);\n"),
    ]);
    let db = TestDb::new("advfleetprogress");
    let file = FleetFile::new(&format!(
        "[[target]]\nname = \"eu-1\"\nurl = \"{}\"\n",
        db.url
    ));
    let child = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions"])
        .spawn();
    let mut admin = connect(&server_url());
    let names = vec![db.name.clone()];
    wait_for_dhctl_running(&mut admin, &names, "pg_sleep(600)", 1);
    send_signal(&child, "-INT");
    let (code, hung, stdout, stderr) = wait_at_most(child, Duration::from_secs(30));
    assert!(!hung);
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("transaction:false"),
        "the transaction:false interrupt is named:\n{stdout}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("done 20240101000001_first.sql"),
        "nothing says the interrupted target applied 20240101000001_first.sql (it did):\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// Finding: while the fleet file is read (a blocking read on the runtime's only thread),
/// SIGINT and SIGTERM are caught by dhctl's handler and never acted on: `--targets` naming a
/// FIFO nobody writes to (or a stalled network mount) can only be ended with SIGKILL.
#[test]
fn adv_sigint_while_the_fleet_file_is_being_read_ends_dhctl() {
    let fifo = FleetFile::fifo();
    let child = fleet_dhctl(&fifo).args(["status"]).spawn();
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(500));
    send_signal(&child, "-TERM");
    let (code, hung, stdout, stderr) = wait_at_most(child, Duration::from_secs(5));
    assert!(
        !hung,
        "dhctl ignored SIGINT and SIGTERM while reading the fleet file (killed)\n{stdout}\n{stderr}"
    );
    assert_eq!(code, Some(130));
}

/// Finding: with DHCTL_TARGETS exported (as docs/fleet.md's CI recipe does), an explicit
/// `--database-url` naming one database is silently ignored and the command runs on every
/// database of the fleet instead: `dhctl rollback --database-url <staging>` rolls back the
/// fleet's databases and leaves staging as it was, exit 0. docs/fleet.md says --database-url is
/// "ignored", but an explicit flag naming a different database losing to an environment variable
/// without a word is how the wrong databases get changed. Expected: refused (exit 2) when
/// --database-url and a fleet file are both given (or the command line wins), nothing changed.
#[test]
fn adv_an_explicit_database_url_is_not_silently_replaced_by_an_exported_fleet() {
    let migrations = folder(&[
        ("20240101000001_first.sql", "-- migrate:up\nCREATE TABLE first_table (id int);\n-- migrate:down\nDROP TABLE first_table;\n"),
    ]);
    let fleet_db = TestDb::new("advfleetprod");
    let wanted = TestDb::new("advfleetstaging");
    for db in [&fleet_db, &wanted] {
        dhctl(&db.url)
            .migrations_dir(migrations.path())
            .args(["migrate", "--no-partitions"])
            .run()
            .expect_code(0);
    }
    let file = FleetFile::new(&format!(
        "[[target]]\nname = \"prod-1\"\nurl = \"{}\"\n",
        fleet_db.url
    ));
    let out = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["rollback", "--database-url", &wanted.url])
        .run();
    assert_eq!(
        fleet_db.history().len(),
        1,
        "rollback --database-url <one database> rolled back the exported fleet's database \
         (exit {}):\n{}",
        out.code,
        out.stdout
    );
    assert_ne!(out.code, 0, "{}", out.stdout);
}

/// Without --targets, a cancel request to a server that stopped answering is given up (bounded
/// wait), the connection closed, exit 130, and the message does not claim a rollback it cannot
/// know of.
#[test]
fn a_cancel_that_cannot_be_delivered_is_said_so_and_does_not_hang_one_database() {
    let migrations = folder(&[(
        "20240101000001_slow.sql",
        "CREATE TABLE slow_table (id int);\nSELECT pg_sleep(600);\n",
    )]);
    let db = TestDb::new("advfleetstallone");
    let (port, stall) = stalling_proxy();
    let child = dhctl(&with_host_port(&db.url, "127.0.0.1", port))
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions"])
        .spawn();
    let names = vec![db.name.clone()];
    let mut admin = connect(&server_url());
    wait_for_dhctl_running(&mut admin, &names, "pg_sleep(600)", 1);
    stall.store(true, Ordering::SeqCst);
    send_signal(&child, "-INT");
    let (code, hung, stdout, stderr) = wait_at_most(child, Duration::from_secs(30));
    terminate_dhctl_sessions(&mut admin, &names);
    assert!(!hung, "{stdout}\n{stderr}");
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the cancel request could not be delivered and the connection was closed"),
        "{stderr}"
    );
    assert!(!stderr.contains("its transaction rolled back"), "{stderr}");
}

/// DATABASE_URL and DHCTL_TARGETS both exported (a pod): refused, nothing runs; `--targets` on
/// the command line is explicit and wins over an exported DATABASE_URL.
#[test]
fn an_exported_database_url_and_an_exported_fleet_are_refused_unless_targets_is_explicit() {
    let db = TestDb::new("advfleetboth");
    let file = FleetFile::new(&format!(
        "[[target]]\nname = \"prod-1\"\nurl = \"{}\"\n",
        db.url
    ));
    let out = dhctl(&db.url)
        .env("DHCTL_TARGETS", file.path())
        .args(["status"])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("DATABASE_URL and DHCTL_TARGETS are both set"),
        "{}",
        out.stderr
    );
    let out = dhctl(&db.url)
        .args(["status", "--targets", file.path().to_str().unwrap()])
        .run();
    assert!(
        out.stdout.contains("prod-1"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let out = dhctl("")
        .without_database_url()
        .args([
            "status",
            "--targets",
            file.path().to_str().unwrap(),
            "--database-url",
            &db.url,
        ])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("--targets and --database-url both given"),
        "{}",
        out.stderr
    );
}

/// The same database under two names (equal host, port and database name) is refused before
/// anything connects: it would get every change twice.
#[test]
fn the_same_database_listed_twice_is_refused_naming_both() {
    let db = TestDb::new("advfleettwice");
    let file = FleetFile::new(&format!(
        "[[target]]\nname = \"one\"\nurl = \"{}\"\n[[target]]\nname = \"two\"\nurl = \"{}\"\n",
        db.url, db.url
    ));
    let out = fleet_dhctl(&file).args(["status"]).run();
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("targets \"one\" and \"two\" name the same database"),
        "{}",
        out.stderr
    );
}

/// A scratch database a killed verify left behind is dropped once, and said once, when two
/// targets of a fleet on the same server find it at the same time.
#[test]
fn a_stale_scratch_database_is_reported_once_across_targets() {
    let owner = crate::harness::Role::creator("advfleetscratch");
    let one = crate::harness::TestDb::owned_by("advfleetscratch1", &owner);
    let two = crate::harness::TestDb::owned_by("advfleetscratch2", &owner);
    crate::verify::migrate_as_owner(&owner.url_for(&one), None);
    crate::verify::migrate_as_owner(&owner.url_for(&two), None);
    let stale = format!(
        "dhctl_verify_99999999998_{:016x}",
        u64::from(std::process::id())
    );
    let mut admin = connect(&server_url());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{stale}\" OWNER \"{}\"",
            owner.name
        ))
        .unwrap();
    admin
        .batch_execute(&format!(
            "COMMENT ON DATABASE \"{stale}\" IS 'dhctl verify scratch database, dropped when verify ends'"
        ))
        .unwrap();
    let file = FleetFile::new(&format!(
        "parallel = 2\n[[target]]\nname = \"one\"\nurl = \"{}\"\n[[target]]\nname = \"two\"\nurl = \"{}\"\n",
        owner.url_for(&one),
        owner.url_for(&two)
    ));
    let out = fleet_dhctl(&file)
        .args(["verify", "--format", "json"])
        .run();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{stale}\" WITH (FORCE)"));
    let said = out
        .stdout
        .matches(&format!("dropped scratch database {stale}"))
        .count();
    assert_eq!(said, 1, "{}\n{}", out.stdout, out.stderr);
}
