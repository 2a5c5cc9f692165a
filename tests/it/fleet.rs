//! `--targets FILE`: one command over a fleet of databases, in one process (docs/fleet.md).
//! Every target is a fresh database of the test's own; hosts that are dead or never answer are
//! listeners of the test's own on port 0.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{
    connect, database_exists, dhctl, dhctl_sessions, folder, send_signal, server_url,
    wait_for_dhctl_running, wait_until, with_dbname, with_host_port, with_param, with_password,
    Dhctl, Silent, TestDb,
};

/// A fleet file in a folder of its own.
pub struct FleetFile {
    dir: tempfile::TempDir,
}

impl FleetFile {
    pub fn new(text: &str) -> FleetFile {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fleet.toml"), text).unwrap();
        FleetFile { dir }
    }

    /// A FIFO nobody writes to where the file would be: reading it blocks.
    pub fn fifo() -> FleetFile {
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fleet.toml"))
            .status()
            .unwrap();
        assert!(made.success());
        FleetFile { dir }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("fleet.toml")
    }
}

/// `[[target]]` tables, one per (name, url, group).
fn targets(list: &[(String, String, &str)]) -> String {
    let mut text = String::new();
    for (name, url, group) in list {
        text.push_str(&format!(
            "[[target]]\nname = \"{name}\"\nurl = \"{url}\"\ngroup = \"{group}\"\n\n"
        ));
    }
    text
}

/// dhctl with the fleet file and no DATABASE_URL.
pub fn fleet_dhctl(file: &FleetFile) -> Dhctl {
    dhctl("")
        .without_database_url()
        .env("DHCTL_TARGETS", file.path())
}

/// The target entry named `name` of a fleet document.
fn entry<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {doc}"))
}

