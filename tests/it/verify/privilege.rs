//! verify as a role that owns its database and has no other privilege: it works, and it leaves
//! nothing behind, even when killed with SIGKILL in the middle of the rebuild.

use std::time::Duration;

use super::*;

/// A login role with no privilege but owning `db` (and, as the database owner, its schema
/// public); dropped after the database.
struct Owner {
    name: String,
}

impl Owner {
    fn of(db: &TestDb) -> Owner {
        let name = format!("{}_owner", db.name);
        let mut admin = connect(&server_url());
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; \
                 ALTER DATABASE \"{}\" OWNER TO \"{name}\"",
                db.name
            ))
            .unwrap();
        Owner { name }
    }

    /// The test database's URL with this role as the user (trust authentication).
    fn url(&self, db: &TestDb) -> String {
        let url = db.url.clone();
        let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
        let host_start = url[scheme_end..]
            .find('@')
            .map(|i| scheme_end + i + 1)
            .unwrap_or(scheme_end);
        format!("{}{}@{}", &url[..scheme_end], self.name, &url[host_start..])
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&server_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.name));
        }
    }
}

/// An applied migration that waits for an advisory lock the test holds, so that verify's
/// scratch build stops half-way, with the scratch schema created and uncommitted.
const WAIT_KEY: i64 = 74_040_001;

#[test]
fn a_database_owner_without_privileges_verifies_and_a_killed_verify_leaves_nothing() {
    let db = TestDb::new("vowner");
    let owner = Owner::of(&db);
    let url = owner.url(&db);
    assert_eq!(
        db.value(&format!(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = '{}'",
            owner.name
        )),
        "f"
    );
    // The function makes verify rebuild in a real scratch schema (dhctl_verify_…), not in
    // the temporary one: that is the schema that must not survive.
    let dir = migrations_with(&[(
        "20240101000006_wait_for_the_test.sql",
        &format!(
            "-- migrate:up\nCREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';\n\
             SELECT pg_advisory_xact_lock({WAIT_KEY});\n"
        ),
    )]);
    dhctl(&url)
        .args(["migrate", "--no-create-database"])
        .migrations_dir(dir.path())
        .run()
        .expect_code(0);
    assert_eq!(
        db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'api_keys'"),
        owner.name
    );
    let run = dhctl(&url)
        .args(["verify", "--format", "json"])
        .migrations_dir(dir.path())
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["scratch"], "schema");
    assert!(scratch_schemas(&db).is_empty());

    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&WAIT_KEY])
        .unwrap();
    let mut child = dhctl(&url)
        .args(["verify", "--lock-timeout", "60s"])
        .migrations_dir(dir.path())
        .spawn();
    let waiting = format!(
        "SELECT a.pid::text || ' ' || (a.backend_xid IS NOT NULL)::text \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = {WAIT_KEY} \
           AND a.usename = '{}'",
        owner.name
    );
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            seen = db.column(&waiting).into_iter().next();
            seen.is_some()
        }),
        "verify never reached the waiting migration"
    );
    let seen = seen.unwrap();
    let (pid, wrote) = seen.split_once(' ').unwrap();
    assert_eq!(
        wrote, "true",
        "the backend has written (the scratch schema) before it waits"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock stays held: the backend must notice its client is gone by itself
    // (client_connection_check_interval), not because the wait ended.
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
    assert!(
        wait_until(Duration::from_secs(15), || db.value(&gone) == "0"),
        "the killed verify's backend is still there"
    );
    assert!(scratch_schemas(&db).is_empty());
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&WAIT_KEY])
        .unwrap();
    drop(holder);
    let after = dhctl(&url)
        .args(["verify"])
        .migrations_dir(dir.path())
        .run();
    after.expect_code(0);
    assert!(scratch_schemas(&db).is_empty());
    // The database goes first: a role that owns one cannot be dropped.
    drop(db);
    drop(owner);
}

#[test]
fn a_role_without_the_temp_privilege_rebuilds_in_a_scratch_schema() {
    let db = TestDb::new("vnotemp");
    let owner = Owner::of(&db);
    let url = owner.url(&db);
    dhctl(&url)
        .args(["migrate", "--no-create-database"])
        .run()
        .expect_code(0);
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    assert_eq!(
        run.json()["scratch"],
        "temporary",
        "an owner may use its database's temporary schema"
    );
    db.exec(&format!(
        "REVOKE TEMPORARY ON DATABASE \"{}\" FROM PUBLIC, \"{}\"",
        db.name, owner.name
    ));
    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    assert_eq!(run.json()["scratch"], "schema");
    assert!(scratch_schemas(&db).is_empty());
    drop(db);
    drop(owner);
}
