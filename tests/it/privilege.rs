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
