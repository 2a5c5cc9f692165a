//! Adversary findings against `/metrics` and its schema reads (branch adv-metrics). Each test
//! fails on main as of 969222c; see the report for the reproduction by hand.

use super::support::*;
use crate::harness::{dhctl, Role, TestDb};
use dhctl::health::HealthConfig;

/// The value of the one unlabelled sample `name` in a scrape.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A role with CREATE on `public` (PostgreSQL 14 and older grant that to PUBLIC; upgraded
/// databases keep it) plants functions that are a better match than pg_catalog's for the
/// calls the health reads make without qualifying them (CVE-2018-1058 class):
/// `unnest(text[])` (polymorphic `anyarray` in pg_catalog), `json_agg(json)` (`anyelement`),
/// `pg_get_expr(pg_node_tree, integer)` (the literal 0 is int4, pg_catalog's takes oid),
/// `format(text, text, text)` (pg_catalog's is VARIADIC "any") and
/// `pg_stat_get_live_tuples(regclass)` (pg_catalog's takes oid). Every readiness round then
/// runs the planted code as dhctl-health's role: here it marks the session's application_name
/// (a real attacker copies data the app role can read there: pg_stat_activity shows it to
/// every role), and json_agg hides the history table, so `/metrics` says all 5 migrations are
/// pending and, with DHCTL_READY_REQUIRE_MIGRATED, every pod is taken out of service.
#[test]
fn functions_planted_in_public_do_not_run_in_the_health_reads() {
    let evil = Role::new("adv_evil", "");
    let db = TestDb::new("adv_planted");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db.exec(&format!(
        "CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT; \
         GRANT CREATE ON SCHEMA public TO \"{}\"",
        evil.name
    ));
    let planted = "
        CREATE FUNCTION public.adv_mark(tag text) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_catalog.set_config('application_name', 'pwned ' || tag, false); END $$;
        CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.adv_mark('unnest');
              RETURN QUERY SELECT x FROM pg_catalog.unnest(a) AS x; END $$;
        CREATE FUNCTION public.pg_get_expr(e pg_node_tree, r integer) RETURNS text
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.adv_mark('pg_get_expr');
              RETURN pg_catalog.pg_get_expr(e, r::oid); END $$;
        CREATE FUNCTION public.format(f text, a text, b text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.adv_mark('format'); RETURN pg_catalog.format(f, a, b); END $$;
        CREATE FUNCTION public.pg_stat_get_live_tuples(r regclass) RETURNS bigint
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.adv_mark('live_tuples'); RETURN 0; END $$;
        CREATE FUNCTION public.adv_agg(s json, v json) RETURNS json LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.adv_mark('json_agg'); RETURN '[]'::json; END $$;
        CREATE AGGREGATE public.json_agg(json) (sfunc = public.adv_agg, stype = json);
    ";
    crate::harness::connect(&evil.url_for(&db))
        .batch_execute(planted)
        .unwrap();

    let server = start(&[
        ("DATABASE_URL", db.url.as_str()),
        ("HEALTH_READY_CACHE_MS", "0"),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
    ]);
    let ready = server.get("/health/ready");
    let metrics = server.get("/metrics");
    let ran = db.column(&format!(
        "SELECT application_name FROM pg_stat_activity \
         WHERE datname = '{}' AND application_name LIKE 'pwned%'",
        db.name
    ));
    assert!(
        ran.is_empty(),
        "code planted in public by another role ran in dhctl-health's session: {ran:?}"
    );
    assert_eq!(
        sample(&metrics.body, "dhctl_migrations_applied"),
        Some(5.0),
        "{}",
        metrics.body
    );
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// The same planted `unnest(text[])` runs in a plain `dhctl partition status` (a read, "takes
/// no lock, changes nothing"), outside any read-only transaction and as whoever runs it: run as
/// a superuser (or the owner), the planted code can do anything that role can. Here it makes
/// the planting role a superuser.
#[test]
fn a_function_planted_in_public_does_not_run_in_dhctl_partition_status() {
    let evil = Role::new("adv_evil2", "");
    let db = TestDb::new("adv_planted_cli");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO \"{}\"",
        evil.name
    ));
    let planted = format!(
        "CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
         BEGIN
           BEGIN EXECUTE 'ALTER ROLE \"{}\" SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
           RETURN QUERY SELECT x FROM pg_catalog.unnest(a) AS x;
         END $$;",
        evil.name
    );
    crate::harness::connect(&evil.url_for(&db))
        .batch_execute(&planted)
        .unwrap();
    dhctl(&db.url)
        .args(["partition", "status", "--format", "json"])
        .run();
    let superuser = db.value(&format!(
        "SELECT rolsuper::text FROM pg_roles WHERE rolname = '{}'",
        evil.name
    ));
    assert_eq!(
        superuser, "false",
        "dhctl partition status ran a function planted in public as the superuser running it"
    );
}

