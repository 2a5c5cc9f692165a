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
//!   one behind: the name carries the creating backend's pid and the database carries a marker
//!   comment ([`SCRATCH_MARKER`]), and the next verify by the same role drops the marked ones
//!   whose creator is gone and to which nobody is connected.
//! - [`Scratch::Url`]: `--scratch-url`, an empty database the role may create in; refused unless
//!   empty, and left empty (everything is built in one transaction that is rolled back).
//!
//! The replay itself and both snapshots are [`super::pipeline`]'s; what is read from the live
//! database first is [`super::live`]'s.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::live::Facts;
use crate::db::ident::quote_ident;
use crate::db::{connect, CreateDatabase, DbConfig, Session};
use crate::error::{Error, Result};

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
        write!(f, "ScratchUrl({})", crate::db::describe(&self.pg))
    }
}

impl ScratchUrl {
    pub fn parse(url: &str) -> Result<ScratchUrl> {
        let (pg, tls) = crate::config::parse_database_url(url, None).map_err(|e| {
            // The parser's messages name the option, never echo the string (no password).
            Error::usage_hint(
                e.to_string().replace("DATABASE_URL", "--scratch-url"),
                "give an empty database on the same server, e.g. postgres://me@db/dhctl_scratch",
            )
        })?;
        Ok(ScratchUrl { pg, tls })
    }
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

/// The comment verify puts on every scratch database it creates; only databases carrying it are
/// ever dropped as left-overs. Plain ASCII, no quote: it is spliced into COMMENT ON DATABASE.
pub const SCRATCH_MARKER: &str = "dhctl verify scratch database, dropped when verify ends";

/// The databases verify created and has not dropped yet (one per fleet target at most), for
/// dropping them after Ctrl-C (the futures that own them are dropped then, so their own clean-up
/// never runs).
static CREATED: Mutex<Vec<(DbConfig, String)>> = Mutex::new(Vec::new());

/// Opens the scratch database: `url` when given, else a new database when the role may create
/// one; else says why not.
pub async fn open(
    cfg: &DbConfig,
    live: &Session,
    facts: &Facts,
    url: Option<&ScratchUrl>,
) -> Result<std::result::Result<ScratchDb, Unavailable>> {
    const FIX: &str = "give the role CREATEDB (ALTER ROLE … CREATEDB), or pass --scratch-url \
                       (DHCTL_VERIFY_SCRATCH_URL) naming an empty database on the same server \
                       that the role may create objects in";
    if let Some(url) = url {
        return open_url(cfg, url).await.map(Ok);
    }
    if live.server.in_recovery {
        return Ok(Err(Unavailable {
            reason: "the server is a standby in recovery (read-only), so no scratch database \
                     can be created on it"
                .into(),
            fix: "run verify against the primary, or pass --scratch-url \
                  (DHCTL_VERIFY_SCRATCH_URL) naming an empty database on the primary (the same \
                  roles and extensions), where verify builds and rolls back; the other checks \
                  ran on the standby"
                .into(),
        }));
    }
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
    if let Ok(mut created) = CREATED.lock() {
        created.push((cfg.on_host_of(live), name.clone()));
    }
    if let Err(e) = client.batch_execute(&create).await {
        forget_created(&name);
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
    // The marker the stale-database clean-up looks for: a database a user named like ours (with
    // data in it) carries no such comment, so it is never dropped.
    let mark = format!(
        "COMMENT ON DATABASE {} IS '{SCRATCH_MARKER}'",
        quote_ident(&name)
    );
    if let Err(e) = client.batch_execute(&mark).await {
        drop_database(client, &name).await;
        return Err(Error::sql(
            format!("marking the scratch database {name} as verify's"),
            &e,
        ));
    }
    // On the server it was created on, whichever host of a multi-host URL that was.
    let mut scratch_cfg = cfg.on_host_of(live);
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
    // The scratch database is built in: with several hosts, the walk looks for the writable
    // primary (a single host keeps its own check below).
    if url.pg.get_hosts().len().max(url.pg.get_hostaddrs().len()) > 1 {
        scratch_cfg.access = crate::db::Access::Write;
    }
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
            "SELECT pg_catalog.current_database()::text, \
                    pg_catalog.concat_ws('; ', \
                      (SELECT 'schemas ' || pg_catalog.string_agg(nspname::text, ', ' ORDER BY nspname) \
                       FROM pg_namespace WHERE nspname::text !~ '^pg_' \
                         AND nspname NOT IN ('information_schema', 'public')), \
                      (SELECT 'extensions ' || pg_catalog.string_agg(extname::text, ', ' ORDER BY extname) \
                       FROM pg_extension WHERE extname <> 'plpgsql'), \
                      (SELECT 'objects in schema public' WHERE \
                         EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = 'public'::regnamespace) \
                         OR EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'public'::regnamespace) \
                         OR EXISTS (SELECT 1 FROM pg_type WHERE typnamespace = 'public'::regnamespace))), \
                    pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') \
                      AND pg_catalog.current_setting('transaction_read_only') = 'off' \
                      AND NOT pg_catalog.pg_is_in_recovery()",
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
            "CASE d.datlocprovider WHEN 'i' THEN pg_catalog.format(' LOCALE_PROVIDER icu ICU_LOCALE %L', d.datlocale) \
                                   WHEN 'b' THEN pg_catalog.format(' LOCALE_PROVIDER builtin BUILTIN_LOCALE %L', d.datlocale) \
                                   ELSE '' END",
            " STRATEGY WAL_LOG",
        ),
        v if v >= 150000 => (
            "CASE d.datlocprovider WHEN 'i' THEN pg_catalog.format(' LOCALE_PROVIDER icu ICU_LOCALE %L', d.daticulocale) \
                                   ELSE '' END",
            " STRATEGY WAL_LOG",
        ),
        _ => ("''", ""),
    };
    let sql = format!(
        "SELECT pg_catalog.format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L LC_COLLATE %L \
                        LC_CTYPE %L', $1::text, pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, \
                        d.datctype) || {icu} || '{strategy}' \
         FROM pg_database d WHERE d.datname = pg_catalog.current_database()"
    );
    let row = live
        .client
        .query_one(&sql, &[&name])
        .await
        .map_err(|e| Error::sql("reading the live database's encoding and locale", &e))?;
    Ok(row.get(0))
}

