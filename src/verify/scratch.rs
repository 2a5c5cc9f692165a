//! Rebuilding what the applied migrations produce, without a second database or any privilege
//! beyond CREATE on the database (which its owner has): inside one transaction, `CREATE SCHEMA
//! dhctl_verify_<random>` (or, when every statement allows, the session's temporary schema: see
//! [`Scratch`]), put it first on `search_path` so the migrations' unqualified DDL lands there,
//! replay every applied up section, snapshot it, and ROLLBACK. Nothing is ever committed,
//! so a verify killed at any point leaves nothing behind: the server rolls the transaction back
//! when the session ends (and `client_connection_check_interval`, set by `db::connect`, makes a
//! backend notice a vanished client even while it waits for a lock).
//!
//! The whole exchange is pipelined: every statement is sent at once, each as its own simple
//! query (so an error names its statement and line), and the answers are read in order. After
//! a failure the server refuses the rest (the transaction is aborted) until the final ROLLBACK,
//! whose answer verify does not wait for.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::maybe_done;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::replay::{Build, Scratch, Statement};
use super::snapshot::{self, Snapshot};
use crate::db::ident::quote_ident;
use crate::db::retry::is_lock_timeout;
use crate::error::{Error, Result, SqlDetail};

/// The schemas a snapshot or build runs with.
#[derive(Debug, Clone)]
pub struct Schemas {
    /// The schema dhctl's migrations live in (where the history table is).
    pub live: String,
    /// Schemas holding installed extensions, so extension types and functions resolve the same
    /// way on both sides.
    pub extensions: Vec<String>,
    /// The role may create temporary tables here (TEMP privilege on the database).
    pub temporary_allowed: bool,
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
        let path = match build.scratch {
            // `pg_temp` first on search_path: unqualified CREATEs land in the session's
            // temporary schema (created on first use, within this transaction).
            Scratch::Temporary => schemas.path("pg_temp"),
            Scratch::Schema => {
                let scratch = scratch_name();
                messages.push((
                    Part::Setup,
                    format!("CREATE SCHEMA {}", quote_ident(&scratch)),
                ));
                schemas.path(&scratch)
            }
        };
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
    // pg_temp named last: unnamed, the session's temporary schema is searched first, and the
    // temporary scratch copies would shadow the live tables (printing them schema-qualified).
    messages.push((
        Part::Live,
        format!(
            "SET LOCAL search_path = {}, pg_temp; {}",
            schemas.path(&schemas.live),
            snapshot::QUERY
        ),
    ));
    messages.push((Part::Rollback, "ROLLBACK".into()));

    // tokio-postgres queues a request on its future's first poll: polling every future once,
    // in order, sends the whole pipeline before any answer is awaited. (join_all would poll
    // them too, but past 30 futures it goes through FuturesOrdered, and the order of the
    // statements is not something to leave to a combinator's internals.)
    let mut answers: Vec<_> = messages
        .iter()
        .map(|(_, sql)| maybe_done(Box::pin(client.simple_query(sql))))
        .collect();
    std::future::poll_fn(|cx| {
        for answer in answers.iter_mut() {
            let _ = Pin::new(answer).poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut live = None;
    let mut expected = None;
    for ((part, _), answer) in messages.iter().zip(answers.iter_mut()) {
        if let Part::Rollback = part {
            // Not awaited: the snapshots are in hand and the ROLLBACK is on its way; if it
            // never arrived, the server would roll back when the session ends, as after a
            // kill -9. Waiting would add to every verify the time the server takes to remove
            // the scratch relations' files (milliseconds, or far more on a busy disk).
            break;
        }
        (&mut *answer).await;
        let Some(answer) = Pin::new(answer).take_output() else {
            continue;
        };
        let rows = answer.map_err(|e| part_error(part, &e))?;
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
                    .map(|i| row.try_get(i).ok().flatten().map(str::to_string))
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
    let location = match crate::error::error_position(err) {
        Some(p) => m.location(&m.up, m.up.sql[..statement.offset].chars().count() + p),
        None => m.location(&m.up, m.up.sql[..statement.start].chars().count() + 1),
    };
    let mut detail = SqlDetail::from_pg(err, Some(location));
    let read_only = err.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION);
    let advice = if read_only {
        "the session is read-only (a standby, or default_transaction_read_only): run verify \
         against the primary; it changes nothing there either"
    } else if is_lock_timeout(err) {
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

    #[test]
    fn scratch_names_are_fresh() {
        let (a, b) = (scratch_name(), scratch_name());
        assert!(a.starts_with("dhctl_verify_") && a.len() == 29, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn search_paths_put_their_schema_first_and_quote_every_name() {
        let schemas = Schemas {
            live: "public".into(),
            extensions: vec!["public".into(), "ext\"s".into()],
            temporary_allowed: true,
        };
        assert_eq!(schemas.path("public"), "\"public\", \"ext\"\"s\"");
        assert_eq!(
            schemas.path("dhctl_verify_1"),
            "\"dhctl_verify_1\", \"public\", \"ext\"\"s\""
        );
    }
}
