//! Runs one section (an up or a down) and dhctl's bookkeeping for it, the way psql runs a file:
//! statement by statement, so that a failure names the statement that failed even when the
//! server gives no position. A transactional section runs in one transaction with its history
//! write; a `transaction:false` one runs each statement on its own, then writes history.
//!
//! Before the history write the session is put back into dhctl's own state
//! ([`crate::db::restore_session`]): whatever the migration SET (search_path, a role,
//! lock_timeout = 0, read-only defaults …) neither changes how dhctl records it nor outlives it.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::maybe_done;

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::catalog::{Section, Transaction};
use super::history;
use crate::db::ident::TableName;
use crate::db::inflight::{set_phase, Phase};
use crate::db::restore_session;
use crate::db::retry::{self, is_lock_timeout};

/// What dhctl records once the section ran.
pub enum Bookkeeping<'a> {
    /// An up section: insert the history row.
    Record {
        version: i64,
        name: &'a str,
        checksum: u64,
    },
    /// A down section: delete the history row.
    Erase { version: i64 },
}

/// How a section runs.
pub struct Run<'a> {
    pub client: &'a Client,
    pub table: &'a TableName,
    pub lock_timeout: Duration,
    pub retries: u32,
}

/// A failed section: the driver error and, when a statement of the section failed (rather than
/// dhctl's own bookkeeping), the byte offset where that statement's code starts.
#[derive(Debug)]
pub struct Failure {
    pub error: tokio_postgres::Error,
    pub statement: Option<usize>,
    pub attempts: u32,
    /// Which step failed, so that the message says what happened (see [`account`]).
    pub stage: Stage,
}

/// The step of running a section that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A statement of the section, or dhctl's check of what the section left (`statement` set).
    Section,
    /// Opening dhctl's transaction, or putting dhctl's session back after the section.
    Session,
    /// The history write (the INSERT of an up, the DELETE of a down).
    History,
    /// The check that dhctl still holds its advisory lock; `recorded`: the history write had
    /// already succeeded outside a transaction, so it stays.
    Lock { recorded: bool },
    /// The COMMIT of the section's transaction (a deferred constraint or trigger, a
    /// serialization failure).
    Commit,
}

