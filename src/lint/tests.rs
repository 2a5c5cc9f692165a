//! Unit tests of the rules: for each, a statement that must fire and one that must not, against
//! a schema made by earlier migrations (the seed's tables).

use super::*;
use crate::migrations::catalog;

/// The seed's five migrations, then `extra` as later migrations; lints the extra ones.
fn lint_after_seed(extra: &[(&str, &str)]) -> crate::Result<Report> {
    let mut files: Vec<(String, Vec<u8>)> = crate::embedded::MIGRATIONS
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    files.extend(
        extra
            .iter()
            .map(|(n, s)| (n.to_string(), s.as_bytes().to_vec())),
    );
    let catalog = catalog::parse_files(files).expect("valid catalog");
    let targets: Vec<String> = extra.iter().map(|(n, _)| n.to_string()).collect();
    let inputs: Vec<Input<'_>> = catalog
        .migrations
        .iter()
        .map(|m| Input {
            migration: m,
            path: &m.file,
            target: if targets.contains(&m.file) {
                Target::Lint
            } else {
                Target::ContextOnly
            },
        })
        .collect();
    let context = Context {
        managed: vec!["request_logs".into(), "webhook_deliveries".into()],
        ..Context::default()
    };
    lint(&inputs, &context, Plan::Collect)
}

fn rules_of(up: &str) -> Vec<&'static str> {
    let sql = format!("-- migrate:up\n{up}\n");
    lint_after_seed(&[("20250101000000_change.sql", &sql)])
        .unwrap_or_else(|e| panic!("{up}: {e}"))
        .findings
        .iter()
        .map(|f| f.rule.name())
        .collect()
}

fn rules_of_no_transaction(up: &str) -> Vec<&'static str> {
    let sql = format!("-- migrate:up transaction:false\n{up}\n");
    lint_after_seed(&[("20250101000000_change.sql", &sql)])
        .unwrap()
        .findings
        .iter()
        .map(|f| f.rule.name())
        .collect()
}

#[track_caller]
fn fires(rule: &str, up: &str) {
    let found = rules_of(up);
    assert!(
        found.contains(&rule),
        "{rule} must fire on:\n{up}\nfound {found:?}"
    );
}

#[track_caller]
fn silent(rule: &str, up: &str) {
    let found = rules_of(up);
    assert!(
        !found.contains(&rule),
        "{rule} must not fire on:\n{up}\nfound {found:?}"
    );
}

#[test]
fn the_seed_lints_clean() {
    let report = lint_after_seed(&[]).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = crate::embedded::MIGRATIONS
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    files.sort();
    let catalog = catalog::parse_files(files).unwrap();
    let inputs: Vec<Input<'_>> = catalog
        .migrations
        .iter()
        .map(|m| Input {
            migration: m,
            path: &m.file,
            target: Target::Lint,
        })
        .collect();
    let context = Context {
        managed: vec!["request_logs".into(), "webhook_deliveries".into()],
        ..Context::default()
    };
    let all = lint(&inputs, &context, Plan::Skip).unwrap();
    assert_eq!(report.files, 0);
    assert_eq!(all.files, 5);
    assert!(all.findings.is_empty(), "{:#?}", all.findings);
}

