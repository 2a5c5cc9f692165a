//! The exchanges with PostgreSQL that verify pipelines: the replay of the applied migrations in
//! the scratch database and its snapshot, and the live database's snapshot. Every request is
//! sent at once, each as its own message (so an error names its statement and line), and the
//! answers are read in order: a verify costs a few round trips whatever the number of
//! migrations.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::maybe_done;
use tokio_postgres::{Client, Row, Statement as Prepared};

use super::live::Facts;
use super::replay::{Build, Statement};
use super::scratch::Scratch;
use super::snapshot::{self, Snapshot};
use crate::db::ident::quote_ident;
use crate::db::retry::is_lock_timeout;
use crate::error::{Error, Result, SqlDetail};

/// Replays `build` in the scratch database (`client`) and snapshots it.
pub async fn rebuild(
    client: &Client,
    kind: Scratch,
    build: &Build<'_>,
    facts: &Facts,
    lock_timeout: Duration,
) -> Result<(Snapshot, Vec<String>)> {
    let (set_path, query) = prepare(client, "preparing the scratch database").await?;
    let mut notes = Vec::new();
    let ms = lock_timeout.as_millis().max(1);
    let begin = format!("BEGIN; SET LOCAL lock_timeout = {ms}");
    // In a database of its own, each migration commits before the next, as under
    // `migrate`: an enum value added by one migration may then be used by a later one
    // (PostgreSQL refuses a value in the transaction that added it). A --scratch-url
    // database must stay empty, so there everything is one transaction, rolled back.
    let per_migration = kind == Scratch::Database;
    let next_migration = format!("COMMIT; {begin}");
    // The scratch database is thrown away: its commits need not wait for the WAL flush.
    let mut parts: Vec<(Part, Request)> = vec![(
        Part::Setup,
        Request::Simple(format!("SET synchronous_commit = off; {begin}")),
    )];
    // Extensions the live database has and no applied migration creates (an administrator
    // installed them): the migrations may use them, so the scratch database gets them too.
    for (name, schema, version) in &facts.extensions {
        if build.creates_extension(name) {
            continue;
        }
        if facts.uncreatable.contains(name) {
            // An administrator installed an untrusted extension: this role cannot create it,
            // and failing here would report no check at all. Its members are not compared
            // (the snapshot leaves extension members out on both sides); a migration that uses
            // it fails its replay and says so.
            parts.push((
                Part::Setup,
                Request::Simple(format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(schema)
                )),
            ));
            notes.push(format!(
                "extension {name} {version} (schema {schema}) not installed in the scratch \
                 database: the live database has it, but it needs a superuser to create and \
                 this role is none; its objects are not compared"
            ));
            continue;
        }
        parts.push((
            Part::Extension(name),
            Request::Simple(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema_q}; \
                 CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {schema_q} VERSION {}",
                quote_ident(name),
                quote_ident(version),
                schema_q = quote_ident(schema),
            )),
        ));
        notes.push(format!(
            "extension {name} {version} (schema {schema}) installed in the scratch database \
             before the replay: the live database has it and no applied migration creates it"
        ));
    }
    let mut previous: Option<i64> = None;
    for statement in &build.statements {
        // Again before each migration: one that changed search_path changes only itself.
        if previous != Some(statement.migration.version) {
            if per_migration && previous.is_some() {
                parts.push((Part::Setup, Request::Simple(next_migration.clone())));
            }
            parts.push((Part::Setup, Request::SetPath(facts.replay_path.clone())));
            previous = Some(statement.migration.version);
        }
        parts.push((
            Part::Step(statement),
            Request::Simple(statement.sql.clone()),
        ));
    }
    if per_migration {
        parts.push((Part::Setup, Request::Simple(next_migration)));
    }
    parts.push((Part::Scratch, Request::SetPath(facts.snapshot_path())));
    parts.push((Part::Scratch, Request::Snapshot(facts.live.clone())));
    parts.push((Part::Rollback, Request::Simple("ROLLBACK".into())));
    let rows = pipeline(client, &set_path, &query, &parts).await?;
    Ok((rows_to_snapshot(rows)?, notes))
}

/// The live database's snapshot, read in a READ ONLY transaction with lock_timeout: the
/// catalog's printing functions take ACCESS SHARE on the tables they describe, so a session
/// holding ACCESS EXCLUSIVE on one (a migration in progress) makes this fail after
/// lock_timeout rather than queue.
pub async fn live_snapshot(
    client: &Client,
    facts: &Facts,
    lock_timeout: Duration,
) -> Result<Snapshot> {
    let (set_path, query) = prepare(client, "reading the live schema from the catalog").await?;
    let ms = lock_timeout.as_millis().max(1);
    let parts = vec![
        (
            Part::Live,
            Request::Simple(format!("BEGIN READ ONLY; SET LOCAL lock_timeout = {ms}")),
        ),
        (Part::Live, Request::SetPath(facts.snapshot_path())),
        (Part::Live, Request::Snapshot(facts.live.clone())),
        (Part::Rollback, Request::Simple("ROLLBACK".into())),
    ];
    let rows = pipeline(client, &set_path, &query, &parts).await?;
    rows_to_snapshot(rows)
}

