//! What the user sees and types: escaping of hostile names, `--help` and the man page, duration
//! and environment parsing, hints, table width, and the JSON vocabulary of docs/json.md.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// An OSC sequence that sets the terminal's title, as a planted history row carried it.
const TITLE: &str = "\x1b]0;pwned\x07";

/// Panics unless neither stream holds a raw control character (beyond line ends and tabs) or a
/// bidirectional override.
#[track_caller]
fn assert_no_raw_controls(run: &Run, what: &str) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let bad: Vec<char> = text
            .chars()
            .filter(|&c| {
                (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: {stream} holds raw control characters {bad:?}:\n{text}"
        );
    }
}

fn migrated(label: &str) -> TestDb {
    let db = TestDb::new(label);
    dhctl(&db.url)
        .args(["migrate", "--now", "2026-11-15T10:00:00Z"])
        .run()
        .expect_code(0);
    db
}

#[test]
fn control_characters_from_history_rows_partitions_files_and_arguments_are_escaped() {
    let db = migrated("escape");
    // A history row older than every file (so: missing, drift) and a partition, both named
    // with a terminal escape, as another role with CREATE on the schema could plant them.
    let mut client = db.client();
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (20230101000000, $1, '2024-01-01T00:00:00Z', '1')",
            &[&format!("x{TITLE}\u{202e}gpj")],
        )
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE \"request_logs_{TITLE}\" PARTITION OF request_logs \
             FOR VALUES FROM ('2030-01-01 00:00:00+00') TO ('2030-02-01 00:00:00+00')"
        ))
        .unwrap();

    let status = dhctl(&db.url).args(["status"]).run();
    status.expect_code(0);
    assert!(
        status.stdout.contains("x\\x1b]0;pwned\\x07\\u{202e}gpj"),
        "{}",
        status.stdout
    );
    assert_no_raw_controls(&status, "status");

    let migrate = dhctl(&db.url).args(["migrate"]).run();
    migrate.expect_code(4);
    assert!(
        migrate.stderr.contains("\\x1b]0;pwned"),
        "{}",
        migrate.stderr
    );
    assert_no_raw_controls(&migrate, "migrate");

    let partitions = dhctl(&db.url)
        .args(["partition", "status", "--now", "2026-11-15T10:00:00Z"])
        .run();
    partitions.expect_code(0);
    assert!(partitions.stdout.contains("request_logs_\\x1b]0;pwned"));
    assert_no_raw_controls(&partitions, "partition status");

    // JSON keeps the exact value (escaped by JSON's own rules).
    let json = dhctl(&db.url).args(["status", "--format", "json"]).run();
    assert_no_raw_controls(&json, "status --format json");
    assert_eq!(
        json.json()["migrations"][0]["name"],
        format!("x{TITLE}\u{202e}gpj")
    );
}

#[test]
fn a_file_name_and_an_argument_with_control_characters_are_escaped() {
    let db = TestDb::new("escfile");
    let dir = migrations_with(&[(&format!("20240101000009_x{TITLE}.sql"), "SELECT 1;\n")]);
    let migrate = dhctl(&db.url)
        .args(["migrate"])
        .migrations_dir(dir.path())
        .run();
    migrate.expect_code(2);
    assert!(
        migrate.stderr.contains("\\x1b]0;pwned\\x07"),
        "{}",
        migrate.stderr
    );
    assert_no_raw_controls(&migrate, "migrate with a hostile file name");
    assert!(db.tables().is_empty(), "nothing may run");

    let new = dhctl(&db.url)
        .args(["new", &format!("label{TITLE}\rerror: forged")])
        .migrations_dir(dir.path())
        .run();
    new.expect_code(2);
    assert_no_raw_controls(&new, "new with a hostile name");

    let clap = dhctl(&db.url)
        .args(["status", "--format", &format!("json{TITLE}")])
        .run();
    clap.expect_code(2);
    assert_no_raw_controls(&clap, "a value clap refuses");
}

