//! Clients that pipeline requests and never read the answers (issue 13, item 3): they must not
//! hold connection slots for long, so liveness probes keep being answered under the flood.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::support::*;
use crate::harness::{wait_until, TestDb};

/// Connects and writes pipelined keep-alive requests until the server stops taking them (its
/// answers fill the socket buffers because we never read them), then holds the connection.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let batch = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(256);
    // A write that times out means both sides' buffers are full: the server is stuck writing
    // to us. An error means the server already cut us off; either way we stop sending.
    while stream.write_all(batch.as_bytes()).is_ok() {}
    stream
}

/// Four slow readers against a cap of four connections, then `/health/live` must still
/// answer eventually (the bound is generous on purpose: this is about "answered at all", not
/// about how fast).
fn probes_survive(env: &[(&str, &str)]) {
    let db = TestDb::new("health_slow_readers");
    let mut full_env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("HEALTH_MAX_CONNECTIONS", "4"),
    ];
    full_env.extend_from_slice(env);
    let server = start(&full_env);
    let readers: Vec<TcpStream> = (0..4).map(|_| slow_reader(server.addr)).collect();
    let answered = wait_until(Duration::from_secs(60), || {
        try_get(server.addr, "/health/live", Duration::from_secs(10))
            .is_some_and(|reply| reply.status == 200)
    });
    assert!(
        answered,
        "/health/live went unanswered behind four slow readers"
    );
    drop(readers);
}

#[test]
fn clients_that_never_read_are_cut_by_the_write_deadline() {
    // A request cap too high to matter, so only the write deadline can free the slots.
    probes_survive(&[
        ("HEALTH_WRITE_TIMEOUT_MS", "1000"),
        ("HEALTH_MAX_REQUESTS_PER_CONNECTION", "100000000"),
    ]);
}

#[test]
fn pipelined_requests_per_connection_are_capped() {
    // A write deadline too long to matter, so only the request cap can free the slots: the
    // tenth answer says `Connection: close` and fits in the socket buffers.
    probes_survive(&[
        ("HEALTH_WRITE_TIMEOUT_MS", "600000"),
        ("HEALTH_MAX_REQUESTS_PER_CONNECTION", "10"),
    ]);
}

#[test]
fn the_tenth_answer_on_a_connection_closes_it() {
    let db = TestDb::new("health_request_cap");
    let server = start(&[
        ("DATABASE_URL", &db.url),
        ("HEALTH_MAX_REQUESTS_PER_CONNECTION", "10"),
    ]);
    let twenty = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20);
    let reply = raw(server.addr, twenty.as_bytes());
    assert_eq!(reply.status, 200);
    // `raw` reads to the end: the server closed after exactly ten answers.
    let answers = reply.body.matches("HTTP/1.1 200").count() + 1;
    assert_eq!(answers, 10, "{}", reply.body);
}
