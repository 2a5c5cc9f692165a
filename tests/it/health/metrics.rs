//! `/metrics` against real PostgreSQL and Redis: the exposition text parsed and its values
//! checked against what the database holds (migrations applied, pending, modified and out of
//! order; partition runway, age and DEFAULT rows as `dhctl partition status` sees them), a
//! dependency down (200 with `up` 0), reads that never wait behind DDL, and 400 concurrent
//! scrapes that cost one round of checks, counted by PostgreSQL itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::support::*;
use crate::harness::{dhctl, migrations_with, wait_until, TestDb};

/// The content type of the Prometheus text format 0.0.4, which prometheus-client's
/// `prometheus_text` encoder writes.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed strictly: every line is a `# HELP`, a `# TYPE` or a sample of a family whose
/// `# TYPE` came before it (a histogram's or a counter's suffixes included).
#[derive(Debug)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                assert!(known.contains(&kind), "unknown type: {line}");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.is_empty() && !line.starts_with('#'),
                "stray line {line:?}"
            );
            let sample = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| sample.name.strip_suffix(s))
                .find(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(&sample.name);
            assert!(types.contains_key(family), "no # TYPE before {line:?}");
            samples.push(sample);
        }
        Exposition { types, samples }
    }

    /// The value of the one sample named `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {:#?}", self.samples))
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels end with }");
            let mut labels = BTreeMap::new();
            // Our label values hold no `",` (names, versions, numbers): a plain split suffices,
            // and a value that did would fail the quote checks below.
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                let v = v.strip_suffix('"').unwrap_or(v);
                assert!(!v.contains('"'), "unescaped quote in {line:?}");
                labels.insert(k.to_string(), v.to_string());
            }
            (name, labels)
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    assert!(name.chars().all(valid), "bad metric name in {line:?}");
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// GET /metrics: always 200 with the 0.0.4 content type; the body parsed.
fn scrape(server: &Health) -> Exposition {
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(CONTENT_TYPE));
    Exposition::parse(&reply.body)
}

fn start_env(pairs: &[(&str, &str)]) -> Health {
    let mut env = vec![("HEALTH_READY_CACHE_MS", "0")];
    env.extend_from_slice(pairs);
    start(&env)
}

/// The database server's clock, in seconds since the epoch.
fn db_now(db: &TestDb) -> f64 {
    db.value("SELECT extract(epoch FROM clock_timestamp())::text")
        .parse()
        .unwrap()
}

#[test]
fn migrations_are_counted_applied_pending_drifted_and_out_of_order() {
    let db = TestDb::new("metrics_migrations");
    let later = ("20240101000007_later.sql", "-- migrate:up\nSELECT 7;\n");
    let dir = migrations_with(&[later]);
    let dir_text = dir.path().display().to_string();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("DHCTL_MIGRATIONS_DIR", dir_text.as_str()),
    ];

    // A database without history: everything pending, nothing applied, no newest version.
    let server = start_env(&env);
    let m = scrape(&server);
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "migrations")]),
        1.0
    );
    assert_eq!(m.value("dhctl_migrations_applied", &[]), 0.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 6.0);
    assert_eq!(m.value("dhctl_migrations_out_of_order", &[]), 0.0);
    assert!(!m.has("dhctl_migrations_newest_applied_version"));

    dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let m = scrape(&server);
    assert_eq!(m.value("dhctl_migrations_applied", &[]), 6.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 0.0);
    assert_eq!(m.value("dhctl_migrations_drifted", &[]), 0.0);
    assert_eq!(
        m.value("dhctl_migrations_newest_applied_version", &[]),
        20240101000007.0
    );
    drop(server);

    // A branch merged late (older than the newest applied), a new one, and an edited file.
    std::fs::write(
        dir.path().join("20240101000006_late_branch.sql"),
        "-- migrate:up\nSELECT 6;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("20990101000000_next.sql"),
        "-- migrate:up\nSELECT 8;\n",
    )
    .unwrap();
    let edited = dir.path().join("20240101000001_create_api_keys.sql");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(
        &edited,
        text.replacen("-- migrate:up", "-- migrate:up\nSELECT 0;", 1),
    )
    .unwrap();
    let server = start_env(&env);
    let m = scrape(&server);
    assert_eq!(m.value("dhctl_migrations_applied", &[]), 6.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 2.0);
    assert_eq!(m.value("dhctl_migrations_out_of_order", &[]), 1.0);
    assert_eq!(m.value("dhctl_migrations_drifted", &[]), 1.0);
    assert_eq!(m.value("dhctl_migrations_ahead", &[]), 0.0);
    // dhctl status agrees on the counts.
    let status = dhctl(&db.url)
        .migrations_dir(dir.path())
        .args(["status", "--format", "json"])
        .run()
        .json();
    // (Where status tells out-of-order files apart, they are not in its `pending`.)
    let unapplied = status["counts"]["pending"].as_u64().unwrap()
        + status["counts"]["out_of_order"].as_u64().unwrap_or(0);
    assert_eq!(unapplied, 2, "{status}");
    assert_eq!(status["counts"]["modified"], 1, "{status}");
}

