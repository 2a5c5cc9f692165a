//! The history table: found by name and addressed by its schema whatever search_path says,
//! refused when another role could have planted or armed it or when its shape is wrong, created
//! only when missing; applied migrations ahead of this release; rollback targets.

use crate::harness::migrated_without_partitions as migrated;
use crate::harness::*;

/// The error document of a failed `--format json` run.
fn error_of(run: &Run) -> (String, String) {
    let json = run.json();
    (
        json["error"]["message"].as_str().unwrap_or_default().into(),
        json["error"]["hint"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn a_changed_search_path_moves_nothing_status_dry_run_and_migrate_agree() {
    let db = migrated("sp");
    db.exec("CREATE SCHEMA other");
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET search_path = other, public",
        db.name
    ));
    let status = dhctl(&db.url)
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    status.expect_code(0);
    assert_eq!(status.json()["counts"]["pending"], 0);
    let dry = dhctl(&db.url)
        .args(["migrate", "--dry-run", "--format", "json"])
        .run();
    dry.expect_code(0);
    assert_eq!(dry.json()["steps"].as_array().unwrap().len(), 0);
    let real = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    real.expect_code(0);
    assert_eq!(real.json()["steps"].as_array().unwrap().len(), 0);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relnamespace = 'other'::regnamespace"),
        "0",
        "nothing created in other"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname = 'refinery_schema_history'"),
        "1"
    );
    // Rollback finds it too.
    dhctl(&db.url)
        .args(["rollback", "--steps", "1"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 4);
}

#[test]
fn two_history_tables_are_an_error_naming_both() {
    let db = migrated("two");
    db.exec("CREATE SCHEMA other; CREATE TABLE other.refinery_schema_history (LIKE public.refinery_schema_history)");
    for args in [
        &["status", "--format", "json"][..],
        &["migrate", "--no-partitions", "--format", "json"][..],
        &["migrate", "--dry-run", "--format", "json"][..],
        &["rollback", "--format", "json"][..],
    ] {
        let run = dhctl(&db.url).args(args).run();
        run.expect_code(2);
        let (message, hint) = error_of(&run);
        assert!(
            message.contains("other.refinery_schema_history")
                && message.contains("public.refinery_schema_history"),
            "{args:?}: {message}"
        );
        assert!(hint.contains("--history-table"), "{hint}");
    }
    // Naming one resolves it.
    dhctl(&db.url)
        .args([
            "status",
            "--exit-code",
            "--history-table",
            "public.refinery_schema_history",
        ])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 5);
}

#[test]
fn history_table_puts_history_where_it_is_told() {
    let db = TestDb::new("ht");
    db.exec("CREATE SCHEMA ops");
    dhctl(&db.url)
        .env("DHCTL_HISTORY_TABLE", "ops.dhctl_history")
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.value("SELECT count(*) FROM ops.dhctl_history"), "5");
    assert_eq!(
        db.value("SELECT to_regclass('public.refinery_schema_history') IS NULL"),
        "t"
    );
    let status = dhctl(&db.url)
        .args([
            "status",
            "--format",
            "json",
            "--exit-code",
            "--history-table",
            "ops.dhctl_history",
        ])
        .run();
    status.expect_code(0);
    assert_eq!(status.json()["counts"]["applied"], 5);
    dhctl(&db.url)
        .args(["status", "--history-table", "dhctl_history"])
        .run()
        .expect_code(2);
    let nowhere = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .args(["--history-table", "nowhere.dhctl_history"])
        .run();
    nowhere.expect_code(2);
    assert!(
        error_of(&nowhere).1.contains("CREATE SCHEMA"),
        "{nowhere:?}"
    );
    assert_eq!(db.value("SELECT count(*) FROM ops.dhctl_history"), "5");
}

/// Two roles: the migrator, owning the database but not superuser, and an attacker who may
/// create tables in public (PUBLIC's default on PostgreSQL 14 and databases upgraded from it).
fn planted(label: &str) -> (Role, Role, TestDb) {
    let migrator = Role::new(&format!("{label}m"), "");
    let attacker = Role::new(&format!("{label}a"), "");
    let db = TestDb::owned_by(label, &migrator);
    db.exec(&format!(
        "GRANT CREATE ON SCHEMA public TO \"{}\"",
        attacker.name
    ));
    (migrator, attacker, db)
}

