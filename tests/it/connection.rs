//! How dhctl gets and opens a connection: hostile connection strings and .env files, libpq's
//! quoting and environment, and peers that accept a connection and never answer.

use std::time::Duration;

use crate::harness::*;

/// Runs `dhctl status --format json` against `url` and returns the run (expected to fail).
fn status_json(url: &str) -> Run {
    dhctl(url).args(["status", "--format", "json"]).run()
}

fn error_text(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

#[test]
fn a_percent_before_a_non_ascii_character_is_exit_2_without_the_password() {
    for url in [
        "postgres://postgres@127.0.0.1:5432/postgres?password=Sup3rS%eécret",
        "postgres://postgres:Sup3rS%eécret@127.0.0.1:5432/postgres",
        "postgres://postgres@127.0.0.1:5432/postgres?application_name=%é",
    ] {
        let run = status_json(url);
        run.expect_code(2);
        let json = run.json();
        assert_eq!(json["error"]["exit_code"], 2);
        assert!(
            json["error"]["message"].as_str().unwrap().contains("%XX"),
            "{json}"
        );
        assert!(!error_text(&run).contains("cret"), "{}", error_text(&run));
    }
}

#[test]
fn no_user_or_no_database_is_no_database_given() {
    for url in [
        "",
        "postgres://",
        "postgres:///postgres",
        "postgres://postgres@127.0.0.1",
    ] {
        let run = status_json(url);
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.starts_with("no database given"), "{url}: {message}");
        assert!(!error_text(&run).contains("?@"), "{}", error_text(&run));
    }
}

#[test]
fn a_malformed_dotenv_line_is_named_by_number_never_echoed() {
    let dotenv = "# settings\nDHCTL_FORMAT=json\nDATABASE_URL=postgres://postgres:Hunter2Secret@127.0.0.1/x 'oops\n";
    let run = dhctl("")
        .without_database_url()
        .dotenv(dotenv)
        .args(["status", "--format", "json"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(".env: line 3"), "{message}");
    assert!(
        !error_text(&run).contains("Hunter2"),
        "{}",
        error_text(&run)
    );

    // dhctl-health loads .env through the same loader, and logs no more than dhctl prints.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join(".env"), dotenv).unwrap();
    let mut command = std::process::Command::new(crate::health::support::bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("DATABASE_") || key.starts_with("PG") || key.starts_with("DHCTL_") {
            command.env_remove(key);
        }
    }
    let out = command
        .current_dir(cwd.path())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.contains(".env: line 3"), "{logs}");
    assert!(!logs.contains("Hunter2"), "{logs}");
}

