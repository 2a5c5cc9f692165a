//! What an adversarial review of the merged work found, each pinned by a test: operators planted
//! in a writable schema, sections that end dhctl's transaction, carriage returns that end a
//! comment for PostgreSQL only, identifiers with non-ASCII letters before a `$`, and a history
//! table name with stray spaces.

use crate::harness::*;

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn run(db: &TestDb, dir: &tempfile::TempDir, args: &[&str]) -> Run {
    dhctl(&db.url).migrations_dir(dir.path()).args(args).run()
}

/// CVE-2018-1058's pattern: `=` operators for the mixed types a catalog query might compare,
/// planted in `public`, which precede pg_catalog's implicit casts. Each call records who ran it.
const PLANT: &str = "CREATE TABLE public.pwn(who text);
GRANT INSERT ON public.pwn TO PUBLIC;
CREATE FUNCTION public.evil_oid_int(oid, int4) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END$$;
CREATE OPERATOR public.= (leftarg = oid, rightarg = int4, function = public.evil_oid_int);
CREATE FUNCTION public.evil_oid_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END$$;
CREATE OPERATOR public.= (leftarg = oid, rightarg = regclass, function = public.evil_oid_regclass);
CREATE FUNCTION public.evil_name_name(name, name) RETURNS bool LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.pwn VALUES (current_user); RETURN true; END$$;
CREATE OPERATOR public.~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.!~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.~~ (leftarg = name, rightarg = name, function = public.evil_name_name);
CREATE OPERATOR public.!~~ (leftarg = name, rightarg = name, function = public.evil_name_name);";

#[test]
fn operators_planted_in_public_never_run_during_migrate_rollback_verify_or_partition_maintenance() {
    let db = TestDb::new("hplant");
    db.exec(PLANT);
    // The gateway's own migrations and partitions, then a rollback and a prune.
    dhctl(&db.url).args(["migrate"]).run().expect_code(0);
    dhctl(&db.url)
        .args(["partition", "create", "--ahead", "4"])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args(["partition", "prune", "--dry-run"])
        .run()
        .expect_code(0);
    dhctl(&db.url).args(["status"]).run().expect_code(0);
    dhctl(&db.url)
        .args(["partition", "status"])
        .run()
        .expect_code(0);
    // The planted objects are differences (exit 1); what matters is that none of them ran.
    dhctl(&db.url).args(["verify"]).run().expect_code(1);
    dhctl(&db.url)
        .args(["rollback", "--steps", "1"])
        .run()
        .expect_code(0);
    assert_eq!(db.value("SELECT count(*) FROM public.pwn"), "0");
}