/// Every `--help` page of every subcommand.
fn help_pages() -> Vec<(String, String)> {
    let commands: [&[&str]; 13] = [
        &[],
        &["migrate"],
        &["lint"],
        &["rollback"],
        &["status"],
        &["verify"],
        &["new"],
        &["partition", "create"],
        &["partition", "prune"],
        &["partition", "status"],
        &["partition", "drain-default"],
        &["completions"],
        &["man"],
    ];
    commands
        .iter()
        .map(|words| {
            let run = dhctl("postgres://u@127.0.0.1:1/x")
                .args(words.iter().copied().chain(["--help"]))
                .run();
            run.expect_code(0);
            (words.join(" "), run.stdout)
        })
        .collect()
}

#[test]
fn help_lists_each_flag_only_on_the_commands_that_use_it() {
    let connects = [
        "migrate",
        "lint",
        "rollback",
        "status",
        "verify",
        "partition create",
        "partition prune",
        "partition status",
        "partition drain-default",
    ];
    let locks = [
        "migrate",
        "rollback",
        "partition create",
        "partition prune",
        "partition drain-default",
    ];
    for (command, help) in help_pages() {
        if command.is_empty() {
            continue;
        }
        // Unset variables show as `[env: NAME]`, never as `[env: NAME=]`.
        assert!(!help.contains("=]"), "{command}: {help}");
        for flag in ["--database-url", "--wait", "--ssl-root-cert"] {
            assert_eq!(
                help.contains(flag),
                connects.contains(&command.as_str()),
                "{command} and {flag}"
            );
        }
        for flag in ["--lock-wait", "--lock-retries"] {
            assert_eq!(
                help.contains(flag),
                locks.contains(&command.as_str()),
                "{command} and {flag}"
            );
        }
        assert!(help.contains("--format"), "{command} lacks --format");
    }
    // A flag a command ignores is refused, not accepted in silence.
    dhctl("postgres://u@127.0.0.1:1/x")
        .args(["new", "x", "--lock-wait", "5s"])
        .run()
        .expect_code(2);
}

#[test]
fn durations_take_days_and_compound_forms_and_a_bad_one_names_the_flag() {
    let db = migrated("durations");
    dhctl(&db.url)
        .args(["status", "--wait", "1m30s"])
        .run()
        .expect_code(0);
    dhctl(&db.url)
        .args(["migrate", "--lock-wait", "1d", "--lock-timeout", "1s 500ms"])
        .run()
        .expect_code(0);
    let bad = dhctl(&db.url).args(["migrate", "--lock-wait", "5x"]).run();
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("--lock-wait") && bad.stderr.contains("1m30s"),
        "{}",
        bad.stderr
    );
    let help = dhctl(&db.url).args(["migrate", "--help"]).run();
    assert!(help.stdout.contains("1m30s"), "--help says which forms");
    // From the environment: the hint names the variable, since no flag was typed.
    let from_env = dhctl(&db.url)
        .args(["migrate"])
        .env("DHCTL_LOCK_WAIT", "5x")
        .run();
    from_env.expect_code(2);
    assert!(
        from_env
            .stderr
            .contains("hint: the value came from DHCTL_LOCK_WAIT"),
        "{}",
        from_env.stderr
    );
    // With --format json a refused command line is an error document too.
    let json = dhctl(&db.url)
        .args(["migrate", "--format", "json", "--wait", "soon"])
        .run();
    json.expect_code(2);
    assert_eq!(json.json()["error"]["exit_code"], 2);
    assert!(json.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--wait"));
}

#[test]
fn an_empty_dhctl_variable_counts_as_unset() {
    let db = migrated("emptyvar");
    let run = dhctl(&db.url)
        .args(["status"])
        .env("DHCTL_FORMAT", "")
        .env("DHCTL_WAIT", "")
        .env("DHCTL_MIGRATIONS_DIR", "")
        .run();
    run.expect_code(0);
    let run = dhctl(&db.url)
        .args(["migrate"])
        .env("DHCTL_LOCK_WAIT", "")
        .env("DHCTL_LOCK_RETRIES", "")
        .env("DHCTL_NO_PARTITIONS", "")
        .run();
    run.expect_code(0);
    // An empty real variable lets the .env file's line apply.
    let run = dhctl(&db.url)
        .args(["status"])
        .env("DHCTL_FORMAT", "")
        .dotenv("DHCTL_FORMAT=json\n")
        .run();
    run.expect_code(0);
    assert_eq!(run.json()["counts"]["applied"], 5);
}

