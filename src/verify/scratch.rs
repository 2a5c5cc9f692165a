//! Rebuilding what the applied migrations produce, without a second database or any privilege
//! beyond CREATE on the database (which its owner has): inside one transaction, `CREATE SCHEMA
//! dhctl_verify_<random>`, put it first on `search_path` so the migrations' unqualified DDL lands
//! there, replay every applied up section, snapshot it, and ROLLBACK. Nothing is ever committed,
//! so a verify killed at any point leaves nothing behind: the server rolls the transaction back
//! when the session ends (and `client_connection_check_interval`, set by `db::connect`, makes a
//! backend notice a vanished client even while it waits for a lock).
//!
//! The whole exchange is pipelined: every statement is sent at once, each as its own simple
//! query (so an error names its statement and line), and the answers are read in order. After
//! a failure the server refuses the rest (the transaction is aborted) until the final ROLLBACK.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use futures_util::future::join_all;
use tokio_postgres::error::ErrorPosition;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::snapshot::{self, Snapshot};
use crate::db::ident::quote_ident;
use crate::db::retry::is_lock_timeout;
use crate::error::{Error, Result, SqlDetail};
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

/// What the scratch build does with one statement.
#[derive(Debug, PartialEq, Eq)]
enum Treatment {
    Run,
    /// `CONCURRENTLY` cannot run in a transaction; without it the same catalog object results.
    WithoutConcurrently,
    /// Acts outside the schema (cluster, database, extensions) or is maintenance.
    Skip(&'static str),
    /// Would end the scratch transaction (and let what follows run against the live schema).
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
        ("BEGIN" | "START" | "COMMIT" | "END" | "ABORT", _) => Treatment::Refuse,
        ("PREPARE", "TRANSACTION") => Treatment::Refuse,
        // ROLLBACK TO SAVEPOINT stays inside the transaction; a plain ROLLBACK ends it.
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

/// The statements of the applied migrations, in order, adapted for a transaction. Refuses a
/// migration that controls transactions itself: its COMMIT would make the scratch schema
/// permanent, and its ROLLBACK would let the following statements run against the live schema.
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
            let sql = match classify(&words) {
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
                            "{}: `{}` controls the transaction; verify replays migrations inside \
                             one transaction that it rolls back, so it cannot rebuild this one",
                            location(),
                            head()
                        ),
                        "transactions are dhctl's business: drop transaction control from \
                         migrations, and mark statements that must run outside a transaction \
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

/// The schemas a snapshot or build runs with.
#[derive(Debug, Clone)]
pub struct Schemas {
    /// The schema dhctl's migrations live in (where the history table is).
    pub live: String,
    /// Schemas holding installed extensions, so extension types and functions resolve the same
    /// way on both sides.
    pub extensions: Vec<String>,
}

impl Schemas {
    /// `search_path` with `first` in front of the extension schemas, quoted.
    fn path(&self, first: &str) -> String {
        std::iter::once(first)
            .chain(
                self.extensions
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != first),
            )
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The live snapshot, and the snapshot of what `build` produces when there is one.
pub struct Snapshots {
    pub live: Snapshot,
    pub expected: Option<Snapshot>,
}

/// Which part of the pipeline a message is, for naming an error.
enum Part<'b, 'c> {
    Live,
    Setup,
    Step(&'b Statement<'c>),
    Scratch,
    Rollback,
}

/// Snapshots the live schema and, given a build, replays it in a scratch schema and snapshots
/// that too; all in one transaction that is rolled back, pipelined in one round trip.
pub async fn snapshots(
    client: &Client,
    schemas: &Schemas,
    build: Option<&Build<'_>>,
    lock_timeout: Duration,
) -> Result<Snapshots> {
    // The build locks only objects it creates, unless a migration names a live object
    // explicitly; lock_timeout bounds how long it could queue behind the gateway's traffic.
    let ms = lock_timeout.as_millis().max(1);
    let mut messages: Vec<(Part, String)> =
        vec![(Part::Setup, format!("BEGIN; SET LOCAL lock_timeout = {ms}"))];
    if let Some(build) = build {
        let scratch = scratch_name();
        let path = schemas.path(&scratch);
        messages.push((
            Part::Setup,
            format!("CREATE SCHEMA {}", quote_ident(&scratch)),
        ));
        let mut previous: Option<i64> = None;
        for statement in &build.statements {
            // Again before each migration: one that changed search_path changes only itself.
            if previous != Some(statement.migration.version) {
                messages.push((Part::Setup, format!("SET LOCAL search_path = {path}")));
                previous = Some(statement.migration.version);
            }
            messages.push((Part::Step(statement), statement.sql.clone()));
        }
        messages.push((
            Part::Scratch,
            format!("SET LOCAL search_path = {path}; {}", snapshot::QUERY),
        ));
    }
    // The live schema last: the catalog functions may take ACCESS SHARE locks on live tables
    // (PostgreSQL 16+), held until the ROLLBACK right after, not for the whole build.
    messages.push((
        Part::Live,
        format!(
            "SET LOCAL search_path = {}; {}",
            schemas.path(&schemas.live),
            snapshot::QUERY
        ),
    ));
    messages.push((Part::Rollback, "ROLLBACK".into()));

    let answers = join_all(messages.iter().map(|(_, sql)| client.simple_query(sql))).await;
    let mut live = None;
    let mut expected = None;
    for ((part, _), answer) in messages.iter().zip(answers) {
        let rows = match (answer, part) {
            (Ok(rows), _) => rows,
            // The session ends with an aborted or finished transaction either way; a ROLLBACK
            // that fails after everything else worked means the connection went, taking the
            // transaction with it.
            (Err(e), Part::Rollback) => {
                tracing::debug!(error = %e, "rollback of the verify transaction failed");
                continue;
            }
            (Err(e), part) => return Err(part_error(part, &e)),
        };
        match part {
            Part::Live => live = Some(rows_to_snapshot(rows)?),
            Part::Scratch => expected = Some(rows_to_snapshot(rows)?),
            _ => {}
        }
    }
    Ok(Snapshots {
        live: live.unwrap_or_default(),
        expected,
    })
}

fn rows_to_snapshot(messages: Vec<SimpleQueryMessage>) -> Result<Snapshot> {
    Snapshot::from_rows(messages.into_iter().filter_map(|m| {
        match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..5)
                    .map(|i| row.get(i).map(str::to_string))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        }
    }))
}

fn part_error(part: &Part<'_, '_>, err: &tokio_postgres::Error) -> Error {
    let Part::Step(statement) = part else {
        let what = match part {
            Part::Live => "reading the live schema from the catalog",
            Part::Setup => {
                "preparing the scratch schema (the role needs CREATE on the database, and a \
                 primary: a standby is read-only)"
            }
            _ => "reading the scratch schema from the catalog",
        };
        return Error::sql(what, err);
    };
    let m = statement.migration;
    let position = err.as_db_error().and_then(|d| match d.position() {
        Some(ErrorPosition::Original(p)) => Some(*p as usize),
        _ => None,
    });
    let location = match position {
        Some(p) => m.location(&m.up, m.up.sql[..statement.offset].chars().count() + p),
        None => m.location(&m.up, m.up.sql[..statement.start].chars().count() + 1),
    };
    let mut detail = SqlDetail::from_pg(err, Some(location));
    let advice = if is_lock_timeout(err) {
        "the statement names an object outside the scratch schema that another session holds \
         locked; retry, or raise --lock-timeout"
    } else {
        "it applied once, but does not rebuild in an empty schema: it may name objects outside \
         its own schema or depend on data (docs/verify.md); nothing was changed"
    };
    detail.hint = Some(match detail.hint.take() {
        Some(server) => format!("{server}\n{advice}"),
        None => advice.to_string(),
    });
    Error::Sql {
        context: format!(
            "verify could not rebuild migration {} in a scratch schema",
            m.file
        ),
        detail,
    }
}

/// `dhctl_verify_<16 hex digits>`: random per run (the std hasher's random keys), so that two
/// verifies at once never collide, and recognisable should one ever be seen.
fn scratch_name() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    format!("dhctl_verify_{:016x}", hasher.finish())
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
    fn transaction_control_is_refused_with_its_line() {
        for up in ["SELECT 1;\nCOMMIT;", "SELECT 1;\n-- x\nrollback;", "END;"] {
            let err = build_of(up).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(
                err.to_string().contains("controls the transaction"),
                "{err}"
            );
        }
        let err = build_of("SELECT 1;\n-- why\nCOMMIT;").unwrap_err();
        assert!(
            err.to_string().starts_with("20240101000001_a.sql:4:"),
            "{err}"
        );
        assert!(build_of("SAVEPOINT s; ROLLBACK TO SAVEPOINT s;").is_ok());
        assert!(
            build_of("DO $$ BEGIN COMMIT; END $$;").is_ok(),
            "words in dollar quotes are not statements (the server refuses COMMIT in a DO \
             block inside a transaction block anyway)"
        );
    }

    #[test]
    fn scratch_names_are_fresh() {
        let (a, b) = (scratch_name(), scratch_name());
        assert!(a.starts_with("dhctl_verify_") && a.len() == 29, "{a}");
        assert_ne!(a, b);
    }
}