impl Run<'_> {
    /// Runs `section` and `book`, retrying on lock_timeout (a whole transaction, or one
    /// statement of a `transaction:false` section). Returns the attempts made.
    pub async fn section(
        &self,
        section: &Section,
        book: &Bookkeeping<'_>,
        on_retry: &dyn Fn(u32),
    ) -> Result<u32, Failure> {
        match section.transaction {
            Transaction::Wrapped => {
                let lock_timeout = |f: &Failure| is_lock_timeout(&f.error);
                retry::retrying(self.retries, lock_timeout, on_retry, async || {
                    self.wrapped(section, book).await
                })
                .await
                .map(|((), attempts)| attempts)
                .map_err(|(failure, attempts)| Failure {
                    attempts,
                    ..failure
                })
            }
            Transaction::None => self.unwrapped(section, book, on_retry).await,
        }
    }

    /// A transactional section in two round trips, whatever its length: BEGIN with every
    /// statement behind it, then dhctl's session, its checks, the history write and COMMIT
    /// (one more round trip after each ROLLBACK TO SAVEPOINT, see [`rolls_back_to_savepoint`]).
    /// Statements are still sent one by one (as psql sends a file), so the first one that fails
    /// is the one an error names; the ones behind it are refused by the aborted transaction
    /// (25P02) and never run.
    async fn wrapped(&self, section: &Section, book: &Bookkeeping<'_>) -> Result<(), Failure> {
        let outcome = async {
            let statements = super::split::split(&section.sql);
            // The transaction's id, so that a section that ends it (COMMIT, ROLLBACK, END, a
            // procedure that commits) is caught instead of recorded as if nothing had happened.
            // Asked for right behind the section's leading SET TRANSACTION statements, which must
            // come before any query of the transaction, and before everything else. BEGIN goes
            // alone: it cannot fail in dhctl's clean session but with the connection, which the
            // statements behind it would then fail with too.
            let head = statements
                .iter()
                .take_while(|s| sets_transaction_mode(s.sql))
                .count();
            let (head, body) = statements.split_at(head);
            // ROLLBACK TO SAVEPOINT makes an aborted transaction usable again, so nothing may be
            // sent behind it before the statements ahead of it are known to have succeeded.
            let mut chunks = body.split_inclusive(|s| rolls_back_to_savepoint(s.sql));
            let first = chunks.next().unwrap_or_default();
            let (begun, head_outcomes, id, outcomes) = futures_util::future::join4(
                self.client.batch_execute("BEGIN"),
                self.pipeline(head),
                self.client
                    .simple_query("SELECT pg_catalog.txid_current()::pg_catalog.text"),
                self.pipeline(first),
            )
            .await;
            begun.map_err(|e| failure(e, None, Stage::Session))?;
            let mut failed = first_failure(head, head_outcomes);
            // Behind a failed SET TRANSACTION the id's query is refused (25P02) like the rest.
            let xid = match id {
                Ok(messages) => messages
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => {
                            row.get(0).and_then(|x| x.parse::<i64>().ok())
                        }
                        _ => None,
                    })
                    .unwrap_or(0),
                Err(_) if failed.is_some() => 0,
                Err(e) => return Err(failure(e, None, Stage::Session)),
            };
            failed = failed.or_else(|| first_failure(first, outcomes));
            for chunk in chunks {
                if failed.is_some() {
                    break;
                }
                failed = first_failure(chunk, self.pipeline(chunk).await);
            }
            if let Some((offset, error)) = failed {
                let mut failed = failure(error, Some(offset), Stage::Section);
                // Still in dhctl's (now aborted) transaction, the check fails with 25P02 and the
                // statement's own error stands; out of it, the escape is the error to report
                // (and no lock_timeout retry may run the committed part again).
                if let Err(e) = self.client.batch_execute(&escaped_sql(xid)).await {
                    if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_TRANSACTION_STATE)
                    {
                        failed.error = e;
                    }
                }
                return Err(failed);
            }
            self.finish(section, book, Finish::Transaction { xid })
                .await
        }
        .await;
        if outcome.is_err() {
            // Back to a clean session for a retry, or for whatever dhctl does next; if the
            // connection is gone there is nothing to clean.
            let _ = self.client.batch_execute("ROLLBACK").await;
            let _ = restore_session(self.client, self.lock_timeout).await;
        }
        outcome
    }

    /// Sends `statements` one message each, all at once; their outcomes in order.
    async fn pipeline(
        &self,
        statements: &[super::split::Statement<'_>],
    ) -> Vec<Result<(), tokio_postgres::Error>> {
        in_order(statements.iter().map(|s| self.client.batch_execute(s.sql))).await
    }

    async fn unwrapped(
        &self,
        section: &Section,
        book: &Bookkeeping<'_>,
        on_retry: &dyn Fn(u32),
    ) -> Result<u32, Failure> {
        // Cleared by hand, not by a guard's Drop: after SIGINT the runner's future is dropped
        // before main asks, and the phase must still say a section was in flight (so that the
        // interrupt says the statements before the cancelled one were kept).
        set_phase(Some(Phase::OutsideTransaction));
        let outcome = self.unwrapped_inner(section, book, on_retry).await;
        set_phase(None);
        outcome
    }

    async fn unwrapped_inner(
        &self,
        section: &Section,
        book: &Bookkeeping<'_>,
        on_retry: &dyn Fn(u32),
    ) -> Result<u32, Failure> {
        let attempts = async {
            let attempts = self
                .statements(section, on_retry, self.retries, true)
                .await?;
            // dhctl's session first, then dhctl's checks: under the migration's own settings a
            // `SET statement_timeout = 1` cancels the check, and the migration would stay
            // applied and unrecorded. (Inside a transaction the section left open this RESET
            // is rolled back with it, below.)
            restore_session(self.client, self.lock_timeout)
                .await
                .map_err(|e| failure(e, None, Stage::Session))?;
            // A section that opened a transaction and did not close it would take dhctl's
            // history row into that transaction, to be rolled back when the session ends.
            self.client
                .batch_execute(CLOSED_TRANSACTION)
                .await
                .map_err(|e| failure(e, Some(section.sql.len()), Stage::Section))?;
            Ok(attempts)
        }
        .await;
        let attempts = match attempts {
            Ok(attempts) => attempts,
            Err(failure) => {
                // ROLLBACK outside a transaction is only a warning.
                let _ = self.client.batch_execute("ROLLBACK").await;
                let _ = restore_session(self.client, self.lock_timeout).await;
                return Err(failure);
            }
        };
        self.finish(section, book, Finish::Restored).await?;
        Ok(attempts)
    }

    /// Sends each statement on its own, each retried up to `retries` times on lock_timeout
    /// (0 inside a transaction, which is retried whole). Returns the most attempts one took.
    /// With `settle`, the last statement is followed, in the same round trip, by
    /// [`SETTLE`]: a section whose last statement is `SET idle_session_timeout = 1` would
    /// otherwise get the session killed while dhctl's next message is on its way.
    async fn statements(
        &self,
        section: &Section,
        on_retry: &dyn Fn(u32),
        retries: u32,
        settle: bool,
    ) -> Result<u32, Failure> {
        let mut most = 1;
        let statements = super::split::split(&section.sql);
        let count = statements.len();
        for (i, statement) in statements.into_iter().enumerate() {
            let run = retry::batch_execute(self.client, statement.sql, retries, on_retry);
            let outcome = if settle && i + 1 == count {
                // Polled in order: the statement is sent first, SETTLE right behind it. Its
                // own outcome does not matter (the session is restored next anyway).
                let (outcome, _) =
                    futures_util::future::join(run, self.client.batch_execute(SETTLE)).await;
                outcome
            } else {
                run.await
            };
            match outcome {
                Ok(attempts) => most = most.max(attempts),
                Err((error, attempts)) => {
                    return Err(Failure {
                        error,
                        statement: Some(statement.offset),
                        attempts,
                        stage: Stage::Section,
                    })
                }
            }
        }
        Ok(most)
    }

    /// dhctl's bookkeeping after the section's statements, sent together: one round trip. In
    /// dhctl's transaction that is: restore dhctl's session (before dhctl's checks: a
    /// migration's `SET statement_timeout = 1` would cancel them), check the section did not
    /// leave the transaction, write history, check the lock, COMMIT. The results are judged in
    /// order: a COMMIT of a transaction that an earlier step aborted answers ROLLBACK without an
    /// error, so it never counts alone.
    async fn finish(
        &self,
        section: &Section,
        book: &Bookkeeping<'_>,
        how: Finish,
    ) -> Result<(), Failure> {
        let xid = match how {
            Finish::Transaction { xid } => Some(xid),
            Finish::Restored => None,
        };
        let restore = async {
            match xid {
                Some(_) => restore_session(self.client, self.lock_timeout).await,
                None => Ok(()),
            }
        };
        // In dhctl's transaction the escape and lock checks run as one block before the write;
        // outside one, the lock check follows the write, which then stands whatever it says.
        let checks = async {
            match xid {
                Some(xid) => {
                    self.client
                        .batch_execute(&transaction_checks_sql(xid))
                        .await
                }
                None => Ok(()),
            }
        };
        let write = async {
            // In dhctl's transaction the write also requires that transaction: a section that
            // escaped it fails the check above, and this write, running on its own and
            // committed at once, must then record nothing.
            let guard = xid.unwrap_or(0);
            match book {
                Bookkeeping::Record {
                    version,
                    name,
                    checksum,
                } => {
                    let checksum = checksum.to_string();
                    let mut params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = vec![
                        (version, Type::INT8),
                        (name, Type::TEXT),
                        (&checksum, Type::TEXT),
                    ];
                    let sql = match xid {
                        Some(_) => {
                            params.push((&guard, Type::INT8));
                            history::insert_in_transaction_sql(self.table)
                        }
                        None => history::insert_sql(self.table),
                    };
                    self.client.query_typed(&sql, &params).await
                }
                Bookkeeping::Erase { version } => {
                    let mut params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> =
                        vec![(version, Type::INT8)];
                    let sql = match xid {
                        Some(_) => {
                            params.push((&guard, Type::INT8));
                            history::delete_in_transaction_sql(self.table)
                        }
                        None => history::delete_sql(self.table),
                    };
                    self.client.query_typed(&sql, &params).await
                }
            }
        };
        let commit = async {
            match xid {
                Some(_) => self.client.batch_execute("COMMIT").await,
                None => Ok(()),
            }
        };
        let held = async {
            match xid {
                Some(_) => Ok(()),
                None => self.client.batch_execute(&still_locked_sql()).await,
            }
        };
        // Cancelling a COMMIT may leave it committed (it waits for a synchronous standby after
        // committing locally): an interrupt now must not claim a rollback.
        // Outside a transaction the phase stays the section's (set by `unwrapped`).
        if xid.is_some() {
            set_phase(Some(Phase::Committing));
        }
        let (restored, checked, written, held, committed) =
            futures_util::future::join5(restore, checks, write, held, commit).await;
        if xid.is_some() {
            set_phase(None);
        }
        restored.map_err(|e| failure(e, None, Stage::Session))?;
        checked.map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
            {
                failure(e, None, Stage::Lock { recorded: false })
            } else {
                failure(e, Some(section.sql.len()), Stage::Section)
            }
        })?;
        written.map_err(|e| failure(e, None, Stage::History))?;
        // Outside a transaction the history write stands even when the lock check fails.
        held.map_err(|e| failure(e, None, Stage::Lock { recorded: true }))?;
        committed.map_err(|e| failure(e, None, Stage::Commit))
    }
}