#[test]
fn partition_runway_age_retention_and_default_rows_match_the_catalog() {
    let db = TestDb::new("metrics_partitions");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    let status = dhctl(&db.url)
        .args(["partition", "status", "--format", "json"])
        .run()
        .json();
    let table = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "request_logs")
        .unwrap()
        .clone();
    let epoch = |text: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap())
            .unwrap()
            .timestamp() as f64
    };
    let covered_until = epoch(&table["coverage"]["covered_until"]);
    // The seed's first partition (January 2024) is the oldest; prune never ran.
    let oldest_end = epoch(&table["partitions"][0]["to"]);
    let partitions = table["partitions"].as_array().unwrap().len() as f64;

    // A DEFAULT partition holding three stray rows (years past every partition).
    db.exec(
        "CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT; \
         INSERT INTO request_logs (request_id, method, path, created_at) \
         SELECT 'r' || i, 'GET', '/', '2090-01-01 00:00:00+00' FROM generate_series(1, 3) i",
    );

    let before = db_now(&db);
    let server = start_env(&[("DATABASE_URL", db.url.as_str())]);
    let m = scrape(&server);
    let after = db_now(&db);
    let t = [("table", "request_logs")];
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "partitions")]),
        1.0
    );
    // Measured from the server's clock at the round, which lies between the two readings.
    let runway = m.value("dhctl_partition_runway_seconds", &t);
    assert!(
        (covered_until - after..=covered_until - before).contains(&runway),
        "runway {runway} vs covered until {covered_until}, now in [{before}, {after}]"
    );
    assert_eq!(
        m.value("dhctl_partition_runway_periods", &t),
        table["coverage"]["runway"].as_f64().unwrap()
    );
    assert_eq!(m.value("dhctl_partitions", &t), partitions);
    let age = m.value("dhctl_partition_oldest_age_seconds", &t);
    assert!(
        (before - oldest_end..=after - oldest_end).contains(&age),
        "age {age}, oldest partition ended {oldest_end}"
    );
    // 13 months, by the calendar: between 395 and 397 days.
    let retention = m.value("dhctl_partition_retention_seconds", &t);
    assert!(
        (395.0 * 86400.0..=397.0 * 86400.0).contains(&retention),
        "{retention}"
    );
    // The alert condition: the oldest partition is past retention (prune has not run).
    assert!(age > retention);
    // webhook_deliveries has no DEFAULT partition: no series for it.
    assert!(m
        .get(
            "dhctl_partition_default_rows",
            &[("table", "webhook_deliveries")]
        )
        .is_none());
    // The statistics system counts the rows once the inserting session has flushed them.
    let counted = wait_until(Duration::from_secs(30), || {
        scrape(&server).get("dhctl_partition_default_rows", &t) == Some(3.0)
    });
    assert!(
        counted,
        "default rows: {:?}",
        scrape(&server).get("dhctl_partition_default_rows", &t)
    );

    // Every series is present now; docs/health.md lists each family with its type.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/health.md")).unwrap();
    let m = scrape(&server);
    assert!(m.types.len() >= 20, "{:?}", m.types);
    for (family, kind) in &m.types {
        assert!(
            doc.contains(&format!("| `{family}` | {kind} |")),
            "docs/health.md does not list {family} ({kind})"
        );
    }
}

