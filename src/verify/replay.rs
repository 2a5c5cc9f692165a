//! Which statements the scratch build replays, and how: the applied migrations' up sections
//! split into statements and adapted for running inside one transaction that is rolled back.
//! Pure: no I/O. Every adaptation is reported as a note, never made silently.

use crate::error::{Error, Result};
use crate::migrations::split::{self, Word};
use crate::migrations::Migration;

/// One statement of an applied migration, as the scratch build runs it.
#[derive(Debug, Clone)]
pub struct Statement<'c> {
    pub migration: &'c Migration,
    /// Byte offset of the statement's text (with any comments before it) within the up
    /// section: the server's error positions count from there.
    pub offset: usize,
    /// Byte offset of its first word within the up section: where an error without a
    /// position is reported.
    pub start: usize,
    pub sql: String,
}

/// The statements to replay, and what was adapted on the way (reported, never silent).
#[derive(Debug, Clone, Default)]
pub struct Build<'c> {
    pub statements: Vec<Statement<'c>>,
    pub notes: Vec<String>,
    pub scratch: Scratch,
}

/// Where the scratch build runs. Both vanish with the transaction; they differ in cost.
///
/// A permanent relation's index is fsynced when it is built (PostgreSQL writes it around the
/// buffer pool), and rolling permanent relations back truncates their files: on a busy disk
/// that made a rebuild of the gateway's five migrations take 100+ ms. Temporary relations do
/// neither, but a temporary schema is not a full schema (functions in it are never found by
/// unqualified calls, no materialized views, no unlogged tables), so it is used only when every
/// statement is of a kind known to behave the same there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scratch {
    /// The session's own temporary schema (`pg_temp`).
    #[default]
    Temporary,
    /// `CREATE SCHEMA dhctl_verify_<random>`, for everything else.
    Schema,
}

