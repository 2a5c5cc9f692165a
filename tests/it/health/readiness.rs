//! `/health/ready` against real, broken, hung and returning dependencies; single flight proven
//! with PostgreSQL's own transaction counter.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::support::*;
use crate::harness::{dhctl, host_port, wait_until, with_dbname, with_host_port, TestDb};

/// The check timeout these tests configure.
const TIMEOUT_MS: u64 = 500;
/// What "bounded by the timeout" is held to here: ten times it, so that a loaded machine
/// passes while a probe that waited for the hung dependency (forever) still fails. The tight
/// bound (timeout plus a little) is measured by bench/health.sh, not asserted by tests.
const BOUND: Duration = Duration::from_millis(TIMEOUT_MS * 10);

/// Probes `/health/ready` three times (no cache: each runs a check) and expects a 503 naming
/// `failing` within `BOUND` every time, with `healthy` still ok.
fn expect_fast_503(server: &Health, failing: &str, healthy: &str) {
    for _ in 0..3 {
        let reply = server.get("/health/ready");
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(reply.took < BOUND, "took {:?}", reply.took);
        let r = reply.json();
        assert_eq!(r["status"], "error");
        assert_eq!(r["checks"][failing]["status"], "error", "{r}");
        assert!(r["checks"][failing]["latency_ms"].is_number(), "{r}");
        assert!(r["checks"][failing]["error"].is_string(), "{r}");
        assert_eq!(r["checks"][healthy]["status"], "ok", "{r}");
    }
    // /health does no I/O but reports the last verdict.
    assert_eq!(server.get("/health").json()["status"], "degraded");
}

fn timeouts() -> [(&'static str, String); 2] {
    [
        ("HEALTH_CHECK_TIMEOUT_MS", TIMEOUT_MS.to_string()),
        ("HEALTH_READY_CACHE_MS", "0".to_string()),
    ]
}

fn start_with(extra: &[(&str, String)]) -> Health {
    let defaults = timeouts();
    let env: Vec<(&str, &str)> = defaults
        .iter()
        .chain(extra.iter())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    start(&env)
}

#[test]
fn ready_is_503_within_the_timeout_when_redis_or_postgres_is_at_a_closed_port() {
    let db = TestDb::new("ready_closed");
    let redis_closed = format!("redis://127.0.0.1:{}", closed_port());
    let server = start_with(&[
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_closed),
    ]);
    expect_fast_503(&server, "redis", "database");

    let pg_closed = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let server = start_with(&[("DATABASE_URL", pg_closed)]);
    expect_fast_503(&server, "database", "redis");
}

#[test]
fn ready_is_503_within_the_timeout_when_a_dependency_hangs() {
    let db = TestDb::new("ready_hang");
    let hung_redis = hanging_listener();
    let redis_url = format!("redis://{}", hung_redis.local_addr().unwrap());
    let server = start_with(&[("DATABASE_URL", db.url.clone()), ("REDIS_URL", redis_url)]);
    expect_fast_503(&server, "redis", "database");

    let hung_pg = hanging_listener();
    let pg_url = with_dbname(
        &format!("postgres://postgres@{}", hung_pg.local_addr().unwrap()),
        "datahub",
    );
    let server = start_with(&[("DATABASE_URL", pg_url)]);
    expect_fast_503(&server, "database", "redis");
}

#[test]
fn ready_returns_to_200_when_redis_comes_back() {
    let db = TestDb::new("ready_recover");
    let port = closed_port();
    let redis = Redis::start(port);
    let server = start_with(&[("DATABASE_URL", db.url.clone()), ("REDIS_URL", redis.url())]);
    assert_eq!(server.get("/health/ready").status, 200);

    redis.stop();
    let down = wait_until(Duration::from_secs(30), || {
        server.get("/health/ready").status == 503
    });
    assert!(down, "ready stayed 200 after redis-server stopped");
    assert_eq!(server.get("/health").json()["status"], "degraded");

    let _redis = Redis::start(port);
    let back = wait_until(Duration::from_secs(30), || {
        server.get("/health/ready").status == 200
    });
    assert!(
        back,
        "ready did not return to 200 after redis-server restarted"
    );
    assert_eq!(server.get("/health").json()["status"], "ok");
}