fn keys(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

/// Advisory locks held in any of `names`.
fn advisory_locks(admin: &mut postgres::Client, names: &[String]) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND d.datname = ANY($1)",
            &[&names],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_fleet_of_forty_databases_is_migrated_four_at_a_time() {
    let dbs: Vec<TestDb> = (0..40).map(|_| TestDb::new("fleet40")).collect();
    let names: Vec<String> = dbs.iter().map(|d| d.name.clone()).collect();
    // Half the targets by url_env, half by url.
    let mut text = String::from("parallel = 4\n\n");
    let mut variables = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        if i % 2 == 0 {
            text.push_str(&format!(
                "[[target]]\nname = \"db-{i}\"\nurl_env = \"FLEET_DB_{i}\"\n\n"
            ));
            variables.push((format!("FLEET_DB_{i}"), db.url.clone()));
        } else {
            text.push_str(&format!(
                "[[target]]\nname = \"db-{i}\"\nurl = \"{}\"\n\n",
                db.url
            ));
        }
    }
    let file = FleetFile::new(&text);
    let with_variables = || {
        variables
            .iter()
            .fold(fleet_dhctl(&file), |run, (key, url)| run.env(key, url))
    };

    // A sampler counts dhctl's sessions on the fleet's databases while it runs.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most, samples, names) = (
            Arc::clone(&done),
            Arc::clone(&most),
            Arc::clone(&samples),
            names,
        );
        std::thread::spawn(move || {
            let mut admin = connect(&server_url());
            while !done.load(Ordering::SeqCst) {
                let now = dhctl_sessions(&mut admin, &names);
                most.fetch_max(now, Ordering::SeqCst);
                samples.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = with_variables().args(["migrate", "--format", "json"]).run();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["interrupted"], false);
    assert_eq!(doc["targets"].as_array().unwrap().len(), 40);
    for (i, db) in dbs.iter().enumerate() {
        let t = entry(&doc, &format!("db-{i}"));
        assert_eq!(t["exit_code"], 0, "{t}");
        assert_eq!(t["skipped"], false);
        assert!(t["result"]["database"].as_str().unwrap().contains(&db.name));
        assert_eq!(t["result"]["steps"].as_array().unwrap().len(), 5, "{t}");
        assert!(t["error"].is_null());
        assert_eq!(db.history().len(), 5, "{}", db.name);
    }
    // Never more connections than `parallel` allows: counted by dhctl and seen by the server.
    let peak = doc["connections"]["peak"].as_u64().unwrap();
    assert!((1..=4).contains(&peak), "{}", doc["connections"]);
    assert_eq!(doc["connections"]["limit"], 4);
    assert!(samples.load(Ordering::SeqCst) > 0);
    // The server's view lags dhctl's: a backend whose client has closed the connection stays in
    // pg_stat_activity until it has noticed and exited, and under load the next target's session
    // can already be there. dhctl's own count above is the strict one (connections it holds);
    // here at most one exiting backend per slot may overlap.
    let seen = most.load(Ordering::SeqCst);
    assert!(seen <= 8, "the server saw {seen} dhctl sessions at once");

    // The fleet's JSON speaks docs/json.md's vocabulary.
    let vocabulary =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
            .unwrap();
    let mut seen_keys = BTreeSet::new();
    keys(&doc, &mut seen_keys);
    let undocumented: Vec<&String> = seen_keys
        .iter()
        .filter(|k| !vocabulary.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/json.md lacks {undocumented:?}"
    );

    // status over the same fleet: nothing pending anywhere; human output has a row per target.
    let status = with_variables().args(["status", "--exit-code"]).run();
    status.expect_code(0);
    for i in 0..40 {
        assert!(
            status.stdout.contains(&format!("db-{i} ")),
            "{}",
            status.stdout
        );
    }
    assert!(status
        .stdout
        .contains("40 of 40 target(s) ran, 0 failed, 0 skipped"));
}

#[test]
fn a_failing_canary_stops_the_rest_and_they_are_reported_skipped() {
    let canary = TestDb::new("fleetcanary");
    // A conflicting object: the first migration's CREATE TABLE api_keys fails (42P07).
    canary.exec("CREATE TABLE api_keys (stray int)");
    let rest: Vec<TestDb> = (0..5).map(|_| TestDb::new("fleetrest")).collect();
    let mut list = vec![("canary-1".to_string(), canary.url.clone(), "canary")];
    for (i, db) in rest.iter().enumerate() {
        list.push((format!("rest-{i}"), db.url.clone(), "default"));
    }
    let file = FleetFile::new(&format!(
        "parallel = 3\non_error = \"stop\"\norder = [\"canary\", \"default\"]\n\n{}",
        targets(&list)
    ));
    let out = fleet_dhctl(&file)
        .args(["migrate", "--format", "json"])
        .run();
    out.expect_code(2);
    let doc = out.json();
    assert_eq!(doc["exit_code"], 2);
    let c = entry(&doc, "canary-1");
    assert_eq!(c["exit_code"], 2);
    assert_eq!(c["group"], "canary");
    assert_eq!(c["error"]["sqlstate"], "42P07", "{c}");
    for (i, db) in rest.iter().enumerate() {
        let t = entry(&doc, &format!("rest-{i}"));
        assert_eq!(t["skipped"], true, "{t}");
        assert!(t["exit_code"].is_null());
        assert!(t["result"].is_null() && t["error"].is_null());
        assert!(!db.tables().contains(&"api_keys".to_string()));
    }
    // The human report says so too.
    let human = fleet_dhctl(&file).args(["migrate"]).run();
    human.expect_code(2);
    assert!(human.stdout.contains("skipped"), "{}", human.stdout);
    assert!(human
        .stdout
        .contains("1 of 6 target(s) ran, 1 failed, 5 skipped"));
}

#[test]
fn under_continue_every_target_runs_and_each_is_reported() {
    let dbs: Vec<TestDb> = (0..4).map(|_| TestDb::new("fleetcont")).collect();
    dbs[0].exec("CREATE TABLE api_keys (stray int)");
    dbs[2].exec("CREATE TABLE webhooks (stray int)");
    let list: Vec<(String, String, &str)> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| (format!("t{i}"), db.url.clone(), "default"))
        .collect();
    let file = FleetFile::new(&format!(
        "parallel = 2\non_error = \"continue\"\n\n{}",
        targets(&list)
    ));
    let out = fleet_dhctl(&file)
        .args(["migrate", "--format", "json"])
        .run();
    out.expect_code(2);
    let doc = out.json();
    for (i, db) in dbs.iter().enumerate() {
        let t = entry(&doc, &format!("t{i}"));
        assert_eq!(t["skipped"], false, "{t}");
        if i % 2 == 0 {
            assert_eq!(t["exit_code"], 2, "{t}");
            assert_eq!(t["error"]["sqlstate"], "42P07");
        } else {
            assert_eq!(t["exit_code"], 0, "{t}");
            assert_eq!(db.history().len(), 5);
        }
    }
    // t2 failed on its third migration: the two before it stay applied, as without a fleet.
    assert_eq!(dbs[2].history().len(), 2);
    assert_eq!(
        entry(&doc, "t2")["result"]["steps"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn sigint_mid_fleet_cancels_every_target_and_leaves_nothing_half_applied() {
    // The second migration sleeps inside its transaction: a target that reached it is mid-way.
    let migrations = folder(&[
        (
            "20240101000001_first.sql",
            "CREATE TABLE first_table (id int);\n",
        ),
        (
            "20240101000002_slow.sql",
            "CREATE TABLE slow_table (id int);\nSELECT pg_sleep(600);\n",
        ),
    ]);
    let dbs: Vec<TestDb> = (0..6).map(|_| TestDb::new("fleetint")).collect();
    let names: Vec<String> = dbs.iter().map(|d| d.name.clone()).collect();
    let list: Vec<(String, String, &str)> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| (format!("t{i}"), db.url.clone(), "default"))
        .collect();
    let file = FleetFile::new(&format!("parallel = 2\n\n{}", targets(&list)));
    let child = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["migrate", "--format", "json", "--no-partitions"])
        .spawn();
    let mut admin = connect(&server_url());
    wait_for_dhctl_running(&mut admin, &names, "pg_sleep(600)", 2);
    send_signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["interrupted"], true);
    assert_eq!(doc["exit_code"], 130);
    let interrupted: Vec<&serde_json::Value> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["exit_code"] == 130)
        .collect();
    assert_eq!(interrupted.len(), 2, "{doc}");
    let skipped = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["skipped"] == true)
        .count();
    assert_eq!(skipped, 4, "{doc}");
    // Nothing half-applied: no target has the slow migration's table or history row; the
    // statements were cancelled and their sessions (with their advisory locks) are gone.
    assert!(
        wait_until(Duration::from_secs(30), || {
            dhctl_sessions(&mut admin, &names) == 0 && advisory_locks(&mut admin, &names) == 0
        }),
        "a dhctl session or an advisory lock outlived the interrupt"
    );
    for db in &dbs {
        assert!(
            !db.tables().contains(&"slow_table".to_string()),
            "{}",
            db.name
        );
        let has_history = db
            .value("SELECT count(*) FROM pg_tables WHERE tablename = 'refinery_schema_history'")
            == "1";
        if has_history {
            assert!(
                db.history().iter().all(|v| *v == 20240101000001),
                "{}",
                db.name
            );
        }
    }
}

