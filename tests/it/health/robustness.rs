//! Hostile and unlucky inputs: oversized heads, garbage bytes, idle connection floods,
//! SIGTERM mid-request, and passwords that must never leak.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::support::*;
use crate::harness::{wait_until, with_dbname, with_password, TestDb};

#[test]
fn oversized_headers_get_431_and_the_server_keeps_serving() {
    let db = TestDb::new("health_431");
    let server = start(&[("DATABASE_URL", &db.url)]);
    let big = "x".repeat(16 * 1024);
    let reply = http(server.addr, "GET", "/health/live", &[("X-Padding", &big)]);
    assert_eq!(reply.status, 431);

    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(http(server.addr, "GET", "/health/live", &many).status, 431);

    // Just under the limit still works.
    let fits = "y".repeat(6 * 1024);
    let reply = http(server.addr, "GET", "/health/live", &[("X-Padding", &fits)]);
    assert_eq!(reply.status, 200);
}

/// Sends `bytes`, then reads until the server closes the connection; panics if it stays open.
fn expect_closed(server: &Health, bytes: &[u8]) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let started = Instant::now();
    let mut sink = Vec::new();
    // Closed by the server (end of stream or a reset), not left open until our read times out.
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "connection not closed after garbage ({e}, {:?}) for {bytes:?}",
            started.elapsed()
        ),
    }
}

#[test]
fn garbage_bytes_close_the_connection_and_the_server_keeps_serving() {
    let db = TestDb::new("health_garbage");
    let server = start(&[("DATABASE_URL", &db.url)]);
    let mut noise = vec![0u8; 64 * 1024];
    let mut x: u32 = 0x1234_5678;
    for b in &mut noise {
        // xorshift: fixed, reproducible noise.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<Vec<u8>> = vec![
        noise,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), // a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"GET /health HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /health\r\n\r\n".to_vec(),
        b"\r\n\r\n\r\n".to_vec(),
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n".to_vec(),
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        b"G\0T / HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            .to_vec(),
    ];
    for case in &cases {
        expect_closed(&server, case);
        assert_eq!(server.get("/health/live").status, 200, "after {case:?}");
    }
    // Half a request, then silence: the header read timeout closes it.
    let server = start(&[
        ("DATABASE_URL", &db.url),
        ("HEALTH_HEADER_READ_TIMEOUT_MS", "500"),
    ]);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost:")
        .unwrap();
    // 60 times the timeout: the server, not our read timeout, must end the connection.
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    match slow.read_to_end(&mut Vec::new()) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("a half-sent request head was not cut by the header timeout: {e}"),
    }
    assert_eq!(server.get("/health/live").status, 200);
}

fn hold_idle(server: &Health, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&server.addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect()
}

#[test]
fn a_probe_still_answers_with_a_thousand_idle_connections_held() {
    let db = TestDb::new("health_idle");
    let server = start(&[("DATABASE_URL", &db.url)]);
    let idle = hold_idle(&server, 1000);
    // Answered at all (within `http`'s 10 s bound); how fast is bench/health.sh's business.
    assert_eq!(server.get("/health/live").status, 200);
    assert_eq!(server.get("/health/ready").status, 200);
    drop(idle);

    // Past the connection cap, idle holders are cut by the header read timeout, so a probe
    // is answered eventually instead of never.
    let server = start(&[
        ("DATABASE_URL", &db.url),
        ("HEALTH_MAX_CONNECTIONS", "100"),
        ("HEALTH_HEADER_READ_TIMEOUT_MS", "1000"),
    ]);
    let idle = hold_idle(&server, 300);
    let answered = wait_until(Duration::from_secs(60), || {
        try_get(server.addr, "/health/live", Duration::from_secs(10))
            .is_some_and(|reply| reply.status == 200)
    });
    assert!(
        answered,
        "a probe behind 300 idle connections was never answered"
    );
    drop(idle);
}

