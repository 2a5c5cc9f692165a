//! What an adversarial review of the merged work found, each pinned by a test: operators planted
//! in a writable schema, sections that end dhctl's transaction, carriage returns that end a
//! comment for PostgreSQL only, identifiers with non-ASCII letters before a `$`, and a history
//! table name with stray spaces.

use crate::harness::*;

fn run(db: &TestDb, dir: &tempfile::TempDir, args: &[&str]) -> Run {
    dhctl(&db.url).migrations_dir(dir.path()).args(args).run()
}

/// CVE-2018-1058's pattern: `=` operators for the mixed types a catalog query might compare,
/// planted in `public`, which precede pg_catalog's implicit casts. Each call records who ran it.
const PLANT: &str = "CREATE TABLE public.pwn(who text);
GRANT INSERT ON public.pwn TO PUBLIC;
CREATE FUNCTION public.evil_oid_int(oid, int4) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END$$;
CREATE OPERATOR public.= (leftarg = oid, rightarg = int4, function = public.evil_oid_int);
CREATE FUNCTION public.evil_oid_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END$$;
CREATE OPERATOR public.= (leftarg = oid, rightarg = regclass, function = public.evil_oid_regclass);
CREATE FUNCTION public.evil_name_name(name, name) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN true; END$$;
CREATE OPERATOR public.~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.!~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.~~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.!~~ (leftarg = name, rightarg = name, function = public.evil_name_name);";

#[test]
fn operators_planted_in_public_never_run_during_migrate_rollback_verify_or_partition_maintenance() {
    let db = TestDb::new("hplant");
    db.exec(PLANT);
    // The gateway's own migrations and partitions, then a rollback and a prune.
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    dhctl(&db.url)
        .args(["partition", "create", "--ahead", "4"])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args(["partition", "prune", "--dry-run"])
        .run()
        .expect_code(0);
    dhctl(&db.url).args(["status"]).run().expect_code(0);
    dhctl(&db.url)
        .args(["partition", "status"])
        .run()
        .expect_code(0);
    // The planted objects are differences (exit 1); what matters is that none of them ran.
    dhctl(&db.url).args(["verify"]).run().expect_code(1);
    dhctl(&db.url)
        .args(["rollback", "--steps", "1"])
        .run()
        .expect_code(0);
    assert_eq!(db.value("SELECT count(*) FROM public.pwn"), "0");
}

