//! TLS against a cluster of the test's own with ssl=on and a CA made in the test: libpq's
//! sslmode semantics (src/db/tls.rs), and clear errors when verification fails.

use crate::certs::Certs;
use crate::cluster::Cluster;
use crate::harness::*;

/// TCP connections must use TLS (hostnossl is rejected); the unix socket is for the test's own
/// admin connection.
const TLS_ONLY_HBA: &str = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.2/32 trust\nhostnossl all all 0.0.0.0/0 reject\n";

fn tls_cluster(certs: &Certs) -> Cluster {
    let crt = certs.read("server.crt");
    let key = certs.read("server.key");
    Cluster::start(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        TLS_ONLY_HBA,
        &[("server.crt", &crt), ("server.key", &key)],
    )
}

#[test]
fn require_with_the_ca_connects_and_migrates_over_tls() {
    let certs = Certs::make();
    let cluster = tls_cluster(&certs);
    let url = format!(
        "postgres://postgres:not-a-real-password@localhost:{}/tls_app?sslmode=require",
        cluster.port
    );
    let ca = certs.path("ca.crt");
    dhctl(&url)
        .env("DHCTL_SSL_ROOT_CERT", &ca)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let status = dhctl(&url)
        .env("DHCTL_SSL_ROOT_CERT", &ca)
        .args(["status", "--exit-code", "--format", "json"])
        .run();
    status.expect_code(0);
    assert_eq!(status.json()["counts"]["applied"], 5);
    // verify-full with the CA in the URL, by name and by IP (both in the certificate).
    for host in ["localhost", "127.0.0.1"] {
        let full = format!(
            "postgres://postgres@{host}:{}/tls_app?sslmode=verify-full&sslrootcert={}",
            cluster.port,
            ca.display()
        );
        dhctl(&full)
            .args(["status", "--exit-code"])
            .run()
            .expect_code(0);
    }
    // prefer without a CA encrypts without verifying, as libpq does.
    let prefer = format!("postgres://postgres@127.0.0.1:{}/tls_app", cluster.port);
    dhctl(&prefer)
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
    let mut admin = cluster.admin();
    let rows = admin
        .query(
            "SELECT count(*) FROM pg_database WHERE datname = 'tls_app'",
            &[],
        )
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[test]
fn a_wrong_ca_or_host_name_fails_clearly() {
    let certs = Certs::make();
    let cluster = tls_cluster(&certs);
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=require",
        cluster.port
    );
    let wrong = dhctl(&url)
        .env("DHCTL_SSL_ROOT_CERT", certs.path("other_ca.crt"))
        .args(["status"])
        .run();
    wrong.expect_code(2);
    assert!(
        wrong.stderr.contains("certificate") && wrong.stderr.contains("UnknownIssuer"),
        "{}",
        wrong.stderr
    );
    // 127.0.0.2 is not in the certificate: verify-full refuses, verify-ca accepts.
    let ca = certs.path("ca.crt");
    let other_name = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.2:{}/postgres?sslmode={mode}&sslrootcert={}",
            cluster.port,
            ca.display()
        )
    };
    let full = dhctl(&other_name("verify-full")).args(["status"]).run();
    full.expect_code(2);
    assert!(
        full.stderr.contains("not valid for name \"127.0.0.2\""),
        "{}",
        full.stderr
    );
    assert!(
        full.stderr.contains("hint: the server's certificate"),
        "{}",
        full.stderr
    );
    dhctl(&other_name("verify-ca"))
        .args(["status"])
        .run()
        .expect_code(0);
    let missing = dhctl(&url)
        .env("DHCTL_SSL_ROOT_CERT", "/nonexistent/ca.pem")
        .args(["status"])
        .run();
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("/nonexistent/ca.pem"),
        "{}",
        missing.stderr
    );
}

#[test]
fn require_against_a_server_without_tls_fails_clearly() {
    let cluster = Cluster::start(
        "ssl = off\n",
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        &[],
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        cluster.port
    );
    let run = dhctl(&url).args(["status"]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("does not support TLS"),
        "{}",
        run.stderr
    );
    // The hint is about the server's TLS, not about a CA that was never consulted.
    assert!(
        run.stderr.contains("hint: the server has TLS turned off"),
        "{}",
        run.stderr
    );
    let plain = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=prefer",
        cluster.port
    );
    dhctl(&plain)
        .args(["status", "--exit-code"])
        .run()
        .expect_code(1);
}

#[test]
fn dhctl_health_checks_readiness_over_tls() {
    let certs = Certs::make();
    let cluster = tls_cluster(&certs);
    let url = format!(
        "postgres://postgres:tls-secret-pw@localhost:{}/postgres?sslmode=require",
        cluster.port
    );
    let ca = certs.path("ca.crt");
    let health = crate::health::support::start(&[
        ("DATABASE_URL", &url),
        ("DHCTL_SSL_ROOT_CERT", ca.to_str().unwrap()),
    ]);
    let ready = health.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["database"]["status"], "ok");
    drop(health);
    let other_ca = certs.path("other_ca.crt");
    let wrong = crate::health::support::start(&[
        ("DATABASE_URL", &url),
        ("DHCTL_SSL_ROOT_CERT", other_ca.to_str().unwrap()),
    ]);
    let ready = wrong.get("/health/ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["database"]["status"], "error");
    assert!(wrong.logs().iter().all(|l| !l.contains("tls-secret-pw")));
}
