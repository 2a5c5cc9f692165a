//! `dhctl dump`'s input and output, its session and its cost: a failed write to stdout is an
//! error; `--output` replaces only a regular file (through a symbolic link, keeping its
//! permissions); a dump taken during DDL reflects one schema or fails clearly; the database's
//! output settings do not change the bytes; ordering a deep call graph stays cheap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::dump::load;
use crate::harness::{dhctl, Run, TestDb};

fn dump(db: &TestDb) -> String {
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    run.stdout
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_on_stdout_exits_2_naming_stdout_for_a_dump_and_a_report() {
    let db = TestDb::new("dump_io_full");
    db.exec("CREATE TABLE t (id int)");
    for args in [&["dump"][..], &["dump", "--format", "json"], &["status"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let run = dhctl(&db.url).args(args).stdout(full).run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("to stdout: No space left on device"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_reader_that_stopped_fails_a_dump_but_not_a_report() {
    let db = TestDb::new("dump_io_pipe");
    db.exec("CREATE TABLE t (id int)");
    let closed = || {
        // A pipe whose reading end is closed before dhctl starts: its first write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let run = dhctl(&db.url).args(["dump"]).stdout(closed()).run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("cannot write the dump to stdout: Broken pipe"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: the program reading"),
        "{}",
        run.stderr
    );
    // A report's reader (`dhctl status | head -1`) has what it wanted.
    dhctl(&db.url)
        .args(["status"])
        .stdout(closed())
        .run()
        .expect_code(0);
}

/// `dhctl dump --output PATH` against `db`.
fn output(db: &TestDb, path: &std::path::Path) -> Run {
    dhctl(&db.url).args(["dump", "--output"]).args([path]).run()
}

#[cfg(unix)]
#[test]
fn output_refuses_a_device_a_fifo_and_a_socket_and_leaves_them_as_they_were() {
    use std::os::unix::fs::FileTypeExt;
    let db = TestDb::new("dump_io_special");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let link = dir.path().join("to-null");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for (path, kind) in [
        (
            std::path::PathBuf::from("/dev/null"),
            "is a character device",
        ),
        (fifo.clone(), "is a FIFO"),
        (socket.clone(), "is a socket"),
        (
            link.clone(),
            "links to /dev/null, which is a character device",
        ),
    ] {
        let run = output(&db, &path);
        run.expect_code(2);
        let expected = format!("error: --output {}: {kind}", path.display());
        assert!(run.stderr.contains(&expected), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "hint: to write the dump into it, redirect stdout: dhctl dump > {}",
                path.display()
            )),
            "{}",
            run.stderr
        );
    }
    let kind = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(std::path::Path::new("/dev/null")).is_char_device());
    assert!(kind(&fifo).is_fifo());
    assert!(kind(&socket).is_socket());
    assert!(kind(&link).is_symlink());
}

#[cfg(unix)]
#[test]
fn output_writes_through_a_symbolic_link_and_keeps_the_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new("dump_io_link");
    db.exec("CREATE TABLE t (id int)");
    let expected = dump(&db);
    let dir = tempfile::tempdir().unwrap();
    // schema.sql -> link -> real/schema.sql, the second link relative to its own folder.
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let file = dir.path().join("real/schema.sql");
    std::fs::write(&file, "old\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real/schema.sql", dir.path().join("link")).unwrap();
    let path = dir.path().join("schema.sql");
    std::os::unix::fs::symlink("link", &path).unwrap();
    output(&db, &path).expect_code(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    for link in ["schema.sql", "link"] {
        let meta = std::fs::symlink_metadata(dir.path().join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is still a link");
    }
    // A link to a file that does not exist yet creates that file.
    let dangling = dir.path().join("new.sql");
    std::os::unix::fs::symlink("real/new.sql", &dangling).unwrap();
    output(&db, &dangling).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("real/new.sql")).unwrap(),
        expected
    );
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    // A plain file keeps its mode too.
    let plain = dir.path().join("plain.sql");
    std::fs::write(&plain, "old\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o600)).unwrap();
    output(&db, &plain).expect_code(0);
    assert_eq!(
        std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn check_accepts_a_file_saved_with_a_byte_order_mark() {
    let db = TestDb::new("dump_io_bom");
    db.exec("CREATE TABLE t (id int)");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.sql");
    std::fs::write(&file, format!("\u{feff}{}", dump(&db))).unwrap();
    dhctl(&db.url)
        .args(["dump", "--check"])
        .args([&file])
        .run()
        .expect_code(0);
}

#[test]
fn a_warning_names_the_object_kind_once() {
    let db = TestDb::new("dump_io_warn");
    db.exec("CREATE COLLATION public.ci FROM \"C\"");
    let run = dhctl(&db.url).args(["dump"]).run();
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("warning: dump: collation public.ci is not dumped\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("-- WARNING: collation public.ci is not dumped\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_database_output_settings_do_not_change_the_bytes() {
    let db = TestDb::new("dump_io_settings");
    db.exec(
        "CREATE TABLE t (b bytea DEFAULT '\\x0102ff'::bytea, f float8 DEFAULT 0.1, \
         i interval DEFAULT '1 day 02:00:03', d timestamptz DEFAULT '2026-03-15 12:00:00+00', \
         \"Odd\" int)",
    );
    let before = dump(&db);
    assert!(before.contains("DEFAULT '\\x0102ff'::bytea"), "{before}");
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET bytea_output = 'escape'; \
         ALTER DATABASE \"{0}\" SET extra_float_digits = -3; \
         ALTER DATABASE \"{0}\" SET IntervalStyle = 'sql_standard'; \
         ALTER DATABASE \"{0}\" SET DateStyle = 'German'; \
         ALTER DATABASE \"{0}\" SET TimeZone = 'Asia/Kolkata'; \
         ALTER DATABASE \"{0}\" SET quote_all_identifiers = on",
        db.name
    ));
    assert_eq!(dump(&db), before);
}

/// `layers` layers of two functions and two views each, every one of a layer using both of the
/// layer below: 2^layers call paths from the top down.
fn layered(layers: usize) -> String {
    let mut sql = String::from(
        "CREATE FUNCTION f0_a() RETURNS int LANGUAGE sql RETURN 1; \
         CREATE FUNCTION f0_b() RETURNS int LANGUAGE sql RETURN 2; \
         CREATE VIEW v0_a AS SELECT 1 AS x; CREATE VIEW v0_b AS SELECT 2 AS x;\n",
    );
    for k in 1..layers {
        let below = k - 1;
        for side in ["a", "b"] {
            sql.push_str(&format!(
                "CREATE FUNCTION f{k}_{side}() RETURNS int LANGUAGE sql \
                 RETURN f{below}_a() + f{below}_b();\n\
                 CREATE VIEW v{k}_{side} AS SELECT a.x + b.x AS x FROM v{below}_a a, v{below}_b b;\n"
            ));
        }
    }
    sql
}

#[test]
fn a_forty_layer_call_graph_dumps_in_order_and_loads() {
    let db = TestDb::new("dump_io_layers");
    db.exec(&layered(40));
    // Enumerating every path would take longer than the universe has: a regression fails on
    // the timeout instead of hanging the suite.
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET statement_timeout = '60s'",
        db.name
    ));
    let sql = dump(&db);
    let target = TestDb::new("dump_io_layers_load");
    load(&target, &sql);
    assert_eq!(dump(&target), sql, "the loaded database dumps alike");
}

/// How many functions the concurrency test changes at once: enough that reading their
/// definitions spans many of the other session's commits.
const TOGGLED: usize = 100;

/// Every function's body and comment set to `n` in one transaction.
fn state(n: u32) -> String {
    let mut sql = String::from("BEGIN;\n");
    for i in 0..TOGGLED {
        sql.push_str(&format!(
            "CREATE OR REPLACE FUNCTION f{i}() RETURNS int LANGUAGE sql RETURN {n};\n\
             COMMENT ON FUNCTION f{i}() IS 'state {n}';\n"
        ));
    }
    sql.push_str("COMMIT;");
    sql
}

#[test]
fn a_dump_during_ddl_is_one_schema_or_a_clear_error() {
    let db = TestDb::new("dump_io_ddl");
    db.exec(&state(1));
    let one = dump(&db);
    db.exec(&state(2));
    let two = dump(&db);
    assert_ne!(one, two);
    // Another session flips the schema between the two states until the dumps are done (at
    // most 400 times, pausing between flips so that a dump can also find a quiet moment, and
    // vacuuming the catalogs the flips bloat, which would slow every dump down).
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = Arc::clone(&stop);
        let mut client = db.client();
        std::thread::spawn(move || {
            let mut flips = 0;
            while !stop.load(Ordering::SeqCst) && flips < 400 {
                client.batch_execute(&state(1 + flips % 2)).unwrap();
                flips += 1;
                if flips % 25 == 0 {
                    client
                        .batch_execute("VACUUM pg_catalog.pg_proc, pg_catalog.pg_depend, pg_catalog.pg_description")
                        .unwrap();
                }
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
            flips
        })
    };
    let runs: Vec<Run> = (0..8)
        .map(|_| dhctl(&db.url).args(["dump"]).run())
        .collect();
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.join().unwrap();
    assert!(flips > 0);
    for run in &runs {
        match run.code {
            0 => assert!(
                run.stdout == one || run.stdout == two,
                "a dump mixed two schemas:\n{}",
                run.stdout
            ),
            2 => assert!(
                run.stderr
                    .contains("the schema changed while it was being dumped"),
                "{}",
                run.stderr
            ),
            _ => panic!("exit {}: {}", run.code, run.stderr),
        }
    }
    // Quiet again: the dump is the last state's.
    let last = dump(&db);
    assert!(last == one || last == two);
}

/// The dump's catalog fingerprint, as `db` sees it now.
fn fingerprint(client: &mut postgres::Client) -> String {
    client
        .query_one(&dhctl::dump::fingerprint_query(), &[])
        .unwrap()
        .get(0)
}

/// The low 32 bits of a transaction id, as `xmin` shows it.
fn xid(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn the_fingerprint_sees_an_older_and_a_newer_transaction_each_rewriting_a_row() {
    // An older transaction rewriting a newer row (xmin -g) and a newer one rewriting an older
    // row (xmin +g): the count and the sum of xmin stay equal, a dump mixing the two states
    // would have passed. Arranged exactly; other sessions taking xids only cost another try.
    let db = TestDb::new("dump_io_collide");
    db.exec("CREATE TABLE t1 (id int); CREATE TABLE t2 (id int)");
    let mut main = db.client();
    let comment_xmin = |c: &mut postgres::Client, table: &str| {
        xid(
            c,
            &format!(
                "SELECT xmin::text::int8 FROM pg_description \
                 WHERE objoid = '{table}'::regclass AND objsubid = 0"
            ),
        )
    };
    let now = "SELECT txid_current() % 4294967296";
    for _ in 0..200 {
        let mut a = db.client();
        a.batch_execute("BEGIN").unwrap();
        let xa = xid(&mut a, now);
        main.batch_execute("COMMENT ON TABLE t1 IS 'one'").unwrap();
        let p1 = comment_xmin(&mut main, "t1");
        main.batch_execute("COMMENT ON TABLE t2 IS 'two'").unwrap();
        let p2 = comment_xmin(&mut main, "t2");
        let want = p2 + (p1 - xa);
        let mut b = db.client();
        let found = loop {
            b.batch_execute("BEGIN").unwrap();
            let xb = xid(&mut b, now);
            if xb == want {
                break true;
            }
            b.batch_execute("COMMIT").unwrap();
            if xb > want {
                break false;
            }
        };
        if !found {
            a.batch_execute("ROLLBACK").unwrap();
            continue;
        }
        let before = fingerprint(&mut main);
        a.batch_execute("COMMENT ON TABLE t1 IS 'one, by a'; COMMIT")
            .unwrap();
        b.batch_execute("COMMENT ON TABLE t2 IS 'two, by b'; COMMIT")
            .unwrap();
        let after = fingerprint(&mut main);
        assert_ne!(before, after, "two rewrites left the fingerprint equal");
        return;
    }
    panic!("could not arrange the transaction ids in 200 tries");
}

#[test]
fn another_sessions_temporary_objects_leave_the_fingerprint_as_it_was() {
    let db = TestDb::new("dump_io_temp");
    db.exec("CREATE TABLE t (id int)");
    let mut main = db.client();
    let before = fingerprint(&mut main);
    let mut other = db.client();
    other
        .batch_execute(
            "CREATE TEMP TABLE scratch (id int PRIMARY KEY, v text DEFAULT 'x' CHECK (v <> '')); \
             COMMENT ON TABLE scratch IS 'scratch'; \
             CREATE TEMP SEQUENCE scratch_seq; \
             CREATE TEMP VIEW scratch_view AS SELECT id FROM scratch JOIN t USING (id); \
             CREATE INDEX ON scratch (v)",
        )
        .unwrap();
    assert_eq!(before, fingerprint(&mut main));
    // and dumps while that session keeps making temporary tables (the 5 attempts would all
    // have failed) exit 0.
    other
        .batch_execute("DROP TABLE scratch CASCADE; CREATE TEMP TABLE again (id int)")
        .unwrap();
    assert_eq!(before, fingerprint(&mut main));
    // A permanent change still shows.
    db.exec("CREATE TABLE u (id int)");
    assert_ne!(before, fingerprint(&mut main));
}

#[test]
fn a_dump_behind_an_access_exclusive_lock_gives_up_after_lock_timeout_with_exit_3() {
    let db = TestDb::new("dump_io_locked");
    db.exec("CREATE TABLE t (id int DEFAULT 1); CREATE VIEW v AS SELECT id FROM t");
    // A migration holding ACCESS EXCLUSIVE on the view's table (and so on the view's read).
    let mut holder = db.client();
    holder
        .batch_execute("BEGIN; LOCK TABLE t, v IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let child = dhctl(&db.url)
        .args(["dump", "--lock-timeout", "300ms"])
        .spawn();
    // Without a lock_timeout the dump would wait for the holder; a hung one is killed and fails.
    let (code, hung, stdout, stderr) =
        crate::harness::wait_at_most(child, std::time::Duration::from_secs(60));
    holder.batch_execute("ROLLBACK").unwrap();
    assert!(!hung, "the dump waited for the lock: {stderr}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("lock_timeout"), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(
        stderr.contains("on public.t") || stderr.contains("on public.v"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pg_terminate_backend({pid})")),
        "{stderr}"
    );
    // The lock gone, the dump goes through.
    dump(&db);
}

#[cfg(target_os = "linux")]
#[test]
fn output_refuses_a_link_another_user_planted_in_a_sticky_world_writable_folder() {
    use std::os::unix::fs::PermissionsExt;
    // Run as root (the case that matters); a link owned by postgres in a 1777 folder owned by
    // root, pointing at a file root owns.
    if std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u != "0"))
        .unwrap_or(true)
    {
        eprintln!("skipped: needs root");
        return;
    }
    let db = TestDb::new("dump_io_planted");
    db.exec("CREATE TABLE t (id int)");
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.path().join("passwd");
    std::fs::write(&victim, "root:x:0:0\n").unwrap();
    let link = shared.join("schema.sql");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let postgres = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&postgres.stdout)
        .trim()
        .parse()
        .unwrap();
    std::os::unix::fs::lchown(&link, Some(uid), None).unwrap();
    let run = output(&db, &link);
    run.expect_code(2);
    assert!(run.stderr.contains("schema.sql"), "{}", run.stderr);
    assert!(
        run.stderr.contains("sticky world-writable"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
    // root's own link there, and the same link in a folder that is not sticky, are followed.
    std::os::unix::fs::lchown(&link, Some(0), None).unwrap();
    output(&db, &link).expect_code(0);
    assert!(std::fs::read_to_string(&victim)
        .unwrap()
        .contains("CREATE TABLE"));
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::lchown(&link, Some(uid), None).unwrap();
    output(&db, &link).expect_code(0);
    // The same rule for a link anywhere on the path: postgres's link to a folder of root's,
    // in the sticky folder, is not followed to write a file there.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let real = dir.path().join("etc");
    std::fs::create_dir(&real).unwrap();
    let dlink = shared.join("dlink");
    std::os::unix::fs::symlink(&real, &dlink).unwrap();
    std::os::unix::fs::lchown(&dlink, Some(uid), None).unwrap();
    let through_folder = dlink.join("victim");
    let run = output(&db, &through_folder);
    run.expect_code(2);
    assert!(run.stderr.contains("dlink"), "{}", run.stderr);
    assert!(
        run.stderr.contains("sticky world-writable"),
        "{}",
        run.stderr
    );
    assert!(!real.join("victim").exists());
    // Also when the folder link is reached through a link of root's, or `..`.
    let own = dir.path().join("own");
    std::os::unix::fs::symlink(&shared, &own).unwrap();
    output(&db, &own.join("dlink").join("victim")).expect_code(2);
    output(
        &db,
        &shared.join("dlink").join("..").join("dlink").join("victim"),
    )
    .expect_code(2);
    assert!(!real.join("victim").exists());
    // root's own folder link is followed.
    std::os::unix::fs::lchown(&dlink, Some(0), None).unwrap();
    output(&db, &through_folder).expect_code(0);
    assert!(std::fs::read_to_string(real.join("victim"))
        .unwrap()
        .contains("CREATE TABLE"));
}

#[cfg(target_os = "linux")]
#[test]
fn output_and_check_refuse_a_folder_and_a_pipe_up_front_with_a_hint() {
    let db = TestDb::new("dump_io_hints");
    db.exec("CREATE TABLE t (id int)");
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist, named with a trailing '/': refused before the database is
    // read (a wrong URL would otherwise be the error).
    let run = dhctl("postgres://nobody@127.0.0.1:1/none")
        .args(["dump", "--output"])
        .args([dir.path().join("nodir/")])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("ends in '/'"), "{}", run.stderr);
    // /dev/stdout when stdout is a pipe: a FIFO, refused like one.
    let (reader, writer) = std::io::pipe().unwrap();
    let run = dhctl(&db.url)
        .args(["dump", "--output", "/dev/stdout"])
        .stdout(writer)
        .run();
    drop(reader);
    run.expect_code(2);
    assert!(run.stderr.contains("is a FIFO"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("hint: to write the dump into it, redirect stdout"),
        "{}",
        run.stderr
    );
    // --check on a folder.
    let run = dhctl(&db.url)
        .args(["dump", "--check"])
        .args([dir.path()])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("is a folder"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: name the file"), "{}", run.stderr);
}

#[test]
fn a_role_without_select_on_the_history_table_is_told_to_get_select() {
    let role = crate::harness::Role::new("dumpio_reader", "");
    let db = TestDb::new("dump_io_reader");
    db.exec(
        "CREATE TABLE refinery_schema_history (version int8 PRIMARY KEY, name varchar(255), \
         applied_on varchar(255), checksum varchar(255))",
    );
    let run = dhctl(&role.url_for(&db)).args(["dump"]).run();
    run.expect_code(2);
    assert!(run.stderr.contains("permission denied"), "{}", run.stderr);
    assert!(run.stderr.contains("GRANT SELECT"), "{}", run.stderr);
    assert!(!run.stderr.contains("GRANT CREATE"), "{}", run.stderr);
}
