//! Least privilege: everything dhctl does works as a role that owns its database but is neither
//! superuser nor CREATEDB, as on a managed service.

use crate::harness::*;

#[test]
fn an_owner_without_superuser_or_createdb_can_migrate_roll_back_and_check_status() {
    let role = Role::new("owner", "");
    let db = TestDb::owned_by("owner", &role);
    let url = role.url_for(&db);
    dhctl(&url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    dhctl(&url)
        .args(["status", "--exit-code"])
        .run()
        .expect_code(0);
    dhctl(&url)
        .args(["rollback", "--steps", "2"])
        .run()
        .expect_code(0);
    dhctl(&url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 5);
    assert_eq!(
        db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'api_keys'"),
        role.name
    );
}

#[test]
fn an_owner_without_superuser_or_createdb_can_maintain_partitions() {
    let role = Role::new("partowner", "");
    let db = TestDb::owned_by("partowner", &role);
    let url = role.url_for(&db);
    dhctl(&url)
        .args(["migrate", "--now", "2026-11-15T10:00:00Z"])
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'request_logs'::regclass"),
        "5"
    );
    dhctl(&url)
        .args(["partition", "create", "--now", "2027-03-01T00:00:00Z"])
        .run()
        .expect_code(0);
    dhctl(&url)
        .args(["partition", "prune", "--now", "2028-12-15T00:00:00Z"])
        .run()
        .expect_code(0);
    dhctl(&url)
        .args(["partition", "status", "--format", "json"])
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname = 'request_logs_2024_01'"),
        "0",
        "prune dropped what retention allows"
    );
}

#[test]
fn a_role_without_createdb_gets_a_clear_error_for_a_missing_database() {
    let role = Role::new("nocreate", "");
    let db = TestDb::unique("nocreate");
    let run = dhctl(&role.url_for(&db)).args(["migrate"]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("could not be created") && run.stderr.contains("CREATEDB"),
        "{}",
        run.stderr
    );
    assert!(!db.exists());
}

#[test]
fn dhctl_health_works_as_a_role_that_may_only_connect() {
    let role = Role::new("probe", "");
    let db = migrated_as_postgres("probe");
    let url = role.url_for(&db);
    let health = crate::health::support::start(&[("DATABASE_URL", &url)]);
    let ready = health.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    // The migrations check reads refinery_schema_history: a probe role needs SELECT on it.
    drop(health);
    db.exec(&format!(
        "GRANT SELECT ON refinery_schema_history TO \"{}\"",
        role.name
    ));
    let strict = crate::health::support::start(&[
        ("DATABASE_URL", &url),
        ("DHCTL_READY_REQUIRE_MIGRATED", "true"),
    ]);
    let ready = strict.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
}

fn migrated_as_postgres(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    db
}
