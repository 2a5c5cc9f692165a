//! The rebuild never reads, writes or locks a live object, sequences included: verify runs to
//! the end while another session holds a lock that conflicts with every write and every DDL on
//! every live table, and a verify over migrations that call setval, nextval, pg_advisory_lock and
//! pg_notify leaves the live database exactly as it was.

use std::time::Duration;

use super::real::migrated_project;
use super::*;

/// Every table of the live database (partitions and the history table included) as
/// `schema.table`, quoted.
fn live_tables(db: &TestDb) -> Vec<String> {
    db.column(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' \
           AND n.nspname <> 'information_schema' ORDER BY 1",
    )
}

#[test]
fn verify_completes_while_every_live_table_is_locked_against_writes_and_ddl() {
    let (reader, db, dir) = migrated_project("vlockr", "vlocked");
    let tables = live_tables(&db);
    assert!(tables.len() > 10, "{tables:?}");
    // EXCLUSIVE conflicts with every lock but ACCESS SHARE: with any DDL (what the old
    // in-database rebuild took on `CREATE TABLE IF NOT EXISTS public.x` and on foreign keys to
    // live tables), with writes, with ROW SHARE. Only plain reads of the catalog pass.
    let mut holder = db.client();
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            tables.join(", ")
        ))
        .unwrap();
    let run = dhctl(&db.url)
        .args(["verify", "--format", "json", "--lock-timeout", "500ms"])
        .migrations_dir(dir.path())
        .run();
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}\n{}", run.stderr);
    assert_eq!(check(&report, "schema")["status"], "pass");
    holder.batch_execute("ROLLBACK").unwrap();

    // ACCESS EXCLUSIVE (a migration in progress) blocks even catalog reads of a table's
    // definition: verify then gives up after --lock-timeout, naming why, instead of queueing.
    holder
        .batch_execute("BEGIN; LOCK TABLE public.accounts IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let run = dhctl(&db.url)
        .args(["verify", "--lock-timeout", "300ms"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("reading the live schema") && run.stderr.contains("ACCESS EXCLUSIVE"),
        "{}",
        run.stderr
    );
    holder.batch_execute("ROLLBACK").unwrap();
    drop(holder);
    drop(db);
    drop(reader);
}

/// What a verify must not change: every sequence's last_value, every table's row count, the
/// sessions connected to the live database, and its advisory locks.
fn live_state(db: &TestDb) -> Vec<String> {
    vec![
        db.value(
            "SELECT string_agg(format('%s.%s=%s', schemaname, sequencename, \
                                      coalesce(last_value::text, 'unset')), ', ' ORDER BY 1) \
             FROM pg_sequences",
        ),
        db.value(
            "SELECT string_agg(format('%I.%I=%s', n.nspname, c.relname, \
                 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
                  n.nspname, c.relname), false, true, '')))[1]::text), ', ' ORDER BY 1) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT LIKE 'pg\\_%' \
               AND n.nspname <> 'information_schema'",
        ),
        db.value(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ),
        db.value(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ),
    ]
}

#[test]
fn verify_leaves_sequences_rows_sessions_locks_and_listeners_of_the_live_database_alone() {
    let (reader, db, dir) = migrated_project("vfxr", "veffects");
    // Someone else moved the sequence on since the migration ran.
    db.exec("SELECT setval('public.invoice_numbers', 5)");
    let mut listener = db.client();
    listener.batch_execute("LISTEN accounts").unwrap();
    let before = live_state(&db);
    assert!(before[0].contains("public.invoice_numbers=5"), "{before:?}");
    assert_eq!(before[2], "1", "only the listener is connected: {before:?}");

    let run = verify_in(&db, dir.path());
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");

    assert!(
        wait_until(Duration::from_secs(10), || live_state(&db) == before),
        "verify changed the live database: before {before:?}, after {:?}",
        live_state(&db)
    );
    listener.batch_execute("SELECT 1").unwrap();
    let heard = listener.notifications().len();
    assert_eq!(heard, 0, "a replayed pg_notify reached the live database");
    assert!(leftover_scratch_databases("postgres").is_empty());
    drop(listener);
    drop(db);
    drop(reader);
}
