//! Where verify rebuilds the applied migrations: a scratch DATABASE on the same server, never the
//! live one. The rebuild then cannot read, write or lock a live object, whatever the migrations
//! name (`public.x`, `CREATE TABLE IF NOT EXISTS`, other schemas), and what is not transactional
//! stays in the scratch database too: sequences (`setval`, `nextval`), advisory locks and
//! `NOTIFY` are per database. Same server, so roles (for GRANTs) and the extensions' files are
//! there.
//!
//! Two ways to get one:
//! - [`Scratch::Database`]: `CREATE DATABASE dhctl_verify_<pid>_<random>` from `template0`, with
//!   the live database's encoding and locale, when the role may create databases; dropped on
//!   every path (`WITH (FORCE)`), on Ctrl-C too ([`drop_after_interrupt`]). A `kill -9` can leave
//!   one behind: the name carries the creating backend's pid, and the next verify by the same
//!   role drops those whose creator is gone and to which nobody is connected.
//! - [`Scratch::Url`]: `--scratch-url`, an empty database the role may create in; refused unless
//!   empty, and left empty (everything is built in one transaction that is rolled back).
//!
//! The replay is pipelined: every statement is sent at once, each as its own simple query (so an
//! error names its statement and line), and the answers are read in order. In a created database
//! each migration commits before the next, as under `migrate`; in a --scratch-url database all
//! is one transaction, rolled back. The live database is read with the same catalog query in a READ ONLY transaction, under
//! the same `search_path`, so both print the same text for the same definitions.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::maybe_done;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement as Prepared};

use super::replay::{Build, Statement};
use super::snapshot::{self, Snapshot};
use crate::config::DbConfig;
use crate::db::ident::quote_ident;
use crate::db::retry::is_lock_timeout;
use crate::db::{connect, CreateDatabase, Session};
use crate::error::{Error, Result, SqlDetail};
use crate::migrations::history;

/// Where the schema check rebuilt the migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scratch {
    /// A database verify created for this run and dropped after it.
    Database,
    /// The empty database given with `--scratch-url`.
    Url,
}

/// `--scratch-url`, parsed. Its Debug never shows the password.
#[derive(Clone)]
pub struct ScratchUrl {
    pub pg: tokio_postgres::Config,
    pub tls: crate::db::tls::TlsSettings,
}

impl std::fmt::Debug for ScratchUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScratchUrl({})", crate::config::describe(&self.pg))
    }
}

impl ScratchUrl {
    pub fn parse(url: &str) -> Result<ScratchUrl> {
        let (pg, tls) = crate::config::parse_database_url(url).map_err(|e| {
            // The parser's messages name the option, never echo the string (no password).
            Error::usage_hint(
                e.to_string().replace("DATABASE_URL", "--scratch-url"),
                "give an empty database on the same server, e.g. postgres://me@db/dhctl_scratch",
            )
        })?;
        Ok(ScratchUrl { pg, tls })
    }
}

/// What verify reads from the live database before anything else.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The main schema (where the history table is, or the first on search_path before one
    /// exists): its objects are named unqualified in reports.
    pub live: String,
    /// Schemas holding installed extensions, after the main one on the snapshots' search_path,
    /// so extension types and functions print unqualified on both sides.
    pub extension_schemas: Vec<String>,
    /// The live database's extensions other than plpgsql: (name, schema, version).
    pub extensions: Vec<(String, String, String)>,
    /// The search_path the role's sessions start with (what `migrate` ran the migrations with).
    pub replay_path: String,
    /// A standby, or default_transaction_read_only: no database can be created from here.
    pub read_only: bool,
    /// The role has CREATEDB (or is a superuser).
    pub may_create_database: bool,
}

