//! Faults an adversarial review found: a DEFAULT partition holding `±infinity` or NULL keys,
//! partitions bounded by `±infinity`, RLS on the parent, foreign past partitions, an interrupted
//! drain-default. Scratch tables and policies of each test's own.

use super::foreign::{attached, policies, scratch, with};
use crate::harness::*;

#[test]
fn an_infinity_row_in_one_default_does_not_stop_the_other_tables() {
    let db = TestDb::new("advinf");
    scratch(&db, "t10");
    scratch(&db, "t15");
    db.exec(
        "CREATE TABLE t10_def PARTITION OF t10 DEFAULT; \
         INSERT INTO t10 VALUES (1, 'infinity', 'x'), (2, '-infinity', 'y'), \
             (3, '270000-01-01 00:00:00+00', 'z');",
    );
    let dir = policies(&[("t10", None), ("t15", None)]);
    let run = with(&db, &dir, &["partition", "create", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(attached(&db, "t15").len(), 3, "{}", run.stdout);
    // Far rows block nothing finite: t10's months are made too.
    assert_eq!(attached(&db, "t10").len(), 4, "{}", run.stdout);
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    status.expect_code(0);
    let doc = status.json();
    assert_eq!(
        doc["tables"][0]["default_partition"]["far_rows"], 3,
        "{doc}"
    );
    let drain = with(
        &db,
        &dir,
        &[
            "partition",
            "drain-default",
            "--table",
            "t10",
            "--format",
            "json",
        ],
    );
    drain.expect_code(0);
    let notes = drain.json()["tables"][0]["notes"].to_string();
    assert!(notes.contains("cannot move"), "{notes}");
    assert!(!notes.contains("DROP TABLE"), "{notes}");
    assert_eq!(db.value("SELECT count(*) FROM t10_def"), "3");
    let prune = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    assert_ne!(prune.code, 101, "{}", prune.stderr);
    let verify = dhctl(&db.url)
        .env("DHCTL_PARTITIONS_DIR", dir.path())
        .args(["verify", "--format", "json"])
        .run();
    assert_ne!(verify.code, 101, "{}", verify.stderr);
}

#[test]
fn null_key_rows_keep_the_default_from_being_called_empty() {
    let db = TestDb::new("advnull");
    db.exec(
        "CREATE TABLE nk (id bigint, created_at timestamptz, note text) \
         PARTITION BY RANGE (created_at); \
         CREATE TABLE nk_def PARTITION OF nk DEFAULT; \
         INSERT INTO nk VALUES (1, NULL, 'x');",
    );
    let dir = policies(&[("nk", None)]);
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    let doc = status.json();
    assert_eq!(
        doc["tables"][0]["default_partition"]["null_key_rows"], 1,
        "{doc}"
    );
    assert!(
        !doc["tables"][0]["problems"]
            .to_string()
            .contains(", empty)"),
        "{doc}"
    );
    let drain = with(
        &db,
        &dir,
        &[
            "partition",
            "drain-default",
            "--table",
            "nk",
            "--format",
            "json",
        ],
    );
    drain.expect_code(0);
    let notes = drain.json()["tables"][0]["notes"].to_string();
    assert!(!notes.contains("holds no rows"), "{notes}");
    assert!(!notes.contains("DROP TABLE"), "{notes}");
    assert!(notes.contains("NULL key"), "{notes}");
    assert_eq!(db.value("SELECT count(*) FROM nk_def"), "1");
}

#[test]
fn partitions_bounded_by_infinity_cover_nothing_finite() {
    let db = TestDb::new("advbound");
    scratch(&db, "ib");
    db.exec(
        "CREATE TABLE ib_hi PARTITION OF ib FOR VALUES FROM ('infinity') TO (MAXVALUE); \
         CREATE TABLE ib_lo PARTITION OF ib FOR VALUES FROM (MINVALUE) TO ('-infinity');",
    );
    let dir = policies(&[("ib", None)]);
    let run = with(&db, &dir, &["partition", "create", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(attached(&db, "ib").len(), 5, "{}", run.stdout);
    db.exec("INSERT INTO ib SELECT 1, now()");
    with(&db, &dir, &["partition", "status"]).expect_code(0);
}

#[test]
fn new_partitions_of_a_table_with_row_level_security_do_not_leak_rows() {
    let db = TestDb::new("advrls");
    scratch(&db, "rl");
    let role = format!("dhctl_rls_{}", std::process::id());
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role}; GRANT SELECT ON rl TO {role}; \
         ALTER TABLE rl ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY visible ON rl FOR SELECT USING (note = 'public');"
    ));
    let dir = policies(&[("rl", None)]);
    let run = with(&db, &dir, &["partition", "create", "--format", "json"]);
    run.expect_code(0);
    db.exec("INSERT INTO rl SELECT 1, now(), 'secret'");
    let child = format!("rl_{}", super::foreign::server_month(&db, 0));
    let mut c = db.client();
    let read = c.batch_execute(&format!("SET ROLE {role}; SELECT * FROM {child}"));
    let _ = c.batch_execute("RESET ROLE");
    db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    let e = read.expect_err("the role read the partition directly");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e}");
    assert!(run.stdout.contains("row-level security"), "{}", run.stdout);
}