#[test]
fn a_dead_host_and_a_silent_host_fail_only_their_own_target() {
    let good: Vec<TestDb> = (0..2).map(|_| TestDb::new("fleethosts")).collect();
    // A closed port: bound, read, released.
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A host that accepts TCP and never says a word.
    let silent_host = Silent::start(false);
    let url_at = |port: u16| {
        let url = with_password(&server_url(), "s3cret-fleet");
        let url = with_host_port(&url, "127.0.0.1", port);
        with_param(&with_dbname(&url, "nowhere"), "connect_timeout", "2")
    };
    let list = vec![
        ("dead".to_string(), url_at(dead_port), "default"),
        ("silent".to_string(), url_at(silent_host.port), "default"),
        ("good-0".to_string(), good[0].url.clone(), "default"),
        ("good-1".to_string(), good[1].url.clone(), "default"),
    ];
    let file = FleetFile::new(&format!(
        "parallel = 4\non_error = \"continue\"\n\n{}",
        targets(&list)
    ));
    let out = fleet_dhctl(&file)
        .args(["migrate", "--format", "json"])
        .run();
    out.expect_code(2);
    assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
    let doc = out.json();
    assert_eq!(entry(&doc, "dead")["exit_code"], 2);
    let silent = entry(&doc, "silent");
    assert_eq!(silent["exit_code"], 2);
    assert!(
        silent["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no answer within connect_timeout"),
        "{silent}"
    );
    assert!(silent_host.accepted() >= 1);
    for (i, db) in good.iter().enumerate() {
        assert_eq!(entry(&doc, &format!("good-{i}"))["exit_code"], 0);
        assert_eq!(db.history().len(), 5);
    }
}