impl Facts {
    /// The snapshots' search_path: the main schema, then the extension schemas, quoted.
    pub fn snapshot_path(&self) -> String {
        std::iter::once(self.live.as_str())
            .chain(
                self.extension_schemas
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != self.live),
            )
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads the [`Facts`] (one round trip).
pub async fn facts(client: &Client) -> Result<Facts> {
    let rows = client
        .query(
            "SELECT coalesce((SELECT n.nspname FROM pg_class c \
                              JOIN pg_namespace n ON n.oid = c.relnamespace \
                              WHERE c.oid = to_regclass($1)), current_schema())::text, \
                    ARRAY(SELECT DISTINCT n.nspname::text FROM pg_extension e \
                          JOIN pg_namespace n ON n.oid = e.extnamespace \
                          WHERE n.nspname <> 'pg_catalog' ORDER BY 1), \
                    (SELECT reset_val FROM pg_settings WHERE name = 'search_path'), \
                    current_setting('transaction_read_only') = 'on' OR pg_is_in_recovery(), \
                    coalesce((SELECT rolcreatedb OR rolsuper FROM pg_roles \
                              WHERE rolname = current_user), false), \
                    ARRAY(SELECT e.extname::text FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname), \
                    ARRAY(SELECT e.extnamespace::regnamespace::text FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname), \
                    ARRAY(SELECT e.extversion FROM pg_extension e \
                          WHERE e.extname <> 'plpgsql' ORDER BY e.extname)",
            &[&history::TABLE],
        )
        .await
        .map_err(|e| Error::sql("reading the live database's settings", &e))?;
    let row = rows
        .first()
        .ok_or_else(|| Error::usage("the live database returned no settings (a dhctl bug)"))?;
    let live: Option<String> = row.get(0);
    let live = live.ok_or_else(|| {
        Error::usage_hint(
            "there is no schema to verify: no refinery_schema_history table, and no schema on \
             search_path exists",
            "run `dhctl migrate`, or set the role's search_path to the gateway's schema",
        )
    })?;
    let (names, schemas, versions): (Vec<String>, Vec<String>, Vec<String>) =
        (row.get(5), row.get(6), row.get(7));
    Ok(Facts {
        live,
        extension_schemas: row.get(1),
        replay_path: row.get::<_, Option<String>>(2).unwrap_or_default(),
        read_only: row.get(3),
        may_create_database: row.get(4),
        extensions: names
            .into_iter()
            .zip(schemas)
            .zip(versions)
            .map(|((name, schema), version)| (name, schema, version))
            .collect(),
    })
}

/// Why there is no scratch database, and how to get one.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub reason: String,
    pub fix: String,
}

/// A scratch database, open.
pub struct ScratchDb {
    session: Session,
    pub kind: Scratch,
    /// The database verify created (and must drop).
    created: Option<String>,
    /// What happened on the way (stale databases dropped), for the schema check's notes.
    pub notes: Vec<String>,
}

/// The database a verify created, for dropping it after Ctrl-C (the future that owns it is
/// dropped then, so its own clean-up never runs).
static CREATED: Mutex<Option<(DbConfig, String)>> = Mutex::new(None);

/// Opens the scratch database: `url` when given, else a new database when the role may create
/// one; else says why not.
pub async fn open(
    cfg: &DbConfig,
    live: &Session,
    facts: &Facts,
    url: Option<&ScratchUrl>,
) -> Result<std::result::Result<ScratchDb, Unavailable>> {
    if let Some(url) = url {
        return open_url(cfg, url).await.map(Ok);
    }
    const FIX: &str = "give the role CREATEDB (ALTER ROLE … CREATEDB), or pass --scratch-url \
                       (DHCTL_VERIFY_SCRATCH_URL) naming an empty database on the same server \
                       that the role may create objects in";
    if facts.read_only {
        return Ok(Err(Unavailable {
            reason: "the session is read-only (a standby, or default_transaction_read_only), so \
                     no scratch database can be created from it"
                .into(),
            fix: format!("run verify against the primary, or {FIX}"),
        }));
    }
    if !facts.may_create_database {
        return Ok(Err(Unavailable {
            reason: format!(
                "role {} may not create databases, and verify rebuilds the migrations in a \
                 scratch database (never in the live one)",
                live_user(cfg)
            ),
            fix: FIX.into(),
        }));
    }
    let client = &live.client;
    let notes = drop_stale(client).await;
    let name = scratch_name(live.backend_pid);
    let create = create_statement(live, &name).await?;
    if let Ok(mut slot) = CREATED.lock() {
        *slot = Some((cfg.clone(), name.clone()));
    }
    if let Err(e) = client.batch_execute(&create).await {
        forget_created();
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            return Ok(Err(Unavailable {
                reason: format!(
                    "the server refused CREATE DATABASE: {}",
                    crate::error::describe_driver_error(&e)
                ),
                fix: FIX.into(),
            }));
        }
        return Err(Error::sql(
            format!("creating the scratch database {name}"),
            &e,
        ));
    }
    let mut scratch_cfg = cfg.clone();
    scratch_cfg.pg.dbname(&name);
    scratch_cfg.wait = None;
    match connect(&scratch_cfg, CreateDatabase::Never).await {
        Ok(session) => Ok(Ok(ScratchDb {
            session,
            kind: Scratch::Database,
            created: Some(name),
            notes,
        })),
        Err(e) => {
            drop_database(client, &name).await;
            Err(e)
        }
    }
}

