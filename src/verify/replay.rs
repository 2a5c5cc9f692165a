//! Which statements the scratch build replays, and how: the applied migrations' up sections
//! split into statements and adapted for running inside one transaction (in a scratch
//! database) that is rolled back. Pure: no I/O. Every adaptation is reported as a note, never
//! made silently.

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
}

impl Build<'_> {
    /// True when a replayed `CREATE EXTENSION` names `extension`: the rebuild then installs it
    /// itself, as the migration did. (A statement, not a parse: the name is looked for as a
    /// word, bare or double-quoted, in the statement's text.)
    pub fn creates_extension(&self, extension: &str) -> bool {
        self.statements.iter().any(|s| {
            let words = split::words(&s.sql);
            let head = |i: usize| words.get(i).map(|w| w.text.to_ascii_uppercase());
            head(0).as_deref() == Some("CREATE")
                && head(1).as_deref() == Some("EXTENSION")
                && mentions(&s.sql, extension)
        })
    }
}

/// `name` appears in `sql` as a whole word (case-insensitive), bare or double-quoted. `-` is
/// part of a word here: extension names use it (`uuid-ossp`).
fn mentions(sql: &str, name: &str) -> bool {
    let (sql, name) = (sql.to_ascii_lowercase(), name.to_ascii_lowercase());
    let is_word =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    sql.match_indices(&name).any(|(at, _)| {
        !is_word(sql[..at].chars().next_back()) && !is_word(sql[at + name.len()..].chars().next())
    })
}

/// What the scratch build does with one statement.
#[derive(Debug, PartialEq, Eq)]
enum Treatment {
    Run,
    /// `CONCURRENTLY` cannot run in a transaction; without it the same catalog object results.
    WithoutConcurrently,
    /// Acts on the cluster (roles, databases, tablespaces), which the scratch database shares
    /// with the live one, or is maintenance.
    Skip(&'static str),
    /// Would throw work away (ROLLBACK) or end the scratch transaction in a way that changes
    /// what the migration did; what followed would run against the live schema.
    Refuse,
}

fn classify(words: &[Word<'_>]) -> Treatment {
    const CLUSTER: &str = "it acts on the cluster (roles, databases, tablespaces, server \
                           settings), which the scratch database shares with the live one";
    let upper = |i: usize| -> String {
        words
            .get(i)
            .map(|w| w.text.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let (first, second) = (upper(0), upper(1));
    let has = |word: &str| words.iter().any(|w| w.text.eq_ignore_ascii_case(word));
    // The object kind a GRANT, REVOKE, COMMENT or SECURITY LABEL is about: the word after ON.
    let on = words
        .iter()
        .position(|w| w.text.eq_ignore_ascii_case("ON"))
        .map(|i| upper(i + 1));
    let shared = |kind: &str| matches!(kind, "DATABASE" | "TABLESPACE" | "ROLE" | "PARAMETER");
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
        // Roles, databases, tablespaces and server settings live in the cluster's shared
        // catalogs: replayed, they would change the live cluster, not the scratch database.
        (
            "CREATE" | "ALTER" | "DROP",
            "DATABASE" | "TABLESPACE" | "ROLE" | "USER" | "GROUP" | "SYSTEM",
        ) => Treatment::Skip(CLUSTER),
        // A subscription connects to a publisher and starts replicating.
        ("CREATE" | "ALTER" | "DROP", "SUBSCRIPTION") => {
            Treatment::Skip("a subscription replicates from another server as soon as it exists")
        }
        // REASSIGN/DROP OWNED also revoke privileges on shared objects (databases).
        ("REASSIGN" | "DROP", "OWNED") => Treatment::Skip(CLUSTER),
        // GRANT role TO role (membership, no ON) and privileges on shared objects.
        ("GRANT" | "REVOKE", _) if on.as_deref().is_none_or(shared) => Treatment::Skip(CLUSTER),
        ("COMMENT", _) | ("SECURITY", "LABEL") if on.as_deref().is_some_and(shared) => {
            Treatment::Skip(CLUSTER)
        }
        ("CREATE" | "ALTER" | "DROP", _) if has("CONCURRENTLY") => Treatment::WithoutConcurrently,
        _ => Treatment::Run,
    }
}

/// The statements of the applied migrations, in order, adapted for a transaction. BEGIN and
/// COMMIT are left out (verify decides where the scratch build commits: a COMMIT inside a
/// --scratch-url replay would leave objects there); a migration that
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
                        "{}: {} not replayed in the scratch database: {why}",
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
    fn statements_on_the_cluster_are_skipped_and_reported() {
        let (sql, notes) = build_of(
            "CREATE EXTENSION IF NOT EXISTS pgcrypto;\nVACUUM t;\nSELECT 1;\n\
             CREATE ROLE app;\nGRANT app TO someone;\nGRANT CONNECT ON DATABASE d TO app;\n\
             GRANT SELECT ON t TO app;\nGRANT USAGE ON SCHEMA s TO app;\n\
             COMMENT ON DATABASE d IS 'x';\nCOMMENT ON TABLE t IS 'x';\n\
             REVOKE app FROM someone;\nDROP OWNED BY app;\nALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app;\n\
             CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p;",
        )
        .unwrap();
        assert_eq!(
            sql,
            vec![
                "CREATE EXTENSION IF NOT EXISTS pgcrypto",
                "SELECT 1",
                "GRANT SELECT ON t TO app",
                "GRANT USAGE ON SCHEMA s TO app",
                "COMMENT ON TABLE t IS 'x'",
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app",
            ]
        );
        assert_eq!(notes.len(), 8, "{notes:#?}");
        assert!(notes[0].contains(":3: VACUUM t not replayed"), "{notes:?}");
        assert!(
            notes[1].contains(":5: CREATE ROLE not replayed"),
            "{notes:?}"
        );
    }

    #[test]
    fn extensions_a_migration_creates_are_recognised_by_name() {
        let catalog = parse_files(vec![(
            "20240101000001_a.sql".into(),
            b"-- migrate:up\nCREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";\nCREATE EXTENSION citext SCHEMA ext;\nSELECT 'hstore';\n".to_vec(),
        )])
        .unwrap();
        let build = plan(&catalog.migrations.iter().collect::<Vec<_>>()).unwrap();
        assert!(build.creates_extension("uuid-ossp"));
        assert!(build.creates_extension("citext"));
        assert!(
            !build.creates_extension("hstore"),
            "only CREATE EXTENSION counts"
        );
        assert!(!build.creates_extension("uuid"), "a whole word");
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
