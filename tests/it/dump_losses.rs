//! `dhctl dump` losing nothing silently: storage parameters of TOAST tables, column options, a
//! partition's own trigger state, column order and index names survive a dump and load (and the
//! loaded database dumps to the same bytes); objects of kinds the dump does not write are named
//! in its warnings, by name only (no user mapping's or subscription's options).

use crate::dump::load;
use crate::harness::{dhctl, TestDb};

/// Dumps `db` (no migrations: the schema is made by hand).
fn dump(db: &TestDb) -> String {
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    run.stdout
}

/// A database made by `setup`, its dump, and a fresh database the dump was loaded into (which
/// dumps to the same bytes).
fn round_trip(label: &str, setup: &str) -> (TestDb, String, TestDb) {
    let source = TestDb::new(label);
    source.exec(setup);
    let sql = dump(&source);
    let target = TestDb::new(&format!("{label}_load"));
    load(&target, &sql);
    assert_eq!(dump(&target), sql, "the loaded database dumps alike");
    (source, sql, target)
}

/// `query` gives the same rows on both databases (and some rows).
fn same(source: &TestDb, target: &TestDb, query: &str) -> Vec<String> {
    let rows = source.column(query);
    assert!(!rows.is_empty(), "{query}");
    assert_eq!(target.column(query), rows, "{query}");
    rows
}

#[test]
fn toast_storage_parameters_survive() {
    let (source, sql, target) = round_trip(
        "dl_toast",
        "CREATE TABLE t (x text) WITH (fillfactor = 70, toast.autovacuum_enabled = false); \
         CREATE TABLE only_toast (x text) WITH (toast.vacuum_truncate = false); \
         CREATE TABLE p (k int, x text) PARTITION BY LIST (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1) WITH (toast.autovacuum_vacuum_cost_delay = 5);",
    );
    assert!(
        sql.contains(") WITH (fillfactor=70, toast.autovacuum_enabled=false);"),
        "{sql}"
    );
    let rows = same(
        &source,
        &target,
        "SELECT c.relname || ' ' || coalesce(c.reloptions::text, '-') || ' ' || coalesce(tc.reloptions::text, '-') \
         FROM pg_class c JOIN pg_class tc ON tc.oid = c.reltoastrelid \
         WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1",
    );
    assert_eq!(
        rows,
        [
            "only_toast - {vacuum_truncate=false}",
            "p_1 - {autovacuum_vacuum_cost_delay=5}",
            "t {fillfactor=70} {autovacuum_enabled=false}",
        ]
    );
}

#[test]
fn column_options_survive_but_not_the_servers_own() {
    let (source, sql, target) = round_trip(
        "dl_attopt",
        "CREATE TABLE t (a int, b int); \
         ALTER TABLE t ALTER COLUMN a SET (n_distinct = 5, n_distinct_inherited = -0.5); \
         CREATE TABLE p (k int, v int) PARTITION BY LIST (k); \
         ALTER TABLE p ALTER COLUMN v SET (n_distinct_inherited = 100); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1); \
         ALTER TABLE p_1 ALTER COLUMN v SET (n_distinct = -1);",
    );
    assert!(
        sql.contains(
            "ALTER TABLE ONLY public.t ALTER COLUMN a SET (n_distinct=5, n_distinct_inherited=-0.5);"
        ),
        "{sql}"
    );
    // Options the server keeps for itself (named pg_…) are not written.
    assert!(!sql.contains("SET (pg_"), "{sql}");
    let rows = same(
        &source,
        &target,
        "SELECT a.attrelid::regclass || '.' || a.attname || ' ' \
         || pg_catalog.array_to_string(ARRAY(SELECT o FROM pg_catalog.unnest(a.attoptions) o \
                                             WHERE pg_catalog.left(o, 3) <> 'pg_' ORDER BY 1), ',') \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND c.relkind IN ('r', 'p') \
         ORDER BY 1",
    );
    assert!(
        rows.contains(&"t.a n_distinct=5,n_distinct_inherited=-0.5".to_string()),
        "{rows:?}"
    );
    assert!(rows.contains(&"p.v n_distinct_inherited=100".to_string()));
    assert!(rows.contains(&"p_1.v n_distinct=-1".to_string()));
}