#[test]
fn a_dependency_down_is_up_0_in_a_200_and_the_rest_still_renders() {
    let db = TestDb::new("metrics_down");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    let redis_closed = format!("redis://127.0.0.1:{}", closed_port());
    let server = start_env(&[
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_closed.as_str()),
    ]);
    assert_eq!(server.get("/health/ready").status, 503);
    let m = scrape(&server);
    assert_eq!(
        m.value("dhctl_dependency_up", &[("dependency", "redis")]),
        0.0
    );
    assert_eq!(
        m.value("dhctl_dependency_up", &[("dependency", "postgres")]),
        1.0
    );
    assert_eq!(m.value("dhctl_health_ready", &[]), 0.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 0.0);
    assert!(
        m.value(
            "dhctl_partition_runway_seconds",
            &[("table", "request_logs")]
        ) > 0.0
    );
    assert!(
        m.value(
            "dhctl_dependency_check_duration_seconds_count",
            &[("dependency", "redis")]
        ) >= 1.0
    );
    drop(server);

    // PostgreSQL down: its reads are absent (not zero), the rest renders.
    let pg_closed = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let server = start_env(&[("DATABASE_URL", pg_closed.as_str())]);
    let m = scrape(&server);
    assert_eq!(
        m.value("dhctl_dependency_up", &[("dependency", "postgres")]),
        0.0
    );
    assert_eq!(
        m.value("dhctl_dependency_up", &[("dependency", "redis")]),
        1.0
    );
    for collector in ["migrations", "partitions"] {
        assert_eq!(
            m.value("dhctl_collector_up", &[("collector", collector)]),
            0.0
        );
    }
    assert!(!m.has("dhctl_migrations_pending") && !m.has("dhctl_partition_runway_seconds"));
    assert_eq!(m.types["dhctl_build_info"], "gauge");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.value("dhctl_build_info", &[("version", version)]), 1.0);
    assert!(m.value("process_start_time_seconds", &[]) > 1.7e9);
    assert!(m.value("dhctl_health_checks_total", &[]) >= 1.0);
    assert_eq!(m.types["dhctl_health_checks_total"], "counter");
}

#[test]
fn metrics_answer_get_and_head_and_refuse_other_methods() {
    let db = TestDb::new("metrics_route");
    let server = start_env(&[("DATABASE_URL", db.url.as_str())]);
    let get = server.get("/metrics");
    let head = http(server.addr, "HEAD", "/metrics", &[]);
    assert_eq!((get.status, head.status), (200, 200));
    assert_eq!(head.header("content-type"), Some(CONTENT_TYPE));
    assert!(head.body.is_empty());
    assert_eq!(get.header("cache-control"), Some("no-store"));
    assert!(get.header("x-request-id").is_some());
    let post = http(server.addr, "POST", "/metrics", &[]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(post.header("content-type"), Some("application/json"));
}

#[test]
fn schema_reads_never_wait_behind_ddl_locks() {
    let db = TestDb::new("metrics_locks");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db.exec("CREATE TABLE webhook_deliveries_default PARTITION OF webhook_deliveries DEFAULT");
    let server = start_env(&[
        ("DATABASE_URL", db.url.as_str()),
        ("HEALTH_CHECK_TIMEOUT_MS", "4000"),
    ]);
    // A migration in progress: ACCESS EXCLUSIVE on the partitioned tables and on the history.
    let mut ddl = db.client();
    ddl.batch_execute(
        "BEGIN; LOCK TABLE request_logs, webhook_deliveries IN ACCESS EXCLUSIVE MODE",
    )
    .unwrap();
    let m = scrape(&server);
    // The partition reads touch the catalog only (the DEFAULT partition's rows come from the
    // statistics system): they go through untouched.
    let w = [("table", "webhook_deliveries")];
    assert_eq!(m.value("dhctl_partition_default_rows", &w), 0.0);
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "partitions")]),
        1.0
    );
    assert!(
        m.value(
            "dhctl_partition_runway_seconds",
            &[("table", "request_logs")]
        ) > 0.0
    );
    ddl.batch_execute("LOCK TABLE refinery_schema_history IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    // The history read gives up at lock_timeout instead of queueing; the rest still renders.
    let m = scrape(&server);
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "migrations")]),
        0.0
    );
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "partitions")]),
        1.0
    );
    assert_eq!(
        m.value("dhctl_dependency_up", &[("dependency", "postgres")]),
        1.0
    );
    assert!(!m.has("dhctl_migrations_pending"));
    // Nothing of ours is left waiting in the lock queue once the scrape has answered.
    let waiting = db.value(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE NOT l.granted AND a.application_name = 'dhctl-health' AND a.datname = '{}'",
        db.name
    ));
    assert_eq!(waiting, "0");
    ddl.batch_execute("ROLLBACK").unwrap();
    let m = scrape(&server);
    assert_eq!(
        m.value("dhctl_collector_up", &[("collector", "migrations")]),
        1.0
    );
    let logs = server.logs();
    let failed = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["read"] == "migrations" && v["level"] == "WARN")
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "{logs:#?}");
    assert_eq!(failed[0]["reason"], "timeout", "{:#}", failed[0]);
}