/// How many connections `listener` (a hung dependency) has received so far, accepting them
/// and keeping them open in `held`.
fn accepted(listener: &std::net::TcpListener, held: &mut Vec<TcpStream>) -> usize {
    listener.set_nonblocking(true).unwrap();
    while let Ok((stream, _)) = listener.accept() {
        held.push(stream);
    }
    held.len()
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_zero() {
    let db = TestDb::new("health_sigterm");
    let hung = hanging_listener();
    let mut server = spawn(&[
        ("DATABASE_URL", &db.url),
        (
            "REDIS_URL",
            &format!("redis://{}", hung.local_addr().unwrap()),
        ),
        ("HEALTH_CHECK_TIMEOUT_MS", "2000"),
        ("HEALTH_READY_CACHE_MS", "0"),
        // Far longer than the waits below: if anything held the exit up to the drain
        // timeout, the exit wait would fail.
        ("HEALTH_DRAIN_TIMEOUT_MS", "120000"),
    ]);
    // Wait for the start-up check to finish (its failure is logged), so the probe below
    // starts a fresh 2 s check of its own.
    let started_up = wait_until(Duration::from_secs(60), || {
        server.logs().iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["message"] == "readiness check failed" && v["check"] == "redis")
        })
    });
    assert!(started_up, "no start-up check: {:#?}", server.logs());
    let mut held = Vec::new();
    let before = accepted(&hung, &mut held);
    // An idle keep-alive connection must not hold up the exit.
    let _idle = TcpStream::connect(server.addr).unwrap();
    let addr = server.addr;
    let slow = std::thread::spawn(move || http(addr, "GET", "/health/ready", &[]));
    // The probe's check is in flight once it has connected to the hung Redis.
    let in_flight = wait_until(Duration::from_secs(60), || {
        accepted(&hung, &mut held) > before
    });
    assert!(in_flight, "the probe's check never reached Redis");
    server.sigterm();
    let reply = slow.join().unwrap();
    assert_eq!(
        reply.status, 503,
        "the in-flight request completes: {}",
        reply.body
    );
    assert_eq!(reply.json()["checks"]["redis"]["status"], "error");
    let code = server.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "exit code (None: still running)");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn sigint_exits_zero_too() {
    let db = TestDb::new("health_sigint");
    let mut server = spawn(&[("DATABASE_URL", &db.url)]);
    assert_eq!(server.get("/health/live").status, 200);
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(60)), Some(0));
}

#[test]
fn passwords_never_appear_in_responses_or_log_lines() {
    const DB_PW: &str = "Db-pw-7f3a9c";
    const REDIS_PW: &str = "Redis-pw-c41e8d";
    let db = TestDb::new("health_secrets");
    let with_pw = with_password(&db.url, DB_PW);
    let closed_pg = with_dbname(
        &format!("postgres://postgres:{DB_PW}@127.0.0.1:{}", closed_port()),
        "datahub",
    );
    let closed_redis = format!("redis://:{REDIS_PW}@127.0.0.1:{}", closed_port());
    let hung = hanging_listener();
    let hung_pg = format!(
        "postgres://postgres:{DB_PW}@{}/datahub",
        hung.local_addr().unwrap()
    );
    let redis_with_pw = redis_url();
    // Reachable servers (PostgreSQL on trust ignores the password, Redis rejects AUTH), closed
    // ports, and a hung server; at debug level, so libraries' own log lines are scanned too.
    let setups: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("DATABASE_URL", &with_pw),
            ("REDIS_URL", &redis_with_pw),
            ("REDIS_PASSWORD", REDIS_PW),
        ],
        vec![("DATABASE_URL", &closed_pg), ("REDIS_URL", &closed_redis)],
        vec![("DATABASE_URL", &hung_pg), ("REDIS_PASSWORD", REDIS_PW)],
    ];
    for mut env in setups {
        env.extend([
            ("RUST_LOG", "debug"),
            ("HEALTH_CHECK_TIMEOUT_MS", "300"),
            ("HEALTH_READY_CACHE_MS", "0"),
        ]);
        let mut server = start(&env);
        let mut bodies = Vec::new();
        for path in [
            "/health",
            "/health/ready",
            "/health/ready",
            "/health/live",
            "/nope",
        ] {
            bodies.push(server.get(path).body);
        }
        assert_eq!(server.stop(), 0);
        let logs = server.logs();
        let failed = logs.iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["message"] == "readiness check failed")
        });
        assert!(failed, "no failed check was logged: {logs:#?}");
        if env.contains(&("DATABASE_URL", with_pw.as_str())) {
            // The drivers' own debug lines are among those scanned.
            let driver = logs.iter().any(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                    v["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("tokio_postgres"))
                })
            });
            assert!(driver, "no driver log line at debug: {logs:#?}");
        }
        for text in bodies.iter().chain(logs.iter()) {
            assert!(
                !text.contains(DB_PW) && !text.contains(REDIS_PW),
                "secret leaked: {text}"
            );
        }
    }
    config_errors_exit_2_without_the_password(DB_PW);
}

/// A bad configuration exits 2 with a JSON error line, and no secret in it.
fn config_errors_exit_2_without_the_password(password: &str) {
    let out = std::process::Command::new(bin())
        .env(
            "DATABASE_URL",
            format!("postgres://u:{password}@h:notaport/x"),
        )
        .env("RUST_LOG", "debug")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(line["level"], "ERROR", "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
}
