//! The test harness: a fresh database per test (dropped when the test passes, kept for
//! inspection when it fails), and a builder that runs the real binary like a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server the tests use (DHCTL_TEST_DATABASE_URL), pointing at its maintenance database.
pub fn server_url() -> String {
    std::env::var("DHCTL_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_string())
}

/// The test server's TCP host and port (from DHCTL_TEST_DATABASE_URL), for tests that write a
/// connection string of their own.
pub fn server_host_port() -> (String, u16) {
    host_port(&server_url())
}

/// The TCP host and port `url` connects to (127.0.0.1 and 5432 when it names none).
pub fn host_port(url: &str) -> (String, u16) {
    let config: postgres::Config = url.parse().expect("a test connection URL");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// Parses a test's connection URL, changes it with `edit` and writes it back. Every part is
/// given as it is written in a URL (percent-encoded where it needs to be): the setters encode
/// only what a URL cannot hold, never a `%`.
fn edit_url(url: &str, edit: impl FnOnce(&mut url::Url) -> Result<(), ()>) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
    edit(&mut parsed).unwrap_or_else(|()| panic!("cannot change {url:?}"));
    parsed.into()
}

/// `url` with its database name replaced.
pub fn with_dbname(url: &str, dbname: &str) -> String {
    edit_url(url, |u| {
        u.set_path(&format!("/{dbname}"));
        Ok(())
    })
}

/// `url` logging in as `user`, with `password` or none.
pub fn with_user(url: &str, user: &str, password: Option<&str>) -> String {
    edit_url(url, |u| {
        u.set_username(user)?;
        u.set_password(password)
    })
}

/// `url` with its password replaced (the user kept).
pub fn with_password(url: &str, password: &str) -> String {
    edit_url(url, |u| u.set_password(Some(password)))
}

/// `url` with the query parameter `key=value` added (`value` percent-encoded here; libpq reads
/// no `+` as a space, so not form-encoded).
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let param = format!("{key}={}", utf8_percent_encode(value, NON_ALPHANUMERIC));
    edit_url(url, |u| {
        let query = match u.query() {
            Some(query) if !query.is_empty() => format!("{query}&{param}"),
            _ => param,
        };
        u.set_query(Some(&query));
        Ok(())
    })
}

/// `url` reaching the server at `host:port` instead.
pub fn with_host_port(url: &str, host: &str, port: u16) -> String {
    edit_url(url, |u| {
        u.set_host(Some(host)).map_err(|_| ())?;
        u.set_port(Some(port))
    })
}

/// A blocking admin connection to `url`; panics with instructions when the server is down.
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url}: {e}\n\
             start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) \
             or point DHCTL_TEST_DATABASE_URL at a server where this role may CREATE DATABASE"
        )
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of the test's own.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub fn new(label: &str) -> TestDb {
        let db = TestDb::unique(label);
        let mut admin = connect(&server_url());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
            .expect("create the test database");
        db
    }

    /// A unique name whose database does not exist (for tests of database creation).
    pub fn unique(label: &str) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("dhctl_t_{label}_{}_{n}", std::process::id());
        let url = with_dbname(&server_url(), &name);
        TestDb { name, url }
    }

    pub fn client(&self) -> postgres::Client {
        connect(&self.url)
    }

    /// Runs statements; panics on error.
    pub fn exec(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of every row, as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        self.client()
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// A single value, as text.
    pub fn value(&self, sql: &str) -> String {
        self.column(sql)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    pub fn exists(&self) -> bool {
        database_exists(&self.name)
    }

    /// The tables in schema public, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.column("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r','p') ORDER BY 1")
    }

    /// The versions in refinery's history, in order.
    pub fn history(&self) -> Vec<i64> {
        self.column("SELECT version FROM refinery_schema_history ORDER BY version")
            .into_iter()
            .map(|v| v.parse().unwrap())
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept database {} for inspection", self.name);
            return;
        }
        if let Ok(mut admin) = postgres::Client::connect(&server_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// What a finished dhctl run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with the output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The dhctl binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dhctl"))
}

/// `dhctl` against `url`, as a user would type it: a clean environment (no DHCTL_* or RUST_LOG
/// from the caller), run in an empty folder (no stray .env).
pub struct Dhctl {
    command: Command,
    cwd: tempfile::TempDir,
}

pub fn dhctl(url: &str) -> Dhctl {
    let cwd = tempfile::tempdir().unwrap();
    let mut command = Command::new(bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("DHCTL_")
            || key == "DATABASE_URL"
            || key == "RUST_LOG"
            || key.starts_with("PG")
        {
            command.env_remove(key);
        }
    }
    command
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .current_dir(cwd.path())
        .stdin(Stdio::null());
    Dhctl { command, cwd }
}

impl Dhctl {
    pub fn args<I, S>(mut self, args: I) -> Dhctl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Dhctl {
        self.command.env(key, value);
        self
    }

    /// Writes a `.env` file into the folder dhctl runs in.
    pub fn dotenv(self, contents: &str) -> Dhctl {
        std::fs::write(self.cwd.path().join(".env"), contents).unwrap();
        self
    }

    /// Runs without DATABASE_URL in the environment (so it may come from a .env file).
    pub fn without_database_url(mut self) -> Dhctl {
        self.command.env_remove("DATABASE_URL");
        self
    }

    /// Sends stdout to `out` (a file, a pipe) instead of capturing it; [`Run::stdout`] is then
    /// empty.
    pub fn stdout(mut self, out: impl Into<Stdio>) -> Dhctl {
        self.command.stdout(out);
        self
    }

    pub fn migrations_dir(self, dir: &Path) -> Dhctl {
        self.env("DHCTL_MIGRATIONS_DIR", dir)
    }

    pub fn run(mut self) -> Run {
        let started = Instant::now();
        let out = self.command.output().expect("run dhctl");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        }
    }

    /// Starts it without waiting.
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dhctl")
    }
}