#[test]
fn a_bad_fleet_file_exits_2_before_anything_connects() {
    // A host that counts connections: no bad file may reach it. Also a database that a migrate
    // would create: it must not appear.
    let watch = Silent::start(false);
    let never = TestDb::unique("fleetnever");
    let watched = with_param(
        &with_host_port(
            &with_password(&server_url(), "s3cret-file"),
            "127.0.0.1",
            watch.port,
        ),
        "connect_timeout",
        "2",
    );
    let ok = format!(
        "[[target]]\nname = \"ok\"\nurl = \"{}\"\n\n[[target]]\nname = \"watched\"\nurl = \"{watched}\"\n\n",
        never.url
    );
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            format!("paralel = 2\n{ok}"),
            vec![],
            "unknown field `paralel`",
        ),
        (format!("parallel = 0\n{ok}"), vec![], "parallel = 0"),
        (
            format!("{ok}[[target]]\nname = \"ok\"\nurl = \"x\"\n"),
            vec![],
            "target \"ok\" is listed twice",
        ),
        (
            format!("{ok}[[target]]\nname = \"e\"\nurl_env = \"DHCTL_TEST_FLEET_UNSET\"\n"),
            vec![],
            "DHCTL_TEST_FLEET_UNSET (url_env) is not set",
        ),
        (
            format!("{ok}[[target]]\nname = \"b\"\n"),
            vec![],
            "target \"b\" has neither url nor url_env",
        ),
        (
            format!("order = [\"canary\"]\n{ok}"),
            vec![],
            "order names the group \"canary\"",
        ),
        (
            format!(
                "{ok}[[target]]\nname = \"u\"\nurl = \"postgres://me:s3cret-file@h/d?nonsense=1\"\n"
            ),
            vec![],
            "target \"u\" (url): unknown connection parameter",
        ),
        (ok.clone(), vec!["--only", "nobody"], "--only nobody"),
    ];
    for (text, extra, expected) in cases {
        let file = FleetFile::new(&text);
        let out = fleet_dhctl(&file).args(["migrate"]).args(&extra).run();
        out.expect_code(2);
        assert!(out.stderr.contains(expected), "{text}\n{}", out.stderr);
        assert!(!out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"));
    }
    // lint needs --pending with --targets typed; a fleet exported in DHCTL_TARGETS does not stop
    // an offline lint. --only needs --targets.
    let file = FleetFile::new(&ok);
    dhctl(&never.url)
        .args([
            std::ffi::OsStr::new("lint"),
            "--targets".as_ref(),
            file.path().as_os_str(),
        ])
        .run()
        .expect_code(2);
    fleet_dhctl(&file).args(["lint"]).run().expect_code(0);
    dhctl(&never.url)
        .args(["status", "--only", "x"])
        .run()
        .expect_code(2);
    assert_eq!(watch.accepted(), 0, "a bad file made a connection");
    assert!(!never.exists(), "a bad file created a database");
}

#[test]
fn a_fleet_runs_the_other_commands_and_only_selects() {
    let dbs: Vec<TestDb> = (0..3).map(|_| TestDb::new("fleetcmds")).collect();
    let list = vec![
        ("a".to_string(), dbs[0].url.clone(), "canary"),
        ("b".to_string(), dbs[1].url.clone(), "default"),
        ("c".to_string(), dbs[2].url.clone(), "default"),
    ];
    let file = FleetFile::new(&format!(
        "parallel = 2\norder = [\"canary\", \"default\"]\n\n{}",
        targets(&list)
    ));
    // --only a group and a target: a and c, not b.
    let out = fleet_dhctl(&file)
        .args([
            "migrate", "--only", "canary", "--only", "c", "--format", "json",
        ])
        .run();
    out.expect_code(0);
    assert_eq!(out.json()["targets"].as_array().unwrap().len(), 2);
    assert!(!dbs[1].tables().contains(&"api_keys".to_string()));
    // status --exit-code: b is behind (1), the others are not.
    let status = fleet_dhctl(&file)
        .args(["status", "--exit-code", "--format", "json"])
        .run();
    status.expect_code(1);
    let doc = status.json();
    assert_eq!(entry(&doc, "b")["exit_code"], 1);
    assert_eq!(entry(&doc, "a")["result"]["counts"]["pending"], 0);
    for args in [
        vec!["verify", "--only", "a"],
        vec!["partition", "status", "--only", "a"],
        vec!["partition", "create", "--only", "a"],
        vec!["partition", "prune", "--only", "a", "--dry-run"],
        vec!["lint", "--pending", "--only", "a"],
        vec!["rollback", "--only", "c", "--dry-run"],
    ] {
        let out = fleet_dhctl(&file)
            .args(&args)
            .args(["--format", "json", "--parallel", "1"])
            .run();
        out.expect_code(0);
        let doc = out.json();
        let t = &doc["targets"][0];
        assert_eq!(t["exit_code"], 0, "{args:?}: {doc}");
        assert!(t["result"].is_object(), "{args:?}: {doc}");
    }
}

