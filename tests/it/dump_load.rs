//! `dhctl dump` round trips of the schemas an adversarial review found did not load, loaded
//! wrong, or lost something silently: each test makes a schema, dumps it, loads the dump with
//! `psql -X -v ON_ERROR_STOP=1` into an empty database, and checks that the loaded database
//! dumps to the same bytes and has the same catalog facts (comments, casts, typed tables,
//! defaults, row level security, domain checks and defaults, clustering) as the source.

use crate::dump::load;
use crate::harness::{dhctl, TestDb};

fn dump(db: &TestDb) -> String {
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    assert!(
        !run.stdout.contains("-- WARNING"),
        "nothing here is beyond the dump:\n{}",
        run.stdout
    );
    run.stdout
}

/// What the dump must carry over, as text without OIDs, one line per fact, sorted.
const FACTS: &str = "
SELECT f FROM (
    SELECT 'comment ' || pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description AS f
    FROM pg_catalog.pg_description d WHERE d.objoid >= 16384
    UNION ALL
    SELECT 'cast ' || pg_catalog.format_type(c.castsource, NULL) || ' -> ' || pg_catalog.format_type(c.casttarget, NULL)
           || ' ' || c.castfunc::regprocedure::text || ' ' || c.castcontext::text || c.castmethod::text
    FROM pg_catalog.pg_cast c WHERE c.oid >= 16384
    UNION ALL
    SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || ' of ' || c.reloftype::regtype::text
           || ' rls ' || c.relrowsecurity || ' force ' || c.relforcerowsecurity
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT LIKE 'pg!_%' ESCAPE '!' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 'default ' || d.adrelid::regclass::text || '.' || a.attname || ' ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
    FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    UNION ALL
    SELECT 'domain check ' || c.contypid::regtype::text || ' ' || c.conname || ' validated ' || c.convalidated
    FROM pg_catalog.pg_constraint c WHERE c.contypid >= 16384
    UNION ALL
    SELECT 'domain default ' || t.oid::regtype::text || ' ' || coalesce(pg_catalog.pg_get_expr(t.typdefaultbin, 0), 'none')
    FROM pg_catalog.pg_type t WHERE t.oid >= 16384 AND t.typtype = 'd'
    UNION ALL
    SELECT 'clustered ' || i.indexrelid::regclass::text FROM pg_catalog.pg_index i WHERE i.indisclustered
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text FROM pg_catalog.pg_type t WHERE t.oid >= 16384 AND t.typtype <> 'b'
) facts ORDER BY f COLLATE \"C\"";

/// Makes `schema` in a fresh database, dumps it, loads the dump into another, and checks that
/// the loaded database dumps to the same bytes and has the same facts. Returns the dump.
fn round_trip(label: &str, schema: &str) -> String {
    let source = TestDb::new(&format!("dlx_{label}_src"));
    source.exec(schema);
    let sql = dump(&source);
    let target = TestDb::new(&format!("dlx_{label}_dst"));
    load(&target, &sql);
    assert_eq!(dump(&target), sql, "the loaded database dumps alike");
    assert_eq!(
        target.column(FACTS),
        source.column(FACTS),
        "the loaded database has what the dumped one has"
    );
    sql
}

fn assert_contains(sql: &str, expected: &str) {
    assert!(sql.contains(expected), "missing {expected:?}:\n{sql}");
}

