//! partition create, prune and status (and migrate's partition step), end to end against real
//! PostgreSQL: bounds read back from the catalog, lock safety under contention, pending detaches,
//! concurrent runners and refusals that leave the database unchanged. Shared helpers here.

mod adversary;
mod create;
mod default;
mod foreign;
mod messages;
mod prune;
mod refusals;

pub use crate::harness::migrated_without_partitions as migrated;
use crate::harness::*;

pub const NOW: &str = "2026-11-15T10:00:00Z";

/// `name FROM .. TO ..` of every partition of `table`, bounds printed in UTC whatever the
/// database's TimeZone is.
pub fn bounds(db: &TestDb, table: &str) -> Vec<String> {
    let mut c = db.client();
    c.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'")
        .unwrap();
    c.query(
        "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::text::regclass ORDER BY 1",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

pub fn month(table: &str, name: &str, from: &str, to: &str) -> String {
    format!("{table}_{name} FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')")
}

/// The expected partitions of `table` after `create --now 2026-11-15T10:00:00Z`.
pub fn four_months(table: &str) -> Vec<String> {
    vec![
        month(table, "2024_01", "2024-01-01", "2024-02-01"),
        month(table, "2026_11", "2026-11-01", "2026-12-01"),
        month(table, "2026_12", "2026-12-01", "2027-01-01"),
        month(table, "2027_01", "2027-01-01", "2027-02-01"),
        month(table, "2027_02", "2027-02-01", "2027-03-01"),
    ]
}

/// Every relation in public with its partition bound: "did anything change?" in one value.
pub fn everything(db: &TestDb) -> Vec<String> {
    db.column(
        "SELECT relname || ' ' || relkind::text || ' ' || coalesce(pg_get_expr(relpartbound, oid), '') \
         FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
    )
}

/// Leaves `partition`'s `DETACH … CONCURRENTLY` pending, as an interrupted prune would: a
/// reader's open transaction makes the detach wait in its second phase, where a
/// statement_timeout cancels it. (Separate statements: in one simple-query string the two
/// would be an implicit transaction block, which DETACH … CONCURRENTLY refuses.)
pub fn interrupt_detach(db: &TestDb, table: &str, partition: &str) {
    let mut reader = db.client();
    let mut tx = reader.transaction().unwrap();
    tx.batch_execute(&format!("SELECT count(*) FROM {table}"))
        .unwrap();
    let mut detacher = db.client();
    detacher
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let err = detacher
        .batch_execute(&format!(
            "ALTER TABLE {table} DETACH PARTITION {partition} CONCURRENTLY"
        ))
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
    tx.commit().unwrap();
}

pub fn create(db: &TestDb, now: &str) -> Run {
    dhctl(&db.url)
        .args(["partition", "create", "--now", now])
        .run()
}