const TRAP: &str = "CREATE FUNCTION public.trap() RETURNS trigger LANGUAGE plpgsql AS \
    $$BEGIN CREATE TABLE public.trap_fired(); RETURN NEW; END$$";

#[test]
fn a_history_table_planted_by_another_role_is_refused() {
    let (migrator, attacker, db) = planted("plant");
    connect(&attacker.url_for(&db))
        .batch_execute(&format!(
            "CREATE TABLE public.refinery_schema_history(version int8 PRIMARY KEY, name varchar(255), \
             applied_on varchar(255), checksum varchar(255));\n\
             GRANT ALL ON public.refinery_schema_history TO PUBLIC;\n{TRAP};\n\
             CREATE TRIGGER t BEFORE INSERT ON public.refinery_schema_history FOR EACH ROW EXECUTE FUNCTION public.trap();"
        ))
        .unwrap();
    let url = migrator.url_for(&db);
    for args in [
        &["migrate", "--no-partitions", "--format", "json"][..],
        &["migrate", "--dry-run", "--format", "json"][..],
        &["rollback", "--format", "json"][..],
    ] {
        let run = dhctl(&url).args(args).run();
        run.expect_code(2);
        let (message, hint) = error_of(&run);
        assert!(
            message.contains(&attacker.name) && message.contains("public.refinery_schema_history"),
            "{args:?}: {message}"
        );
        assert!(hint.contains("OWNER TO"), "{hint}");
    }
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname IN ('trap_fired', 'api_keys')"),
        "0",
        "nothing ran"
    );
}

#[test]
fn a_trigger_rule_or_policy_on_the_history_table_is_refused() {
    let role = Role::new("armed", "");
    let db = TestDb::owned_by("armed", &role);
    let url = role.url_for(&db);
    dhctl(&url)
        .args(["migrate", "--no-partitions", "--to", "20240101000004"])
        .run()
        .expect_code(0);
    for (arm, disarm, named) in [
        (
            "CREATE TRIGGER sneaky BEFORE INSERT ON public.refinery_schema_history FOR EACH ROW EXECUTE FUNCTION public.trap()",
            "DROP TRIGGER sneaky ON public.refinery_schema_history",
            "sneaky",
        ),
        (
            "CREATE RULE sneaky_rule AS ON INSERT TO public.refinery_schema_history DO ALSO SELECT 1",
            "DROP RULE sneaky_rule ON public.refinery_schema_history",
            "sneaky_rule",
        ),
        (
            "ALTER TABLE public.refinery_schema_history ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY sneaky_policy ON public.refinery_schema_history USING (true)",
            "DROP POLICY sneaky_policy ON public.refinery_schema_history; \
             ALTER TABLE public.refinery_schema_history DISABLE ROW LEVEL SECURITY",
            "sneaky_policy",
        ),
    ] {
        db.exec(&format!("{TRAP}; {arm}"));
        for args in [
            &["migrate", "--no-partitions", "--format", "json"][..],
            &["status", "--format", "json"][..],
        ] {
            let run = dhctl(&url).args(args).run();
            run.expect_code(2);
            let (message, _) = error_of(&run);
            assert!(message.contains(named), "{args:?}: {message}");
        }
        db.exec(&format!("{disarm}; DROP FUNCTION public.trap()"));
    }
    assert_eq!(db.history().len(), 4, "nothing ran while armed");
    dhctl(&url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 5);
}

#[test]
fn a_role_owning_every_table_but_without_create_on_the_schema_can_migrate_with_nothing_pending() {
    let role = Role::new("nocreate", "");
    let db = migrated("nocreate");
    db.exec(&format!(
        "DO $$DECLARE t record; BEGIN \
           FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP \
             EXECUTE format('ALTER TABLE public.%I OWNER TO %I', t.tablename, '{0}'); \
           END LOOP; END$$; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        role.name
    ));
    assert_eq!(
        db.value(&format!(
            "SELECT has_schema_privilege('{}', 'public', 'CREATE')",
            role.name
        )),
        "f"
    );
    let run = dhctl(&role.url_for(&db))
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["steps"].as_array().unwrap().len(), 0);
}