#[test]
fn index_builds() {
    fires(
        "index-without-concurrently",
        "CREATE INDEX i ON api_keys (name);",
    );
    silent(
        "index-without-concurrently",
        "CREATE TABLE t (a int); CREATE INDEX i ON t (a);",
    );
    // IF NOT EXISTS of a table an earlier migration made creates nothing: api_keys is the
    // existing one. Of an unknown table it is new (a live lint looks the name up).
    fires(
        "index-without-concurrently",
        "CREATE TABLE IF NOT EXISTS api_keys (id int); CREATE INDEX i ON api_keys (id);",
    );
    silent(
        "index-without-concurrently",
        "CREATE TABLE IF NOT EXISTS t (a int); CREATE INDEX i ON t (a);",
    );
    fires(
        "index-on-partitioned-table",
        "CREATE INDEX i ON request_logs (method);",
    );
    silent(
        "index-on-partitioned-table",
        "CREATE INDEX i ON ONLY request_logs (method);",
    );
    let found = rules_of_no_transaction("CREATE INDEX CONCURRENTLY i ON request_logs (method);");
    assert_eq!(found, ["index-on-partitioned-table"]);
    let found =
        rules_of_no_transaction("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON api_keys (name);");
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn concurrently_needs_a_section_outside_a_transaction() {
    fires(
        "concurrently-in-transaction",
        "CREATE INDEX CONCURRENTLY i ON api_keys (name);",
    );
    fires(
        "concurrently-in-transaction",
        "DROP INDEX CONCURRENTLY idx_api_keys_key_prefix;",
    );
    fires(
        "concurrently-in-transaction",
        "REINDEX INDEX CONCURRENTLY idx_api_keys_key_prefix;",
    );
    fires("vacuum-in-transaction", "VACUUM api_keys;");
    let found = rules_of_no_transaction("VACUUM api_keys;");
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_down_section_is_checked_only_for_what_fails_there() {
    let sql = "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\nCREATE INDEX CONCURRENTLY i ON api_keys (name);\n";
    let report = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap();
    let rules: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.rule.name(), f.line))
        .collect();
    assert_eq!(rules, [("concurrently-in-transaction", 5)]);
}

#[test]
fn drops_and_reindex() {
    fires(
        "drop-index-without-concurrently",
        "DROP INDEX idx_api_keys_key_prefix;",
    );
    silent(
        "drop-index-without-concurrently",
        "CREATE INDEX j ON api_keys (name); DROP INDEX j;",
    );
    // An index lives in its table's schema: DROP INDEX names it so (the subway corpus).
    silent(
        "drop-index-without-concurrently",
        "CREATE TABLE ops.t (a int); CREATE INDEX j ON ops.t (a); DROP INDEX IF EXISTS ops.j;",
    );
    fires("reindex-without-concurrently", "REINDEX TABLE api_keys;");
    silent(
        "reindex-without-concurrently",
        "CREATE TABLE t (a int); REINDEX TABLE t;",
    );
}