/// True when the statement behaves in a temporary schema as in a permanent one: tables,
/// indexes, sequences and plain views, their alterations, comments, grants and data.
fn runs_the_same_in_a_temporary_schema(words: &[Word<'_>]) -> bool {
    let upper: Vec<String> = words
        .iter()
        .take(4)
        .map(|w| w.text.to_ascii_uppercase())
        .collect();
    let word = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
    let has = |w: &str| words.iter().any(|x| x.text.eq_ignore_ascii_case(w));
    let relation = |w: &str| matches!(w, "TABLE" | "INDEX" | "SEQUENCE" | "VIEW");
    match word(0) {
        "CREATE" => match word(1) {
            "TABLE" | "TEMP" | "TEMPORARY" | "INDEX" | "SEQUENCE" | "VIEW" => true,
            "UNIQUE" => word(2) == "INDEX",
            "OR" => word(2) == "REPLACE" && word(3) == "VIEW",
            _ => false,
        },
        // SET LOGGED/UNLOGGED is refused on temporary tables.
        "ALTER" => relation(word(1)) && !has("LOGGED") && !has("UNLOGGED"),
        "DROP" => relation(word(1)),
        "COMMENT" | "GRANT" | "REVOKE" | "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "WITH" => true,
        _ => false,
    }
}

/// What the scratch build does with one statement.
#[derive(Debug, PartialEq, Eq)]
enum Treatment {
    Run,
    /// `CONCURRENTLY` cannot run in a transaction; without it the same catalog object results.
    WithoutConcurrently,
    /// Acts outside the schema (cluster, database, extensions) or is maintenance.
    Skip(&'static str),
    /// Would throw work away (ROLLBACK) or end the scratch transaction in a way that changes
    /// what the migration did; what followed would run against the live schema.
    Refuse,
}

fn classify(words: &[Word<'_>]) -> Treatment {
    let upper = |i: usize| -> String {
        words
            .get(i)
            .map(|w| w.text.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let (first, second) = (upper(0), upper(1));
    let has = |word: &str| words.iter().any(|w| w.text.eq_ignore_ascii_case(word));
    match (first.as_str(), second.as_str()) {
        // A transaction:false migration may group statements in BEGIN … COMMIT; inside the
        // scratch transaction they run all the same, and the schema they leave is the same.
        ("BEGIN" | "START" | "COMMIT" | "END", _) => Treatment::Skip(
            "the scratch build is one transaction already; the statements around it still run",
        ),
        // Discarding work changes what the migration did; ROLLBACK TO SAVEPOINT stays inside.
        ("ABORT", _) | ("PREPARE", "TRANSACTION") => Treatment::Refuse,
        ("ROLLBACK", _) if !has("TO") => Treatment::Refuse,
        ("VACUUM" | "CLUSTER" | "REINDEX" | "CHECKPOINT" | "ANALYZE" | "ANALYSE", _) => {
            Treatment::Skip("maintenance, it changes no schema object")
        }
        (
            "CREATE" | "ALTER" | "DROP",
            "DATABASE" | "TABLESPACE" | "ROLE" | "USER" | "GROUP" | "SYSTEM",
        ) => Treatment::Skip("it acts on the cluster or the database, not on the schema"),
        ("CREATE" | "ALTER" | "DROP", "EXTENSION") => Treatment::Skip(
            "extensions are database-wide; the ones installed serve the scratch build",
        ),
        ("CREATE" | "ALTER" | "DROP", _) if has("CONCURRENTLY") => Treatment::WithoutConcurrently,
        _ => Treatment::Run,
    }
}

/// The statements of the applied migrations, in order, adapted for a transaction. BEGIN and
/// COMMIT are left out (a COMMIT would make the scratch schema permanent); a migration that
/// rolls back its own work is refused, since what it did cannot be replayed faithfully.
pub fn plan<'c>(applied: &[&'c Migration]) -> Result<Build<'c>> {
    let mut build = Build::default();
    for &m in applied {
        for statement in split::split(&m.up.sql) {
            let words = split::words(statement.sql);
            // From the first word, not the statement's start: comments may precede it.
            let start = statement.offset + words.first().map_or(0, |w| w.offset);
            let location = || m.location(&m.up, m.up.sql[..start].chars().count() + 1);
            let head = || {
                let n = words.len().min(2);
                words[..n]
                    .iter()
                    .map(|w| w.text)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let treatment = classify(&words);
            if matches!(treatment, Treatment::Run | Treatment::WithoutConcurrently)
                && !runs_the_same_in_a_temporary_schema(&words)
            {
                build.scratch = Scratch::Schema;
            }
            let sql = match treatment {
                Treatment::Run => statement.sql.to_string(),
                Treatment::WithoutConcurrently => {
                    build.notes.push(format!(
                        "{}: built without CONCURRENTLY (it cannot run inside the scratch \
                         transaction; the object it makes is the same)",
                        location()
                    ));
                    blank_concurrently(statement.sql, &words)
                }
                Treatment::Skip(why) => {
                    build.notes.push(format!(
                        "{}: {} not replayed in the scratch schema: {why}",
                        location(),
                        head()
                    ));
                    continue;
                }
                Treatment::Refuse => {
                    return Err(Error::usage_hint(
                        format!(
                            "{}: `{}` throws the migration's work away; verify replays migrations \
                             inside one transaction of its own, so it cannot rebuild this one \
                             faithfully",
                            location(),
                            head()
                        ),
                        "transactions are dhctl's business: write the migration without \
                         ROLLBACK, and mark statements that must run outside a transaction \
                         with `-- migrate:up transaction:false`",
                    ));
                }
            };
            build.statements.push(Statement {
                migration: m,
                offset: statement.offset,
                start,
                sql,
            });
        }
    }
    Ok(build)
}

/// The statement with each bare CONCURRENTLY replaced by as many spaces, so that the server's
/// error positions still point at the right place in the file.
fn blank_concurrently(sql: &str, words: &[Word<'_>]) -> String {
    let mut out = sql.to_string();
    for w in words
        .iter()
        .filter(|w| w.text.eq_ignore_ascii_case("CONCURRENTLY"))
    {
        out.replace_range(w.offset..w.offset + w.text.len(), &" ".repeat(w.text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::parse_files;

    fn build_of(up: &str) -> Result<(Vec<String>, Vec<String>)> {
        let catalog = parse_files(vec![(
            "20240101000001_a.sql".into(),
            format!("-- migrate:up transaction:false\n{up}").into_bytes(),
        )])
        .unwrap();
        let applied: Vec<&Migration> = catalog.migrations.iter().collect();
        let build = plan(&applied)?;
        let sql = build.statements.iter().map(|s| s.sql.clone()).collect();
        Ok((sql, build.notes))
    }

    #[test]
    fn concurrently_is_blanked_in_place_and_reported() {
        let (sql, notes) =
            build_of("CREATE INDEX CONCURRENTLY idx ON t (a);\nDROP INDEX concurrently old;")
                .unwrap();
        assert_eq!(
            sql,
            vec![
                "CREATE INDEX              idx ON t (a)",
                "DROP INDEX              old"
            ]
        );
        assert_eq!(notes.len(), 2);
        assert!(
            notes[0].starts_with("20240101000001_a.sql:2: built without CONCURRENTLY"),
            "{notes:?}"
        );
    }

    #[test]
    fn statements_outside_the_schema_are_skipped_and_reported() {
        let (sql, notes) =
            build_of("CREATE EXTENSION IF NOT EXISTS pgcrypto;\nVACUUM t;\nSELECT 1;").unwrap();
        assert_eq!(sql, vec!["SELECT 1"]);
        assert!(
            notes[0].contains("CREATE EXTENSION not replayed"),
            "{notes:?}"
        );
        assert!(notes[1].contains(":3: VACUUM t not replayed"), "{notes:?}");
    }

    #[test]
    fn only_plain_tables_indexes_and_views_use_the_temporary_schema() {
        let scratch = |up: &str| {
            let catalog = parse_files(vec![(
                "20240101000001_a.sql".into(),
                format!("-- migrate:up\n{up}").into_bytes(),
            )])
            .unwrap();
            plan(&catalog.migrations.iter().collect::<Vec<_>>())
                .unwrap()
                .scratch
        };
        let plain = "CREATE TABLE t (id uuid PRIMARY KEY);\nCREATE UNIQUE INDEX i ON t (id);\n\
                     CREATE OR REPLACE VIEW v AS SELECT 1;\nALTER TABLE t ADD COLUMN a int;\n\
                     COMMENT ON TABLE t IS 'x';\nINSERT INTO t VALUES (gen_random_uuid());\n\
                     CREATE EXTENSION IF NOT EXISTS pgcrypto;";
        assert_eq!(scratch(plain), Scratch::Temporary);
        for other in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "CREATE TRIGGER tr BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f();",
            "CREATE MATERIALIZED VIEW m AS SELECT 1;",
            "CREATE UNLOGGED TABLE u (a int);",
            "ALTER TABLE t SET UNLOGGED;",
            "CREATE TYPE mood AS ENUM ('a');",
            "DO $$ BEGIN END $$;",
        ] {
            assert_eq!(scratch(other), Scratch::Schema, "{other}");
        }
    }

    #[test]
    fn begin_and_commit_are_left_out_and_rollback_is_refused_with_its_line() {
        let (sql, notes) = build_of("BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;").unwrap();
        assert_eq!(sql, vec!["CREATE TABLE t (a int)"]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].starts_with("20240101000001_a.sql:4: COMMIT not replayed"));
        for up in [
            "SELECT 1;\nROLLBACK;",
            "SELECT 1;\n-- x\nabort;",
            "PREPARE TRANSACTION 'x';",
        ] {
            let err = build_of(up).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains("throws the migration's work away"),
                "{err}"
            );
        }
        let err = build_of("SELECT 1;\n-- why\nROLLBACK;").unwrap_err();
        assert!(
            err.to_string().starts_with("20240101000001_a.sql:4:"),
            "{err}"
        );
        assert!(build_of("SAVEPOINT s; ROLLBACK TO SAVEPOINT s;").is_ok());
        let (sql, notes) =
            build_of("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;")
                .unwrap();
        assert_eq!(
            sql.len(),
            1,
            "a SQL-standard body is one statement: {sql:?}"
        );
        assert!(notes.is_empty());
    }
}