/// The fleet reads the migrations folder once, before any target connects (docs/fleet.md): a
/// folder with a bad file stops the whole fleet with one error (exit 2) instead of one error per
/// target, and no target is touched, not even a database migrate would create.
#[test]
fn a_bad_migrations_folder_stops_the_fleet_once_before_any_target_connects() {
    let migrations = crate::harness::folder(&[
        (
            "20240101000001_first.sql",
            "CREATE TABLE first_table (id int);\n",
        ),
        (
            "20240101000002_bad.sql",
            "-- migrate:up\nCREATE TABLE second_table (id int);\n  -- migrate:down\n",
        ),
    ]);
    let dbs: Vec<TestDb> = (0..3).map(|_| TestDb::new("fleetbadfolder")).collect();
    let absent = with_dbname(&dbs[0].url, &format!("{}_absent", dbs[0].name));
    let mut list: Vec<(String, String, &str)> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| (format!("t{i}"), db.url.clone(), "default"))
        .collect();
    list.push(("absent".into(), absent, "default"));
    let file = FleetFile::new(&format!(
        "parallel = 2\non_error = \"continue\"\n\n{}",
        targets(&list)
    ));
    for format in ["human", "json"] {
        let out = fleet_dhctl(&file)
            .migrations_dir(migrations.path())
            .args(["migrate", "--no-partitions", "--format", format])
            .run();
        out.expect_code(2);
        assert_eq!(
            out.stderr.matches("20240101000002_bad.sql").count(),
            1,
            "{format}: the folder's problem is reported once, not per target:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(!out.stdout.contains("\"targets\""), "{}", out.stdout);
        for db in &dbs {
            assert!(db.tables().is_empty(), "{}: {:?}", db.name, db.tables());
        }
    }
    let created = database_exists(&format!("{}_absent", dbs[0].name));
    let _ = connect(&server_url()).batch_execute(&format!(
        "DROP DATABASE IF EXISTS \"{}_absent\" WITH (FORCE)",
        dbs[0].name
    ));
    assert!(!created, "a target's database was created");
}

/// The migrations are read and linted once for the fleet, but each target is linted for what
/// it has pending: a target with the first migration applied gets a lint of the second only.
#[test]
fn each_target_of_a_fleet_is_linted_for_its_own_pending_migrations() {
    let migrations = crate::harness::folder(&[
        (
            "20240101000001_first.sql",
            "CREATE TABLE first_table (id int);\n",
        ),
        (
            "20240101000002_second.sql",
            "CREATE TABLE second_table (id int);\n",
        ),
    ]);
    let fresh = [TestDb::new("fleetlintfresh"), TestDb::new("fleetlintfresh")];
    let behind = TestDb::new("fleetlintbehind");
    dhctl(&behind.url)
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions", "--to", "20240101000001"])
        .run()
        .expect_code(0);
    let list = vec![
        ("fresh-0".to_string(), fresh[0].url.clone(), "default"),
        ("behind".to_string(), behind.url.clone(), "default"),
        ("fresh-1".to_string(), fresh[1].url.clone(), "default"),
    ];
    let file = FleetFile::new(&format!("parallel = 3\n\n{}", targets(&list)));
    let out = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions", "--format", "json"])
        .run();
    out.expect_code(0);
    let doc = out.json();
    for (name, files, steps) in [("fresh-0", 2, 2), ("behind", 1, 1), ("fresh-1", 2, 2)] {
        let result = &entry(&doc, name)["result"];
        assert_eq!(result["lint"]["files"], files, "{name}: {doc}");
        assert_eq!(
            result["steps"].as_array().unwrap().len(),
            steps,
            "{name}: {doc}"
        );
    }
    assert_eq!(behind.history(), vec![20240101000001, 20240101000002]);
}

