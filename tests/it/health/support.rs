//! Runs `dhctl-health`: in process through `serve(listener, config, shutdown)` on port 0
//! (mini-redis's `start_server` shape), with its JSON log lines collected per server; or, for
//! the tests of signals and exit codes, the real binary. Also: raw HTTP/1.1, a private
//! redis-server, a stand-in for a hung dependency, and PostgreSQL's own counters.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dhctl::health::{logging, serve, HealthConfig};
use tracing_subscriber::fmt::MakeWriter;

use crate::certs::Certs;
use crate::harness::{connect, server_url, wait_until};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dhctl-health"))
}

/// Redis for tests (DHCTL_TEST_REDIS_URL, default redis://127.0.0.1:6379).
pub fn redis_url() -> String {
    std::env::var("DHCTL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A running `dhctl-health` and the log lines it has written so far.
pub struct Health {
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    run: Run,
}

enum Run {
    /// `serve` on a runtime of its own, in a thread of this process.
    InProcess {
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<JoinHandle<Result<(), String>>>,
    },
    /// The real binary.
    Process {
        child: Child,
        readers: Vec<JoinHandle<()>>,
        _cwd: tempfile::TempDir,
    },
}

/// Collects each log line (one `write` burst per event) into a shared list.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

struct LineWriter {
    lines: Arc<Mutex<Vec<String>>>,
    buffer: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            lines: Arc::clone(&self.0),
            buffer: Vec::new(),
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer).into_owned();
        let mut lines = self.lines.lock().unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
}

/// The settings `start` and `spawn` begin from: loopback, any port, the test Redis.
fn base_env() -> Vec<(String, String)> {
    vec![
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("REDIS_URL".into(), redis_url()),
    ]
}

/// Starts the server in process on 127.0.0.1:0 with exactly `env` as its environment (plus
/// `base_env`); nothing is read from this process's environment, so tests cannot leak into
/// each other. Its log lines (JSON, as the binary writes them) are collected for `logs`.
pub fn start(env: &[(&str, &str)]) -> Health {
    // As the binary does, route the `log` crate's records (the PostgreSQL driver, rustls) into
    // tracing, where each server's runtime threads send them to that server's lines. The
    // global subscriber itself only sees events from threads that are no server's.
    static LOG_BRIDGE: std::sync::Once = std::sync::Once::new();
    LOG_BRIDGE.call_once(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry().try_init();
    });
    let mut table = base_env();
    table.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = move |key: &str| {
        table
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.trim().is_empty())
    };
    let filter = lookup("RUST_LOG").unwrap_or_default();
    let config = HealthConfig::from_lookup(lookup).expect("a valid test configuration");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let dispatch = logging::dispatch(&filter, Lines(Arc::clone(&logs)));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let for_workers = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            // Every thread of this server's runtime logs to this server's lines: the guard is
            // kept for the thread's life on purpose.
            .on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&for_workers));
            })
            .build()
            .map_err(|e| e.to_string())?;
        let _default = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| e.to_string())?;
            let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string())?);
            let shutdown = async {
                let _ = stop_rx.await;
            };
            serve(listener, config, shutdown)
                .await
                .map_err(|e| e.to_string())
        })
    });
    let Ok(addr) = addr_rx.recv_timeout(Duration::from_secs(30)) else {
        panic!("the in-process server did not start: {:?}", thread.join())
    };
    Health {
        addr,
        logs,
        run: Run::InProcess {
            shutdown: Some(stop_tx),
            thread: Some(thread),
        },
    }
}

/// Runs the real binary with a clean environment plus `env`, on a port picked here (bound
/// and released; retried if something takes it first), and waits until it answers.
pub fn spawn(env: &[(&str, &str)]) -> Health {
    let mut last = Vec::new();
    for _attempt in 0..5 {
        match try_spawn(env) {
            Ok(health) => return health,
            Err(logs) => last = logs,
        }
    }
    panic!(
        "dhctl-health did not start in five attempts; the last one logged:\n{}",
        last.join("\n")
    );
}