#[test]
fn prune_keeps_a_foreign_past_partition_attached() {
    let db = TestDb::new("advfdw");
    assert_eq!(
        db.value("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgres_fdw'"),
        "1"
    );
    scratch(&db, "fp");
    db.exec(
        "CREATE EXTENSION postgres_fdw; \
         CREATE SERVER fpsrv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'x'); \
         CREATE FOREIGN TABLE fp_2024_01 PARTITION OF fp \
             FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00') \
             SERVER fpsrv;",
    );
    let dir = policies(&[("fp", Some("1 month"))]);
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    let table = &status.json()["tables"][0];
    assert!(
        !table["would_prune"].to_string().contains("fp_2024_01"),
        "{table}"
    );
    assert!(
        table["would_keep"].to_string().contains("foreign table"),
        "{table}"
    );
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(0);
    assert!(
        attached(&db, "fp").contains(&"public.fp_2024_01".to_string()),
        "{}",
        run.stdout
    );
    let doc = run.json();
    let kept = doc["tables"][0]["kept"].to_string();
    assert!(kept.contains("foreign table"), "{doc}");
}

#[test]
fn create_after_an_interrupted_drain_points_at_drain_default_not_at_drop() {
    let db = TestDb::new("advdrain");
    scratch(&db, "dr");
    let month = super::foreign::server_month(&db, 0);
    // What drain-default leaves when SIGINT lands between batches: the standalone table with
    // drain's bounds CHECK, holding the rows moved so far, the rest still in the default.
    db.exec(&format!(
        "CREATE TABLE dr_def PARTITION OF dr DEFAULT; \
         INSERT INTO dr SELECT 1, now(), 'left'; \
         CREATE TABLE dr_{month} (LIKE dr INCLUDING ALL, \
             CONSTRAINT dhctl_partition_bounds CHECK (created_at IS NOT NULL AND \
             created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND \
             created_at < (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') \
             AT TIME ZONE 'UTC')); \
         INSERT INTO dr_{month} SELECT 2, now(), 'moved';"
    ));
    let dir = policies(&[("dr", None)]);
    let run = with(&db, &dir, &["partition", "create", "--format", "json"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let table = &run.json()["tables"][0];
    let (error, hint) = (table["error"].to_string(), table["hint"].to_string());
    assert!(error.contains("interrupted drain-default"), "{table}");
    assert!(hint.contains("drain-default --table dr"), "{table}");
    assert!(!hint.to_lowercase().contains("drop"), "{table}");
    let status = with(&db, &dir, &["partition", "status"]);
    assert!(
        status.stdout.contains("interrupted drain-default"),
        "{}",
        status.stdout
    );
    // The hint is true: drain-default finishes it.
    with(&db, &dir, &["partition", "drain-default", "--table", "dr"]).expect_code(0);
    assert!(attached(&db, "dr").contains(&format!("public.dr_{month}")));
    assert_eq!(db.value(&format!("SELECT count(*) FROM dr_{month}")), "2");
}

#[test]
fn a_kept_table_renamed_off_the_pattern_stays_in_status() {
    let db = TestDb::new("advkept");
    scratch(&db, "kt");
    let dir = policies(&[("kt", Some("1 month"))]);
    super::foreign::create_january(&db, &dir);
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    with(&db, &dir, &["partition", "prune", "--keep-table"]).expect_code(0);
    db.exec("ALTER TABLE kt_2024_01 RENAME TO kt_archive_jan");
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    let others = status.json()["tables"][0]["others"].to_string();
    assert!(others.contains("kt_archive_jan"), "{others}");
    assert!(others.contains("detached"), "{others}");
}
