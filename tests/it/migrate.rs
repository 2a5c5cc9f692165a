//! migrate, status, rollback and new, end to end against real PostgreSQL.

use crate::harness::*;

#[test]
fn migrate_creates_the_gateway_schema_and_a_second_run_changes_nothing() {
    let db = TestDb::new("schema");
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    let tables = db.tables();
    for t in GATEWAY_TABLES {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
    assert_eq!(db.history().len(), 5);
    let again = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    again.expect_code(0);
    assert_eq!(again.json()["steps"].as_array().unwrap().len(), 0);
}
