//! verify with the least privilege: a database owner without CREATEDB gets every check but the
//! schema check (reported as skipped, with the fix), and the schema check too with
//! --scratch-url; a role with CREATEDB gets a scratch database that is dropped on every path,
//! Ctrl-C included, and one a `kill -9` left behind is dropped by the next verify.

use std::time::Duration;

use super::*;

/// A migration that sleeps only when replayed in a scratch database, and only while the role
/// `<flag>` exists (roles are cluster-wide, so the test can lift it): a test catches verify in
/// the middle of its rebuild, while the live migrate does not wait.
fn sleeps_in_the_scratch_database(flag: &str) -> String {
    format!(
        "-- migrate:up\n\
         CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';\n\
         SELECT pg_sleep(CASE WHEN current_database() LIKE 'dhctl\\_verify\\_%' \
           AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{flag}') THEN 60 ELSE 0 END);\n"
    )
}

#[test]
fn an_owner_without_createdb_gets_every_other_check_and_the_schema_check_with_scratch_url() {
    let owner = Role::new("vowner", "");
    let db = TestDb::owned_by("vowner", &owner);
    let scratch = TestDb::owned_by("vownscr", &owner);
    let url = owner.url_for(&db);
    assert_eq!(
        db.value(&format!(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = '{}'",
            owner.name
        )),
        "f"
    );
    migrate_as_owner(&url, None);
    assert_eq!(
        db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'api_keys'"),
        owner.name
    );

    let run = dhctl(&url).args(["verify", "--format", "json"]).run();
    run.expect_code(0);
    let report = run.json();
    let schema = check(&report, "schema");
    assert_eq!(schema["status"], "skipped", "{report:#}");
    assert!(
        schema["summary"]
            .as_str()
            .unwrap()
            .contains("may not create databases"),
        "{schema:#}"
    );
    assert!(
        details(schema)[0].contains("--scratch-url"),
        "the fix is named: {schema:#}"
    );
    assert_the_other_checks_pass(&report);
    dhctl(&url)
        .args(["verify", "--require-all"])
        .run()
        .expect_code(1);

    // The same checks decide when they fail: a pending migration still exits 1.
    let pending = migrations_with(&[(
        "20240101000006_later.sql",
        "-- migrate:up\nCREATE TABLE later (a int);\n",
    )]);
    dhctl(&url)
        .args(["verify"])
        .migrations_dir(pending.path())
        .run()
        .expect_code(1);

    // --scratch-url: an empty database the owner owns gives the schema check back, and stays
    // empty.
    let scratch_url = owner.url_for(&scratch);
    let run = dhctl(&url)
        .args(["verify", "--format", "json", "--require-all"])
        .env("DHCTL_VERIFY_SCRATCH_URL", &scratch_url)
        .run();
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["scratch"], "url");
    assert_eq!(check(&report, "schema")["status"], "pass", "{report:#}");
    assert_eq!(
        scratch.value(
            "SELECT count(*) FROM pg_class WHERE relnamespace::regnamespace::text NOT LIKE 'pg\\_%' \
             AND relnamespace::regnamespace::text <> 'information_schema'"
        ),
        "0",
        "the scratch database is left empty"
    );
    db.exec("ALTER TABLE api_keys ADD COLUMN label text");
    let run = dhctl(&url)
        .args(["verify", "--format", "json", "--scratch-url", &scratch_url])
        .run();
    run.expect_code(1);
    assert_eq!(
        details(check(&run.json(), "schema")),
        vec!["column api_keys.label: in the database, not in the migrations"]
    );

    // A database that does not exist is named, with the fix; none is created.
    let missing = format!("{scratch_url}_missing");
    let run = dhctl(&url)
        .args(["verify", "--scratch-url", &missing])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("--scratch-url database") && run.stderr.contains("does not exist"),
        "{}",
        run.stderr
    );

    // A database that is not empty (here: the live one) is refused before anything runs.
    let run = dhctl(&url).args(["verify", "--scratch-url", &url]).run();
    run.expect_code(2);
    assert!(run.stderr.contains("is not empty"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("password"),
        "no connection string is echoed"
    );
    drop(scratch);
    drop(db);
    drop(owner);
}

/// Waits until a backend of `owner` sleeps in a scratch database; returns its pid.
fn sleeping_rebuild(db: &TestDb, owner: &str) -> String {
    let sleeping = format!(
        "SELECT pid::text FROM pg_stat_activity \
         WHERE datname LIKE 'dhctl\\_verify\\_%' AND usename = '{owner}' \
           AND wait_event = 'PgSleep'"
    );
    let mut seen = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = db.column(&sleeping).into_iter().next();
            seen.is_some()
        }),
        "verify never reached the sleeping migration"
    );
    seen.unwrap()
}

/// A verify caught in its rebuild: a migration sleeps in its scratch database while `flag`
/// exists. Fields drop in order: the databases before the roles that own them.
struct Rebuilding {
    child: std::process::Child,
    /// The sleeping backend's pid.
    pid: String,
    url: String,
    dir: tempfile::TempDir,
    db: TestDb,
    flag: Role,
    owner: Role,
}

/// Migrates a database owned by a CREATEDB role, then starts a verify and waits until its
/// rebuild sleeps.
fn rebuilding(label: &str) -> Rebuilding {
    let owner = Role::creator(label);
    let flag = Role::new(&format!("{label}flag"), "");
    let db = TestDb::owned_by(label, &owner);
    let url = owner.url_for(&db);
    let dir = migrations_with(&[(
        "20240101000006_sleep_in_scratch.sql",
        &sleeps_in_the_scratch_database(&flag.name),
    )]);
    migrate_as_owner(&url, Some(dir.path()));
    let child = dhctl(&url)
        .args(["verify"])
        .migrations_dir(dir.path())
        .spawn();
    let pid = sleeping_rebuild(&db, &owner.name);
    Rebuilding {
        child,
        pid,
        url,
        dir,
        db,
        flag,
        owner,
    }
}

#[test]
fn a_killed_verify_leaves_a_scratch_database_that_the_next_one_drops() {
    let mut r = rebuilding("vkill");
    r.child.kill().unwrap();
    r.child.wait().unwrap();
    // client_connection_check_interval: the backend notices its client is gone by itself.
    let gone = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
        r.pid
    );
    assert!(
        wait_until(Duration::from_secs(15), || r.db.value(&gone) == "0"),
        "the killed verify's backend is still there"
    );
    let left = scratch_databases(&r.owner.name);
    assert_eq!(
        left.len(),
        1,
        "kill -9 leaves the scratch database: {left:?}"
    );

    drop(r.flag);
    let run = dhctl(&r.url)
        .args(["verify", "--format", "json"])
        .migrations_dir(r.dir.path())
        .run();
    run.expect_code(0);
    let notes = check(&run.json(), "schema")["notes"].to_string();
    assert!(
        notes.contains(&format!("dropped scratch database {}", left[0])),
        "{notes}"
    );
    assert!(scratch_databases(&r.owner.name).is_empty());
}

#[test]
fn ctrl_c_during_the_rebuild_drops_the_scratch_database_and_exits_130() {
    let mut r = rebuilding("vsigint");
    assert_eq!(scratch_databases(&r.owner.name).len(), 1);
    send_signal(&r.child, "-INT");
    let exit = r.child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    assert!(
        scratch_databases(&r.owner.name).is_empty(),
        "Ctrl-C drops the scratch database before exiting"
    );
}