fn live_user(cfg: &DbConfig) -> String {
    cfg.pg.get_user().unwrap_or("(default)").to_string()
}

/// `--scratch-url`: connect, and refuse anything but an empty, writable database.
async fn open_url(cfg: &DbConfig, url: &ScratchUrl) -> Result<ScratchDb> {
    let mut scratch_cfg = cfg.clone();
    scratch_cfg.pg = url.pg.clone();
    scratch_cfg.tls = url.tls.clone();
    scratch_cfg.wait = None;
    let session = connect(&scratch_cfg, CreateDatabase::Never)
        .await
        .map_err(|e| match e {
            Error::MissingDatabase { name, target } => Error::usage_hint(
                format!("the --scratch-url database {name} does not exist on {target}"),
                format!(
                    "create it empty on the live database's server, owned by the role verify \
                     runs as: CREATE DATABASE {} OWNER …",
                    quote_ident(&name)
                ),
            ),
            other => other,
        })?;
    let row = session
        .client
        .query_one(
            "SELECT current_database()::text, \
                    concat_ws('; ', \
                      (SELECT 'schemas ' || string_agg(nspname::text, ', ' ORDER BY nspname) \
                       FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                         AND nspname NOT IN ('information_schema', 'public')), \
                      (SELECT 'extensions ' || string_agg(extname::text, ', ' ORDER BY extname) \
                       FROM pg_extension WHERE extname <> 'plpgsql'), \
                      (SELECT 'objects in schema public' WHERE \
                         EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = 'public'::regnamespace) \
                         OR EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'public'::regnamespace) \
                         OR EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = 'public'::regnamespace))), \
                    has_database_privilege(current_database(), 'CREATE') \
                      AND current_setting('transaction_read_only') = 'off' \
                      AND NOT pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(|e| Error::sql("inspecting the --scratch-url database", &e))?;
    let name: String = row.get(0);
    let contents: String = row.get(1);
    if !contents.is_empty() {
        return Err(Error::usage_hint(
            format!(
                "the --scratch-url database {name} is not empty ({contents}); verify rebuilds \
                 the migrations there and compares, so it must start empty"
            ),
            "point --scratch-url at an empty database (CREATE DATABASE dhctl_scratch OWNER …); \
             verify rolls back everything it builds there, so it stays empty",
        ));
    }
    if !row.get::<_, bool>(2) {
        return Err(Error::usage_hint(
            format!(
                "the --scratch-url database {name} is read-only or the role may not create \
                 schemas in it"
            ),
            "use a database on a primary that the role owns",
        ));
    }
    Ok(ScratchDb {
        session,
        kind: Scratch::Url,
        created: None,
        notes: Vec::new(),
    })
}

/// `CREATE DATABASE` for the scratch database: from template0 (nothing an administrator added to
/// template1), with the live database's encoding and locale, formatted by the server (`%I`,
/// `%L`) so no value is ever spliced into SQL here.
async fn create_statement(live: &Session, name: &str) -> Result<String> {
    // PostgreSQL 15 brought locale providers (and STRATEGY); 17 renamed daticulocale.
    let (icu, strategy) = match live.server_version {
        v if v >= 170000 => (
            "CASE d.datlocprovider WHEN 'i' THEN format(' LOCALE_PROVIDER icu ICU_LOCALE %L', d.datlocale) \
                                   WHEN 'b' THEN format(' LOCALE_PROVIDER builtin BUILTIN_LOCALE %L', d.datlocale) \
                                   ELSE '' END",
            " STRATEGY WAL_LOG",
        ),
        v if v >= 150000 => (
            "CASE d.datlocprovider WHEN 'i' THEN format(' LOCALE_PROVIDER icu ICU_LOCALE %L', d.daticulocale) \
                                   ELSE '' END",
            " STRATEGY WAL_LOG",
        ),
        _ => ("''", ""),
    };
    let sql = format!(
        "SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L LC_COLLATE %L \
                        LC_CTYPE %L', $1::text, pg_encoding_to_char(d.encoding), d.datcollate, \
                        d.datctype) || {icu} || '{strategy}' \
         FROM pg_database d WHERE d.datname = current_database()"
    );
    let row = live
        .client
        .query_one(&sql, &[&name])
        .await
        .map_err(|e| Error::sql("reading the live database's encoding and locale", &e))?;
    Ok(row.get(0))
}

/// Drops this role's scratch databases that an interrupted verify left behind: named like ours,
/// owned by the role, their creating backend gone and nobody connected. Best effort: what cannot
/// be dropped now (someone connected meanwhile) is left for the next run.
async fn drop_stale(client: &Client) -> Vec<String> {
    let stale = client
        .query(
            "SELECT d.datname::text FROM pg_database d \
             WHERE d.datname ~ '^dhctl_verify_[0-9]+_[0-9a-f]{16}$' \
               AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                               WHERE a.pid = split_part(d.datname, '_', 3)::int) \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[],
        )
        .await;
    let Ok(stale) = stale else { return Vec::new() };
    let mut notes = Vec::new();
    for row in stale {
        let name: String = row.get(0);
        // No FORCE: a session that connected since the query above keeps it.
        let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(&name));
        match client.batch_execute(&sql).await {
            Ok(()) => notes.push(format!(
                "dropped scratch database {name}, left behind by an interrupted verify"
            )),
            Err(e) => tracing::debug!(database = %name, error = %e, "stale scratch database kept"),
        }
    }
    notes
}

