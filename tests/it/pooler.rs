//! Behind PgBouncer: session pooling works; transaction pooling, under which a session advisory
//! lock protects nothing, is detected and refused before anything changes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(pool_mode: &str) -> Bouncer {
        let server: postgres::Config = server_url().parse().unwrap();
        let host = match server.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let server_port = server.get_ports().first().copied().unwrap_or(5432);
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        // server_round_robin: each transaction takes the least recently used server connection,
        // so consecutive statements of one client reach different backends, as they do under
        // real shared traffic.
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host={host} port={server_port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}/users.txt\npool_mode = {pool_mode}\n\
                 server_round_robin = 1\ndefault_pool_size = 4\nmin_pool_size = 4\nlogfile = {}/pgbouncer.log\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)");
        // PgBouncer refuses to run as root.
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--", bin])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "pgbouncer did not start");
        Bouncer {
            child,
            port,
            _dir: dir,
        }
    }

    /// Opens four server connections at once, so the pool has several backends to rotate
    /// through (as it has under the gateway's traffic) rather than one.
    fn warm(&self, db: &TestDb) {
        let url = self.url(db);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    c.simple_query("SELECT pg_sleep(0.3)").unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    fn url(&self, db: &TestDb) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
            self.port, db.name
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser forwards the signal to pgbouncer.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer); .ci/run installs it and runs the ignored tests"]
fn transaction_pooling_is_detected_and_refused_before_anything_changes() {
    let db = TestDb::new("txpool");
    let bouncer = Bouncer::start("transaction");
    bouncer.warm(&db);
    for _ in 0..3 {
        let run = dhctl(&bouncer.url(&db))
            .args(["migrate", "--no-partitions"])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("transaction-pooling proxy"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("pool_mode=session"), "{}", run.stderr);
    }
    assert!(db.tables().is_empty(), "migrate changed the database");
    let locks = wait_until(Duration::from_secs(5), || {
        db.value(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{}'",
            db.name
        )) == "0"
    });
    assert!(
        locks,
        "a refused run left the advisory lock behind on a pooled backend"
    );
}

#[test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer); .ci/run installs it and runs the ignored tests"]
fn session_pooling_works() {
    let db = TestDb::new("sesspool");
    let bouncer = Bouncer::start("session");
    dhctl(&bouncer.url(&db))
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    dhctl(&bouncer.url(&db))
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 5);
}

#[test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer); .ci/run installs it and runs the ignored tests"]
fn dhctl_health_readiness_and_metrics_work_behind_transaction_pooling() {
    use crate::health::support::spawn;
    let db = TestDb::new("txpool_health");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    let bouncer = Bouncer::start("transaction");
    bouncer.warm(&db);
    let url = bouncer.url(&db);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("HEALTH_READY_CACHE_MS", "0"),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
    ];
    // Two replicas (two processes), as two gateway pods share one pool: their statements land
    // on each other's server connections.
    let replicas = [spawn(&env), spawn(&env)];
    for _ in 0..15 {
        for replica in &replicas {
            let ready = replica.get("/health/ready");
            assert_eq!(ready.status, 200, "{}", ready.body);
            let metrics = replica.get("/metrics");
            assert_eq!(metrics.status, 200);
            for line in [
                "dhctl_collector_up{collector=\"migrations\"} 1",
                "dhctl_collector_up{collector=\"partitions\"} 1",
                "dhctl_migrations_applied 5",
                "dhctl_migrations_pending 0",
            ] {
                assert!(
                    metrics.body.lines().any(|l| l == line),
                    "no {line:?}:\n{}\n{}",
                    metrics.body,
                    replica.logs().join("\n")
                );
            }
        }
    }
}