/// When the statement that sets the read's timeouts fails after `BEGIN READ ONLY` succeeded,
/// the transaction is never ended: the connection goes back to the pool "idle in transaction
/// (aborted)", and the next round's `SELECT 1` on it fails (readiness 503, flapping 200/503).
/// Reached here with a check timeout past PostgreSQL's largest lock_timeout (INT_MAX ms);
/// rejecting such a value at start would also do.
#[test]
fn a_failed_timeout_setting_does_not_leave_an_aborted_transaction_in_the_pool() {
    let db = TestDb::new("adv_aborted");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("HEALTH_READY_CACHE_MS", "0"),
        ("HEALTH_CHECK_TIMEOUT_MS", "3000000000"),
    ];
    let lookup = |key: &str| {
        env.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    if HealthConfig::from_lookup(lookup).is_err() {
        return; // refused at start: fine
    }
    let server = start(&env);
    let statuses: Vec<u16> = (0..6).map(|_| server.get("/health/ready").status).collect();
    let stuck = db.value(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
         AND state = 'idle in transaction (aborted)'",
        db.name
    ));
    assert!(
        statuses.iter().all(|s| *s == 200),
        "readiness flaps on a healthy database: {statuses:?} ({stuck} session(s) idle in an aborted transaction)"
    );
}

/// docs/health.md: "give every runner and dhctl-health the same value". A value with a space
/// around it (a YAML or .env slip) is refused by dhctl (exit 2) but trimmed and accepted by
/// dhctl-health; both should take the same view of it.
#[test]
fn dhctl_and_dhctl_health_agree_on_a_history_table_value_with_spaces() {
    let db = TestDb::new("adv_spaces");
    let value = " public.refinery_schema_history ";
    let cli = dhctl(&db.url)
        .env("DHCTL_HISTORY_TABLE", value)
        .args(["status", "--format", "json"])
        .run();
    let cli_accepts = cli.code != 2;
    let url = db.url.clone();
    let health_accepts = HealthConfig::from_lookup(move |key| match key {
        "DATABASE_URL" => Some(url.clone()),
        "DHCTL_HISTORY_TABLE" => Some(value.to_string()),
        _ => None,
    })
    .is_ok();
    assert_eq!(
        cli_accepts,
        health_accepts,
        "dhctl {} `{value}` (exit {}), dhctl-health {} it",
        if cli_accepts { "accepts" } else { "refuses" },
        cli.code,
        if health_accepts { "accepts" } else { "refuses" },
    );
}

/// `standard_conforming_strings = off` (a per-database or per-role setting PostgreSQL still
/// accepts) turns the `\\(` of the partition-bound regexp (live.rs, CHILDREN) into `(`: the
/// pattern then has four groups and the upper bound read is the lower one. Every partition
/// reads as empty (`to` = `from`): `/metrics` reports a runway of 0 (the critical alert fires on
/// a healthy database), and the same read drives `dhctl partition prune` (next test).
#[test]
fn partition_metrics_do_not_depend_on_standard_conforming_strings() {
    let db = TestDb::new("adv_scs_metrics");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
        db.name
    ));
    let server = start(&[("DATABASE_URL", db.url.as_str())]);
    let body = server.get("/metrics").body;
    let runway = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("dhctl_partition_runway_periods{table=\"request_logs\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no runway in {body}"));
    assert!(
        runway >= 1.0,
        "runway {runway} periods right after `dhctl migrate` made the premake partitions:\n{body}"
    );
}