/// How [`Run::finish`] ends a section.
#[derive(Debug, Clone, Copy)]
enum Finish {
    /// The section ran in dhctl's transaction `xid`, which finish checks, restores and commits.
    Transaction { xid: i64 },
    /// The section ran outside a transaction and dhctl's session is already restored.
    Restored,
}

/// Runs `requests` as one pipeline: each is polled once, in order, which sends its message
/// (tokio-postgres sends on the first poll), before any answer is awaited; the answers come back
/// in the same order. join_all promises no polling order for long lists, so this does it by hand.
async fn in_order<F: Future>(requests: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = requests.map(|f| Box::pin(maybe_done(f))).collect();
    std::future::poll_fn(|cx| {
        for request in &mut pending {
            let _ = request.as_mut().poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::with_capacity(pending.len());
    for mut request in pending {
        request.as_mut().await;
        if let Some(output) = request.as_mut().take_output() {
            outputs.push(output);
        }
    }
    outputs
}

/// The first statement of `statements` whose outcome is an error: its offset and the error.
fn first_failure(
    statements: &[super::split::Statement<'_>],
    outcomes: Vec<Result<(), tokio_postgres::Error>>,
) -> Option<(usize, tokio_postgres::Error)> {
    statements
        .iter()
        .zip(outcomes)
        .find_map(|(statement, outcome)| outcome.err().map(|e| (statement.offset, e)))
}

/// Whether `statement` sets the current transaction's mode (`SET TRANSACTION …`, or the
/// transaction_isolation, transaction_read_only and transaction_deferrable settings), which
/// PostgreSQL refuses once the transaction ran a query (SQLSTATE 25001).
fn sets_transaction_mode(statement: &str) -> bool {
    let code = &statement[code_start(statement)..];
    let mut words = code
        .split(|c: char| c.is_whitespace() || c == ';' || c == '=')
        .filter(|w| !w.is_empty());
    if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("SET")) {
        return false;
    }
    let mut word = words.next().unwrap_or_default();
    if word.eq_ignore_ascii_case("LOCAL") || word.eq_ignore_ascii_case("SESSION") {
        word = words.next().unwrap_or_default();
    }
    [
        "TRANSACTION",
        "transaction_isolation",
        "transaction_read_only",
        "transaction_deferrable",
    ]
    .iter()
    .any(|name| word.eq_ignore_ascii_case(name))
}

/// Whether `statement` is `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`: the statement
/// that returns an aborted transaction to a savepoint, after which statements run again.
pub(crate) fn rolls_back_to_savepoint(statement: &str) -> bool {
    let code = &statement[code_start(statement)..];
    let mut words = code
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    if !words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("ROLLBACK"))
    {
        return false;
    }
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("WORK") || w.eq_ignore_ascii_case("TRANSACTION") => {
            words.next().is_some_and(|w| w.eq_ignore_ascii_case("TO"))
        }
        Some(w) => w.eq_ignore_ascii_case("TO"),
        None => false,
    }
}

/// The timeouts that could end dhctl's session, or cancel its bookkeeping, before it restores
/// the session after a `transaction:false` section: each SET is microseconds, well under any
/// timeout. idle_session_timeout exists from PostgreSQL 14 on; set only where it exists.
const SETTLE: &str = "SET statement_timeout = 0; \
    SELECT pg_catalog.set_config('idle_session_timeout', '0', false) \
    WHERE pg_catalog.current_setting('idle_session_timeout', true) IS NOT NULL";

/// Fails (SQLSTATE 25001) when the session is inside a transaction block that an earlier
/// statement opened: a transaction that started with this statement has its start time equal to
/// the statement's (docs: functions-datetime, "Current Date/Time").
const CLOSED_TRANSACTION: &str = "DO $$BEGIN \
    IF pg_catalog.now() OPERATOR(pg_catalog.<>) pg_catalog.statement_timestamp() THEN \
    RAISE EXCEPTION 'the section ends inside a transaction it opened (BEGIN without COMMIT)' \
    USING ERRCODE = '25001', HINT = 'end the section with COMMIT, or let dhctl run it in a transaction (remove transaction:false)'; \
    END IF; END$$";

/// Fails (SQLSTATE 25000) when the session is no longer in the transaction dhctl opened (`xid`):
/// the section ran COMMIT, ROLLBACK, ABORT or END (or a procedure committed), so part of it was
/// committed or lost, and what followed ran outside any transaction.
fn escaped_sql(xid: i64) -> String {
    format!("DO $$BEGIN {} END$$", escaped_check(xid))
}

fn escaped_check(xid: i64) -> String {
    format!(
        "IF pg_catalog.txid_current() OPERATOR(pg_catalog.<>) {xid}::pg_catalog.int8 THEN \
         RAISE EXCEPTION 'the section ended the transaction dhctl runs it in (COMMIT, ROLLBACK, ABORT or END): what ran before that point was committed or lost, and what came after ran outside any transaction' \
         USING ERRCODE = '25000', HINT = 'check the database by hand before running dhctl again; then remove the COMMIT or ROLLBACK (dhctl runs each migration in a transaction of its own), or mark the section transaction:false and write it to be rerun'; \
         END IF;"
    )
}

/// Fails (SQLSTATE 55000) unless this session still holds dhctl's advisory lock: a migration
/// that ran `pg_advisory_unlock_all()` or (outside a transaction) `DISCARD ALL` released it, and
/// other runners may be migrating at the same time. In a transaction this also undoes the
/// migration. The key is a compile-time constant, split as pg_locks shows it. It runs with the
/// database's search_path (writable schemas included): every operator is pg_catalog's, named,
/// so no operator another role planted (CVE-2018-1058) can run as the migrating role.
fn still_locked_sql() -> String {
    format!("DO $$BEGIN {} END$$", lock_check())
}

fn lock_check() -> String {
    let key = crate::db::lock::LOCK_KEY;
    format!(
        "IF NOT EXISTS (SELECT FROM pg_catalog.pg_locks \
           WHERE locktype OPERATOR(pg_catalog.=) 'advisory' \
           AND pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() AND granted \
           AND objsubid OPERATOR(pg_catalog.=) 1::pg_catalog.int2 \
           AND classid OPERATOR(pg_catalog.=) {}::pg_catalog.oid \
           AND objid OPERATOR(pg_catalog.=) {}::pg_catalog.oid) THEN \
         RAISE EXCEPTION 'the migration released dhctl''s advisory lock (pg_advisory_unlock_all() or DISCARD ALL): other runners may be migrating at the same time' \
         USING ERRCODE = '55000', HINT = 'remove that statement from the file; dhctl holds the lock for the whole run'; \
         END IF;",
        (key >> 32) as u32,
        (key & 0xffff_ffff) as u32
    )
}

/// Both checks of a transactional section, [`escaped_sql`] then [`still_locked_sql`], as one
/// anonymous block: PostgreSQL compiles every DO block afresh, so one costs half of two.
fn transaction_checks_sql(xid: i64) -> String {
    format!("DO $$BEGIN {} {} END$$", escaped_check(xid), lock_check())
}

fn failure(error: tokio_postgres::Error, statement: Option<usize>, stage: Stage) -> Failure {
    Failure {
        error,
        statement,
        attempts: 1,
        stage,
    }
}

/// What a failure outside the section's own statements means, in words: the error's context,
/// what of the migration stayed, and what to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Account {
    pub context: String,
    pub kept: String,
    pub advice: String,
}

