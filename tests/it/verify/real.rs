//! Migrations written the way real projects write them (dbmate projects: UPchieve/subway and
//! friends): names qualified with their own schemas and with `public`, `CREATE TABLE IF NOT
//! EXISTS public.x`, schemas, extensions, enums, domains, composite types, functions, triggers,
//! views, a materialized view with an index, grants to a role, a `transaction:false` CREATE
//! INDEX CONCURRENTLY, and statements with effects outside a transaction (setval, nextval,
//! advisory locks, NOTIFY). Right after migrate verify passes; each hand change is named.

use super::*;

/// The project's files, next to the shipped gateway migrations (whose partitioned tables the
/// partition maintainer extends). `reader` is a role the migrations grant to.
pub fn real_project(reader: &str) -> tempfile::TempDir {
    let schemas = "-- migrate:up\n\
        CREATE EXTENSION IF NOT EXISTS citext;\n\
        CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;\n\
        CREATE SCHEMA IF NOT EXISTS auth;\n\
        CREATE SCHEMA types;\n\
        CREATE TYPE types.mood AS ENUM ('happy', 'sad');\n\
        CREATE DOMAIN types.email AS citext CHECK (VALUE ~ '@');\n\
        CREATE TYPE types.amount AS (value numeric(12,2), currency char(3));\n\
        CREATE TABLE IF NOT EXISTS public.accounts (\n\
            id bigserial PRIMARY KEY,\n\
            email types.email NOT NULL UNIQUE,\n\
            mood types.mood NOT NULL DEFAULT 'happy',\n\
            balance types.amount,\n\
            token bytea NOT NULL DEFAULT public.gen_random_bytes(16),\n\
            updated_at timestamptz NOT NULL DEFAULT now()\n\
        );\n\
        CREATE TABLE IF NOT EXISTS auth.sessions (\n\
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),\n\
            account_id bigint NOT NULL REFERENCES public.accounts (id) ON DELETE CASCADE,\n\
            created_at timestamptz NOT NULL DEFAULT now()\n\
        );\n\
        CREATE SEQUENCE public.invoice_numbers;\n\
        -- migrate:down\n\
        DROP SEQUENCE public.invoice_numbers;\n\
        DROP TABLE auth.sessions;\n\
        DROP TABLE public.accounts;\n\
        DROP SCHEMA types CASCADE;\n\
        DROP SCHEMA auth;\n";
    let functions = format!(
        "-- migrate:up\n\
        CREATE FUNCTION public.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$\n\
        BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n\
        CREATE TRIGGER accounts_touch BEFORE UPDATE ON public.accounts\n\
            FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();\n\
        CREATE FUNCTION auth.session_count(account bigint) RETURNS bigint LANGUAGE sql STABLE\n\
            AS $$ SELECT count(*) FROM auth.sessions WHERE account_id = account $$;\n\
        CREATE MATERIALIZED VIEW auth.sessions_per_account AS\n\
            SELECT account_id, count(*) AS n FROM auth.sessions GROUP BY account_id;\n\
        CREATE UNIQUE INDEX sessions_per_account_key ON auth.sessions_per_account (account_id);\n\
        CREATE VIEW public.happy_accounts AS SELECT id, email FROM public.accounts WHERE mood = 'happy';\n\
        GRANT USAGE ON SCHEMA auth TO \"{reader}\";\n\
        GRANT SELECT ON public.accounts, auth.sessions TO \"{reader}\";\n\
        -- migrate:down\n\
        DROP VIEW public.happy_accounts;\n\
        DROP MATERIALIZED VIEW auth.sessions_per_account;\n\
        DROP FUNCTION auth.session_count(bigint);\n\
        DROP TRIGGER accounts_touch ON public.accounts;\n\
        DROP FUNCTION public.touch_updated_at();\n"
    );
    let index = "-- migrate:up transaction:false\n\
        CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_mood_idx ON public.accounts (mood);\n\
        -- migrate:down transaction:false\n\
        DROP INDEX CONCURRENTLY IF EXISTS public.accounts_mood_idx;\n";
    // Effects outside any transaction: a rolled-back replay would still have moved the live
    // sequence, taken the lock and sent the notification.
    let effects = "-- migrate:up\n\
        SELECT setval('public.invoice_numbers', 1000);\n\
        SELECT nextval('public.invoice_numbers');\n\
        SELECT pg_advisory_lock(74040002);\n\
        SELECT pg_notify('accounts', 'migrated');\n\
        INSERT INTO public.accounts (email) VALUES ('seed@example.com');\n\
        -- migrate:down\n\
        DELETE FROM public.accounts WHERE email = 'seed@example.com';\n";
    migrations_with(&[
        ("20240201000001_schemas_and_types.sql", schemas),
        ("20240201000002_functions_and_views.sql", &functions),
        ("20240201000003_accounts_mood_index.sql", index),
        ("20240201000004_seed_and_side_effects.sql", effects),
    ])
}