#[test]
fn an_extension_in_a_schema_whose_name_needs_quotes() {
    let sql = round_trip(
        "ext",
        "CREATE SCHEMA \"Ext Schema\"; CREATE EXTENSION citext WITH SCHEMA \"Ext Schema\";
         CREATE TABLE public.t (name \"Ext Schema\".citext);",
    );
    assert_contains(
        &sql,
        "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA \"Ext Schema\";",
    );
    // The extension's own casts come with it.
    assert!(!sql.contains("CREATE CAST"), "{sql}");
}

#[test]
fn a_clustered_materialized_view() {
    let sql = round_trip(
        "cluster_mv",
        "CREATE TABLE public.t (n int);
         CREATE MATERIALIZED VIEW public.mv AS SELECT n FROM public.t;
         CREATE INDEX mv_n ON public.mv (n);
         ALTER MATERIALIZED VIEW public.mv CLUSTER ON mv_n;",
    );
    assert_contains(&sql, "ALTER TABLE ONLY public.mv CLUSTER ON mv_n;");
}

#[test]
fn types_come_after_the_types_they_use_whatever_their_names() {
    let sql = round_trip(
        "type_order",
        "CREATE TYPE public.z_inner AS (x int, y text);
         CREATE DOMAIN public.m_dom AS public.z_inner CHECK ((VALUE).x > 0);
         CREATE TYPE public.b_range AS RANGE (subtype = public.z_inner);
         CREATE TYPE public.a_outer AS (inner_value public.z_inner, many public.z_inner[],
                                        checked public.m_dom, span public.b_range, spans public.b_multirange);",
    );
    let at = |what: &str| sql.find(what).unwrap_or_else(|| panic!("{what}:\n{sql}"));
    assert!(at("CREATE TYPE public.z_inner") < at("CREATE DOMAIN public.m_dom"));
    assert!(at("CREATE TYPE public.z_inner") < at("CREATE TYPE public.b_range"));
    assert!(at("CREATE DOMAIN public.m_dom") < at("CREATE TYPE public.a_outer"));
    assert!(at("CREATE TYPE public.b_range") < at("CREATE TYPE public.a_outer"));
}

#[test]
fn a_range_over_a_domain() {
    let sql = round_trip(
        "range_domain",
        "CREATE DOMAIN public.z_pos AS int CHECK (VALUE > 0);
         CREATE TYPE public.a_pos_range AS RANGE (subtype = public.z_pos);
         CREATE TABLE public.t (r public.a_pos_range);",
    );
    assert_contains(
        &sql,
        "CREATE TYPE public.a_pos_range AS RANGE (SUBTYPE = public.z_pos,",
    );
}

#[test]
fn a_domain_with_a_not_valid_check() {
    let sql = round_trip(
        "domain_not_valid",
        "CREATE DOMAIN public.pos AS int CONSTRAINT pos_positive CHECK (VALUE > 0);
         ALTER DOMAIN public.pos ADD CONSTRAINT pos_small CHECK (VALUE < 100) NOT VALID;
         CREATE TABLE public.t (p public.pos);",
    );
    assert_contains(
        &sql,
        "CREATE DOMAIN public.pos AS integer CONSTRAINT pos_positive CHECK ((VALUE > 0));\n\n\
         ALTER DOMAIN public.pos ADD CONSTRAINT pos_small CHECK ((VALUE < 100)) NOT VALID;",
    );
}

#[test]
fn materialized_views_are_created_with_no_data_populated_or_not() {
    // The source's views are populated (one row makes 1/count(*) work); the loaded ones are not,
    // and both dump alike.
    let sql = round_trip(
        "mv_no_data",
        "CREATE TABLE public.t (n int); INSERT INTO public.t VALUES (1);
         CREATE MATERIALIZED VIEW public.ratio AS SELECT 1 / count(*) AS r FROM public.t;
         CREATE MATERIALIZED VIEW public.ratio_twice AS SELECT r * 2 AS r2 FROM public.ratio;
         CREATE MATERIALIZED VIEW public.never AS SELECT n FROM public.t WITH NO DATA;",
    );
    assert_eq!(sql.matches("\n  WITH NO DATA;").count(), 3, "{sql}");
}

#[test]
fn force_row_level_security_without_enable_stays_so() {
    let sql = round_trip(
        "force_rls",
        "CREATE TABLE public.forced (n int); ALTER TABLE public.forced FORCE ROW LEVEL SECURITY;
         CREATE TABLE public.both (n int); ALTER TABLE public.both ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.both FORCE ROW LEVEL SECURITY;",
    );
    assert!(!sql.contains("ALTER TABLE public.forced ENABLE"), "{sql}");
}

#[test]
fn comments_on_policies_domain_constraints_and_composite_columns() {
    let sql = round_trip(
        "comments",
        "CREATE TABLE public.t (n int); CREATE POLICY t_all ON public.t USING (true);
         COMMENT ON POLICY t_all ON public.t IS 'everyone''s';
         CREATE DOMAIN public.pos AS int CONSTRAINT pos_positive CHECK (VALUE > 0);
         COMMENT ON CONSTRAINT pos_positive ON DOMAIN public.pos IS 'no zero';
         CREATE TYPE public.pair AS (a int, b int);
         COMMENT ON TYPE public.pair IS 'two';
         COMMENT ON COLUMN public.pair.b IS 'the second';",
    );
    for expected in [
        "COMMENT ON POLICY t_all ON public.t IS 'everyone''s';",
        "COMMENT ON CONSTRAINT pos_positive ON DOMAIN public.pos IS 'no zero';",
        "COMMENT ON COLUMN public.pair.b IS 'the second';",
    ] {
        assert_contains(&sql, expected);
    }
}

#[test]
fn view_column_defaults() {
    let sql = round_trip(
        "view_defaults",
        "CREATE TABLE public.t (id int, n int);
         CREATE VIEW public.v AS SELECT id, n FROM public.t;
         ALTER VIEW public.v ALTER COLUMN n SET DEFAULT 42;",
    );
    assert_contains(&sql, "ALTER VIEW public.v ALTER COLUMN n SET DEFAULT 42;");
}

#[test]
fn user_defined_casts_but_not_an_extensions() {
    let sql = round_trip(
        "casts",
        "CREATE EXTENSION citext;
         CREATE TYPE public.pair AS (a int, b int);
         CREATE FUNCTION public.pair_sum(public.pair) RETURNS int LANGUAGE sql IMMUTABLE
             AS 'SELECT ($1).a + ($1).b';
         CREATE CAST (public.pair AS int) WITH FUNCTION public.pair_sum(public.pair) AS ASSIGNMENT;
         COMMENT ON CAST (public.pair AS int) IS 'the sum';
         CREATE CAST (public.pair AS text) WITH INOUT AS IMPLICIT;
         -- A range's cast to its multirange is made with the range.
         CREATE TYPE public.span AS RANGE (subtype = int);
         -- A default that needs the cast: the cast comes before the tables.
         CREATE TABLE public.t (p public.pair, s int DEFAULT (ROW(1, 2)::public.pair)::int);",
    );
    for expected in [
        "CREATE CAST (public.pair AS integer) WITH FUNCTION public.pair_sum(public.pair) AS ASSIGNMENT;",
        "CREATE CAST (public.pair AS text) WITH INOUT AS IMPLICIT;",
        "COMMENT ON CAST (public.pair AS integer) IS 'the sum';",
    ] {
        assert_contains(&sql, expected);
    }
    assert_eq!(sql.matches("CREATE CAST").count(), 2, "{sql}");
}

#[test]
fn typed_tables() {
    let sql = round_trip(
        "typed",
        "CREATE TYPE public.point2 AS (x int, y int, label text);
         CREATE TABLE public.typed OF public.point2 (
             x WITH OPTIONS NOT NULL DEFAULT 0, PRIMARY KEY (x), CONSTRAINT y_pos CHECK (y > 0));
         CREATE TABLE public.bare OF public.point2;",
    );
    assert_contains(
        &sql,
        "CREATE TABLE public.typed OF public.point2 (\n    x WITH OPTIONS DEFAULT 0 NOT NULL,\n    \
         CONSTRAINT y_pos CHECK ((y > 0))\n);",
    );
    assert_contains(&sql, "CREATE TABLE public.bare OF public.point2;");
}

#[test]
fn a_sql_standard_body_that_uses_a_cast_comes_after_the_cast() {
    let sql = round_trip(
        "body_cast",
        "CREATE TYPE public.pair AS (a int, b int);
         CREATE FUNCTION public.pair_sum(public.pair) RETURNS int LANGUAGE sql IMMUTABLE
             AS 'SELECT ($1).a + ($1).b';
         CREATE CAST (public.pair AS int) WITH FUNCTION public.pair_sum(public.pair);
         CREATE FUNCTION public.a_total(p public.pair) RETURNS int LANGUAGE sql
             RETURN p::int;
         CREATE FUNCTION public.b_twice(p public.pair) RETURNS int LANGUAGE sql
             BEGIN ATOMIC SELECT public.a_total(p) * 2; END;",
    );
    let at = |what: &str| sql.find(what).unwrap_or_else(|| panic!("{what}:\n{sql}"));
    assert!(at("CREATE CAST") < at("FUNCTION public.a_total"));
    assert!(at("FUNCTION public.a_total") < at("FUNCTION public.b_twice"));
}

#[test]
fn a_domain_default_that_calls_a_function_or_a_sequence_is_set_after_them() {
    let sql = round_trip(
        "domain_default",
        "CREATE FUNCTION public.seven() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 7';
         CREATE DOMAIN public.sevens AS int DEFAULT public.seven();
         CREATE SEQUENCE public.ids;
         CREATE DOMAIN public.next_id AS bigint DEFAULT pg_catalog.nextval('public.ids'::regclass);
         CREATE DOMAIN public.plain AS int DEFAULT 3;
         CREATE TABLE public.t (s public.sevens, i public.next_id, p public.plain);",
    );
    assert_contains(&sql, "CREATE DOMAIN public.plain AS integer DEFAULT 3;");
    assert_contains(
        &sql,
        "ALTER DOMAIN public.sevens SET DEFAULT public.seven();",
    );
    assert_contains(
        &sql,
        "ALTER DOMAIN public.next_id SET DEFAULT nextval('public.ids'::regclass);",
    );
}

#[test]
fn a_domain_over_a_domain_whose_default_was_dropped_has_none() {
    // CREATE DOMAIN d3 AS d2 takes d2's default: d3's dropped one is dropped again.
    let sql = round_trip(
        "domain_drop_default",
        "CREATE DOMAIN public.d2 AS int DEFAULT 5;
         CREATE DOMAIN public.d3 AS public.d2;
         ALTER DOMAIN public.d3 DROP DEFAULT;
         CREATE DOMAIN public.d4 AS public.d3;
         CREATE DOMAIN public.d5 AS public.d2 DEFAULT 6;
         CREATE TABLE public.t (a public.d3, b public.d4, c public.d5);",
    );
    assert_contains(&sql, "ALTER DOMAIN public.d3 DROP DEFAULT;");
    let at = |what: &str| sql.find(what).unwrap_or_else(|| panic!("{what}:\n{sql}"));
    assert!(at("CREATE DOMAIN public.d3") < at("ALTER DOMAIN public.d3 DROP DEFAULT;"));
    assert!(at("ALTER DOMAIN public.d3 DROP DEFAULT;") < at("CREATE DOMAIN public.d4"));
    assert!(
        !sql.contains("ALTER DOMAIN public.d4 DROP DEFAULT"),
        "{sql}"
    );
    assert!(
        !sql.contains("ALTER DOMAIN public.d5 DROP DEFAULT"),
        "{sql}"
    );
}