#[test]
fn added_columns() {
    fires(
        "add-column-not-null",
        "ALTER TABLE api_keys ADD COLUMN owner text NOT NULL;",
    );
    silent(
        "add-column-not-null",
        "ALTER TABLE api_keys ADD COLUMN owner text NOT NULL DEFAULT 'x';",
    );
    silent(
        "add-column-not-null",
        "CREATE TABLE t (a int); ALTER TABLE t ADD COLUMN b int NOT NULL;",
    );
    fires(
        "add-column-volatile-default",
        "ALTER TABLE api_keys ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    );
    fires(
        "add-column-volatile-default",
        "ALTER TABLE api_keys ADD COLUMN n bigserial;",
    );
    fires(
        "add-column-volatile-default",
        "ALTER TABLE api_keys ADD COLUMN at timestamptz DEFAULT clock_timestamp();",
    );
    silent(
        "add-column-volatile-default",
        "ALTER TABLE api_keys ADD COLUMN at timestamptz DEFAULT now();",
    );
    silent(
        "add-column-volatile-default",
        "ALTER TABLE api_keys ADD COLUMN tags jsonb DEFAULT '{}'::jsonb;",
    );
}

#[test]
fn type_changes() {
    fires(
        "column-type-rewrite",
        "ALTER TABLE request_logs ALTER COLUMN response_status TYPE bigint;",
    );
    fires(
        "column-type-rewrite",
        "ALTER TABLE api_keys ALTER COLUMN name TYPE varchar(100);",
    );
    fires(
        "column-type-rewrite",
        "ALTER TABLE api_keys ALTER COLUMN name TYPE text USING trim(name);",
    );
    silent(
        "column-type-rewrite",
        "ALTER TABLE api_keys ALTER COLUMN name TYPE varchar(500);",
    );
    silent(
        "column-type-rewrite",
        "ALTER TABLE api_keys ALTER COLUMN name TYPE text;",
    );
    silent(
        "column-type-rewrite",
        "ALTER TABLE webhooks ALTER COLUMN description TYPE character varying(600);",
    );
}

#[test]
fn not_null_and_constraints() {
    fires(
        "set-not-null-scan",
        "ALTER TABLE api_keys ALTER COLUMN created_by SET NOT NULL;",
    );
    let proven = lint_after_seed(&[
        (
            "20250101000000_check.sql",
            "ALTER TABLE api_keys ADD CONSTRAINT c CHECK (created_by IS NOT NULL) NOT VALID;",
        ),
        (
            "20250101000001_validate.sql",
            "ALTER TABLE api_keys VALIDATE CONSTRAINT c;",
        ),
        (
            "20250101000002_set.sql",
            "ALTER TABLE api_keys ALTER COLUMN created_by SET NOT NULL;",
        ),
    ])
    .unwrap();
    assert!(proven.findings.is_empty(), "{:#?}", proven.findings);
    fires("validate-in-same-transaction", "ALTER TABLE api_keys ADD CONSTRAINT c CHECK (created_by IS NOT NULL) NOT VALID; ALTER TABLE api_keys VALIDATE CONSTRAINT c;");
    fires(
        "constraint-without-not-valid",
        "ALTER TABLE api_keys ADD CONSTRAINT c CHECK (length(name) > 0);",
    );
    silent(
        "constraint-without-not-valid",
        "ALTER TABLE api_keys ADD CONSTRAINT c CHECK (length(name) > 0) NOT VALID;",
    );
    fires("constraint-without-not-valid", "ALTER TABLE audit_logs ADD CONSTRAINT f FOREIGN KEY (api_key_id) REFERENCES api_keys (id);");
    silent("constraint-without-not-valid", "ALTER TABLE audit_logs ADD CONSTRAINT f FOREIGN KEY (api_key_id) REFERENCES api_keys (id) NOT VALID;");
    fires(
        "constraint-builds-index",
        "ALTER TABLE audit_logs ADD CONSTRAINT u UNIQUE (resource_id);",
    );
    silent(
        "constraint-builds-index",
        "ALTER TABLE audit_logs ADD CONSTRAINT u UNIQUE USING INDEX audit_u;",
    );
}

#[test]
fn rewrites_and_detach() {
    fires("rewrite-under-lock", "VACUUM FULL api_keys;");
    fires(
        "rewrite-under-lock",
        "CLUSTER api_keys USING idx_api_keys_key_prefix;",
    );
    fires("rewrite-under-lock", "ALTER TABLE audit_logs SET UNLOGGED;");
    silent(
        "rewrite-under-lock",
        "CREATE TABLE t (a int); ALTER TABLE t SET UNLOGGED;",
    );
    fires(
        "detach-without-concurrently",
        "ALTER TABLE webhook_deliveries DETACH PARTITION webhook_deliveries_2024_01;",
    );
    let found = rules_of_no_transaction(
        "ALTER TABLE webhook_deliveries DETACH PARTITION webhook_deliveries_2024_01 CONCURRENTLY;",
    );
    assert!(!found.contains(&"detach-without-concurrently"), "{found:?}");
}

#[test]
fn sections_outside_a_transaction_must_be_rerunnable() {
    let found = rules_of_no_transaction(
        "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON api_keys (name);",
    );
    assert_eq!(found, ["not-rerunnable"]);
    let found = rules_of_no_transaction(
        "CREATE TABLE IF NOT EXISTS t (a int);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON api_keys (name);",
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn breaking_changes_are_warnings() {
    let report = lint_after_seed(&[(
        "20250101000000_change.sql",
        "ALTER TABLE api_keys RENAME COLUMN name TO title;\nALTER TABLE audit_logs DROP COLUMN user_agent;\nDROP TABLE rate_limits;\n",
    )])
    .unwrap();
    let rules: Vec<_> = report.findings.iter().map(|f| f.rule.name()).collect();
    assert_eq!(
        rules,
        [
            "rename-breaks-gateway",
            "drop-breaks-gateway",
            "drop-breaks-gateway"
        ]
    );
    assert_eq!((report.errors, report.warnings), (0, 3));
    silent(
        "drop-breaks-gateway",
        "CREATE TABLE t (a int); ALTER TABLE t DROP COLUMN a; DROP TABLE t;",
    );
}

#[test]
fn policy_managed_partitions_are_left_to_dhctl_partition() {
    fires("manual-partition-change", "CREATE TABLE request_logs_2031_01 PARTITION OF request_logs FOR VALUES FROM ('2031-01-01') TO ('2031-02-01');");
    fires(
        "manual-partition-change",
        "DROP TABLE request_logs_2024_03;",
    );
    fires("manual-partition-change", "ALTER TABLE request_logs ATTACH PARTITION x FOR VALUES FROM ('2031-01-01') TO ('2031-02-01');");
    silent("manual-partition-change", "CREATE TABLE p (at timestamptz) PARTITION BY RANGE (at); CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM ('2031-01-01') TO ('2031-02-01');");
}

#[test]
fn an_allow_with_a_reason_silences_one_rule_of_the_statement_below() {
    let sql = "-- dhctl:allow index-without-concurrently audit_logs is tiny in every deployment\nCREATE INDEX i ON audit_logs (action);\n";
    let report = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);

    let sql = "-- dhctl:allow cluster-rewrite it is fine\nCREATE INDEX i ON audit_logs (action);\n";
    let err = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap_err();
    assert!(
        err.to_string().contains("20250101000000_change.sql:1"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);

    let sql = "-- dhctl:allow index-without-concurrently\nCREATE INDEX i ON audit_logs (action);\n";
    let err = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap_err();
    assert!(err.to_string().contains("without a reason"), "{err}");

    let sql = "-- dhctl:allow rewrite-under-lock not needed any more\nCREATE TABLE t (a int);\n";
    let report = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap();
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.rule.name(), f.line, f.severity))
        .collect();
    assert_eq!(found, [("unused-allow", 1, Severity::Warning)]);
}

#[test]
fn findings_name_file_line_statement_and_locks() {
    let sql = "-- migrate:up\nCREATE TABLE t (a int);\n\nCREATE INDEX i ON api_keys (name);\n";
    let report = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap();
    let f = &report.findings[0];
    assert_eq!((f.file.as_str(), f.line), ("20250101000000_change.sql", 4));
    assert_eq!(f.statement, "CREATE INDEX i ON api_keys (name);");
    assert_eq!(
        f.locks,
        [Lock {
            relation: "api_keys".into(),
            mode: LockMode::Share,
            effect: Effect::Scan,
            size_bytes: None,
        }]
    );
    assert_eq!(report.exit_code(), 1);
    let plan = report.plan.unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].locks, []);
}