async fn drop_database(client: &Client, name: &str) -> Option<String> {
    // FORCE: the scratch session may not have finished closing yet (PostgreSQL 13+).
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    let outcome = client.batch_execute(&sql).await;
    forget_created();
    outcome.err().map(|e| {
        format!(
            "could not drop scratch database {name}: {}; the next verify drops it, or run \
             DROP DATABASE {} WITH (FORCE)",
            crate::error::describe_driver_error(&e),
            quote_ident(name)
        )
    })
}

fn forget_created() {
    if let Ok(mut slot) = CREATED.lock() {
        *slot = None;
    }
}

/// After Ctrl-C: drops the scratch database a verify had created, over a fresh connection to the
/// live database (the verify's own session went with its future). Best effort.
pub async fn drop_after_interrupt() {
    let entry = CREATED.lock().ok().and_then(|mut slot| slot.take());
    let Some((cfg, name)) = entry else { return };
    let mut cfg = cfg;
    cfg.wait = None;
    let attempt = async {
        let session = connect(&cfg, CreateDatabase::Never).await.ok()?;
        drop_database(&session.client, &name).await
    };
    if let Ok(Some(problem)) = tokio::time::timeout(Duration::from_secs(10), attempt).await {
        tracing::warn!("{problem}");
    }
}

impl ScratchDb {
    /// Closes the scratch session and drops the database verify created. A failure to drop is
    /// returned as a note (the next verify drops it), never hiding the report.
    pub async fn close(self, live: &Client) -> Vec<String> {
        let ScratchDb {
            session,
            created,
            mut notes,
            ..
        } = self;
        drop(session);
        if let Some(name) = created {
            notes.extend(drop_database(live, &name).await);
        }
        notes
    }

    /// Replays `build` in the scratch database and snapshots it; all in one transaction that
    /// is rolled back.
    pub async fn rebuild(
        &self,
        build: &Build<'_>,
        facts: &Facts,
        lock_timeout: Duration,
    ) -> Result<(Snapshot, Vec<String>)> {
        let client = &self.session.client;
        let (set_path, query) = prepare(client, "preparing the scratch database").await?;
        let mut notes = Vec::new();
        let ms = lock_timeout.as_millis().max(1);
        let begin = format!("BEGIN; SET LOCAL lock_timeout = {ms}");
        // In a database of its own, each migration commits before the next, as under
        // `migrate`: an enum value added by one migration may then be used by a later one
        // (PostgreSQL refuses a value in the transaction that added it). A --scratch-url
        // database must stay empty, so there everything is one transaction, rolled back.
        let per_migration = self.kind == Scratch::Database;
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
        client.prepare("SELECT set_config('search_path', $1, true)"),
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
        for answer in answers.iter_mut() {
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

/// `dhctl_verify_<pid>_<16 hex digits>`: the creating backend's pid, so a later verify can tell
/// a left-over (its creator gone) from one in use; random per run (the std hasher's random
/// keys), so two verifies never collide.
fn scratch_name(backend_pid: i32) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    format!("dhctl_verify_{backend_pid}_{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_fresh_and_carry_the_creator() {
        let (a, b) = (scratch_name(4242), scratch_name(4242));
        assert!(a.starts_with("dhctl_verify_4242_") && a.len() == 34, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_snapshot_path_puts_the_main_schema_first_and_quotes_every_name() {
        let facts = Facts {
            live: "public".into(),
            extension_schemas: vec!["public".into(), "ext\"s".into()],
            extensions: Vec::new(),
            replay_path: String::new(),
            read_only: false,
            may_create_database: true,
        };
        assert_eq!(facts.snapshot_path(), "\"public\", \"ext\"\"s\"");
    }
}