/// Prepared up front, so that each pipelined use is one message sent on the future's first
/// poll (an unprepared `query` waits for its Parse before sending the rest, and would run after
/// whatever was queued behind it, the ROLLBACK included).
async fn prepare(client: &Client, what: &str) -> Result<(Prepared, Prepared)> {
    let (a, b) = futures_util::future::join(
        client.prepare("SELECT pg_catalog.set_config('search_path', $1, true)"),
        client.prepare(snapshot::QUERY),
    )
    .await;
    let a = a.map_err(|e| Error::sql(what.to_string(), &e))?;
    let b = b.map_err(|e| Error::sql(what.to_string(), &e))?;
    Ok((a, b))
}

/// Which part of the pipeline a message is, for naming an error.
enum Part<'b, 'c> {
    Live,
    Setup,
    Extension(&'b str),
    Step(&'b Statement<'c>),
    Scratch,
    Rollback,
}

enum Request {
    Simple(String),
    /// `set_config('search_path', $1, true)`: the value as a parameter, never spliced.
    SetPath(String),
    /// The snapshot query for this main schema.
    Snapshot(String),
}

type Answer<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<Vec<Row>, tokio_postgres::Error>> + 'a>>;

/// Sends every request at once and reads the answers in order; returns the snapshot's rows.
/// After a failure the server refuses the rest (the transaction is aborted): the first error is
/// the one reported. The final ROLLBACK's answer is not awaited: if it never arrived, the server
/// would roll back when the session ends, as after a kill -9.
async fn pipeline(
    client: &Client,
    set_path: &Prepared,
    query: &Prepared,
    parts: &[(Part<'_, '_>, Request)],
) -> Result<Vec<Row>> {
    // tokio-postgres queues a request on its future's first poll: polling every future once,
    // in order, sends the whole pipeline before any answer is awaited.
    let mut answers: Vec<_> = parts
        .iter()
        .map(|(_, request)| {
            let answer: Answer<'_> = match request {
                Request::Simple(sql) => {
                    Box::pin(async move { client.simple_query(sql).await.map(|_| Vec::new()) })
                }
                Request::SetPath(path) => {
                    Box::pin(async move { client.query(set_path, &[path]).await })
                }
                Request::Snapshot(schema) => {
                    Box::pin(async move { client.query(query, &[schema]).await })
                }
            };
            maybe_done(answer)
        })
        .collect();
    std::future::poll_fn(|cx| {
        for answer in &mut answers {
            let _ = Pin::new(answer).poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut snapshot = Vec::new();
    for ((part, request), answer) in parts.iter().zip(answers.iter_mut()) {
        if let Part::Rollback = part {
            break;
        }
        (&mut *answer).await;
        let Some(answer) = Pin::new(answer).take_output() else {
            continue;
        };
        let rows = answer.map_err(|e| part_error(part, &e))?;
        if let Request::Snapshot(_) = request {
            snapshot = rows;
        }
    }
    Ok(snapshot)
}

fn rows_to_snapshot(rows: Vec<Row>) -> Result<Snapshot> {
    Snapshot::from_rows(rows.iter().map(|row| {
        (0..5)
            .map(|i| row.try_get::<_, Option<String>>(i).ok().flatten())
            .collect::<Vec<_>>()
    }))
}

fn part_error(part: &Part<'_, '_>, err: &tokio_postgres::Error) -> Error {
    let Part::Step(statement) = part else {
        let what = match part {
            Part::Live if is_lock_timeout(err) => {
                return Error::Sql {
                    context: "reading the live schema from the catalog".into(),
                    detail: {
                        let mut d = SqlDetail::from_pg(err, None);
                        d.hint = Some(
                            "another session holds an ACCESS EXCLUSIVE lock on a live table (a \
                             migration or DDL in progress); PostgreSQL's catalog functions need \
                             ACCESS SHARE to print its definition. Retry when it is done, or \
                             raise --lock-timeout"
                                .into(),
                        );
                        d
                    },
                }
            }
            Part::Live => "reading the live schema from the catalog".to_string(),
            Part::Setup => "preparing the scratch database".to_string(),
            Part::Extension(name) => format!(
                "installing extension {name} in the scratch database (the live database has it \
                 and no applied migration creates it; installing it may need a superuser, or \
                 the extension to be trusted)"
            ),
            _ => "reading the scratch database's schema from the catalog".to_string(),
        };
        return Error::sql(what, err);
    };
    let m = statement.migration;
    let location = match crate::error::error_position(err) {
        Some(p) => m.location(&m.up, m.up.sql[..statement.offset].chars().count() + p),
        None => m.location(&m.up, m.up.sql[..statement.start].chars().count() + 1),
    };
    let mut detail = SqlDetail::from_pg(err, Some(location));
    let advice = if is_lock_timeout(err) {
        "the statement waited for a lock inside the scratch database; retry, or raise \
         --lock-timeout"
    } else {
        "it applied once, but does not rebuild in an empty database: it may depend on objects or \
         data that only the live database has (docs/verify.md); nothing was changed"
    };
    detail.hint = Some(match detail.hint.take() {
        Some(server) => format!("{server}\n{advice}"),
        None => advice.to_string(),
    });
    Error::Sql {
        context: format!(
            "verify could not rebuild migration {} in a scratch database",
            m.file
        ),
        detail,
    }
}