#[test]
fn the_lock_plan_follows_postgresql_s_table() {
    use Effect::*;
    use LockMode::*;
    let plan_of = |sql: &str| {
        lint_after_seed(&[("20250101000000_change.sql", sql)])
            .unwrap()
            .plan
            .unwrap()
            .into_iter()
            .map(|s| s.locks)
            .collect::<Vec<_>>()
    };
    let lock = |relation: &str, mode, effect| Lock {
        relation: relation.into(),
        mode,
        effect,
        size_bytes: Option::None,
    };
    assert_eq!(
        plan_of("ALTER TABLE request_logs ALTER COLUMN response_status TYPE bigint;"),
        [vec![lock("request_logs", AccessExclusive, Rewrite)]]
    );
    assert_eq!(
        plan_of("ALTER TABLE audit_logs ADD CONSTRAINT f FOREIGN KEY (api_key_id) REFERENCES api_keys (id) NOT VALID;"),
        [vec![lock("api_keys", ShareRowExclusive, None), lock("audit_logs", ShareRowExclusive, None)]]
    );
    assert_eq!(
        plan_of("ALTER TABLE audit_logs VALIDATE CONSTRAINT f;"),
        [vec![lock("audit_logs", ShareUpdateExclusive, Scan)]]
    );
    assert_eq!(
        plan_of("ALTER TABLE api_keys ADD COLUMN note text DEFAULT 'x';"),
        [vec![lock("api_keys", AccessExclusive, None)]]
    );
    assert_eq!(
        plan_of("DROP INDEX idx_audit_logs_created_at;"),
        [vec![lock("audit_logs", AccessExclusive, None)]]
    );
}

