//! `rediss://`: Redis over TLS with the same CA rules as PostgreSQL (issue 13): verified against
//! `REDIS_TLS_CA_FILE` or the compiled-in roots, never downgraded, `#insecure` refused. A
//! redis-server of the test's own serves TLS with the test CA's certificate for 127.0.0.1.

use std::net::TcpListener;
use std::process::Command;

use super::support::*;
use crate::certs::Certs;
use crate::harness::TestDb;

/// A port below the ephemeral range that nothing listens on right now (redis-server's
/// `--tls-port 0` means "no TLS", so it cannot pick its own).
fn free_low_port() -> u16 {
    let seed = std::process::id() as u16;
    (0..2000u16)
        .map(|i| 20000 + (seed.wrapping_mul(7).wrapping_add(i * 13)) % 12000)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("no free port in 20000..32000")
}

fn config_exit_code(env: &[(&str, &str)]) -> Option<i32> {
    Command::new(bin())
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn rediss_is_verified_against_the_configured_ca_and_never_downgraded() {
    let db = TestDb::new("health_rediss");
    let certs = Certs::make();
    let redis = Redis::start_tls(free_low_port(), &certs);
    let ca = certs.path("ca.crt");
    let ca = ca.to_str().unwrap();
    let rediss = format!("rediss://127.0.0.1:{}", redis.port);
    let plain = format!("redis://127.0.0.1:{}", redis.port);
    let ready = |env: &[(&str, &str)]| {
        let mut all = vec![
            ("DATABASE_URL", db.url.as_str()),
            ("HEALTH_READY_CACHE_MS", "0"),
        ];
        all.extend_from_slice(env);
        let server = start(&all);
        server.get("/health/ready").json()
    };

    // With the CA: verified, ready.
    let r = ready(&[("REDIS_URL", &rediss), ("REDIS_TLS_CA_FILE", ca)]);
    assert_eq!(r["checks"]["redis"]["status"], "ok", "{r}");
    // Without it the compiled-in roots do not know the test CA: refused, not accepted.
    let r = ready(&[("REDIS_URL", &rediss)]);
    assert_eq!(r["checks"]["redis"]["error"], "tls handshake failed", "{r}");
    // Plain TCP to the TLS port does not work either (and nothing falls back to it).
    let r = ready(&[("REDIS_URL", &plain)]);
    assert_eq!(r["checks"]["redis"]["status"], "error", "{r}");

    // Settings that would downgrade or cannot work are exit 2 at start.
    let not_pem = certs.path("server.csr");
    for env in [
        vec![("REDIS_URL", plain.as_str()), ("REDIS_TLS_CA_FILE", ca)],
        vec![("REDIS_HOST", "127.0.0.1"), ("REDIS_TLS_CA_FILE", ca)],
        vec![("REDIS_URL", &format!("{rediss}/#insecure"))],
        vec![
            ("REDIS_URL", &rediss),
            ("REDIS_TLS_CA_FILE", not_pem.to_str().unwrap()),
        ],
        vec![
            ("REDIS_URL", &rediss),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ],
    ] {
        let mut env = env.clone();
        env.push(("DATABASE_URL", &db.url));
        assert_eq!(config_exit_code(&env), Some(2), "{env:?}");
    }
}