#[test]
fn man_pages_have_exit_status_and_environment_sections() {
    let run = dhctl("postgres://u@127.0.0.1:1/x").args(["man"]).run();
    run.expect_code(0);
    let page = &run.stdout;
    let exit = page.find(".SH \"EXIT STATUS\"").expect("EXIT STATUS");
    let env = page.find(".SH ENVIRONMENT").expect("ENVIRONMENT");
    assert!(exit < env);
    let environment = &page[env..];
    for variable in [
        "DATABASE_URL",
        "DHCTL_LOCK_WAIT",
        "DHCTL_FORMAT",
        "NO_COLOR",
    ] {
        assert!(environment.contains(variable), "{variable}");
    }
    for code in ["130", "lock"] {
        assert!(page[exit..env].contains(code));
    }
    let dir = tempfile::tempdir().unwrap();
    dhctl("postgres://u@127.0.0.1:1/x")
        .args(["man", "--dir"])
        .args([dir.path()])
        .run()
        .expect_code(0);
    let new = std::fs::read_to_string(dir.path().join("dhctl-new.1")).unwrap();
    let section = &new[new.find(".SH ENVIRONMENT").expect("new: ENVIRONMENT")..];
    assert!(section.contains("DHCTL_MIGRATIONS_DIR"));
    assert!(!section.contains("DATABASE_URL"), "new connects to nothing");
    assert!(new.contains(".SH \"EXIT STATUS\""));
}

#[test]
fn permission_denied_and_read_only_errors_say_what_to_do() {
    let db = TestDb::new("perm");
    let role = Role::new("noschema", "");
    // PostgreSQL 14 lets PUBLIC create in schema public; 15 and later do not.
    db.exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    let run = dhctl(&role.url_for(&db))
        .args(["migrate", "--format", "json"])
        .run();
    run.expect_code(2);
    let error = &run.json()["error"];
    assert_eq!(error["sqlstate"], "42501", "{error}");
    let hint = error["hint"].as_str().expect("a hint");
    assert!(
        hint.contains("schema public") && hint.contains("CREATE") && hint.contains("GRANT"),
        "{hint}"
    );
    assert!(db.tables().is_empty());

    let db = TestDb::new("readonly");
    db.exec(&format!(
        "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
        db.name
    ));
    // Refused before any statement runs (docs/failover.md), rather than failing with 25006.
    let run = dhctl(&db.url).args(["migrate", "--format", "json"]).run();
    run.expect_code(2);
    let error = &run.json()["error"];
    let message = error["message"].as_str().expect("a message");
    assert!(message.contains("read-only by setting"), "{message}");
    let hint = error["hint"].as_str().expect("a hint");
    assert!(
        hint.contains("default_transaction_read_only") && hint.contains("writable primary"),
        "{hint}"
    );
    // The human form prints the same hint line.
    let human = dhctl(&db.url).args(["migrate"]).run();
    assert!(
        human
            .stderr
            .contains("hint: turn default_transaction_read_only off"),
        "{}",
        human.stderr
    );
}

#[test]
fn tables_stay_readable_on_a_terminal_that_reports_zero_columns() {
    let db = migrated("zerocols");
    // `script` gives dhctl a pty whose size is set to 0×0 first; NO_COLOR would make
    // comfy-table ignore the terminal, so it is removed here.
    let shell = format!("stty cols 0 rows 0; exec '{}' status", bin().display());
    let out = Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .env("DATABASE_URL", &db.url)
        .env_remove("NO_COLOR")
        .env_remove("DHCTL_FORMAT")
        .output()
        .expect("run script(1) from util-linux");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("create_rate_limits_audit_logs") && text.contains("applied at"),
        "columns were squeezed:\n{text}"
    );
}