/// Drops this role's scratch databases that an interrupted verify left behind: named like ours,
/// carrying verify's marker comment (a database a user merely named like ours is never touched),
/// owned by the role, their creating backend gone and nobody connected. Best effort: what cannot
/// be dropped now (someone connected meanwhile) is left for the next run.
async fn drop_stale(client: &Client) -> Vec<String> {
    // The pid is compared as text, never cast: a name whose digits do not fit int4 would make
    // the cast fail and stop the clean-up for every database.
    let stale = client
        .query(
            "SELECT d.datname::text FROM pg_database d \
             WHERE d.datname::text ~ '^dhctl_verify_[0-9]+_[0-9a-f]{16}$' \
               AND pg_catalog.shobj_description(d.oid, 'pg_database') = $1 \
               AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
                               WHERE a.pid::text = pg_catalog.split_part(d.datname, '_', 3)) \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            &[&SCRATCH_MARKER],
        )
        .await;
    let stale = match stale {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "looking for stale scratch databases failed");
            return Vec::new();
        }
    };
    let mut notes = Vec::new();
    for row in stale {
        let name: String = row.get(0);
        // No FORCE: a session that connected since the query above keeps it.
        // No IF EXISTS either: when two fleet targets on one server both found it, only the one
        // whose DROP removed it says so (the other gets 3D000 and adds no note).
        let sql = format!("DROP DATABASE {}", quote_ident(&name));
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
    forget_created(name);
    outcome.err().map(|e| {
        format!(
            "could not drop scratch database {name}: {}; the next verify drops it, or run \
             DROP DATABASE {} WITH (FORCE)",
            crate::error::describe_driver_error(&e),
            quote_ident(name)
        )
    })
}

fn forget_created(name: &str) {
    if let Ok(mut created) = CREATED.lock() {
        created.retain(|(_, n)| n != name);
    }
}

/// After Ctrl-C: drops every scratch database a verify had created (one per fleet target at
/// most), each over a fresh connection to its live database (the verify's own session went with
/// its future), all at once. Best effort.
pub async fn drop_after_interrupt() {
    let entries = CREATED
        .lock()
        .map(|mut created| std::mem::take(&mut *created))
        .unwrap_or_default();
    futures_util::future::join_all(entries.into_iter().map(|(mut cfg, name)| async move {
        cfg.wait = None;
        let attempt = async {
            let session = connect(&cfg, CreateDatabase::Never).await.ok()?;
            drop_database(&session.client, &name).await
        };
        if let Ok(Some(problem)) = tokio::time::timeout(Duration::from_secs(10), attempt).await {
            tracing::warn!("{problem}");
        }
    }))
    .await;
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

    /// The connection to the scratch database, for [`super::pipeline::rebuild`].
    pub fn client(&self) -> &Client {
        &self.session.client
    }
}

/// `dhctl_verify_<pid>_<16 hex digits>`: the creating backend's pid, so a later verify can tell
/// a left-over (its creator gone) from one in use; 64 random bits per run, so two verifies never
/// collide.
fn scratch_name(backend_pid: i32) -> String {
    format!("dhctl_verify_{backend_pid}_{:016x}", rand::random::<u64>())
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
}
