//! How verify rebuilds the applied migrations: CONCURRENTLY left out and said so, functions,
//! triggers and extensions rebuilt in the scratch database, and a migration that cannot be
//! rebuilt reported with its line.

use super::*;

#[test]
fn a_concurrent_index_migration_is_rebuilt_without_concurrently_and_says_so() {
    let db = TestDb::new("vcic");
    let dir = migrations_with(&[(
        "20240101000006_index_webhooks_url.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY idx_webhooks_url ON webhooks (url);\n\
         -- migrate:down\nDROP INDEX idx_webhooks_url;\n",
    )]);
    migrate_in(&db, dir.path());
    let run = verify_in(&db, dir.path());
    run.expect_code(0);
    let report = run.json();
    let notes = check(&report, "schema")["notes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]
        .as_str()
        .unwrap()
        .starts_with("20240101000006_index_webhooks_url.sql:2: built without CONCURRENTLY"));
    db.exec("DROP INDEX idx_webhooks_url");
    let run = verify_in(&db, dir.path());
    run.expect_code(1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["index idx_webhooks_url on webhooks: missing in the database"]
    );
}

#[test]
fn a_migration_that_cannot_be_rebuilt_is_an_error_naming_its_line() {
    let db = migrated("vdatadep");
    db.exec("INSERT INTO api_keys (key_hash, key_prefix, name) VALUES ('h', 'p', 'n')");
    // Its DDL depends on rows only the live database has: an empty database cannot replay it.
    let dir = migrations_with(&[(
        "20240101000006_needs_data.sql",
        "-- migrate:up\n-- Refuses to run on an empty table.\n\
         DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM api_keys) THEN RAISE EXCEPTION 'no keys yet'; END IF; END $$;\n",
    )]);
    migrate_in(&db, dir.path());
    let run = dhctl(&db.url)
        .args(["verify"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("20240101000006_needs_data.sql:3: no keys yet"),
        "{}",
        run.stderr
    );
    assert!(leftover_scratch_databases("postgres").is_empty());
}

#[test]
fn functions_and_triggers_are_rebuilt_in_a_scratch_schema_and_compared() {
    let db = TestDb::new("vtrigger");
    let dir = migrations_with(&[(
        "20240101000006_touch_updated_at.sql",
        "-- migrate:up\n\
         CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n\
         CREATE TRIGGER api_keys_touch BEFORE UPDATE ON api_keys\n\
             FOR EACH ROW EXECUTE FUNCTION touch_updated_at();\n",
    )]);
    migrate_in(&db, dir.path());
    let verify = || verify_in(&db, dir.path());
    let run = verify();
    run.expect_code(0);
    let before = run.json();
    assert_eq!(before["scratch"], "database");
    db.exec("DROP TRIGGER api_keys_touch ON api_keys");
    let run = verify();
    run.expect_code(1);
    let after = run.json();
    assert_eq!(
        details(check(&after, "schema")),
        vec!["trigger api_keys_touch on api_keys: missing in the database"]
    );
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    assert!(leftover_scratch_databases("postgres").is_empty());
}

#[test]
fn extension_types_and_functions_resolve_in_the_rebuild() {
    let db = TestDb::new("vext");
    let dir = migrations_with(&[(
        "20240101000006_contacts.sql",
        "-- migrate:up\nCREATE EXTENSION IF NOT EXISTS citext;\n\
         CREATE EXTENSION IF NOT EXISTS pgcrypto;\n\
         CREATE TABLE contacts (\n    email citext PRIMARY KEY,\n    \
         token bytea NOT NULL DEFAULT gen_random_bytes(16)\n);\n",
    )]);
    migrate_in(&db, dir.path());
    let verify = || verify_in(&db, dir.path());
    let run = verify();
    run.expect_code(0);
    let notes = check(&run.json(), "schema")["notes"].clone();
    assert_eq!(
        notes.as_array().unwrap().len(),
        0,
        "CREATE EXTENSION is replayed in the scratch database as written: {notes}"
    );
    db.exec("ALTER TABLE contacts ALTER COLUMN email TYPE text");
    let run = verify();
    run.expect_code(1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["column contacts.email: type changed: migrations `citext`, database `text`"]
    );
}