/// Every object key anywhere in `value`, with the JSON type of its value (one name, one type).
fn keys(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                if k == "partitions" {
                    assert!(v.is_array(), "`partitions` is a list everywhere: {v}");
                }
                keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

#[test]
fn every_json_field_is_in_the_vocabulary() {
    let vocabulary =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
            .unwrap();
    let db = TestDb::new("vocab");
    let now = ["--now", "2026-11-15T10:00:00Z"];
    let json = |args: &[&str]| {
        let run = dhctl(&db.url)
            .args(args)
            .args(["--format", "json", "-v"])
            .run();
        assert!(run.code == 0 || run.code == 2, "{args:?}: {run:?}");
        run.json()
    };
    let mut documents = vec![
        json(&["migrate", "--dry-run"]),
        json(&["migrate", "--now", now[1]]),
        json(&["migrate", "--now", now[1]]),
        json(&["status"]),
        json(&["verify", "--now", now[1]]),
        json(&["partition", "status", "--now", now[1]]),
        json(&["partition", "create", "--now", "2027-06-01T00:00:00Z"]),
        json(&[
            "partition",
            "prune",
            "--dry-run",
            "--now",
            "2027-06-01T00:00:00Z",
        ]),
        json(&["rollback", "--dry-run"]),
        json(&["rollback"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    documents.push(
        dhctl(&db.url)
            .args(["new", "x", "--format", "json"])
            .migrations_dir(dir.path())
            .run()
            .json(),
    );
    // lint: a clean catalog with its lock plan, and findings (exit 1) with their locks.
    documents.push(
        dhctl(&db.url)
            .args(["lint", "--plan", "--format", "json"])
            .run()
            .expect_code(0)
            .json(),
    );
    let unsafe_index = migrations_with(&[(
        "20240101000009_index.sql",
        "CREATE INDEX i ON api_keys (name);\n",
    )]);
    let findings = dhctl(&db.url)
        .args(["lint", "--format", "json"])
        .migrations_dir(unsafe_index.path())
        .run();
    findings.expect_code(1);
    documents.push(findings.json());
    // dump: printed, and --check against a stale file (exit 1, with its diff).
    documents.push(json(&["dump"]));
    let stale = dir.path().join("schema.sql");
    std::fs::write(&stale, "-- stale\n").unwrap();
    let check = dhctl(&db.url)
        .args(["dump", "--format", "json", "--check"])
        .args([&stale])
        .run();
    check.expect_code(1);
    documents.push(check.json());
    // A failing statement: an error document with a sqlstate.
    let failing = migrations_with(&[("20240101000009_divide.sql", "SELECT 1/0;\n")]);
    let error = dhctl(&db.url)
        .args(["migrate", "--format", "json"])
        .migrations_dir(failing.path())
        .run();
    error.expect_code(2);
    assert_eq!(error.json()["error"]["sqlstate"], "22012");
    documents.push(error.json());

    // Every document of a command that connects names its database, partition status included.
    for (i, document) in documents.iter().enumerate().take(10) {
        assert!(document["database"].is_string(), "document {i}: {document}");
    }

    let mut seen = BTreeSet::new();
    for d in &documents {
        keys(d, &mut seen);
    }
    for wanted in [
        "applied_before",
        "steps",
        "database",
        "sqlstate",
        "counts",
        "partition_create",
    ] {
        assert!(
            seen.contains(wanted),
            "no document carried {wanted}: {seen:?}"
        );
    }
    let undocumented: Vec<&String> = seen
        .iter()
        .filter(|k| !vocabulary.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/json.md does not define {undocumented:?}"
    );
    assert!(!seen.contains("already_applied") && !seen.contains("rolled_back"));
}

#[test]
fn log_lines_escape_a_hostile_database_name() {
    let name = format!("dhctl_t_esc_{}{TITLE}", std::process::id());
    let url = with_dbname(
        &server_url(),
        &format!("dhctl_t_esc_{}%1b]0;pwned%07", std::process::id()),
    );
    let run = dhctl(&url).args(["migrate", "-v", "--no-partitions"]).run();
    let mut admin = connect(&server_url());
    let created = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_some();
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    run.expect_code(0);
    assert!(created, "migrate creates the database it was given");
    assert!(run.stderr.contains("\\x1b]0;pwned"), "{}", run.stderr);
    assert_no_raw_controls(&run, "migrate -v");
}