/// A role the project grants to, a fresh database, and the project migrated into it (the role
/// is dropped last, after the database that holds its grants).
pub fn migrated_project(role: &str, label: &str) -> (Role, TestDb, tempfile::TempDir) {
    let reader = Role::new(role, "");
    let db = TestDb::new(label);
    let dir = real_project(&reader.name);
    migrate_in(&db, dir.path());
    (reader, db, dir)
}

#[test]
fn qualified_names_in_several_schemas_verify_right_after_migrate_and_hand_changes_are_named() {
    let (reader, db, dir) = migrated_project("vreader", "vreal");
    let run = verify_in(&db, dir.path());
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(report["scratch"], "database");
    let schema = check(&report, "schema");
    assert_eq!(schema["status"], "pass");
    assert_eq!(
        check(&report, "partitions")["status"],
        "pass",
        "the gateway's partitions are still judged"
    );
    let notes = schema["notes"].to_string();
    assert!(
        notes.contains("20240201000003_accounts_mood_index.sql:2: built without CONCURRENTLY"),
        "{notes}"
    );

    db.exec(
        "ALTER TABLE public.accounts ADD COLUMN nickname text;\n\
         DROP INDEX public.accounts_mood_idx;\n\
         DROP TRIGGER accounts_touch ON public.accounts;\n\
         CREATE OR REPLACE FUNCTION auth.session_count(account bigint) RETURNS bigint \
             LANGUAGE sql STABLE AS $$ SELECT 0::bigint $$;\n\
         ALTER TYPE types.mood ADD VALUE 'angry';\n\
         ALTER DOMAIN types.email ADD CONSTRAINT short CHECK (length(VALUE) < 200);\n\
         DROP MATERIALIZED VIEW auth.sessions_per_account;\n\
         CREATE TABLE auth.audit (a int);\n\
         CREATE SCHEMA reporting;\n\
         CREATE TABLE reporting.daily (a int);",
    );
    let run = verify_in(&db, dir.path());
    let report = run.json();
    assert_eq!(run.code, 1, "{report:#}");
    let mut found = details(check(&report, "schema"));
    found.sort();
    let mut want = vec![
        "schema reporting: in the database, not in the migrations".to_string(),
        "table auth.audit: in the database, not in the migrations".into(),
        "column accounts.nickname: in the database, not in the migrations".into(),
        "index accounts_mood_idx on accounts: missing in the database".into(),
        "trigger accounts_touch on accounts: missing in the database".into(),
        "materialized view auth.sessions_per_account: missing in the database".into(),
        "function auth.session_count(bigint): body changed: migrations ` SELECT count(*) FROM \
         auth.sessions WHERE account_id = account `, database ` SELECT 0::bigint `"
            .into(),
        "type types.mood: enum labels changed: migrations `'happy', 'sad'`, database \
         `'happy', 'sad', 'angry'`"
            .into(),
        "type types.email: domain constraints changed: migrations `CHECK ((VALUE ~ '@'::citext))`, \
         database `CHECK ((VALUE ~ '@'::citext)) CHECK ((length((VALUE)::text) < 200))`"
            .into(),
    ];
    want.sort();
    assert_eq!(found, want);
    assert!(leftover_scratch_databases("postgres").is_empty());
    drop(db);
    drop(reader);
}

#[test]
fn a_schema_missing_in_the_database_is_one_difference() {
    let (reader, db, dir) = migrated_project("vreader2", "vrealdrop");
    db.exec("DROP SCHEMA auth CASCADE");
    let run = verify_in(&db, dir.path());
    assert_eq!(run.code, 1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["schema auth: missing in the database"]
    );
    drop(db);
    drop(reader);
}

#[test]
fn an_enum_value_one_migration_adds_and_a_later_one_uses_rebuilds() {
    let db = TestDb::new("venum");
    let dir = migrations_with(&[
        (
            "20240201000001_status.sql",
            "-- migrate:up\nCREATE TYPE public.status AS ENUM ('new');\n",
        ),
        (
            "20240201000002_status_done.sql",
            "-- migrate:up\nALTER TYPE public.status ADD VALUE 'done';\n",
        ),
        (
            "20240201000003_tasks.sql",
            "-- migrate:up\nCREATE TABLE tasks (s public.status NOT NULL DEFAULT 'done');\n",
        ),
    ]);
    migrate_in(&db, dir.path());
    let run = verify_in(&db, dir.path());
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}