#[test]
fn an_unparseable_statement_is_named_by_file_and_line() {
    let sql = "-- migrate:up\nCREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN;\n";
    let err = lint_after_seed(&[("20250101000000_change.sql", sql)]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("20250101000000_change.sql:3: cannot lint"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn migrate_warns_on_what_its_parser_cannot_read_and_leaves_it_to_the_server() {
    let mut files: Vec<(String, Vec<u8>)> = crate::embedded::MIGRATIONS
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    files.push((
        "20250101000000_broken.sql".into(),
        b"-- migrate:up\nCREATE TABLE t (a int);\nSELEC 1;\n".to_vec(),
    ));
    let catalog = catalog::parse_files(files).unwrap();
    let report = pending(&catalog, &[20250101000000], &[], &Default::default()).unwrap();
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.rule.name(), f.line, f.severity))
        .collect();
    assert_eq!(found, [("unparseable", 3, Severity::Warning)]);
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn temporary_tables_and_materialized_views_are_new() {
    let found = rules_of_no_transaction(
        "CREATE TEMP TABLE scratch (id int);\nCREATE TABLE IF NOT EXISTS t (a int);",
    );
    assert!(found.is_empty(), "{found:?}");
    silent(
        "index-without-concurrently",
        "CREATE MATERIALIZED VIEW per_key AS SELECT api_key_id, count(*) FROM audit_logs GROUP BY 1; CREATE UNIQUE INDEX per_key_id ON per_key (api_key_id);",
    );
}

/// squawk's parser recurses per level: 5,000 nested parentheses (which PostgreSQL takes)
/// overflowed the stack and aborted dhctl, lint and migrate alike. Past MAX_NESTING it is a
/// statement dhctl cannot lint (exit 2; migrate warns); up to it, it parses on the large stack.
#[test]
fn deep_nesting_is_unparseable_not_a_stack_overflow() {
    let nested = |open: &str, close: &str, n: usize| {
        format!(
            "-- migrate:up\nSELECT {}1{};\n",
            open.repeat(n),
            close.repeat(n)
        )
    };
    for (open, close) in [
        ("(", ")"),
        ("ARRAY[", "]"),
        ("CASE WHEN true THEN ", " END"),
        ("NOT ", ""),
    ] {
        let deep = nested(open, close, 100_000);
        let err = lint_after_seed(&[("20250101000000_deep.sql", &deep)]).unwrap_err();
        assert!(
            err.to_string().contains("20250101000000_deep.sql:2")
                && err.to_string().contains("nested more than"),
            "{open}: {err}"
        );
        let fine = nested(open, close, super::sql::MAX_NESTING - 1);
        lint_after_seed(&[("20250101000000_fine.sql", &fine)])
            .unwrap_or_else(|e| panic!("{open}: {e}"));
    }
}