/// [`Account`] for a failure at `stage` (not [`Stage::Section`]) of the up (`up`) or down
/// section of `file`, run in `mode`, with SQLSTATE `code`.
pub fn account(
    stage: Stage,
    code: Option<&tokio_postgres::error::SqlState>,
    mode: Transaction,
    up: bool,
    file: &str,
    table: &TableName,
) -> Account {
    use tokio_postgres::error::SqlState;
    let doing = if up { "migration" } else { "rolling back" };
    let (record, recorded, not_recorded) = if up {
        (
            format!("recording it in {table}"),
            format!("it was recorded in {table}"),
            "it was not recorded",
        )
    } else {
        (
            format!("removing it from {table}"),
            format!("it was removed from {table}"),
            "it is still recorded as applied",
        )
    };
    let section = if up { "it" } else { "the down section" };
    let nothing = match mode {
        Transaction::Wrapped => format!("nothing of {section} was kept"),
        Transaction::None => format!(
            "{section} runs outside a transaction (transaction:false): its statements were kept"
        ),
    };
    let again = if up {
        "dhctl migrate"
    } else {
        "dhctl rollback"
    };
    match stage {
        Stage::Commit => Account {
            context: format!("{doing} {file} failed at COMMIT"),
            kept: format!(
                "the transaction could not commit (a deferred constraint or trigger, or a \
                 serialization failure): nothing of {section} was kept and {not_recorded}"
            ),
            advice: format!("fix what the COMMIT rejected, then run {again} again"),
        },
        Stage::Lock { recorded: was } => Account {
            context: format!("{doing} {file} failed dhctl's check of its advisory lock"),
            kept: if mode == Transaction::Wrapped {
                format!("nothing of {section} was kept and {not_recorded}")
            } else if was {
                format!("{nothing}, and {recorded}")
            } else {
                format!("{nothing}, but {not_recorded}")
            },
            advice: "other runners may have migrated meanwhile: check dhctl status before \
                     running again"
                .into(),
        },
        Stage::History if code == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Account {
            context: format!(
                "{doing} {file} made its transaction read-only, so dhctl failed {record}"
            ),
            kept: format!("{nothing}; {not_recorded}"),
            advice: format!(
                "remove SET transaction_read_only / SET TRANSACTION READ ONLY from the file (dhctl \
                 writes history in the migration's transaction), then run {again} again"
            ),
        },
        Stage::History => Account {
            context: format!("{doing} {file} failed while {record}"),
            kept: format!("{nothing}; {not_recorded}"),
            advice: format!("check the role's privileges on {table}, then run {again} again"),
        },
        Stage::Session | Stage::Section => Account {
            context: format!(
                "{doing} {file} failed while dhctl opened its transaction or restored its session"
            ),
            kept: format!("{nothing}; {not_recorded}"),
            advice: format!(
                "run {again} again; if it repeats, the server ended the session (a timeout the \
                 role or database sets, or a terminated backend)"
            ),
        },
    }
}

