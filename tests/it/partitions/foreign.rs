//! Tables dhctl did not make: scratch tables and policies of each test's own, made the way other
//! hands make them (partitions in other schemas, views, generated columns, publications, a DEFAULT
//! partition, odd DateStyles), and the clock guard that keeps live months whatever --now says.

use crate::harness::*;

/// A folder of policies: (table, retention) each, monthly on created_at, premake 2.
pub fn policies(list: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (table, retention) in list {
        let mut text = format!(
            "table = \"{table}\"\ncolumn = \"created_at\"\ninterval = \"month\"\npremake = 2\n"
        );
        if let Some(r) = retention {
            text.push_str(&format!("retention = \"{r}\"\n"));
        }
        std::fs::write(dir.path().join(format!("{table}.toml")), text).unwrap();
    }
    dir
}

/// A range-partitioned scratch table with no partitions.
pub fn scratch(db: &TestDb, table: &str) {
    db.exec(&format!(
        "CREATE TABLE {table} (id bigint, created_at timestamptz NOT NULL, note text) \
         PARTITION BY RANGE (created_at)"
    ));
}

pub fn with(db: &TestDb, dir: &tempfile::TempDir, args: &[&str]) -> Run {
    dhctl(&db.url)
        .env("DHCTL_PARTITIONS_DIR", dir.path())
        .args(args)
        .run()
}

/// A scratch table (see [`scratch`]) and a folder with its policy, retention one month.
fn pruned_monthly(db: &TestDb, table: &str) -> tempfile::TempDir {
    scratch(db, table);
    policies(&[(table, Some("1 month"))])
}

/// `partition create` with `--now` mid-January 2024, `ahead` months ahead, then `more` flags.
fn create_in_january(db: &TestDb, dir: &tempfile::TempDir, ahead: &str, more: &[&str]) -> Run {
    let mut args = vec![
        "partition",
        "create",
        "--now",
        "2024-01-15T00:00:00Z",
        "--ahead",
        ahead,
    ];
    args.extend_from_slice(more);
    with(db, dir, &args)
}

/// Creates the table's January 2024 partition only (`--now` mid-January, nothing ahead).
pub fn create_january(db: &TestDb, dir: &tempfile::TempDir) {
    create_in_january(db, dir, "0", &[]).expect_code(0);
}

/// The partitions from January 2024 up to the server's month and two ahead.
fn create_january_to_now(db: &TestDb, dir: &tempfile::TempDir) {
    create_january(db, dir);
    with(db, dir, &["partition", "create"]).expect_code(0);
}

/// The action of a prune report's first step, and what then became of the table.
fn first_step(doc: &serde_json::Value) -> (&str, &str) {
    let step = &doc["tables"][0]["steps"][0];
    (
        step["action"].as_str().unwrap_or_default(),
        step["then"].as_str().unwrap_or_default(),
    )
}

/// `schema.name` of every partition of `table`, sorted.
pub fn attached(db: &TestDb, table: &str) -> Vec<String> {
    db.column(&format!(
        "SELECT c.relnamespace::regnamespace::text || '.' || c.relname FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{table}'::regclass ORDER BY 1"
    ))
}

/// The server's current month as a partition suffix, e.g. 2026_11, and with an offset in months.
pub fn server_month(db: &TestDb, offset: i32) -> String {
    db.value(&format!(
        "SELECT to_char((now() AT TIME ZONE 'UTC') + interval '{offset} months', 'YYYY_MM')"
    ))
}

#[test]
fn prune_leaves_a_policy_without_retention_alone_and_prunes_the_others() {
    let db = TestDb::new("fnoret");
    scratch(&db, "keepall");
    scratch(&db, "short");
    let dir = policies(&[("keepall", None), ("short", Some("1 month"))]);
    with(
        &db,
        &dir,
        &["partition", "create", "--now", "2024-01-15T00:00:00Z"],
    )
    .expect_code(0);
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    let dry = with(
        &db,
        &dir,
        &["partition", "prune", "--dry-run", "--format", "json"],
    );
    dry.expect_code(0);
    assert_eq!(dry.json()["tables"][0]["steps"], serde_json::json!([]));
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(attached(&db, "keepall").len(), 6);
    assert_eq!(attached(&db, "short").len(), 3, "{}", run.stdout);
    assert!(!attached(&db, "short").contains(&"public.short_2024_01".to_string()));
}