#[test]
fn a_partitions_own_trigger_state_survives() {
    let (source, sql, target) = round_trip(
        "dl_trig",
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
         CREATE TABLE p (k int) PARTITION BY RANGE (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (1) TO (2); \
         CREATE TABLE p_2 PARTITION OF p FOR VALUES FROM (2) TO (3); \
         CREATE TABLE p_3 PARTITION OF p FOR VALUES FROM (3) TO (4); \
         CREATE TABLE p_4 PARTITION OF p FOR VALUES FROM (4) TO (5) PARTITION BY RANGE (k); \
         CREATE TABLE p_4a PARTITION OF p_4 FOR VALUES FROM (4) TO (5); \
         CREATE TABLE p_5 PARTITION OF p FOR VALUES FROM (5) TO (6); \
         CREATE TRIGGER on_ins AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION f(); \
         CREATE TRIGGER on_upd AFTER UPDATE ON p FOR EACH ROW EXECUTE FUNCTION f(); \
         ALTER TABLE p DISABLE TRIGGER on_upd; \
         ALTER TABLE p_1 DISABLE TRIGGER on_ins; \
         ALTER TABLE p_2 ENABLE REPLICA TRIGGER on_ins; \
         ALTER TABLE p_3 ENABLE ALWAYS TRIGGER on_ins; \
         ALTER TABLE p_4 DISABLE TRIGGER on_ins; \
         ALTER TABLE p_4a ENABLE ALWAYS TRIGGER on_ins; \
         ALTER TABLE p_5 ENABLE TRIGGER on_upd;",
    );
    assert!(
        sql.contains("ALTER TABLE public.p_1 DISABLE TRIGGER on_ins;"),
        "{sql}"
    );
    // The parent's state is set first, then the partitions' (a parent's reaches its partitions).
    let parent = sql
        .find("ALTER TABLE public.p DISABLE TRIGGER on_upd;")
        .unwrap();
    let child = sql
        .find("ALTER TABLE public.p_5 ENABLE TRIGGER on_upd;")
        .unwrap();
    let middle = sql
        .find("ALTER TABLE public.p_4 DISABLE TRIGGER on_ins;")
        .unwrap();
    let leaf = sql
        .find("ALTER TABLE public.p_4a ENABLE ALWAYS TRIGGER on_ins;")
        .unwrap();
    assert!(parent < child && middle < leaf, "{sql}");
    let rows = same(
        &source,
        &target,
        "SELECT tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger \
         WHERE NOT tgisinternal OR tgparentid <> 0 ORDER BY 1",
    );
    assert!(rows.contains(&"p_4a on_ins A".to_string()), "{rows:?}");
    assert!(rows.contains(&"p_2 on_ins R".to_string()), "{rows:?}");
}

#[test]
fn a_partitions_own_column_order_survives() {
    let (source, sql, target) = round_trip(
        "dl_order",
        "CREATE TABLE p (k int NOT NULL, v text DEFAULT 'p', w int, CONSTRAINT k_positive CHECK (k > 0)) \
             PARTITION BY RANGE (k); \
         ALTER TABLE p ALTER COLUMN v SET STORAGE EXTERNAL; \
         CREATE TABLE p_same PARTITION OF p FOR VALUES FROM (1) TO (2); \
         CREATE TABLE p_swapped (w int, v text DEFAULT 'own', k int NOT NULL, CHECK (k > 0)); \
         ALTER TABLE p_swapped RENAME CONSTRAINT p_swapped_k_check TO k_positive; \
         ALTER TABLE p ATTACH PARTITION p_swapped FOR VALUES FROM (2) TO (3); \
         CREATE TABLE p_dropped (k int NOT NULL, gone int, v text, w int, CONSTRAINT k_positive CHECK (k > 0)); \
         ALTER TABLE p_dropped DROP COLUMN gone; \
         ALTER TABLE p ATTACH PARTITION p_dropped FOR VALUES FROM (3) TO (4); \
         CREATE TABLE p_sub (v text, k int NOT NULL, w int, CONSTRAINT own_check CHECK (w <> 0), \
             CONSTRAINT k_positive CHECK (k > 0)) \
             PARTITION BY LIST (w); \
         ALTER TABLE p ATTACH PARTITION p_sub FOR VALUES FROM (4) TO (5); \
         CREATE TABLE p_sub_1 PARTITION OF p_sub FOR VALUES IN (1);",
    );
    assert!(
        sql.contains(
            "CREATE TABLE public.p_same PARTITION OF public.p FOR VALUES FROM (1) TO (2);"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE TABLE public.p_dropped PARTITION OF public.p"),
        "the same order after a dropped column: {sql}"
    );
    assert!(
        sql.contains(
            "ALTER TABLE public.p ATTACH PARTITION public.p_swapped FOR VALUES FROM (2) TO (3);"
        ),
        "{sql}"
    );
    assert!(
        sql.contains(
            "ALTER TABLE public.p ATTACH PARTITION public.p_sub FOR VALUES FROM (4) TO (5);"
        ),
        "{sql}"
    );
    same(
        &source,
        &target,
        "SELECT c.relname || ': ' || pg_catalog.string_agg(a.attname || ' ' || a.attstorage::text || ' ' \
         || a.attnotnull::text || ' ' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '-'), ', ' ORDER BY a.attnum) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
           AND a.attnum > 0 AND NOT a.attisdropped GROUP BY c.relname ORDER BY 1",
    );
    same(
        &source,
        &target,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || coninhcount FROM pg_constraint \
         WHERE connamespace = 'public'::regnamespace AND contype = 'c' ORDER BY 1",
    );
    same(
        &source,
        &target,
        "SELECT inhrelid::regclass || ' ' || inhparent::regclass FROM pg_inherits ORDER BY 1",
    );
}

#[test]
fn a_partitions_hand_named_index_keeps_its_name_and_parent() {
    let (source, sql, target) = round_trip(
        "dl_idx",
        "CREATE TABLE p (k int, v int) PARTITION BY RANGE (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (1) TO (2); \
         CREATE INDEX hand_named ON p_1 (k); \
         CREATE INDEX p_k ON p (k); \
         CREATE INDEX p_1_v_idx ON p_1 (k) WHERE k > 0; \
         CREATE INDEX p_v ON p (v); \
         CREATE TABLE p_2 PARTITION OF p FOR VALUES FROM (2) TO (3) PARTITION BY RANGE (k); \
         CREATE TABLE p_2a PARTITION OF p_2 FOR VALUES FROM (2) TO (3); \
         CREATE INDEX deep_hand ON p_2a ((k + v)); \
         CREATE INDEX mid_hand ON ONLY p_2 ((k + v)); \
         ALTER INDEX mid_hand ATTACH PARTITION deep_hand; \
         CREATE INDEX p_expr ON p ((k + v)); \
         CREATE INDEX p_server_named ON p (k, v);",
    );
    assert!(
        sql.contains("CREATE INDEX hand_named ON public.p_1 USING btree (k);"),
        "{sql}"
    );
    assert!(
        sql.contains("ALTER INDEX public.p_k ATTACH PARTITION public.hand_named;"),
        "{sql}"
    );
    // p_1's own (other) index took the name the server would give the copy of p_v: the copy's
    // name has a number added, and the dump writes it.
    assert!(
        sql.contains("ALTER INDEX public.p_v ATTACH PARTITION public.p_1_v_idx1;"),
        "{sql}"
    );
    // Names the server gives alike on load are left to it.
    assert!(!sql.contains("p_1_k_v_idx"), "{sql}");
    assert!(
        !sql.contains("-- WARNING: index"),
        "no warning left for what is dumped: {sql}"
    );
    same(
        &source,
        &target,
        "SELECT x.indexrelid::regclass || ' on ' || x.indrelid::regclass || ' under ' \
         || coalesce((SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = x.indexrelid), '-') \
         FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
         WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1",
    );
    assert_eq!(
        target.value("SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        "0"
    );
}

#[test]
fn objects_of_kinds_not_dumped_are_named_without_their_secrets() {
    let db = TestDb::new("dl_warn");
    db.exec(
        "CREATE FOREIGN DATA WRAPPER dl_fdw; \
         CREATE SERVER dl_server FOREIGN DATA WRAPPER dl_fdw OPTIONS (host 'example.invalid'); \
         CREATE USER MAPPING FOR postgres SERVER dl_server OPTIONS (user 'app', password 'hunter2-mapping'); \
         CREATE USER MAPPING FOR PUBLIC SERVER dl_server OPTIONS (password 'hunter2-public'); \
         CREATE FUNCTION from_sql(internal) RETURNS internal IMMUTABLE LANGUAGE internal AS 'textregexeq_support'; \
         CREATE FUNCTION to_sql(internal) RETURNS int IMMUTABLE LANGUAGE internal AS 'int4recv'; \
         CREATE TRANSFORM FOR int LANGUAGE plpgsql (FROM SQL WITH FUNCTION from_sql(internal), \
             TO SQL WITH FUNCTION to_sql(internal)); \
         CREATE ACCESS METHOD dl_am TYPE TABLE HANDLER heap_tableam_handler; \
         CREATE LANGUAGE dl_lang HANDLER plpgsql_call_handler; \
         CREATE TEXT SEARCH TEMPLATE dl_template (LEXIZE = dsimple_lexize); \
         CREATE TEXT SEARCH PARSER dl_parser (START = prsd_start, GETTOKEN = prsd_nexttoken, \
             END = prsd_end, LEXTYPES = prsd_lextype); \
         CREATE TYPE dl_shell; \
         CREATE COLLATION dl_c (provider = libc, locale = 'C');",
    );
    // CREATE SUBSCRIPTION runs outside a transaction: alone, and dropped whatever happens (it
    // keeps its database from being dropped; without a slot, DROP does not connect anywhere).
    db.exec(
        "CREATE SUBSCRIPTION dl_sub CONNECTION 'host=127.0.0.1 dbname=nowhere password=hunter2-sub' \
         PUBLICATION nothing WITH (connect = false, slot_name = NONE)",
    );
    let _subscription = DropSubscription(&db);
    let run = dhctl(&db.url).args(["dump"]).run();
    let json = dhctl(&db.url).args(["dump", "--format", "json"]).run();
    run.expect_code(0);
    json.expect_code(0);
    let expected = [
        "foreign-data wrapper dl_fdw is not dumped",
        "server dl_server is not dumped",
        "user mapping for postgres on server dl_server is not dumped",
        "user mapping for PUBLIC on server dl_server is not dumped",
        "subscription dl_sub is not dumped",
        "transform for integer language plpgsql is not dumped",
        "access method dl_am is not dumped",
        "language dl_lang is not dumped",
        "text search template public.dl_template is not dumped",
        "text search parser public.dl_parser is not dumped",
        "type public.dl_shell is not dumped",
        // The kind once, as pg_describe_object gives it.
        "collation public.dl_c is not dumped",
    ];
    let not_dumped: Vec<String> = json.json()["not_dumped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    for line in expected {
        assert!(
            run.stdout.contains(&format!("-- WARNING: {line}\n")),
            "{line}:\n{}",
            run.stdout
        );
        assert!(run.stderr.contains(line), "{line}:\n{}", run.stderr);
        assert!(
            not_dumped.iter().any(|w| w == line),
            "{line}: {not_dumped:?}"
        );
    }
    assert_eq!(not_dumped.len(), expected.len(), "{not_dumped:?}");
    for text in [&run.stdout, &run.stderr, &json.stdout, &json.stderr] {
        assert!(
            !text.contains("hunter2"),
            "an option's secret shown:\n{text}"
        );
        assert!(!text.contains("example.invalid"), "{text}");
    }
}

#[test]
fn a_partitions_hand_named_constraint_keeps_its_name() {
    let (source, sql, target) = round_trip(
        "dl_con",
        "CREATE TABLE p (k int, v int, CONSTRAINT k_positive CHECK (k > 0)) PARTITION BY RANGE (k); \
         ALTER TABLE p ADD PRIMARY KEY (k); \
         ALTER TABLE p ADD CONSTRAINT p_v_k UNIQUE (v, k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (1) TO (2); \
         CREATE TABLE p_2 (k int NOT NULL, v int, CONSTRAINT k_positive CHECK (k > 0), \
             CONSTRAINT mine_pk PRIMARY KEY (k), CONSTRAINT mine_uq UNIQUE (v, k)); \
         ALTER TABLE p ATTACH PARTITION p_2 FOR VALUES FROM (2) TO (3);",
    );
    assert!(
        sql.contains(
            "ALTER TABLE public.p_2 ADD CONSTRAINT mine_pk PRIMARY KEY (k);\n\n\
             ALTER TABLE public.p_2 ADD CONSTRAINT mine_uq UNIQUE (v, k);\n\n\
             ALTER TABLE public.p ATTACH PARTITION public.p_2 FOR VALUES FROM (2) TO (3);"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("CREATE TABLE public.p_1 PARTITION OF public.p"),
        "server-named copies are left to the server: {sql}"
    );
    assert!(!sql.contains("-- WARNING"), "{sql}");
    let rows = same(
        &source,
        &target,
        "SELECT c.conrelid::regclass || ' ' || c.conname || ' ' \
         || coalesce((SELECT p.conname::text FROM pg_constraint p WHERE p.oid = c.conparentid), '-') \
         FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u') ORDER BY 1",
    );
    assert!(rows.contains(&"p_2 mine_pk p_pkey".to_string()), "{rows:?}");
    assert!(
        rows.contains(&"p_1 p_1_v_k_key p_v_k".to_string()),
        "{rows:?}"
    );
}

/// Drops the test's subscription when the test ends, passed or failed.
struct DropSubscription<'a>(&'a TestDb);

impl Drop for DropSubscription<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .client()
            .batch_execute("DROP SUBSCRIPTION IF EXISTS dl_sub");
    }
}

#[test]
fn a_materialized_views_toast_parameters_and_a_partition_indexs_comment_survive() {
    let (source, sql, target) = round_trip(
        "dl_mvtoast",
        "CREATE TABLE t (x text); \
         CREATE MATERIALIZED VIEW mv WITH (fillfactor = 80, toast.autovacuum_enabled = false) AS SELECT x FROM t; \
         CREATE TABLE p (k int, v int) PARTITION BY LIST (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1); \
         CREATE INDEX p_v ON p (v); \
         COMMENT ON INDEX p_1_v_idx IS 'the copy on p_1'; \
         ALTER TABLE p ADD PRIMARY KEY (k); \
         COMMENT ON INDEX p_1_pkey IS 'the key copy';",
    );
    assert!(
        sql.contains("WITH (fillfactor=80, toast.autovacuum_enabled=false) AS"),
        "{sql}"
    );
    same(
        &source,
        &target,
        "SELECT c.relname || ' ' || coalesce(c.reloptions::text, '-') || ' ' || coalesce(tc.reloptions::text, '-') \
         FROM pg_class c JOIN pg_class tc ON tc.oid = c.reltoastrelid WHERE c.relname = 'mv'",
    );
    let comments = same(
        &source,
        &target,
        "SELECT c.relname || ': ' || pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_class c \
         WHERE c.relkind = 'i' AND c.relispartition ORDER BY 1",
    );
    assert_eq!(
        comments,
        ["p_1_pkey: the key copy", "p_1_v_idx: the copy on p_1"]
    );
}

#[test]
fn a_security_label_is_named_not_lost() {
    // No label provider (sepgsql) is installed here: the row a provider would write is written
    // by hand, as the superuser the tests run as.
    let db = TestDb::new("dl_seclabel");
    db.exec(
        "CREATE TABLE labelled (x int); \
         INSERT INTO pg_catalog.pg_seclabel VALUES ('labelled'::regclass, 'pg_class'::regclass, 0, \
         'selinux', 'system_u:object_r:sepgsql_table_t:s0');",
    );
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    let line = "security label of provider selinux on table public.labelled is not dumped";
    assert!(run.stdout.contains(line), "{}", run.stdout);
    assert!(run.stderr.contains(line), "{}", run.stderr);
}

/// Which index each partition's index belongs to, and that all are valid.
const INDEX_TREE: &str = "SELECT x.indexrelid::regclass || ' on ' || x.indrelid::regclass || ' under ' \
     || coalesce((SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = x.indexrelid), '-') \
     || ' valid ' || x.indisvalid \
     FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
     WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1";

#[test]
fn two_indexes_alike_on_a_partitioned_table_keep_their_own_copies() {
    // i2's copy is named m1_a_idx1 (i1's took m1_a_idx): it must not be taken by i1 on load.
    let (source, sql, target) = round_trip(
        "dl_idx_twins",
        "CREATE TABLE m (a int, b int) PARTITION BY LIST (a); \
         CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1); \
         CREATE TABLE m2 PARTITION OF m FOR VALUES IN (2) PARTITION BY LIST (b); \
         CREATE TABLE m2x PARTITION OF m2 FOR VALUES IN (1); \
         CREATE INDEX i1 ON m (a); \
         CREATE INDEX i2 ON m (a);",
    );
    assert!(
        sql.contains("ALTER INDEX public.i2 ATTACH PARTITION public.m1_a_idx1;"),
        "{sql}"
    );
    let rows = same(&source, &target, INDEX_TREE);
    assert!(
        rows.contains(&"m1_a_idx1 on m1 under i2 valid true".to_string()),
        "{rows:?}"
    );
}

#[test]
fn a_hand_named_copy_and_a_twin_index_keep_their_parents() {
    let (source, _sql, target) = round_trip(
        "dl_idx_hand_twin",
        "CREATE TABLE m (a int) PARTITION BY LIST (a); \
         CREATE TABLE m1 PARTITION OF m FOR VALUES IN (1); \
         CREATE INDEX \"my m1 a\" ON m1 (a); \
         CREATE INDEX z_idx ON m (a); \
         CREATE INDEX a_idx ON m (a);",
    );
    let rows = same(&source, &target, INDEX_TREE);
    assert!(
        rows.contains(&"\"my m1 a\" on m1 under z_idx valid true".to_string()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"m1_a_idx on m1 under a_idx valid true".to_string()),
        "{rows:?}"
    );
}

#[test]
fn an_attached_partitions_column_of_its_parents_identity_is_kept() {
    // PostgreSQL 17+ marks e1.id identity (the parent's, with no sequence of its own); its
    // column was written as NULL and dropped from CREATE TABLE. Before 17 e1.id is plain.
    let (source, sql, target) = round_trip(
        "dl_ident_part",
        "CREATE TABLE e (id bigint GENERATED ALWAYS AS IDENTITY, k int) PARTITION BY LIST (k); \
         CREATE TABLE e1 (k int, id bigint NOT NULL); \
         ALTER TABLE e ATTACH PARTITION e1 FOR VALUES IN (1);",
    );
    assert!(
        sql.contains("CREATE TABLE public.e1 (\n    k integer,\n    id bigint NOT NULL\n);"),
        "{sql}"
    );
    same(
        &source,
        &target,
        "SELECT attrelid::regclass || '.' || attname || ' ' || attidentity::text || ' ' || attnotnull \
         FROM pg_attribute WHERE attrelid IN ('e'::regclass, 'e1'::regclass) AND attnum > 0 \
         AND NOT attisdropped ORDER BY 1",
    );
}

#[test]
fn a_dump_written_with_a_carriage_return_checks_equal() {
    let db = TestDb::new("dl_crlf");
    db.exec(
        "CREATE TABLE c (x int); COMMENT ON TABLE c IS E'line1\\r\\nline2'; \
         CREATE FUNCTION f() RETURNS int LANGUAGE sql AS E'SELECT 1\\r\\n';",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.sql");
    dhctl(&db.url)
        .args(["dump", "--output"])
        .args([&file])
        .run()
        .expect_code(0);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("line1\r\nline2"));
    dhctl(&db.url)
        .args(["dump", "--check"])
        .args([&file])
        .run()
        .expect_code(0);
}

/// Identity columns: kind, and their sequence's type and start.
const IDENTITY: &str = "SELECT a.attrelid::regclass || '.' || a.attname || ' ' || a.attidentity::text || ' ' \
     || coalesce((SELECT pg_catalog.format_type(q.seqtypid, NULL) || ' ' || q.seqstart FROM pg_depend d \
                  JOIN pg_sequence q ON q.seqrelid = d.objid \
                  WHERE d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i'), '-') \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attidentity <> '' \
     ORDER BY 1";

#[test]
fn a_partitions_own_identity_and_an_identity_sequences_type_survive() {
    let db = TestDb::new("dl_ident_own_probe");
    let own = db.value("SELECT current_setting('server_version_num')::int < 170000");
    drop(db);
    // PostgreSQL 17+ refuses an identity of a partition's own.
    let partition = if own == "true" {
        "CREATE TABLE h (id bigint NOT NULL, k int) PARTITION BY LIST (k); \
         CREATE TABLE h1 PARTITION OF h FOR VALUES IN (1); \
         ALTER TABLE h1 ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH 100);"
    } else {
        ""
    };
    let (source, sql, target) = round_trip(
        "dl_ident_own",
        &format!(
            "{partition} CREATE TABLE narrow (id bigint GENERATED ALWAYS AS IDENTITY, x int); \
             ALTER SEQUENCE narrow_id_seq AS integer; \
             CREATE TABLE wide (id smallint GENERATED ALWAYS AS IDENTITY, x int); \
             ALTER SEQUENCE wide_id_seq AS integer; \
             ALTER SEQUENCE wide_id_seq START WITH 40000 RESTART MINVALUE 5;"
        ),
    );
    // A sequence wider than its column: its bounds do not fit the column's type, so the
    // column's definition leaves them out and ALTER SEQUENCE … AS writes them.
    assert!(
        sql.contains(
            "ALTER SEQUENCE public.wide_id_seq AS integer START WITH 40000 RESTART WITH 40000 \
             MINVALUE 5 MAXVALUE 2147483647;"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("ALTER SEQUENCE public.narrow_id_seq AS integer START WITH 1"),
        "{sql}"
    );
    let rows = same(&source, &target, IDENTITY);
    assert!(
        rows.contains(&"wide.id a integer 40000".to_string()),
        "{rows:?}"
    );
    same(
        &source,
        &target,
        "SELECT c.relname || ' ' || q.seqmin || ' ' || q.seqmax || ' ' || q.seqincrement || ' ' \
         || q.seqcache || ' ' || q.seqcycle FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid \
         ORDER BY 1",
    );
    if own == "true" {
        assert!(rows.contains(&"h1.id d bigint 100".to_string()), "{rows:?}");
    }
}

#[test]
fn named_and_not_valid_not_null_constraints_survive_on_18() {
    let probe = TestDb::new("dl_nn_probe");
    let named = probe.value("SELECT current_setting('server_version_num')::int >= 180000");
    drop(probe);
    if named != "true" {
        // Before PostgreSQL 18 a NOT NULL has no name nor NOT VALID.
        return;
    }
    let (source, sql, target) = round_trip(
        "dl_nn",
        "CREATE TABLE t (x int CONSTRAINT nn_x NOT NULL, y int NOT NULL, z int); \
         ALTER TABLE t ADD CONSTRAINT nn_z NOT NULL z NOT VALID; \
         COMMENT ON CONSTRAINT nn_x ON t IS 'named'; \
         CREATE TYPE pair AS (a int, b int); \
         CREATE TABLE typed OF pair (a WITH OPTIONS CONSTRAINT a_set NOT NULL);",
    );
    assert!(
        sql.contains(
            "    x integer CONSTRAINT nn_x NOT NULL,\n    y integer NOT NULL,\n    z integer\n);"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("ALTER TABLE ONLY public.t ADD CONSTRAINT nn_z NOT NULL z NOT VALID;"),
        "{sql}"
    );
    same(
        &source,
        &target,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || convalidated || ' ' \
         || coalesce(obj_description(oid, 'pg_constraint'), '-') FROM pg_constraint \
         WHERE contype = 'n' AND connamespace = 'public'::regnamespace ORDER BY 1",
    );
}

#[test]
fn comments_on_copies_index_statistics_an_extensions_comment_and_validated_copies_survive() {
    let (source, sql, target) = round_trip(
        "dl_copies",
        "CREATE EXTENSION citext; COMMENT ON EXTENSION citext IS 'ours'; \
         CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
         CREATE TABLE p (k int PRIMARY KEY, v int) PARTITION BY LIST (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1); \
         CREATE TABLE p_2 PARTITION OF p FOR VALUES IN (2); \
         COMMENT ON CONSTRAINT p_1_pkey ON p_1 IS 'the key copy'; \
         CREATE TRIGGER on_ins AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION f(); \
         COMMENT ON TRIGGER on_ins ON p_1 IS 'the clone'; \
         ALTER TABLE p ADD CONSTRAINT v_pos CHECK (v > 0) NOT VALID; \
         ALTER TABLE p_1 VALIDATE CONSTRAINT v_pos; \
         CREATE TABLE t (a int, b int); CREATE INDEX ix ON t ((a + b), a); \
         ALTER INDEX ix ALTER COLUMN 1 SET STATISTICS 500;",
    );
    for expected in [
        "COMMENT ON EXTENSION citext IS 'ours';",
        "ALTER INDEX public.ix ALTER COLUMN 1 SET STATISTICS 500;",
        "ALTER TABLE ONLY public.p_1 VALIDATE CONSTRAINT v_pos;",
    ] {
        assert!(sql.contains(expected), "{expected}:\n{sql}");
    }
    same(
        &source,
        &target,
        "SELECT pg_describe_object(classoid, objoid, objsubid) || ': ' || description \
         FROM pg_description WHERE objoid >= 16384 ORDER BY 1",
    );
    same(
        &source,
        &target,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || convalidated FROM pg_constraint \
         WHERE contype = 'c' AND connamespace = 'public'::regnamespace ORDER BY 1",
    );
    same(
        &source,
        &target,
        "SELECT attrelid::regclass || ' ' || attnum || ' ' || attstattarget FROM pg_attribute \
         WHERE attrelid = 'ix'::regclass ORDER BY 1",
    );
}

#[test]
fn a_database_without_the_public_schema_loads_without_it() {
    let (_source, sql, target) = round_trip(
        "dl_nopublic",
        "DROP SCHEMA public; CREATE SCHEMA app; CREATE TABLE app.t (x int);",
    );
    assert!(sql.contains("DROP SCHEMA IF EXISTS public;"), "{sql}");
    assert_eq!(
        target.value("SELECT count(*) FROM pg_namespace WHERE nspname = 'public'"),
        "0"
    );
}

#[test]
fn a_warned_object_that_the_dump_uses_says_the_dump_will_not_load() {
    let db = TestDb::new("dl_warn_used");
    db.exec(
        "CREATE COLLATION ci (provider = libc, locale = 'C'); \
         CREATE TABLE t (email text COLLATE ci);",
    );
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    let line = "collation public.ci is not dumped; column email of table public.t uses it: \
                the dump will not load";
    assert!(run.stdout.contains(line), "{}", run.stdout);
    assert!(run.stderr.contains(line), "{}", run.stderr);
}

#[test]
fn a_partitions_hand_named_foreign_key_keeps_its_name() {
    let (source, sql, target) = round_trip(
        "dl_fk",
        "CREATE TABLE r (id int PRIMARY KEY); \
         CREATE TABLE p (k int, v int) PARTITION BY LIST (k); \
         CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1); \
         CREATE TABLE p_2 (k int, v int, CONSTRAINT my_fk FOREIGN KEY (v) REFERENCES r); \
         ALTER TABLE p ATTACH PARTITION p_2 FOR VALUES IN (2); \
         ALTER TABLE p ADD CONSTRAINT p_v_fk FOREIGN KEY (v) REFERENCES r;",
    );
    assert!(
        sql.contains(
            "ALTER TABLE public.p_2 ADD CONSTRAINT my_fk FOREIGN KEY (v) REFERENCES public.r(id);"
        ),
        "{sql}"
    );
    same(
        &source,
        &target,
        "SELECT c.conrelid::regclass || ' ' || c.conname || ' ' \
         || coalesce((SELECT p.conname::text FROM pg_constraint p WHERE p.oid = c.conparentid), '-') \
         FROM pg_constraint c WHERE c.contype = 'f' ORDER BY 1",
    );
}

#[test]
fn a_partitions_copies_of_alike_keys_go_back_to_their_own_parent_constraints() {
    // p1's copies are numbered against each other (p1_k_key is p_u2's, p1_k_key1 p_u1's), so p1
    // is made alone and attached; ATTACH gives each parent constraint the first alike copy, so
    // the copies must be made in the order their parents are. q's two alike unique
    // constraints' copies, made in the other order, must not swap.
    let (source, sql, target) = round_trip(
        "dl_alike_keys",
        "CREATE TABLE p (k int) PARTITION BY LIST (k); \
         ALTER TABLE p ADD CONSTRAINT p_u2 UNIQUE (k); \
         ALTER TABLE p ADD CONSTRAINT p_u1 UNIQUE (k); \
         ALTER TABLE p ADD CONSTRAINT p_pk PRIMARY KEY (k); \
         CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1); \
         CREATE TABLE q (k int) PARTITION BY LIST (k); \
         ALTER TABLE q ADD CONSTRAINT q_b UNIQUE (k); \
         ALTER TABLE q ADD CONSTRAINT q_a UNIQUE (k); \
         CREATE TABLE q1 PARTITION OF q FOR VALUES IN (1); \
         CREATE TABLE q10 (k int, CONSTRAINT q10_b UNIQUE (k), CONSTRAINT q10_a UNIQUE (k)); \
         ALTER TABLE q ATTACH PARTITION q10 FOR VALUES IN (10);",
    );
    assert!(sql.contains("ATTACH PARTITION public.p1 "), "{sql}");
    let rows = same(
        &source,
        &target,
        "SELECT c.conrelid::regclass || '.' || c.conname || ' ' || c.contype::text || ' of ' \
         || coalesce(p.conname::text, '-') FROM pg_constraint c \
         LEFT JOIN pg_constraint p ON p.oid = c.conparentid \
         WHERE c.connamespace = 'public'::regnamespace AND c.contype IN ('p', 'u') ORDER BY 1",
    );
    assert!(
        rows.contains(&"p1.p1_pkey p of p_pk".to_string()),
        "{rows:?}"
    );
}
