//! Drives the real `dhctl-health` binary: start it on port 0 (the port comes from its JSON
//! "listening" log line), speak raw HTTP/1.1 to it, run a private redis-server, stand in for a
//! hung dependency, and read PostgreSQL's own counters.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{connect, server_url, wait_until};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dhctl-health"))
}

/// Redis for tests (DHCTL_TEST_REDIS_URL, default redis://127.0.0.1:6379).
pub fn redis_url() -> String {
    std::env::var("DHCTL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A running `dhctl-health` with its stderr collected line by line.
pub struct Health {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _cwd: tempfile::TempDir,
}

/// Starts the server with a clean environment plus `env`, and waits for its address.
pub fn start(env: &[(&str, &str)]) -> Health {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin());
    for (key, _) in std::env::vars() {
        let ours = ["DATABASE_", "REDIS_", "HEALTH_", "DHCTL_", "PG"]
            .iter()
            .any(|p| key.starts_with(p));
        if ours || ["RUST_LOG", "PORT", "HOST"].contains(&key.as_str()) {
            command.env_remove(key);
        }
    }
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("REDIS_URL", redis_url())
        .envs(env.iter().copied())
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn dhctl-health");
    let logs = Arc::new(Mutex::new(Vec::new()));
    for pipe in [
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                logs.lock().unwrap().push(line);
            }
        });
    }
    let mut addr = None;
    let found = wait_until(Duration::from_secs(10), || {
        addr = logs.lock().unwrap().iter().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message"] == "listening").then(|| v["addr"].as_str()?.parse().ok())?
        });
        addr.is_some()
    });
    let logs_now = logs.lock().unwrap().join("\n");
    assert!(
        found,
        "dhctl-health did not report its address:\n{logs_now}"
    );
    Health {
        child,
        addr: addr.unwrap(),
        logs,
        _cwd: cwd,
    }
}

impl Health {
    pub fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[])
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (TERM, INT) with kill(1): the tests stay free of unsafe code.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The exit code, waiting at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then the exit code (panics after 15 s), so that stats and logs are final.
    pub fn stop(&mut self) -> i32 {
        self.sigterm();
        let code = self.wait_exit(Duration::from_secs(15));
        // Let the reader threads drain the last lines.
        std::thread::sleep(Duration::from_millis(100));
        code.expect("dhctl-health did not exit within 15 s of SIGTERM")
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub took: Duration,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`), with a 10 s bound on everything.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    raw(addr, head.as_bytes())
}

/// One GET on a fresh connection that may fail: None when the server does not answer with a
/// complete response within `limit` (for waits on "eventually answers").
pub fn try_get(addr: SocketAddr, path: &str, limit: Duration) -> Option<Reply> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 ") || !text.contains("\r\n\r\n") {
        return None;
    }
    Some(parse(&answer, started.elapsed()))
}

/// Sends `bytes` as they are and parses the answer.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).expect("send request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    parse(&answer, took)
}

fn parse(answer: &[u8], took: Duration) -> Reply {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
        took,
    }
}

/// A port with nothing listening on it (bound, read, released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A dependency that hangs: the kernel completes the TCP handshake into the listen queue, and
/// nothing ever reads or answers. Keep it alive for as long as it should hang.
pub fn hanging_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// A private redis-server on `port`, killed on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "redis-server did not start on port {port}");
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How often PostgreSQL has scanned `refinery_schema_history` in `db`: with
/// DHCTL_READY_REQUIRE_MIGRATED each readiness check reads it exactly once, so this counts the
/// checks that reached the database. (pg_stat_database's transaction counter would too, but
/// autovacuum's visits to a new database add to it at random.)
pub fn history_scans(db: &crate::harness::TestDb) -> i64 {
    db.value(
        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables \
         WHERE relname = 'refinery_schema_history'",
    )
    .parse()
    .unwrap()
}

/// Waits until no session is connected to `name` and its statistics have been flushed.
pub fn wait_for_quiet(name: &str) {
    let quiet = wait_until(Duration::from_secs(10), || {
        let mut admin = connect(&server_url());
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        n == 0
    });
    assert!(quiet, "sessions to {name} did not end");
    // Backends flush their counters as they exit; give the last one a moment.
    std::thread::sleep(Duration::from_millis(500));
}

/// A TCP proxy in front of PostgreSQL that the test can take away (closing every connection
/// through it, as a server restart does) and bring back on the same port.
pub struct Proxy {
    stop: Arc<std::sync::atomic::AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(port: u16, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the proxy port");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (flag, open) = (Arc::clone(&stop), Arc::clone(&streams));
        let accept = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                open.lock().unwrap().extend([client, server]);
            }
        });
        Proxy {
            stop,
            streams,
            accept: Some(accept),
        }
    }

    /// Closes the port and every connection through it.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