#[test]
fn a_transactional_section_that_ends_its_transaction_is_refused_before_anything_runs() {
    for (label, body, line) in [
        (
            "hcommit",
            "CREATE TABLE a1(i int);\nCOMMIT;\nCREATE TABLE a2(i int);\n",
            3,
        ),
        ("hrollback", "CREATE TABLE a1(i int);\n  rollback ;\n", 3),
        (
            "hchain",
            "CREATE TABLE a1(i int);\n/* c */ COMMIT AND CHAIN;\n",
            3,
        ),
        ("hbegin", "BEGIN;\nCREATE TABLE a1(i int);\nCOMMIT;\n", 2),
        ("hend", "CREATE TABLE a1(i int);\nEND;\n", 3),
        (
            "hcommitbegin",
            "INSERT INTO x VALUES (1);\nCOMMIT;\nBEGIN;\nSELECT 1/0;\n",
            3,
        ),
    ] {
        let db = TestDb::new(label);
        let text = format!("-- migrate:up\n{body}-- migrate:down\nDROP TABLE IF EXISTS a2;\n");
        let dir = folder(&[("1_a.sql", &text)]);
        let out = run(&db, &dir, &["migrate", "--no-partitions"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(&format!("line {line}:"))
                && out.stderr.contains("would end the transaction"),
            "{label}: {}",
            out.stderr
        );
        assert!(db.tables().is_empty(), "{label}: something ran");
    }
    // ROLLBACK TO SAVEPOINT stays inside the transaction and is fine.
    let db = TestDb::new("hsavepoint");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a1(i int);\nSAVEPOINT s;\nCREATE TABLE a2(i int);\nROLLBACK TO SAVEPOINT s;\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    assert_eq!(db.history(), vec![1]);
    assert!(db.tables().contains(&"a1".to_string()));
    assert!(!db.tables().contains(&"a2".to_string()));
}

#[test]
fn a_down_section_that_rolls_back_is_refused_and_the_history_row_stays() {
    let db = TestDb::new("hdownrb");
    let good = "-- migrate:up\nCREATE TABLE a(i int);\n-- migrate:down\nDROP TABLE a;\n";
    let dir = folder(&[("1_a.sql", good)]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    // The down section changes after the migration was applied (not drift: the checksum covers
    // the up section).
    std::fs::write(dir.path().join("1_a.sql"), format!("{good}ROLLBACK;\n")).unwrap();
    let out = run(&db, &dir, &["rollback", "--all"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("would end the transaction"),
        "{}",
        out.stderr
    );
    assert_eq!(db.history(), vec![1]);
    assert!(db.tables().contains(&"a".to_string()));
}

#[test]
fn a_bare_carriage_return_is_refused_before_connecting() {
    let db = TestDb::unique("hcr");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a(i int);\n-- the second table\rCREATE TABLE lost(i int);\n",
    )]);
    let out = run(&db, &dir, &["migrate", "--no-partitions"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("line 3") && out.stderr.contains("carriage return"),
        "{}",
        out.stderr
    );
    assert!(
        !db.exists(),
        "nothing may connect, let alone create the database"
    );
}

#[test]
fn a_non_ascii_identifier_before_a_dollar_sign_is_not_a_dollar_quote() {
    let db = TestDb::new("hcafe");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE café$x$ (i int);\n-- migrate:down\nDROP TABLE café$x$;\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    assert!(
        db.tables().contains(&"café$x$".to_string()),
        "{:?}",
        db.tables()
    );
    run(&db, &dir, &["rollback", "--all"]).expect_code(0);
    assert!(!db.tables().contains(&"café$x$".to_string()));
}

#[test]
fn a_history_table_name_with_stray_spaces_is_refused() {
    let db = TestDb::new("hspace");
    let dir = folder(&[("1_a.sql", "-- migrate:up\nCREATE TABLE a(i int);\n")]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    for name in ["public.refinery_schema_history ", " public.x", "public . x"] {
        let out = dhctl(&db.url)
            .migrations_dir(dir.path())
            .env("DHCTL_HISTORY_TABLE", name)
            .args(["migrate", "--no-partitions"])
            .run();
        out.expect_code(2);
    }
    assert_eq!(db.history(), vec![1]);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname LIKE 'refinery%' AND relkind = 'r'"),
        "1"
    );
}

#[test]
fn copy_from_stdin_or_to_stdout_is_refused_before_anything_runs() {
    // dhctl has no rows to feed COPY FROM STDIN and no reader for COPY TO STDOUT: sent, either
    // left the session in copy mode and failed with "unexpected message from server".
    for (label, statement, mode) in [
        ("hcopyin", "COPY a FROM stdin", ""),
        (
            "hcopyout",
            "copy (SELECT 1) TO STDOUT WITH (FORMAT csv)",
            "",
        ),
        ("hcopyfree", "COPY a FROM STDIN", " transaction:false"),
    ] {
        let db = TestDb::new(label);
        let dir = folder(&[(
            "1_a.sql",
            &format!("-- migrate:up{mode}\nCREATE TABLE a(i int);\n-- a note\n{statement};\n"),
        )]);
        let out = run(&db, &dir, &["migrate", "--no-partitions"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("line 4:") && out.stderr.contains("COPY FROM STDIN"),
            "{label}: {}",
            out.stderr
        );
        assert!(db.tables().is_empty(), "{label}: something ran");
    }
    // COPY between the server and its own files, and the words in a string, are fine.
    let db = TestDb::new("hcopyok");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a(i text);\nINSERT INTO a VALUES ('COPY a FROM STDIN');\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
}

/// Functions planted in `public` by a second, non-superuser role with CREATE there (PostgreSQL
/// 14 and older grant that to PUBLIC): each signature is a better match than pg_catalog's for
/// some argument types a catalog query may pass (`name` where pg_catalog takes `text`, a
/// concrete array where it takes `anyarray`, fixed arity where it takes VARIADIC "any", `text`
/// where an unknown literal would otherwise become `name`), so an unqualified call in any of
/// dhctl's own queries would run it. Each planted function records its name in a table the
/// planter owns, then does what pg_catalog's does.
const PLANT_FUNCTIONS: &str = "
CREATE TABLE public.ran(what text);
GRANT INSERT ON public.ran TO PUBLIC;
CREATE FUNCTION public.mark(what text) RETURNS void LANGUAGE sql
  AS $$INSERT INTO public.ran VALUES (what)$$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END$$;
CREATE FUNCTION public.unnest(a oid[]) RETURNS SETOF oid LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('unnest(oid[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END$$;
CREATE FUNCTION public.unnest(a name[]) RETURNS SETOF name LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('unnest(name[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END$$;
CREATE FUNCTION public.agg_json(s json, v json) RETURNS json LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('json_agg'); RETURN s; END$$;
CREATE AGGREGATE public.json_agg(json) (sfunc = public.agg_json, stype = json);
CREATE FUNCTION public.agg_pair(s json, k name, v text) RETURNS json LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('json_object_agg'); RETURN s; END$$;
CREATE AGGREGATE public.json_object_agg(name, text) (sfunc = public.agg_pair, stype = json);
CREATE FUNCTION public.agg_text(s text[], v text) RETURNS text[] LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('array_agg'); RETURN s; END$$;
CREATE AGGREGATE public.array_agg(text) (sfunc = public.agg_text, stype = text[]);
CREATE FUNCTION public.agg_name(s text, v name, d text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('string_agg'); RETURN s; END$$;
CREATE AGGREGATE public.string_agg(name, text) (sfunc = public.agg_name, stype = text);
CREATE FUNCTION public.json_build_object(a text, b text) RETURNS json LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('json_build_object'); RETURN pg_catalog.json_build_object(a, b); END$$;
CREATE FUNCTION public.format(f text, a text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('format/2'); RETURN pg_catalog.format(f, a); END$$;
CREATE FUNCTION public.format(f text, a text, b text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('format/3'); RETURN pg_catalog.format(f, a, b); END$$;
CREATE FUNCTION public.format(f text, a name, b name) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('format(name)'); RETURN pg_catalog.format(f, a, b); END$$;
CREATE FUNCTION public.concat_ws(s text, a text, b text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('concat_ws'); RETURN pg_catalog.concat_ws(s, a, b); END$$;
CREATE FUNCTION public.pg_get_expr(e pg_node_tree, r integer) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('pg_get_expr'); RETURN pg_catalog.pg_get_expr(e, r::oid); END$$;
CREATE FUNCTION public.pg_get_indexdef(r regclass) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('pg_get_indexdef'); RETURN pg_catalog.pg_get_indexdef(r); END$$;
CREATE FUNCTION public.pg_get_constraintdef(r regclass) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('pg_get_constraintdef'); RETURN ''; END$$;
CREATE FUNCTION public.pg_get_functiondef(r regproc) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('pg_get_functiondef'); RETURN pg_catalog.pg_get_functiondef(r); END$$;
CREATE FUNCTION public.pg_stat_get_live_tuples(r regclass) RETURNS bigint LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('pg_stat_get_live_tuples'); RETURN 0; END$$;
CREATE FUNCTION public.to_regclass(n name) RETURNS regclass LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('to_regclass'); RETURN pg_catalog.to_regclass(n::text); END$$;
CREATE FUNCTION public.quote_ident(n name) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('quote_ident'); RETURN pg_catalog.quote_ident(n::text); END$$;
CREATE FUNCTION public.quote_literal(n name) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('quote_literal'); RETURN pg_catalog.quote_literal(n::text); END$$;
CREATE FUNCTION public.regexp_match(s name, p text) RETURNS text[] LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('regexp_match'); RETURN pg_catalog.regexp_match(s::text, p); END$$;
CREATE FUNCTION public.obj_description(o oid, c text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('obj_description'); RETURN pg_catalog.obj_description(o, c::name); END$$;
CREATE FUNCTION public.split_part(s name, d text, n integer) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('split_part'); RETURN pg_catalog.split_part(s::text, d, n); END$$;
CREATE FUNCTION public.array_to_string(a text[], d text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('array_to_string'); RETURN pg_catalog.array_to_string(a, d); END$$;
CREATE FUNCTION public.lower(n name) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('lower'); RETURN pg_catalog.lower(n::text); END$$;
CREATE FUNCTION public.upper(n name) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('upper'); RETURN pg_catalog.upper(n::text); END$$;
CREATE FUNCTION public.left(n name, i integer) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('left'); RETURN pg_catalog.left(n::text, i); END$$;
CREATE FUNCTION public.right(n name, i integer) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('right'); RETURN pg_catalog.right(n::text, i); END$$;
CREATE FUNCTION public.length(n name) RETURNS integer LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('length'); RETURN pg_catalog.length(n::text); END$$;
CREATE FUNCTION public.btrim(n name, c text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('btrim'); RETURN pg_catalog.btrim(n::text, c); END$$;
CREATE FUNCTION public.lpad(n name, i integer, c text) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN PERFORM public.mark('lpad'); RETURN pg_catalog.lpad(n::text, i, c); END$$;
";

/// No function a second role plants in `public` runs in any dhctl command nor in dhctl-health's
/// readiness round and `/metrics` reads: every call in dhctl's own SQL is pg_catalog's, named.
#[test]
fn functions_planted_in_public_never_run_in_dhctl_or_dhctl_health() {
    let planter = Role::new("hfplanter", "");
    let db = TestDb::new("hfplant");
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO \"{}\"",
        planter.name
    ));
    connect(&planter.url_for(&db))
        .batch_execute(PLANT_FUNCTIONS)
        .unwrap();
    let ran = || db.column("SELECT DISTINCT what FROM public.ran ORDER BY 1");
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    assert_eq!(ran(), Vec::<String>::new(), "migrate");
    for (args, codes) in [
        (&["status"][..], &[0][..]),
        (&["partition", "status"], &[0]),
        (&["partition", "create", "--ahead", "4"], &[0]),
        (&["partition", "prune", "--dry-run"], &[0]),
        (&["lint", "--pending"], &[0, 1]),
        // The planted objects are differences (exit 1); what matters is that none of them ran.
        (&["verify"], &[0, 1]),
        (&["rollback", "--steps", "1", "--dry-run"], &[0]),
        (&["dump"], &[0]),
    ] {
        let out = dhctl(&db.url).args(args).run();
        assert!(
            codes.contains(&out.code),
            "{args:?}: exit {}\n{}",
            out.code,
            out.stderr
        );
        assert_eq!(ran(), Vec::<String>::new(), "{args:?}");
    }
    // A DEFAULT partition, so that /metrics reads its rows (prune refuses to run next to one).
    db.exec("CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT");
    {
        let server = crate::health::support::start(&[
            ("DATABASE_URL", db.url.as_str()),
            ("HEALTH_READY_CACHE_MS", "0"),
            ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
        ]);
        let ready = server.get("/health/ready");
        let metrics = server.get("/metrics");
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert!(
            metrics.body.contains("dhctl_partition_default_rows"),
            "{}",
            metrics.body
        );
    }
    assert_eq!(ran(), Vec::<String>::new(), "dhctl-health");
    // Baseline reads the live schema once the history is gone (a dry run writes nothing).
    db.exec("DELETE FROM refinery_schema_history");
    let latest = dhctl(&db.url).args(["status", "--format", "json"]).run();
    let version = latest.json()["migrations"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["version"].as_i64())
        .unwrap_or_else(|| panic!("no migrations in {}", latest.stdout));
    let out = dhctl(&db.url)
        .args(["baseline", "--version", &version.to_string(), "--dry-run"])
        .run();
    assert!(
        [0, 1].contains(&out.code),
        "baseline: exit {}\n{}",
        out.code,
        out.stderr
    );
    assert_eq!(ran(), Vec::<String>::new(), "baseline --dry-run");
}