/// Data loss: under `standard_conforming_strings = off`, `dhctl partition prune` reads every
/// partition's upper bound as its lower one, so it drops the partition of the month the
/// retention cutoff falls in, whose newest rows are still inside the retention (13 months for
/// request_logs). Here a row 13 months minus one day old is deleted.
#[test]
fn prune_keeps_rows_inside_the_retention_whatever_standard_conforming_strings() {
    let db = TestDb::new("adv_scs_prune");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    // The month the 13-month cutoff falls in: it ends after the cutoff, so prune must keep it;
    // a row in its last minute is inside the retention.
    db.exec(
        "CREATE TEMP TABLE m AS SELECT date_trunc('month', (now() - interval '13 months') \
             AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start; \
         DO $$ DECLARE s timestamptz := (SELECT start FROM m); BEGIN \
           EXECUTE format('CREATE TABLE %I PARTITION OF request_logs FOR VALUES FROM (%L) TO (%L)', \
             'request_logs_' || to_char(s AT TIME ZONE 'UTC', 'YYYY_MM'), s, s + interval '1 month'); \
           INSERT INTO request_logs (request_id, method, path, created_at) \
           VALUES ('inside-retention', 'GET', '/', s + interval '1 month' - interval '1 minute'); \
         END $$;",
    );
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
        db.name
    ));
    // status and create read the same bounds: with the upper bound read as the lower one,
    // status showed empty partitions and create would plan to make existing periods again.
    let status = dhctl(&db.url)
        .args(["partition", "status", "--format", "json"])
        .run();
    status.expect_code(0);
    let json = status.json();
    let partitions = json["tables"][0]["partitions"].as_array().unwrap();
    assert!(!partitions.is_empty(), "{}", status.stdout);
    for p in partitions {
        assert_ne!(p["from"], p["to"], "a partition read as empty: {p}");
    }
    dhctl(&db.url)
        .args(["partition", "create", "--ahead", "4"])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args(["partition", "prune", "--table", "request_logs"])
        .run();
    assert_eq!(
        db.value("SELECT count(*) FROM request_logs WHERE request_id = 'inside-retention'"),
        "1",
        "prune deleted a row inside the 13-month retention"
    );
}

/// `pg_stat_get_live_tuples` is a count the primary keeps from its own inserts: a hot standby
/// never counts replayed rows, so there it reads 0 whatever the DEFAULT partition holds. With a
/// multi-host DATABASE_URL whose first host is now a standby (after a failover; the default
/// target_session_attrs=any takes the first that answers), `/metrics` says 0 stray rows while
/// `dhctl partition status` on the same server counts them: the DefaultPartitionHasRows alert
/// can never fire there.
#[test]
fn default_partition_rows_are_not_reported_as_0_on_a_standby() {
    use crate::cluster::Cluster;
    let primary = Cluster::primary_with_app();
    let url = primary.url("app");
    dhctl(&url).args(["migrate"]).run().expect_code(0);
    crate::harness::connect(&url)
        .batch_execute(
            "CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT; \
             INSERT INTO request_logs (request_id, method, path, created_at) \
             SELECT 'r' || i, 'GET', '/', '2090-01-01 00:00:00+00' FROM generate_series(1, 3) i",
        )
        .unwrap();
    let standby = Cluster::standby_of(&primary, "standby1");
    assert_eq!(
        standby.value("app", "SELECT count(*) FROM request_logs_default"),
        "3"
    );
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/app",
        standby.port, primary.port
    );
    let server = start(&[("DATABASE_URL", both.as_str())]);
    let body = server.get("/metrics").body;
    let rows = body.lines().find_map(|l| {
        l.strip_prefix("dhctl_partition_default_rows{table=\"request_logs\"} ")?
            .parse::<f64>()
            .ok()
    });
    // Counted on the standby (capped at 10001, far above 3): exactly what it holds.
    assert_eq!(
        rows,
        Some(3.0),
        "3 rows in request_logs_default, /metrics says otherwise:\n{body}"
    );
}