#[test]
fn prune_with_now_past_the_server_clock_keeps_current_and_future_partitions() {
    let db = TestDb::new("fclock");
    let dir = pruned_monthly(&db, "clocked");
    create_january_to_now(&db, &dir);
    db.exec("INSERT INTO clocked SELECT 1, now()");
    let run = with(
        &db,
        &dir,
        &[
            "partition",
            "prune",
            "--now",
            "2099-06-01T00:00:00Z",
            "--format",
            "json",
        ],
    );
    run.expect_code(0);
    let current = format!("public.clocked_{}", server_month(&db, 0));
    let parts = attached(&db, "clocked");
    assert_eq!(parts.len(), 3, "{parts:?}\n{}", run.stdout);
    assert!(parts.contains(&current), "{parts:?}");
    assert_eq!(db.value("SELECT count(*) FROM clocked"), "1");
    let doc = run.json();
    let kept = doc["tables"][0]["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 3, "{doc}");
    assert!(
        kept[0]["reason"]
            .as_str()
            .unwrap()
            .contains("server's clock"),
        "{doc}"
    );
    assert_eq!(doc["tables"][0]["steps"][0]["name"], "clocked_2024_01");
}

#[test]
fn prune_detaches_the_partition_in_its_own_schema_and_says_which() {
    let db = TestDb::new("fschema");
    let dir = pruned_monthly(&db, "sy");
    // Same name in two schemas: the old one in arch, the live month in public.
    db.exec(
        "CREATE SCHEMA arch; \
         CREATE TABLE arch.sy_2024_01 PARTITION OF sy \
             FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00'); \
         INSERT INTO sy VALUES (1, '2024-01-10 00:00:00+00');",
    );
    db.exec(
        "CREATE TABLE public.sy_2024_01 PARTITION OF sy FOR VALUES FROM \
         (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') TO \
         ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'); \
         INSERT INTO sy SELECT 2, now();",
    );
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(attached(&db, "sy"), ["public.sy_2024_01"]);
    assert_eq!(db.value("SELECT count(*) FROM sy WHERE id = 2"), "1");
    assert_eq!(
        db.value("SELECT to_regclass('arch.sy_2024_01') IS NULL"),
        "t"
    );
    let step = &run.json()["tables"][0]["steps"][0];
    assert_eq!(
        (&step["schema"], &step["name"]),
        (&"arch".into(), &"sy_2024_01".into())
    );
    let human = with(&db, &dir, &["partition", "prune", "--dry-run"]);
    assert!(!human.stdout.contains("would detach"), "{}", human.stdout);
}

#[test]
fn prune_does_not_detach_a_partition_it_could_not_drop() {
    let db = TestDb::new("fview");
    let dir = pruned_monthly(&db, "viewed");
    create_in_january(&db, &dir, "1", &[]).expect_code(0);
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    db.exec("CREATE VIEW jan AS SELECT * FROM viewed_2024_01");
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(2);
    let doc = run.json();
    let error = doc["tables"][0]["error"].as_str().unwrap();
    assert!(error.contains("view jan depends on it"), "{error}");
    // The other old partition went; the viewed one is still attached, rows and all.
    let parts = attached(&db, "viewed");
    assert!(
        parts.contains(&"public.viewed_2024_01".to_string()),
        "{parts:?}"
    );
    assert!(
        !parts.contains(&"public.viewed_2024_02".to_string()),
        "{parts:?}"
    );
}

#[test]
fn a_failed_drop_is_reported_as_detached_and_kept_and_status_shows_the_table() {
    let db = TestDb::new("fdrop");
    let dir = pruned_monthly(&db, "stuck");
    create_january_to_now(&db, &dir);
    // Something dhctl cannot see in advance refuses the DROP (here an event trigger).
    db.exec(
        "CREATE FUNCTION no_drop() RETURNS event_trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'drops are frozen'; END $$; \
         CREATE EVENT TRIGGER frozen_drops ON ddl_command_start WHEN TAG IN ('DROP TABLE') \
         EXECUTE FUNCTION no_drop();",
    );
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    db.exec("DROP EVENT TRIGGER frozen_drops");
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(first_step(&doc), ("detach", "keep"), "{doc}");
    assert!(
        doc["tables"][0]["not_done"].as_array().unwrap().is_empty(),
        "{doc}"
    );
    assert_eq!(
        db.value("SELECT relispartition::text FROM pg_class WHERE relname = 'stuck_2024_01'"),
        "false"
    );
    let status = with(&db, &dir, &["partition", "status", "--format", "json"]);
    status.expect_code(0);
    let others = &status.json()["tables"][0]["others"];
    assert_eq!(others[0]["name"], "stuck_2024_01", "{others}");
    assert_eq!(others[0]["what"], "detached");
    // A create that wants the name again says so in its plan, before anything runs.
    let again = create_in_january(&db, &dir, "0", &["--dry-run"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("which is not a partition"),
        "{}",
        again.stderr
    );
}

#[test]
fn prune_never_leaves_a_table_without_partitions_and_keeps_the_newest_rows() {
    let db = TestDb::new("flast");
    let dir = pruned_monthly(&db, "stale");
    create_in_january(&db, &dir, "2", &[]).expect_code(0);
    db.exec("INSERT INTO stale VALUES (1, '2024-02-10 00:00:00+00')");
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(attached(&db, "stale"), ["public.stale_2024_02"]);
    assert_eq!(db.value("SELECT count(*) FROM stale"), "1");
    let kept = &run.json()["tables"][0]["kept"][0];
    assert_eq!(kept["name"], "stale_2024_02");
    assert!(kept["reason"]
        .as_str()
        .unwrap()
        .contains("never leaves a table without partitions"));
}

#[test]
fn a_command_line_retention_needs_a_table() {
    let db = TestDb::new("fretention");
    scratch(&db, "long");
    let dir = policies(&[("long", Some("13 months"))]);
    create_january(&db, &dir);
    let before = attached(&db, "long");
    let run = with(&db, &dir, &["partition", "prune", "--retention", "1 month"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--table"), "{}", run.stderr);
    assert_eq!(attached(&db, "long"), before);
    // With --table it is what the operator asked for.
    let run = with(
        &db,
        &dir,
        &[
            "partition",
            "prune",
            "--retention",
            "1 month",
            "--table",
            "long",
            "--now",
            "2026-01-01T00:00:00Z",
        ],
    );
    run.expect_code(0);
}

#[test]
fn migrate_to_an_early_version_skips_policies_whose_tables_do_not_exist_yet() {
    let db = TestDb::unique("fmigto");
    let run = dhctl(&db.url)
        .args(["migrate", "--to", "20240101000002", "--format", "json"])
        .run();
    run.expect_code(0);
    let doc = run.json();
    let tables = doc["partition_create"]["tables"].as_array().unwrap();
    let logs = tables
        .iter()
        .find(|t| t["table"] == "request_logs")
        .unwrap();
    assert_eq!(logs["steps"].as_array().unwrap().len(), 4, "{doc}");
    let deliveries = tables
        .iter()
        .find(|t| t["table"] == "webhook_deliveries")
        .unwrap();
    assert!(
        deliveries["notes"][0]
            .as_str()
            .unwrap()
            .contains("does not exist yet"),
        "{doc}"
    );
    assert_eq!(deliveries["exit_code"], 0);
}

#[test]
fn new_partitions_carry_generated_columns_owner_grants_replica_identity_and_storage() {
    let owner = Role::new("fpowner", "");
    let reader = Role::new("fpreader", "");
    let db = TestDb::new("fprops");
    db.exec(&format!(
        "CREATE TABLE gen (id bigint, created_at timestamptz NOT NULL, total int) \
             PARTITION BY RANGE (created_at); \
         ALTER TABLE gen REPLICA IDENTITY FULL; \
         CREATE TABLE keyed (id bigint NOT NULL, created_at timestamptz NOT NULL, total int, \
             doubled int GENERATED ALWAYS AS (total * 2) STORED) PARTITION BY RANGE (created_at); \
         CREATE UNIQUE INDEX keyed_key ON keyed (id, created_at); \
         ALTER TABLE keyed REPLICA IDENTITY USING INDEX keyed_key; \
         GRANT SELECT, INSERT ON gen TO \"{r}\"; \
         ALTER TABLE gen OWNER TO \"{o}\"; \
         CREATE PUBLICATION gen_pub FOR TABLE gen, keyed;",
        r = reader.name,
        o = owner.name
    ));
    let dir = policies(&[("gen", None), ("keyed", None)]);
    create_january(&db, &dir);
    db.exec("ALTER TABLE gen_2024_01 SET (fillfactor = 70)");
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    let current = format!("gen_{}", server_month(&db, 0));
    // Under the publication, UPDATE and DELETE of a row in a new partition work. (The generated
    // column is on the table whose replica identity is an index: PostgreSQL 18 refuses UPDATE
    // under a publication when a FULL identity holds unpublished generated columns.)
    db.exec(
        "INSERT INTO gen (id, created_at, total) SELECT 1, now(), 2; \
         UPDATE gen SET total = 3 WHERE id = 1; DELETE FROM gen WHERE id = 1; \
         INSERT INTO keyed (id, created_at, total) SELECT 1, now(), 2; \
         UPDATE keyed SET total = 3 WHERE id = 1;",
    );
    assert_eq!(db.value("SELECT doubled FROM keyed WHERE id = 1"), "6");
    db.exec("DELETE FROM keyed WHERE id = 1");
    let props = db.value(&format!(
        "SELECT pg_get_userbyid(relowner) || ' ' || relreplident::text || ' ' || \
         array_to_string(reloptions, ',') || ' ' || \
         has_table_privilege('{r}', oid, 'SELECT')::text || ' ' || \
         has_table_privilege('{r}', oid, 'UPDATE')::text \
         FROM pg_class WHERE relname = '{current}'",
        r = reader.name
    ));
    assert_eq!(props, format!("{} f fillfactor=70 true false", owner.name));
    let keyed = db.value(&format!(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = 'keyed_{}'::regclass AND x.indisreplident",
        server_month(&db, 0)
    ));
    assert!(keyed.starts_with("keyed_"), "{keyed}");
}

#[test]
fn an_interrupted_detach_of_the_current_month_is_attached_again_not_finished() {
    let db = TestDb::new("freattach");
    let dir = pruned_monthly(&db, "live");
    with(&db, &dir, &["partition", "create"]).expect_code(0);
    let current = format!("live_{}", server_month(&db, 0));
    super::interrupt_detach(&db, "live", &current);
    let pending = format!(
        "SELECT inhdetachpending::text FROM pg_inherits WHERE inhrelid = '{current}'::regclass"
    );
    assert_eq!(db.value(&pending), "true");
    // Even with --now far ahead, prune attaches it again instead of finishing the detach.
    let run = with(
        &db,
        &dir,
        &[
            "partition",
            "prune",
            "--now",
            "2099-01-01T00:00:00Z",
            "--format",
            "json",
        ],
    );
    run.expect_code(0);
    assert_eq!(run.json()["tables"][0]["steps"][0]["action"], "reattach");
    assert_eq!(db.value(&pending), "false");
    db.exec("INSERT INTO live SELECT 1, now()");
    // And status calls the name taken by nothing: create has nothing to do.
    let create = with(&db, &dir, &["partition", "create", "--format", "json"]);
    create.expect_code(0);
    assert!(create.json()["tables"][0]["steps"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn odd_date_and_interval_styles_do_not_break_status_create_prune_or_verify() {
    let db = TestDb::new("fstyle");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db.exec(&format!(
        "ALTER DATABASE \"{n}\" SET datestyle = 'SQL, YMD'; \
         ALTER DATABASE \"{n}\" SET intervalstyle = 'sql_standard'; \
         ALTER DATABASE \"{n}\" SET extra_float_digits = 0; \
         ALTER DATABASE \"{n}\" SET timezone = 'America/St_Johns';",
        n = db.name
    ));
    super::create(&db, super::NOW).expect_code(0);
    assert_eq!(
        super::bounds(&db, "request_logs"),
        super::four_months("request_logs")
    );
    let at_now = |command: &str| {
        dhctl(&db.url)
            .args([
                "partition",
                command,
                "--now",
                super::NOW,
                "--format",
                "json",
            ])
            .run()
    };
    let status = at_now("status");
    status.expect_code(0);
    let doc = status.json();
    assert_eq!(doc["tables"][0]["coverage"]["runway"], 3, "{doc}");
    assert_eq!(
        doc["tables"][0]["partitions"][1]["from"],
        "2026-11-01T00:00:00Z"
    );
    let prune = at_now("prune");
    prune.expect_code(0);
    assert_eq!(
        prune.json()["tables"][0]["steps"][0]["name"],
        "request_logs_2024_01"
    );
    let verify = dhctl(&db.url)
        .args(["verify", "--now", super::NOW, "--format", "json"])
        .run();
    let report = verify.json();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "partitions")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "pass", "{report:#}");
}

#[test]
fn a_pending_detach_of_an_undroppable_partition_is_finished_and_the_table_kept() {
    let db = TestDb::new("fpendview");
    let dir = pruned_monthly(&db, "pv");
    create_january_to_now(&db, &dir);
    db.exec("CREATE VIEW pv_jan AS SELECT * FROM pv_2024_01");
    super::interrupt_detach(&db, "pv", "pv_2024_01");
    let run = with(&db, &dir, &["partition", "prune", "--format", "json"]);
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(first_step(&doc), ("finalize", "keep"), "{doc}");
    assert!(
        doc["tables"][0]["error"]
            .as_str()
            .unwrap()
            .contains("view pv_jan"),
        "{doc}"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'pv_2024_01'::regclass"),
        "0"
    );
    assert_eq!(db.value("SELECT count(*) FROM pv_jan"), "0");
}