/// SIGINT while the fleet reads the migrations it shares (a 40 MB migration: seconds of
/// parsing) is heard at once: exit 130 before any target has started, no summary claiming a
/// target ran, the target's database never created. The fleet file is a FIFO, so the test knows
/// when dhctl is past it (and its signal handlers are in place): the write returns once dhctl
/// reads it, and the shared read comes right after.
#[test]
fn a_signal_during_the_shared_read_exits_130_before_any_target_starts() {
    let line = format!("INSERT INTO big (a, b) VALUES (1, '{}');\n", "x".repeat(80));
    let mut big = String::from("CREATE TABLE big (a int, b text);\n");
    big.push_str(&line.repeat(40 * 1024 * 1024 / line.len()));
    let migrations = crate::harness::migrations_with(&[("20990101000000_big.sql", &big)]);
    drop(big);
    let missing = format!("dhctl_t_fleetread_{}", std::process::id());
    let file = FleetFile::fifo();
    let child = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["migrate", "--no-partitions"])
        .spawn();
    let text = targets(&[(
        "readtarget".into(),
        with_dbname(&server_url(), &missing),
        "default",
    )]);
    std::fs::write(file.path(), text).unwrap();
    send_signal(&child, "-INT");
    let (code, hung, stdout, stderr) =
        crate::harness::wait_at_most(child, Duration::from_secs(300));
    assert!(!hung, "{stdout} {stderr}");
    assert_eq!(code, Some(130), "{stdout} {stderr}");
    assert!(!stdout.contains("readtarget"), "{stdout}");
    assert!(!stderr.contains("readtarget"), "{stderr}");
    assert!(stderr.contains("nothing was running"), "{stderr}");
    assert!(
        !database_exists(&missing),
        "the target's database was created"
    );
}

/// The fleet's duration includes the shared read of the migrations: with a 40 MB migration the
/// read is almost all of the run (the status of one target takes milliseconds), so the reported
/// duration must be most of the time from the moment dhctl took the fleet file to its exit.
/// Before the fix it was the targets' part only, a hundredth of that.
#[test]
fn the_fleet_duration_includes_the_shared_read() {
    let db = TestDb::new("fleetdur");
    let line = format!("INSERT INTO big (a, b) VALUES (1, '{}');\n", "x".repeat(80));
    let mut big = String::from("CREATE TABLE big (a int, b text);\n");
    big.push_str(&line.repeat(40 * 1024 * 1024 / line.len()));
    let migrations = crate::harness::migrations_with(&[("20990101000000_big.sql", &big)]);
    drop(big);
    let file = FleetFile::fifo();
    let child = fleet_dhctl(&file)
        .migrations_dir(migrations.path())
        .args(["status", "--format", "json"])
        .spawn();
    std::fs::write(
        file.path(),
        targets(&[("one".into(), db.url.clone(), "default")]),
    )
    .unwrap();
    let from_fleet_file = std::time::Instant::now();
    let (code, hung, stdout, stderr) =
        crate::harness::wait_at_most(child, Duration::from_secs(300));
    let wall = from_fleet_file.elapsed().as_secs_f64() * 1000.0;
    assert!(!hung && code.is_some(), "{stdout} {stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let reported = doc["duration_ms"].as_f64().unwrap();
    let target = entry(&doc, "one")["duration_ms"].as_f64().unwrap();
    assert!(
        reported >= wall / 2.0 && reported > target,
        "reported {reported} ms, wall {wall} ms, target {target} ms"
    );
}

/// The summary column says what is true: an out-of-order migration is named (not left out of
/// the counts the target's own line gives), and a dry run on a missing database says it would
/// create it, not that it did.
#[test]
fn the_summary_names_out_of_order_and_a_dry_run_creates_nothing() {
    let gap = crate::harness::migrated_without_partitions("fleetgap");
    let fourth: i64 = gap
        .value("SELECT version FROM refinery_schema_history ORDER BY version OFFSET 3 LIMIT 1")
        .parse()
        .unwrap();
    gap.exec(&format!(
        "DELETE FROM refinery_schema_history WHERE version = {fourth}"
    ));
    let file = FleetFile::new(&targets(&[("gap".into(), gap.url.clone(), "default")]));
    let run = fleet_dhctl(&file)
        .args(["status", "--format", "json"])
        .run();
    let doc = run.json();
    let summary = entry(&doc, "gap")["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("1 out-of-order"), "{summary}");

    let missing = format!("dhctl_t_fleetdry_{}", std::process::id());
    let file = FleetFile::new(&targets(&[(
        "new".into(),
        with_dbname(&server_url(), &missing),
        "default",
    )]));
    let run = fleet_dhctl(&file)
        .args(["migrate", "--dry-run", "--format", "json"])
        .run();
    run.expect_code(0);
    let doc = run.json();
    let summary = entry(&doc, "new")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.starts_with("would create the database"),
        "{summary}"
    );
    assert!(!summary.contains("created"), "{summary}");
    assert!(!database_exists(&missing), "the database was created");
}