#[test]
fn a_transactional_section_that_ends_its_transaction_is_refused_before_anything_runs() {
    for (label, body, line) in [
        (
            "hcommit",
            "CREATE TABLE a1(i int);\nCOMMIT;\nCREATE TABLE a2(i int);\n",
            3,
        ),
        ("hrollback", "CREATE TABLE a1(i int);\n  rollback ;\n", 3),
        (
            "hchain",
            "CREATE TABLE a1(i int);\n/* c */ COMMIT AND CHAIN;\n",
            3,
        ),
        ("hbegin", "BEGIN;\nCREATE TABLE a1(i int);\nCOMMIT;\n", 2),
        ("hend", "CREATE TABLE a1(i int);\nEND;\n", 3),
        (
            "hcommitbegin",
            "INSERT INTO x VALUES (1);\nCOMMIT;\nBEGIN;\nSELECT 1/0;\n",
            3,
        ),
    ] {
        let db = TestDb::new(label);
        let text = format!("-- migrate:up\n{body}-- migrate:down\nDROP TABLE IF EXISTS a2;\n");
        let dir = folder(&[("1_a.sql", &text)]);
        let out = run(&db, &dir, &["migrate", "--no-partitions"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(&format!("line {line}:"))
                && out.stderr.contains("would end the transaction"),
            "{label}: {}",
            out.stderr
        );
        assert!(db.tables().is_empty(), "{label}: something ran");
    }
    // ROLLBACK TO SAVEPOINT stays inside the transaction and is fine.
    let db = TestDb::new("hsavepoint");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a1(i int);\nSAVEPOINT s;\nCREATE TABLE a2(i int);\nROLLBACK TO SAVEPOINT s;\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    assert_eq!(db.history(), vec![1]);
    assert!(db.tables().contains(&"a1".to_string()));
    assert!(!db.tables().contains(&"a2".to_string()));
}

#[test]
fn a_down_section_that_rolls_back_is_refused_and_the_history_row_stays() {
    let db = TestDb::new("hdownrb");
    let good = "-- migrate:up\nCREATE TABLE a(i int);\n-- migrate:down\nDROP TABLE a;\n";
    let dir = folder(&[("1_a.sql", good)]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    // The down section changes after the migration was applied (not drift: the checksum covers
    // the up section).
    std::fs::write(dir.path().join("1_a.sql"), format!("{good}ROLLBACK;\n")).unwrap();
    let out = run(&db, &dir, &["rollback", "--all"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("would end the transaction"),
        "{}",
        out.stderr
    );
    assert_eq!(db.history(), vec![1]);
    assert!(db.tables().contains(&"a".to_string()));
}

#[test]
fn a_bare_carriage_return_is_refused_before_connecting() {
    let db = TestDb::unique("hcr");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a(i int);\n-- the second table\rCREATE TABLE lost(i int);\n",
    )]);
    let out = run(&db, &dir, &["migrate", "--no-partitions"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("line 3") && out.stderr.contains("carriage return"),
        "{}",
        out.stderr
    );
    assert!(
        !db.exists(),
        "nothing may connect, let alone create the database"
    );
}

#[test]
fn a_non_ascii_identifier_before_a_dollar_sign_is_not_a_dollar_quote() {
    let db = TestDb::new("hcafe");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE café$x$ (i int);\n-- migrate:down\nDROP TABLE café$x$;\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    assert!(
        db.tables().contains(&"café$x$".to_string()),
        "{:?}",
        db.tables()
    );
    run(&db, &dir, &["rollback", "--all"]).expect_code(0);
    assert!(!db.tables().contains(&"café$x$".to_string()));
}

#[test]
fn a_history_table_name_with_stray_spaces_is_refused() {
    let db = TestDb::new("hspace");
    let dir = folder(&[("1_a.sql", "-- migrate:up\nCREATE TABLE a(i int);\n")]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
    for name in ["public.refinery_schema_history ", " public.x", "public . x"] {
        let out = dhctl(&db.url)
            .migrations_dir(dir.path())
            .env("DHCTL_HISTORY_TABLE", name)
            .args(["migrate", "--no-partitions"])
            .run();
        out.expect_code(2);
    }
    assert_eq!(db.history(), vec![1]);
    assert_eq!(
        db.value("SELECT count(*) FROM pg_class WHERE relname LIKE 'refinery%' AND relkind = 'r'"),
        "1"
    );
}

#[test]
fn copy_from_stdin_or_to_stdout_is_refused_before_anything_runs() {
    // dhctl has no rows to feed COPY FROM STDIN and no reader for COPY TO STDOUT: sent, either
    // left the session in copy mode and failed with "unexpected message from server".
    for (label, statement, mode) in [
        ("hcopyin", "COPY a FROM stdin", ""),
        (
            "hcopyout",
            "copy (SELECT 1) TO STDOUT WITH (FORMAT csv)",
            "",
        ),
        ("hcopyfree", "COPY a FROM STDIN", " transaction:false"),
    ] {
        let db = TestDb::new(label);
        let dir = folder(&[(
            "1_a.sql",
            &format!("-- migrate:up{mode}\nCREATE TABLE a(i int);\n-- a note\n{statement};\n"),
        )]);
        let out = run(&db, &dir, &["migrate", "--no-partitions"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("line 4:") && out.stderr.contains("COPY FROM STDIN"),
            "{label}: {}",
            out.stderr
        );
        assert!(db.tables().is_empty(), "{label}: something ran");
    }
    // COPY between the server and its own files, and the words in a string, are fine.
    let db = TestDb::new("hcopyok");
    let dir = folder(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a(i text);\nINSERT INTO a VALUES ('COPY a FROM STDIN');\n",
    )]);
    run(&db, &dir, &["migrate", "--no-partitions"]).expect_code(0);
}