#[test]
fn key_value_quoting_is_parsed_once() {
    let db = TestDb::new("kvquote");
    // Before, the quoted password was split on spaces and its middle word turned verify-ca on,
    // which the shared server's self-signed certificate fails.
    let (host, port) = server_host_port();
    let kv = format!(
        "host={host} port={port} user=postgres dbname='{}' password='x sslmode=verify-ca y'",
        db.name
    );
    dhctl(&kv)
        .args(["status", "--format", "json"])
        .run()
        .expect_code(0);
    // A quoted path with a space is one path (it does not exist: the error names it whole).
    let kv = format!(
        "host=127.0.0.1 user=postgres dbname='{}' sslrootcert='certs/a b.pem'",
        db.name
    );
    let run = dhctl(&kv).args(["status", "--format", "json"]).run();
    run.expect_code(2);
    assert!(
        run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certs/a b.pem"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_parameters_are_named_and_the_password_is_never_shown() {
    let base = "postgres://postgres:Hunter2Secret@127.0.0.1:5432/postgres";
    for (query, expected) in [
        ("?sslmode=bogus", "invalid sslmode value: \"bogus\""),
        ("?sslmode=allow", "sslmode=allow"),
        ("?sslpassword=x", "\"sslpassword\""),
        (
            "?no_such_key=1",
            "unknown connection parameter \"no_such_key\"",
        ),
        ("?connect_timeout=0", "connect_timeout"),
    ] {
        let run = status_json(&format!("{base}{query}"));
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{query}: {message}");
        assert!(
            !error_text(&run).contains("Hunter2"),
            "{}",
            error_text(&run)
        );
    }
    let run = status_json("postgres://postgres:Hunter@2Secret@127.0.0.1:5432/postgres");
    run.expect_code(2);
    let json = run.json();
    assert!(
        json["error"]["hint"].as_str().unwrap().contains("%40"),
        "{json}"
    );
    assert!(
        !error_text(&run).contains("2Secret"),
        "{}",
        error_text(&run)
    );
}

#[test]
fn libpq_environment_configures_dhctl_and_the_url_wins() {
    let db = TestDb::new("pgenv");
    // Everything from PG* variables, no DATABASE_URL at all.
    let (host, port) = server_host_port();
    let run = dhctl("")
        .without_database_url()
        .env("PGHOST", &host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", &db.name)
        .args(["status", "--format", "json"])
        .run();
    run.expect_code(0);
    assert!(
        run.json()["database"].as_str().unwrap().ends_with(&db.name),
        "{}",
        run.stdout
    );
    // PGSSLMODE=verify-full is honoured: the shared server's certificate is not trusted.
    let run = dhctl(&db.url)
        .env("PGSSLMODE", "verify-full")
        .args(["status", "--format", "json"])
        .run();
    run.expect_code(2);
    // ... unless the URL says otherwise, as in libpq.
    dhctl(&format!("{}?sslmode=disable", db.url))
        .env("PGSSLMODE", "verify-full")
        .env("PGDATABASE", "no_such_database")
        .args(["status", "--format", "json"])
        .run()
        .expect_code(0);
    // A variable dhctl cannot honour stops it, named.
    let run = dhctl(&db.url)
        .env("PGSERVICE", "gateway")
        .args(["status", "--format", "json"])
        .run();
    run.expect_code(2);
    assert!(
        run.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PGSERVICE"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_server_that_never_answers_is_bounded_by_connect_timeout() {
    for (answer_ssl, query) in [
        (false, ""),
        (false, "&sslmode=require"),
        (false, "&sslmode=disable"),
        (true, ""),
        (true, "&sslmode=verify-full"),
    ] {
        let silent = Silent::start(answer_ssl);
        let run = status_json(&silent.url(query));
        run.expect_code(2);
        let message = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("connect_timeout"), "{query}: {message}");
        assert_eq!(silent.accepted(), 1);
    }
}

#[test]
fn wait_keeps_retrying_a_server_that_never_answers() {
    let silent = Silent::start(true);
    let run = dhctl(&silent.url(""))
        .args(["status", "--format", "json", "--wait", "4s"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("gave up after waiting"), "{message}");
    assert!(
        silent.accepted() >= 2,
        "--wait retried {} times",
        silent.accepted()
    );
}

#[test]
fn the_second_host_is_tried_when_the_first_never_answers() {
    let db = TestDb::new("multihost");
    let silent = Silent::start(false);
    let (host, port) = server_host_port();
    let url = format!(
        "postgres://postgres@127.0.0.1:{},{host}:{port}/{}?connect_timeout=1",
        silent.port, db.name
    );
    dhctl(&url)
        .args(["status", "--format", "json"])
        .run()
        .expect_code(0);
    assert_eq!(silent.accepted(), 1);
}

/// A TLS cluster of the test's own that wants a client certificate from `certuser` and a SCRAM
/// password from `pwuser`.
mod with_tls {
    use crate::certs::Certs;
    use crate::cluster::Cluster;
    use crate::harness::*;

    const HBA: &str = "local all all trust\n\
        hostssl all certuser 127.0.0.1/32 trust clientcert=verify-ca\n\
        host all pwuser 127.0.0.1/32 scram-sha-256\n\
        hostssl all postgres 127.0.0.1/32 trust\n";

    struct Setup {
        certs: Certs,
        cluster: Cluster,
    }

    fn setup() -> Setup {
        let certs = Certs::make();
        let cluster = Cluster::start(
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\n",
            HBA,
            &[
                ("server.crt", &certs.read("server.crt")),
                ("server.key", &certs.read("server.key")),
                ("ca.crt", &certs.read("ca.crt")),
            ],
        );
        cluster
            .admin()
            .batch_execute(
                "CREATE ROLE certuser LOGIN; \
                 CREATE ROLE pwuser LOGIN PASSWORD 'x sslmode=verify-ca  y';",
            )
            .unwrap();
        Setup { certs, cluster }
    }

    /// A client certificate `client.{key,crt}` for `cn`, signed by the test CA, key mode 0600.
    fn client_cert(certs: &Certs, cn: &str) {
        certs.issue(
            "client",
            cn,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        set_mode(&certs.path("client.key"), 0o600);
    }

    fn set_mode(path: &std::path::Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn message(run: &Run) -> String {
        let json = run.json();
        format!("{} / {}", json["error"]["message"], json["error"]["hint"])
    }

    #[test]
    fn client_certificates_the_url_ca_and_passwords_follow_libpq() {
        let Setup { certs, cluster } = setup();
        client_cert(&certs, "certuser");
        let ca = certs.path("ca.crt");
        let base = |user: &str| {
            format!(
                "postgres://{user}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                cluster.port,
                ca.display()
            )
        };
        let with_cert = format!(
            "{}&sslcert={}&sslkey={}",
            base("certuser"),
            certs.path("client.crt").display(),
            certs.path("client.key").display()
        );
        let status = |url: &str| dhctl(url).args(["status", "--format", "json"]);

        // Client certificates: presented when given, required by the server otherwise.
        status(&with_cert).run().expect_code(0);
        let run = status(&base("certuser")).run();
        run.expect_code(2);
        assert!(message(&run).contains("certificate"), "{}", message(&run));
        // A private key others can read is refused, as libpq does.
        set_mode(&certs.path("client.key"), 0o644);
        let run = status(&with_cert).run();
        run.expect_code(2);
        assert!(message(&run).contains("client.key"), "{}", message(&run));
        set_mode(&certs.path("client.key"), 0o600);

        // The URL's own CA wins over DHCTL_SSL_ROOT_CERT, from the environment or a planted .env.
        let other = certs.path("other_ca.crt");
        status(&base("postgres"))
            .env("DHCTL_SSL_ROOT_CERT", &other)
            .run()
            .expect_code(0);
        status(&base("postgres"))
            .dotenv(&format!("DHCTL_SSL_ROOT_CERT={}\n", other.display()))
            .run()
            .expect_code(0);
        // Without one in the URL, the variable still counts (and here it is the wrong CA).
        let no_ca = format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full",
            cluster.port
        );
        status(&no_ca)
            .env("DHCTL_SSL_ROOT_CERT", &other)
            .run()
            .expect_code(2);

        // A quoted password with spaces and a "key=value" inside is sent as written.
        let kv = |password: &str| {
            format!(
                "host=localhost port={} user=pwuser dbname=postgres sslmode=verify-full \
                 sslrootcert='{}' {password}",
                cluster.port,
                ca.display()
            )
        };
        status(&kv("password='x sslmode=verify-ca  y'"))
            .run()
            .expect_code(0);
        // A wrong password and a missing one get their own hints, not "is the server running?".
        let run = status(&kv("password=wrong")).run();
        run.expect_code(2);
        assert!(message(&run).contains("28P01"), "{}", message(&run));
        assert!(!message(&run).contains("--wait"), "{}", message(&run));
        let run = status(&kv("")).env("HOME", certs.dir.path()).run();
        run.expect_code(2);
        assert!(
            message(&run).contains("none was given"),
            "{}",
            message(&run)
        );
        assert!(message(&run).contains("PGPASSWORD"), "{}", message(&run));
        // PGPASSWORD and a password file supply it.
        status(&kv(""))
            .env("PGPASSWORD", "x sslmode=verify-ca  y")
            .run()
            .expect_code(0);
        let passfile = certs.path("pgpass");
        std::fs::write(
            &passfile,
            "localhost:*:postgres:pwuser:x sslmode=verify-ca  y\n",
        )
        .unwrap();
        set_mode(&passfile, 0o600);
        status(&kv(""))
            .env("PGPASSFILE", &passfile)
            .run()
            .expect_code(0);
        // Channel binding needs TLS: its failure gets its own hint.
        let run = status(&format!(
            "postgres://pwuser:x%20sslmode%3Dverify-ca%20%20y@127.0.0.1:{}/postgres?sslmode=disable&channel_binding=require",
            cluster.port
        ))
        .run();
        run.expect_code(2);
        assert!(
            message(&run).contains("channel_binding"),
            "{}",
            message(&run)
        );
    }

    /// A cluster serving `crt`/`key` from the Certs folder, trusting every TCP connection.
    fn serving(certs: &Certs, crt: &str, key: &str) -> Cluster {
        Cluster::start(
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            &[
                ("server.crt", &certs.read(crt)),
                ("server.key", &certs.read(key)),
            ],
        )
    }

    /// Where libpq is laxer, dhctl keeps the safe choice (docs/security.md): a host name only in
    /// the subject CN does not satisfy verify-full, and a self-signed CA:TRUE certificate pinned
    /// as its own root is not a server certificate.
    #[test]
    fn cn_only_names_and_ca_certificates_as_servers_are_refused() {
        let certs = Certs::make();
        // Named only in the subject CN, with no subjectAltName.
        certs.issue(
            "cn_only",
            "localhost",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        );
        let cluster = serving(&certs, "cn_only.crt", "cn_only.key");
        let url = |mode: &str, ca: &str| {
            format!(
                "postgres://postgres@localhost:{}/postgres?sslmode={mode}&sslrootcert={}",
                cluster.port,
                certs.path(ca).display()
            )
        };
        let status = |url: &str| dhctl(url).args(["status", "--format", "json"]).run();
        let run = status(&url("verify-full", "ca.crt"));
        run.expect_code(2);
        assert!(
            message(&run).contains("not valid for name"),
            "{}",
            message(&run)
        );
        status(&url("verify-ca", "ca.crt")).expect_code(0);
        drop(cluster);

        certs.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-days",
            "2",
            "-keyout",
            "selfca.key",
            "-out",
            "selfca.crt",
        ]);
        let cluster = serving(&certs, "selfca.crt", "selfca.key");
        let url = |mode: &str| {
            format!(
                "postgres://postgres@localhost:{}/postgres?sslmode={mode}&sslrootcert={}",
                cluster.port,
                certs.path("selfca.crt").display()
            )
        };
        let status = |url: &str| dhctl(url).args(["status", "--format", "json"]).run();
        status(&url("verify-ca")).expect_code(2);
        status(&url("verify-full")).expect_code(2);
        // Encryption without verification still works with it.
        status(&format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=require",
            cluster.port
        ))
        .expect_code(0);
    }
}

#[test]
fn prefer_with_a_ca_never_falls_back_to_plaintext() {
    // The shared server accepts plaintext too, so libpq's fallback would connect here; dhctl
    // fails on the certificate its CA does not sign.
    let certs = crate::certs::Certs::make();
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/postgres?sslmode=prefer&sslrootcert={}",
        certs.path("other_ca.crt").display()
    );
    let run = status_json(&url);
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn a_signal_while_a_peer_stalls_the_connection_exits_130() {
    let silent = Silent::start(true);
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=60",
        silent.port
    );
    let child = dhctl(&url).args(["status"]).spawn();
    assert!(wait_until(Duration::from_secs(10), || silent.accepted() == 1));
    send_signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
}

/// `--wait` bounds the whole walk over the hosts, not only the retries between walks: with two
/// hosts that never answer and a connect_timeout longer than --wait, the first attempt is cut at
/// the deadline and the second host is never tried (it used to cost connect_timeout per host).
#[test]
fn wait_bounds_each_attempt_of_the_host_walk() {
    let first = Silent::start(false);
    let second = Silent::start(false);
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?connect_timeout=30",
        first.port, second.port
    );
    let run = dhctl(&url)
        .args(["status", "--format", "json", "--wait", "2s"])
        .run();
    run.expect_code(2);
    let message = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("gave up after waiting"), "{message}");
    assert_eq!(first.accepted(), 1, "{message}");
    assert_eq!(
        second.accepted(),
        0,
        "the walk went on past --wait: {message}"
    );
}
