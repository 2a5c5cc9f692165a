//! What dhctl-health tells whom: `/health/ready` bodies give a generic reason and nothing about
//! the deployment (issue 13, item 6); log lines are valid JSON with one key each, mask nothing
//! by substring and carry no empty hint (issue 13, item 4; issue 11, item 15).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::support::*;
use crate::harness::{server_url, with_dbname, with_user, TestDb};

/// The keys of a JSON object line in order, duplicates kept (a `serde_json::Value` would
/// silently keep the last of two equal keys, which is the bug being tested for).
fn keys(line: &str) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(Keys)
        .unwrap_or_else(|e| panic!("log line is not a JSON object ({e}): {line}"))
}

/// Every line parsed (panics on the first that is not a JSON object with unique keys).
fn parsed(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .map(|line| {
            let mut k = keys(line);
            let n = k.len();
            k.sort();
            k.dedup();
            assert_eq!(k.len(), n, "a key appears twice: {line}");
            serde_json::from_str(line).unwrap()
        })
        .collect()
}

/// `postgres://USER:PASSWORD@host:port/DB` on the test server.
fn url_as(user: &str, password: &str, db: &str) -> String {
    with_user(&with_dbname(&server_url(), db), user, Some(password))
}

#[test]
fn the_target_is_logged_by_structure_even_when_user_database_and_password_are_equal() {
    // The compose default is user = database = password = `datahub`; `postgres` is the one
    // role and database every test server has (trust auth ignores the password).
    let mut server = start(&[("DATABASE_URL", &url_as("postgres", "postgres", "postgres"))]);
    assert_eq!(server.get("/health/ready").status, 200);
    assert_eq!(server.stop(), 0);
    let lines = parsed(&server.logs());
    let listening = lines
        .iter()
        .find(|l| l["message"] == "listening")
        .expect("a listening line");
    let shown = listening["database"].as_str().unwrap();
    assert!(
        shown.starts_with("postgres@") && shown.ends_with("/postgres"),
        "{listening}"
    );
    assert!(!shown.contains("***"), "{listening}");
}

#[test]
fn log_lines_stay_valid_json_whatever_the_password() {
    let db = TestDb::new("health_quote_pw");
    let redis_closed = format!("redis://:%22@127.0.0.1:{}", closed_port());
    // `"`, `\` and a control character, percent-encoded in the URL.
    for password in ["%22", "%5C", "a%22%5C%0Ab"] {
        let mut server = start(&[
            ("DATABASE_URL", &url_as("postgres", password, &db.name)),
            ("REDIS_URL", &redis_closed),
            ("REDIS_PASSWORD", "\"\\"),
            ("RUST_LOG", "debug"),
            ("HEALTH_READY_CACHE_MS", "0"),
        ]);
        assert_eq!(server.get("/health/ready").status, 503);
        assert_eq!(server.stop(), 0);
        let lines = parsed(&server.logs());
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == "readiness check failed"),
            "{lines:#?}"
        );
    }
}

#[test]
fn failure_lines_name_the_endpoint_once_and_error_lines_carry_no_empty_hint() {
    let db = TestDb::new("health_log_keys");
    let mut server = start(&[
        ("DATABASE_URL", &db.url),
        (
            "REDIS_URL",
            &format!("redis://127.0.0.1:{}/3", closed_port()),
        ),
        ("HEALTH_READY_CACHE_MS", "0"),
    ]);
    assert_eq!(server.get("/health/ready").status, 503);
    assert_eq!(server.stop(), 0);
    let lines = parsed(&server.logs());
    let failed = lines
        .iter()
        .find(|l| l["message"] == "readiness check failed")
        .expect("a failure line");
    assert_eq!(failed["check"], "redis", "{failed}");
    assert!(
        failed["endpoint"].as_str().unwrap().ends_with("/3"),
        "{failed}"
    );
    assert_eq!(failed["reason"], "connection refused", "{failed}");
    assert!(failed["error"].is_string(), "{failed}");

    // A configuration error without a hint has no `hint` key; one with a hint has a real one.
    for (env, has_hint) in [
        (
            vec![("DATABASE_URL", db.url.as_str()), ("PORT", "http")],
            false,
        ),
        (vec![], true),
    ] {
        let out = std::process::Command::new(bin())
            .env_clear()
            .envs(env)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
        let error = parsed(&lines)
            .into_iter()
            .find(|l| l["level"] == "ERROR")
            .unwrap_or_else(|| panic!("no ERROR line: {stderr}"));
        match error.get("hint") {
            None => assert!(!has_hint, "{error}"),
            Some(hint) => {
                assert!(has_hint, "{error}");
                assert!(!hint.as_str().unwrap().is_empty(), "{error}");
            }
        }
    }
}

#[test]
fn ready_bodies_give_a_generic_reason_and_the_log_gets_the_detail() {
    let db = TestDb::new("health_reasons");
    let role = "dhctl_no_such_role_4f2a";
    let hung = hanging_listener();
    let mut cases = vec![
        // A role that does not exist: the driver's text names it.
        (url_as(role, "pw", &db.name), "authentication failed", role),
        // A database that does not exist: the driver's text names it.
        (
            with_dbname(&db.url, "dhctl_no_such_db_7c1e"),
            "unavailable",
            "dhctl_no_such_db_7c1e",
        ),
        (
            with_dbname(
                &format!("postgres://postgres@127.0.0.1:{}", closed_port()),
                "x",
            ),
            "connection refused",
            "os error",
        ),
        (
            with_dbname(
                &format!("postgres://postgres@{}", hung.local_addr().unwrap()),
                "x",
            ),
            "timeout",
            "no answer within",
        ),
    ];
    // The test server's certificate (Debian's, self-signed) fails verify-full with TLS detail;
    // a server without TLS (the matrix's clusters) has no certificate to fail on.
    if db.value("SHOW ssl") == "on" {
        cases.push((
            format!("{}?sslmode=verify-full", db.url),
            "tls handshake failed",
            "certificate",
        ));
    }
    for (url, reason, detail) in cases {
        let mut server = start(&[
            ("DATABASE_URL", &url),
            ("HEALTH_CHECK_TIMEOUT_MS", "1000"),
            ("HEALTH_READY_CACHE_MS", "0"),
        ]);
        let reply = server.get("/health/ready");
        assert_eq!(reply.status, 503, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["checks"]["database"]["error"], reason, "{url}: {body}");
        assert!(!reply.body.contains(detail), "{url}: {body}");
        assert!(!reply.body.contains("127.0.0.1"), "{url}: {body}");
        assert_eq!(server.stop(), 0);
        let lines = parsed(&server.logs());
        let logged = lines
            .iter()
            .filter(|l| l["message"] == "readiness check failed" && l["check"] == "database")
            .filter_map(|l| l["error"].as_str())
            .any(|e| e.contains(detail));
        assert!(
            logged,
            "{url}: the detail {detail:?} was not logged: {lines:#?}"
        );
    }
}