#[test]
fn four_hundred_concurrent_scrapes_cost_one_round_of_checks() {
    let db = TestDb::new("metrics_flood");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    wait_for_quiet(&db.name);
    let before = history_scans(&db);
    wait_for_quiet(&db.name);
    // A result cache far longer than the test: every scrape must share the start-up round
    // (in flight or finished) whenever it arrives, so the count is exact, not timing-bound.
    let mut server = start(&[
        ("DATABASE_URL", db.url.as_str()),
        ("HEALTH_READY_CACHE_MS", "600000"),
    ]);
    let gate = Arc::new(Barrier::new(400));
    let addr = server.addr;
    let threads: Vec<_> = (0..400)
        .map(|_| {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                gate.wait();
                http(addr, "GET", "/metrics", &[])
            })
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let m = Exposition::parse(&reply.body);
        // The server's own count of rounds, as each scrape saw it.
        assert_eq!(m.value("dhctl_health_checks_total", &[]), 1.0);
        assert_eq!(m.value("dhctl_migrations_applied", &[]), 5.0);
    }
    assert_eq!(server.stop(), 0);
    wait_for_quiet(&db.name);
    // PostgreSQL's count: each round reads the history table exactly once.
    let rounds = history_scans(&db) - before;
    assert_eq!(rounds, 1, "{rounds} reads of the history for 400 scrapes");
}

#[test]
fn the_history_table_is_read_where_dhctl_history_table_says() {
    let db = TestDb::new("metrics_history_table");
    db.exec("CREATE SCHEMA ops");
    dhctl(&db.url)
        .env("DHCTL_HISTORY_TABLE", "ops.dhctl_history")
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let server = start_env(&[
        ("DATABASE_URL", db.url.as_str()),
        ("DHCTL_HISTORY_TABLE", "ops.dhctl_history"),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
    ]);
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["migrations"]["pending"], 0);
    let m = scrape(&server);
    assert_eq!(m.value("dhctl_migrations_applied", &[]), 5.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 0.0);
    drop(server);

    // Without the variable the default name is looked for, and not found: all pending.
    let server = start_env(&[
        ("DATABASE_URL", db.url.as_str()),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
    ]);
    assert_eq!(server.get("/health/ready").status, 503);
    let m = scrape(&server);
    assert_eq!(m.value("dhctl_migrations_applied", &[]), 0.0);
    assert_eq!(m.value("dhctl_migrations_pending", &[]), 5.0);
}

#[test]
fn unreadable_migrations_or_policies_stop_the_server_at_start() {
    let empty = tempfile::tempdir().unwrap();
    let bad_policy = empty.path().join("request_logs.toml");
    std::fs::write(
        &bad_policy,
        "table = \"request_logs\"\ninterval = \"fortnight\"\n",
    )
    .unwrap();
    for (variable, value) in [
        ("DHCTL_PARTITIONS_DIR", empty.path().display().to_string()),
        ("DHCTL_MIGRATIONS_DIR", "/nonexistent/dhctl-sql".to_string()),
        ("DHCTL_HISTORY_TABLE", "no_schema".to_string()),
    ] {
        let out = std::process::Command::new(bin())
            .env_clear()
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
            .env("PORT", "0")
            .env(variable, &value)
            .current_dir(empty.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: serde_json::Value =
            serde_json::from_str(stderr.lines().last().unwrap_or_default()).unwrap();
        assert_eq!(last["level"], "ERROR", "{stderr}");
        let message = last["message"].as_str().unwrap();
        assert!(message.starts_with(variable), "{variable}: {message}");
        assert!(message.contains(&value), "{variable}: {message}");
        if variable != "DHCTL_HISTORY_TABLE" {
            assert!(last["hint"].as_str().unwrap().contains(variable), "{last}");
        }
    }
}