/// A temporary folder holding only `files` (name, contents).
pub fn folder<T: AsRef<[u8]>>(files: &[(&str, T)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A fresh database with the shipped migrations applied, no partitions made.
pub fn migrated_without_partitions(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db
}

/// The shipped migrations: how many rows a fully migrated history holds.
pub fn shipped_migrations() -> usize {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count()
}

/// A folder holding a copy of the shipped sql/ plus `extra` files (name, contents).
pub fn migrations_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Sends `signal` ("-INT", "-TERM", ...) to a running child with kill(1).
/// Whether the test server has a database of this name.
pub fn database_exists(name: &str) -> bool {
    connect(&server_url())
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some()
}

pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {} failed", child.id());
}

/// Waits for the child at most `limit`; kills it (SIGKILL) when it is still running then.
/// Returns its exit code, whether it had to be killed, its stdout and its stderr.
pub fn wait_at_most(
    mut child: std::process::Child,
    limit: Duration,
) -> (Option<i32>, bool, String, String) {
    let started = Instant::now();
    let mut hung = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            hung = true;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        hung,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The dhctl sessions open on any of `names`, as pg_stat_activity shows them.
pub fn dhctl_sessions(admin: &mut postgres::Client, names: &[String]) -> usize {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'dhctl' AND datname = ANY($1)",
            &[&names],
        )
        .unwrap();
    row.get::<_, i64>(0) as usize
}

/// Waits (up to 60 s) until `count` dhctl sessions on `names` are running a statement that
/// contains `text`.
pub fn wait_for_dhctl_running(
    admin: &mut postgres::Client,
    names: &[String],
    text: &str,
    count: usize,
) {
    let mut running = || -> usize {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1) \
                 AND strpos(query, $2) > 0 AND state = 'active' AND application_name = 'dhctl'",
                &[&names, &text],
            )
            .unwrap();
        row.get::<_, i64>(0) as usize
    };
    assert!(
        wait_until(Duration::from_secs(60), || running() == count),
        "{count} dhctl session(s) never ran `{text}` at once in {names:?}"
    );
}

/// Ends every dhctl session on any of `names` (whatever a test left running there).
pub fn terminate_dhctl_sessions(admin: &mut postgres::Client, names: &[String]) {
    let _ = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) \
         AND application_name = 'dhctl'",
        &[&names],
    );
}

/// A listener of the test's own that accepts connections and never answers; counts them.
pub struct Silent {
    pub port: u16,
    accepted: std::sync::Arc<AtomicUsize>,
    _held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Silent {
    /// `answer_ssl`: reply 'S' to the SSLRequest, then stall (a stuck TLS terminator).
    pub fn start(answer_ssl: bool) -> Silent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, keep) = (
            std::sync::Arc::clone(&accepted),
            std::sync::Arc::clone(&held),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                if answer_ssl {
                    let mut request = [0u8; 8];
                    if std::io::Read::read_exact(&mut stream, &mut request).is_ok() {
                        let _ = std::io::Write::write_all(&mut stream, b"S");
                    }
                }
                keep.lock().unwrap().push(stream);
            }
        });
        Silent {
            port,
            accepted,
            _held: held,
        }
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A URL to it with connect_timeout=1 and `query` appended.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=1{query}",
            self.port
        )
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The seven tables the five shipped migrations create (partitions aside).
pub const GATEWAY_TABLES: [&str; 7] = [
    "api_keys",
    "audit_logs",
    "rate_limits",
    "request_logs",
    "webhook_deliveries",
    "webhook_events",
    "webhooks",
];

/// A login role that is neither superuser nor CREATEDB, dropped (after its databases) on drop.
/// Declare it before the `TestDb`s it owns so that they are dropped first.
pub struct Role {
    pub name: String,
}

impl Role {
    pub fn new(label: &str, attributes: &str) -> Role {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("dhctl_r_{label}_{}_{n}", std::process::id());
        connect(&server_url())
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {attributes}"
            ))
            .expect("create role");
        Role { name }
    }

    /// A role like [`Role::new`]'s, but allowed to create databases.
    pub fn creator(label: &str) -> Role {
        let role = Role::new(label, "");
        connect(&server_url())
            .batch_execute(&format!("ALTER ROLE \"{}\" CREATEDB", role.name))
            .unwrap();
        role
    }

    /// `url` connecting as this role instead (the test server trusts local connections).
    pub fn url_for(&self, db: &TestDb) -> String {
        with_user(&db.url, &self.name, None)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&server_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.name));
        }
    }
}

impl TestDb {
    /// A fresh database owned by `role`.
    pub fn owned_by(label: &str, role: &Role) -> TestDb {
        let db = TestDb::unique(label);
        connect(&server_url())
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\" OWNER \"{}\"",
                db.name, role.name
            ))
            .expect("create the test database");
        db
    }
}

/// Starts `n` copies of one dhctl command at once and asserts that every one exits 0.
pub fn race(n: usize, command: impl Fn() -> Dhctl) {
    let children: Vec<_> = (0..n).map(|_| command().spawn()).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "a racing runner failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