#[test]
fn a_history_table_of_the_wrong_shape_is_exit_2_naming_the_column_never_a_panic() {
    for (version_type, rows) in [
        ("text", "INSERT INTO refinery_schema_history VALUES ('20240101000001', 'create_api_keys', 'x', '1')"),
        ("int4", "SELECT 1"),
    ] {
        let db = TestDb::new("shape");
        db.exec(&format!(
            "CREATE TABLE refinery_schema_history(version {version_type} PRIMARY KEY, name varchar(255), \
             applied_on varchar(255), checksum varchar(255)); {rows}"
        ));
        for args in [
            &["status", "--format", "json"][..],
            &["migrate", "--no-partitions", "--format", "json"][..],
            &["migrate", "--dry-run", "--format", "json"][..],
            &["rollback", "--format", "json"][..],
            &["verify", "--format", "json"][..],
        ] {
            let run = dhctl(&db.url).args(args).run();
            run.expect_code(2);
            let (message, hint) = error_of(&run);
            assert!(
                message.contains("column version") && message.contains("bigint"),
                "{version_type} {args:?}: {message}"
            );
            assert!(hint.contains("ALTER TABLE"), "{hint}");
        }
        assert_eq!(
            db.value("SELECT to_regclass('public.api_keys') IS NULL"),
            "t",
            "nothing ran"
        );
    }
}

#[test]
fn the_database_ahead_of_this_release_is_fine_for_migrate_but_not_for_strict_or_verify() {
    let db = migrated("ahead");
    db.exec(
        "INSERT INTO refinery_schema_history VALUES (20990101000000, 'from_a_newer_release', \
         '2099-01-01T00:00:00Z', '42')",
    );
    let migrate = dhctl(&db.url)
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    migrate.expect_code(0);
    assert_eq!(migrate.json()["ahead"][0]["version"], 20990101000000i64);
    let human = dhctl(&db.url).args(["migrate", "--no-partitions"]).run();
    human.expect_code(0);
    assert!(
        human.stdout.contains("ahead of this release"),
        "{}",
        human.stdout
    );
    let status = dhctl(&db.url)
        .args(["status", "--format", "json", "--exit-code"])
        .run();
    status.expect_code(0);
    assert_eq!(status.json()["migrations"][5]["state"], "ahead");
    assert_eq!(status.json()["counts"]["ahead"], 1);
    dhctl(&db.url)
        .args(["status", "--exit-code", "--strict"])
        .run()
        .expect_code(4);
    let verify = dhctl(&db.url).args(["verify", "--format", "json"]).run();
    assert_ne!(verify.code, 0);
    let checks = verify.json()["checks"].clone();
    let history = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "history")
        .unwrap()
        .clone();
    assert_eq!(history["status"], "fail", "{history}");
    let rollback = dhctl(&db.url).args(["rollback", "--format", "json"]).run();
    rollback.expect_code(2);
    assert!(error_of(&rollback).0.contains("ahead of this release"));
    assert_eq!(db.history().len(), 6, "nothing rolled back");
    // An older missing row stays drift.
    db.exec(
        "INSERT INTO refinery_schema_history VALUES (20230101000000, 'lost', '2023-01-01T00:00:00Z', '1')",
    );
    dhctl(&db.url)
        .args(["migrate", "--no-partitions"])
        .run()
        .expect_code(4);
}

#[test]
fn rollback_to_must_name_an_applied_version_and_all_is_spelled_out() {
    let db = migrated("rbto");
    let typo = dhctl(&db.url)
        .args(["rollback", "--to", "20240101000009", "--format", "json"])
        .run();
    typo.expect_code(2);
    let (_, hint) = error_of(&typo);
    assert!(hint.contains("20240101000005"), "{hint}");
    assert!(hint.contains("--all"), "{hint}");
    dhctl(&db.url)
        .args(["rollback", "--to", "0"])
        .run()
        .expect_code(2);
    let steps = dhctl(&db.url)
        .args(["rollback", "--steps", "99", "--format", "json"])
        .run();
    steps.expect_code(2);
    assert!(
        error_of(&steps).1.contains("--steps 5"),
        "{:?}",
        error_of(&steps)
    );
    assert_eq!(db.history().len(), 5, "nothing changed");
    dhctl(&db.url)
        .args(["rollback", "--to", "20240101000003"])
        .run()
        .expect_code(0);
    assert_eq!(db.history().len(), 3);
    dhctl(&db.url)
        .args(["rollback", "--all"])
        .run()
        .expect_code(0);
    assert!(db.history().is_empty());
    dhctl(&db.url)
        .args(["rollback", "--all", "--steps", "1"])
        .run()
        .expect_code(2);
}
