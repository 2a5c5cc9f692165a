//! Routes, JSON shapes, common headers, request ids and the `--check-url` probe.

use std::process::Command;

use super::support::*;
use crate::harness::TestDb;

fn assert_common_headers(reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{reply:?}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{reply:?}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{reply:?}"
    );
    let id = reply.header("x-request-id").expect("x-request-id");
    assert!(!id.is_empty() && id.len() <= 128, "{id:?}");
}

#[test]
fn each_route_answers_get_and_head_with_the_seed_shapes_and_headers() {
    let db = TestDb::new("health_routes");
    let server = start(&[("DATABASE_URL", &db.url)]);

    let live = server.get("/health/live");
    assert_eq!(live.status, 200);
    assert_common_headers(&live);
    assert_eq!(live.json(), serde_json::json!({"status": "ok"}));

    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_common_headers(&health);
    let h = health.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let ts = h["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");

    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_common_headers(&ready);
    let r = ready.json();
    assert_eq!(r["status"], "ok");
    for check in ["database", "redis"] {
        assert_eq!(r["checks"][check]["status"], "ok", "{r}");
        assert!(
            r["checks"][check]["latency_ms"].as_f64().unwrap() >= 0.0,
            "{r}"
        );
    }
    assert!(r["checks"].get("migrations").is_none(), "{r}");

    for path in ["/health", "/health/ready", "/health/live"] {
        let get = server.get(path);
        let head = http(server.addr, "HEAD", path, &[]);
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_common_headers(&head);
        assert_eq!(head.body, "", "HEAD {path} has no body");
        if path != "/health" {
            // /health's timestamp may change length between the two requests.
            assert_eq!(
                head.header("content-length"),
                get.header("content-length"),
                "{path}"
            );
        }
    }
    // Express is not strict about one trailing slash; neither is the port of it.
    assert_eq!(server.get("/health/live/").status, 200);
    assert_eq!(server.get("/health/live?verbose=1").status, 200);
}

#[test]
fn unknown_paths_are_404_and_other_methods_405_with_allow() {
    let db = TestDb::new("health_404");
    let server = start(&[("DATABASE_URL", &db.url)]);
    for path in ["/", "/healthz", "/health/ready/extra", "/%00", "//health"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert_common_headers(&reply);
        let e = reply.json();
        assert_eq!(e["error"]["code"], "NOT_FOUND", "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains("no route"),
            "{e}"
        );
        assert_eq!(
            e["error"]["request_id"].as_str(),
            reply.header("x-request-id"),
            "{e}"
        );
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"] {
        let reply = http(
            server.addr,
            method,
            "/health/ready",
            &[("Content-Length", "0")],
        );
        assert_eq!(reply.status, 405, "{method}");
        assert_common_headers(&reply);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
        let e = reply.json();
        assert_eq!(e["error"]["code"], "METHOD_NOT_ALLOWED", "{e}");
        assert_eq!(
            e["error"]["request_id"].as_str(),
            reply.header("x-request-id")
        );
    }
    // An unknown path is 404 whatever the method.
    assert_eq!(
        http(server.addr, "POST", "/nope", &[("Content-Length", "0")]).status,
        404
    );
}

#[test]
fn request_ids_are_echoed_when_sane_and_replaced_otherwise() {
    let db = TestDb::new("health_reqid");
    let server = start(&[("DATABASE_URL", &db.url)]);
    let sane = "req-0123_ABC.xyz~:/=";
    for path in ["/health/live", "/nope"] {
        let reply = http(server.addr, "GET", path, &[("X-Request-Id", sane)]);
        assert_eq!(reply.header("x-request-id"), Some(sane), "{path}");
    }
    let longest = "a".repeat(128);
    let reply = http(server.addr, "GET", "/health", &[("X-Request-Id", &longest)]);
    assert_eq!(reply.header("x-request-id"), Some(longest.as_str()));

    let generated = server.get("/health/live");
    let id = generated.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.matches('-').count(), 4, "{id}");
    assert_ne!(
        Some(id.as_str()),
        server.get("/health/live").header("x-request-id")
    );

    let too_long = "b".repeat(129);
    for bad in [too_long.as_str(), "has space", "tab\there", ""] {
        let reply = http(server.addr, "GET", "/health/live", &[("X-Request-Id", bad)]);
        let echoed = reply.header("x-request-id").unwrap();
        assert_ne!(echoed, bad);
        assert_eq!(echoed.len(), 36, "{bad:?} → {echoed}");
    }
    // A non-ASCII byte (obs-text, which HTTP/1.1 parsers accept) is not printable ASCII.
    let reply = raw(
        server.addr,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: caf\xe9\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id").unwrap().len(), 36);
}

#[test]
fn check_url_exits_zero_only_on_200() {
    let db = TestDb::new("health_probe");
    let good_redis = start(&[("DATABASE_URL", &db.url)]);
    let closed = closed_port().to_string();
    let bad_redis = start(&[
        ("DATABASE_URL", &db.url),
        ("REDIS_URL", &format!("redis://127.0.0.1:{closed}")),
    ]);
    let probe = |url: String| {
        Command::new(bin())
            .args(["--check-url", &url, "--timeout-ms", "3000"])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(
        probe(format!("http://{}/health/ready", good_redis.addr)),
        Some(0)
    );
    assert_eq!(
        probe(format!("http://{}/health/live", bad_redis.addr)),
        Some(0)
    );
    assert_eq!(
        probe(format!("http://{}/health/ready", bad_redis.addr)),
        Some(1)
    );
    assert_eq!(probe(format!("http://{}/nope", good_redis.addr)), Some(1));
    assert_eq!(probe(format!("http://127.0.0.1:{closed}/health")), Some(1));
    // A URL that cannot be probed is a usage error (2), not an unhealthy server (1).
    for bad in ["ftp://x/", "notaurl", "http://h:notaport/", ""] {
        assert_eq!(probe(bad.to_string()), Some(2), "{bad:?}");
    }
}

#[test]
fn help_lists_the_environment_variables() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "PORT",
        "DATABASE_URL",
        "DATABASE_POOL_MIN",
        "DATABASE_POOL_MAX",
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "REDIS_TLS_CA_FILE",
        "HEALTH_MAX_CONNECTIONS",
        "HEALTH_CHECK_TIMEOUT_MS",
        "HEALTH_WRITE_TIMEOUT_MS",
        "RUST_LOG",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing from --help:\n{help}"
        );
    }
}