/// The running binary, or the log lines of one that exited at once.
fn try_spawn(env: &[(&str, &str)]) -> Result<Health, Vec<String>> {
    let cwd = tempfile::tempdir().unwrap();
    let port = closed_port().to_string();
    let mut command = Command::new(bin());
    command
        .env_clear()
        .envs(base_env())
        .env("PORT", &port)
        .envs(env.iter().copied())
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn().expect("spawn dhctl-health");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
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
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                logs.lock().unwrap().push(line);
            }
        }));
    }
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut health = Health {
        addr,
        logs,
        run: Run::Process {
            child,
            readers,
            _cwd: cwd,
        },
    };
    let up = wait_until(Duration::from_secs(30), || {
        health.exited() || try_get(addr, "/health/live", Duration::from_secs(2)).is_some()
    });
    if health.exited() {
        // Most likely the port was taken between the pick and the bind: try another.
        let _ = health.wait_exit(Duration::from_secs(10));
        return Err(health.logs());
    }
    assert!(
        up,
        "dhctl-health did not answer:\n{}",
        health.logs().join("\n")
    );
    Ok(health)
}

impl Health {
    pub fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[])
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    fn child(&mut self) -> &mut Child {
        match &mut self.run {
            Run::Process { child, .. } => child,
            Run::InProcess { .. } => panic!("signals need the binary: use spawn, not start"),
        }
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child().try_wait(), Ok(None))
    }

    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (TERM, INT) with kill(1): the tests stay free of unsafe code.
    pub fn signal(&mut self, name: &str) {
        let pid = self.child().id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// The binary's exit code, waiting at most `limit`; its log lines are complete after it.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child().try_wait() {
                if let Run::Process { readers, .. } = &mut self.run {
                    // The pipes close with the process: the readers end after the last line.
                    for reader in readers.drain(..) {
                        let _ = reader.join();
                    }
                }
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the server (the shutdown future in process, SIGTERM for the binary) and returns
    /// its exit code (0 for a clean in-process return), so that stats and logs are final.
    pub fn stop(&mut self) -> i32 {
        match &mut self.run {
            Run::InProcess { shutdown, thread } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                match thread.take().map(JoinHandle::join) {
                    Some(Ok(Ok(()))) => 0,
                    Some(Ok(Err(e))) => panic!("serve failed: {e}"),
                    Some(Err(_)) => panic!("the server thread panicked"),
                    None => 0,
                }
            }
            Run::Process { .. } => {
                self.sigterm();
                let code = self.wait_exit(Duration::from_secs(60));
                code.expect("dhctl-health did not exit within 60 s of SIGTERM")
            }
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        match &mut self.run {
            Run::InProcess { shutdown, thread } => {
                if let Some(tx) = shutdown.take() {
                    let _ = tx.send(());
                }
                // Not joined: a failing test should not also wait for the drain.
                drop(thread.take());
            }
            Run::Process { child, .. } => {
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
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

/// A port with nothing listening on it, below the kernel's ephemeral range (32768–60999 on
/// Linux), so that no server binding port 0 meanwhile (the other tests run in parallel) and no
/// outgoing connection can be handed it; free when picked (bound, released). A port taken from
/// a port-0 bind was once handed to another test's server a moment later, and a probe of the
/// "closed" port got that server's 200.
pub fn closed_port() -> u16 {
    loop {
        let port: u16 = rand::random_range(10_000..32_768);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
    /// Plain TCP.
    pub fn start(port: u16) -> Redis {
        Redis::launch(port, &["--port", &port.to_string()])
    }

    /// TLS only, with `certs`' server certificate; clients need not show one.
    pub fn start_tls(port: u16, certs: &Certs) -> Redis {
        let file = |name: &str| certs.path(name).display().to_string();
        Redis::launch(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &file("server.crt"),
                "--tls-key-file",
                &file("server.key"),
                "--tls-ca-cert-file",
                &file("ca.crt"),
                "--tls-auth-clients",
                "no",
            ],
        )
    }

    /// redis-server with `listen`, keeping nothing on disk; waits until `port` accepts.
    fn launch(port: u16, listen: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1"])
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
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
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