#[test]
fn ready_returns_to_200_when_postgres_comes_back() {
    let db = TestDb::new("ready_pg_back");
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&host_port(&db.url))
        .unwrap()
        .next()
        .unwrap();
    let port = closed_port();
    let proxy = Proxy::start(port, upstream);
    let url = with_host_port(&db.url, "127.0.0.1", port);
    let server = start_with(&[("DATABASE_URL", url)]);
    assert_eq!(server.get("/health/ready").status, 200);

    // Every pooled connection breaks at once, as in a server restart or failover.
    proxy.stop();
    let down = wait_until(Duration::from_secs(30), || {
        server.get("/health/ready").status == 503
    });
    assert!(down, "ready stayed 200 with PostgreSQL gone");

    let _proxy = Proxy::start(port, upstream);
    let back = wait_until(Duration::from_secs(30), || {
        server.get("/health/ready").status == 200
    });
    assert!(
        back,
        "ready did not return to 200: broken connections were reused"
    );
    assert_eq!(server.get("/health").json()["status"], "ok");
}

/// Fires `n` probes at once from `n` threads; returns their status codes.
fn burst(server: &Health, n: usize) -> Vec<u16> {
    let gate = Arc::new(Barrier::new(n));
    let addr = server.addr;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.wait();
                http(addr, "GET", "/health/ready", &[]).status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The readiness checks that reached PostgreSQL while `work` ran against a server started
/// with `env`, counted by PostgreSQL itself after the server has exited (see `history_scans`).
/// Each check costs two statements: `SELECT 1` and the read of the history table.
fn checks_seen(db: &TestDb, env: &[(&str, String)], work: impl FnOnce(&Health)) -> i64 {
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    wait_for_quiet(&db.name);
    let before = history_scans(db);
    wait_for_quiet(&db.name);
    let mut env = env.to_vec();
    env.push(("DHCTL_READY_REQUIRE_MIGRATED", "true".to_string()));
    let mut server = start_with(&env);
    work(&server);
    assert_eq!(server.stop(), 0);
    wait_for_quiet(&db.name);
    let checks = history_scans(db) - before;
    eprintln!("{}: {checks} checks reached the database", db.name);
    checks
}

#[test]
fn two_hundred_concurrent_probes_cost_a_handful_of_database_round_trips() {
    let db = TestDb::new("ready_flood");
    // The defaults (a 500 ms result cache on top of single flight), as deployed.
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("HEALTH_READY_CACHE_MS", "500".to_string()),
    ];
    let checks = checks_seen(&db, &env, |server| {
        let codes = burst(server, 200);
        assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    });
    // The start-up check plus one or two for the burst.
    assert!((1..=3).contains(&checks), "{checks} checks for 200 probes");
}

#[test]
fn concurrent_probes_share_the_check_in_flight_even_without_a_cache() {
    let db = TestDb::new("ready_flight");
    // Redis hangs, so each check takes the whole timeout and the burst lands inside one.
    let hung = hanging_listener();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        (
            "REDIS_URL",
            format!("redis://{}", hung.local_addr().unwrap()),
        ),
        ("HEALTH_CHECK_TIMEOUT_MS", "1000".to_string()),
    ];
    let mut failures_logged = 0;
    let checks = checks_seen(&db, &env, |server| {
        let codes = burst(server, 200);
        assert!(codes.iter().all(|c| *c == 503), "{codes:?}");
        failures_logged = server
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "WARN" && v["check"] == "redis")
            .count();
    });
    assert!((1..=3).contains(&checks), "{checks} checks for 200 probes");
    // A line per failed check, not per probe.
    assert_eq!(failures_logged as i64, checks, "one failure line per check");
}

#[test]
fn the_migrations_check_is_503_while_migrations_are_pending() {
    let db = TestDb::new("ready_migrated");
    let server = start_with(&[
        ("DATABASE_URL", db.url.clone()),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true".to_string()),
    ]);
    let reply = server.get("/health/ready");
    assert_eq!(reply.status, 503, "{}", reply.body);
    let r = reply.json();
    assert_eq!(r["checks"]["database"]["status"], "ok", "{r}");
    assert_eq!(r["checks"]["migrations"]["status"], "error", "{r}");
    assert_eq!(r["checks"]["migrations"]["pending"], 5, "{r}");

    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let reply = server.get("/health/ready");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["checks"]["migrations"]["pending"], 0);
}