/// Where a statement's code starts: past leading line and block comments, so that a failure
/// without a server position names the statement's own line rather than a comment above it.
pub fn code_start(sql: &str) -> usize {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| &after[n + 1..]);
        } else if trimmed.starts_with("/*") {
            match block_comment_end(trimmed) {
                Some(end) => rest = &trimmed[end..],
                None => return sql.len() - trimmed.len(),
            }
        } else {
            return sql.len() - trimmed.len();
        }
    }
}

/// The byte just past a (nested) block comment that opens `text`.
fn block_comment_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::error::SqlState;

    fn table() -> TableName {
        TableName::parse("public.refinery_schema_history").unwrap()
    }

    #[test]
    fn bookkeeping_failures_say_what_happened() {
        let t = table();
        let commit = account(Stage::Commit, None, Transaction::Wrapped, true, "f.sql", &t);
        assert!(commit.context.contains("failed at COMMIT"), "{commit:?}");
        assert!(commit.kept.contains("nothing of it was kept"), "{commit:?}");
        let ro = account(
            Stage::History,
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            Transaction::Wrapped,
            true,
            "f.sql",
            &t,
        );
        assert!(ro.context.contains("read-only"), "{ro:?}");
        assert!(!ro.advice.contains("privileges"), "{ro:?}");
        let lock = account(
            Stage::Lock { recorded: true },
            None,
            Transaction::None,
            true,
            "f.sql",
            &t,
        );
        assert!(lock.kept.contains("it was recorded"), "{lock:?}");
        let lock = account(
            Stage::Lock { recorded: false },
            None,
            Transaction::Wrapped,
            false,
            "f.sql",
            &t,
        );
        assert!(lock.kept.contains("still recorded as applied"), "{lock:?}");
        let history = account(Stage::History, None, Transaction::None, true, "f.sql", &t);
        assert!(history.advice.contains("privileges"), "{history:?}");
        assert!(history.kept.contains("were kept"), "{history:?}");
    }

    #[test]
    fn transaction_mode_settings_are_told_from_other_sets() {
        for yes in [
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "-- first\nset transaction read write",
            "SET LOCAL transaction_isolation = 'serializable'",
            "SET SESSION transaction_deferrable TO on",
            "SET transaction_read_only=off",
        ] {
            assert!(sets_transaction_mode(yes), "{yes}");
        }
        for no in [
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET LOCAL statement_timeout = 1",
            "SET default_transaction_isolation = 'serializable'",
            "SELECT 'SET TRANSACTION'",
        ] {
            assert!(!sets_transaction_mode(no), "{no}");
        }
    }

    #[test]
    fn rollback_to_savepoint_is_told_from_other_rollbacks() {
        for yes in [
            "ROLLBACK TO s",
            "rollback to savepoint s",
            "-- undo\n  Rollback Work To s",
            "ROLLBACK TRANSACTION\nTO SAVEPOINT s",
        ] {
            assert!(rolls_back_to_savepoint(yes), "{yes}");
        }
        for no in [
            "ROLLBACK",
            "ROLLBACK AND CHAIN",
            "ROLLBACK WORK",
            "SELECT 'ROLLBACK TO'",
        ] {
            assert!(!rolls_back_to_savepoint(no), "{no}");
        }
    }

    #[test]
    fn code_starts_after_leading_comments() {
        assert_eq!(code_start("GRANT x"), 0);
        let sql = "-- grant it\n  /* a /* nested */ note */\nGRANT x";
        assert_eq!(&sql[code_start(sql)..], "GRANT x");
        assert_eq!(code_start("-- only a comment"), "-- only a comment".len());
        let open = "/* never closed";
        assert_eq!(code_start(open), 0);
    }
}
