//! `dhctl partition drain-default`: moves the rows a DEFAULT partition holds into partitions of
//! their own, period by period, so that create can attach those periods and the default can be
//! dropped (pg_partman's `partition_data_time`).
//!
//! Each period: build its partition standalone (as create does), move rows into it in batches
//! of `--batch` (each batch its own short transaction: `DELETE … RETURNING` from the default
//! feeding an INSERT, `FOR UPDATE SKIP LOCKED` so a row another session is updating waits for
//! the next batch), then one short transaction that locks the parent against writes (inserts
//! wait for it, reads do not), moves the last rows and attaches the partition.
//! Rows of the period being drained are in the standalone table, invisible through the parent,
//! from their batch until that attach.

use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::apply::{self, Partitioned};
use super::child;
use super::live::{self, DefaultPartition, Parent, Snapshot};
use super::plan::{Action, Clocks};
use super::policy::Policy;
use super::tables::{parent, MissingTable, TablePlan};
use super::{table_run, Header, Maintenance, Step};
use crate::db::ident::{quote_ident, quote_literal};
use crate::db::retry::{is_lock_timeout, retrying};
use crate::db::{connect, CreateDatabase, DbConfig, Locked};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::report::{ms, Mode};

/// The rows moved per batch when `--batch` is not given: small enough that each batch is a short
/// transaction, large enough that a period of a few million rows takes minutes, not hours.
pub const DEFAULT_BATCH: u32 = 5_000;

/// Options of `partition drain-default`.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    pub batch: u32,
    pub mode: Mode,
}

/// `dhctl partition drain-default --table T`.
pub async fn drain_default(
    cfg: &DbConfig,
    policy: &Policy,
    options: &DrainOptions,
    progress: &dyn Progress,
) -> Result<Maintenance> {
    let started = Instant::now();
    let policies = std::slice::from_ref(policy);
    let session = connect(cfg, CreateDatabase::Never).await?;
    let first = live::read(&session.client, policies).await?;
    let header = Header {
        cfg,
        clocks: Clocks::at(None, first.server_now),
        mode: options.mode,
        started,
    };
    let first_plan = plan(policy, &first);
    if options.mode == Mode::DryRun || first_plan.actions.is_empty() {
        return Ok(header.planned(vec![first_plan]));
    }
    drop(first_plan);
    let locked = Locked::lock(session, cfg).await?;
    let result = async {
        let client = &locked.session.client;
        let snapshot = live::read(client, policies).await?;
        let locked_plan = plan(policy, &snapshot);
        Ok(run(client, header, locked_plan, options.batch, progress).await)
    }
    .await;
    locked.finish(result).await
}

/// One Drain action per period the default holds rows of, oldest first.
fn plan<'p>(policy: &'p Policy, snapshot: &Snapshot) -> TablePlan<'p> {
    let found = &snapshot.tables[0];
    let parent = match parent(policy, found, MissingTable::Refuse) {
        Ok(parent) => parent,
        Err(refused) => return *refused,
    };
    let mut plan = TablePlan::new(policy, None);
    match &parent.default_partition {
        None => plan.notes.push(format!(
            "{} has no DEFAULT partition: nothing to drain",
            policy.table
        )),
        Some(default) => {
            for period in &default.rows {
                let Some(to) = policy.interval.next(period.from) else {
                    continue;
                };
                let name = policy.interval.child_name(&policy.table, period.from);
                let overlapping = parent.partitions.iter().find(|e| {
                    e.from.is_none_or(|f| f < to) && e.to.is_none_or(|t| t > period.from)
                });
                if let Some(e) = overlapping {
                    plan.refusal = Some(Error::usage_hint(
                        format!(
                            "{}: the DEFAULT partition holds rows of [{}, {}), which partition \
                             {} overlaps in part; nothing was moved",
                            policy.table,
                            super::period::sql_timestamp(period.from),
                            super::period::sql_timestamp(to),
                            e.describe()
                        ),
                        "re-bound that partition on whole periods (docs/partitions.md, \
                         \"Foreign partitions\"), then drain again",
                    ));
                    plan.actions.clear();
                    break;
                }
                plan.actions.push(Action::Drain {
                    name,
                    from: period.from,
                    to,
                    rows: period.rows,
                });
            }
            if let Some(stranded) = default.stranded() {
                plan.notes.push(format!(
                    "the DEFAULT partition {}.{} holds {stranded}: drain-default cannot move \
                     them (no partition of whole periods holds them); they block no partition, \
                     but the default cannot be dropped until they are moved or deleted by hand",
                    default.schema, default.name
                ));
            } else if plan.actions.is_empty() && plan.refusal.is_none() {
                plan.notes.push(empty_note(default));
            }
        }
    }
    plan.parent = Some(parent);
    plan
}

fn empty_note(default: &DefaultPartition) -> String {
    format!(
        "the DEFAULT partition {}.{} holds no rows; drop it (DROP TABLE) so that prune can \
         detach concurrently and no ATTACH has to scan it",
        default.schema, default.name
    )
}

async fn run(
    client: &Client,
    header: Header<'_>,
    plan: TablePlan<'_>,
    batch: u32,
    progress: &dyn Progress,
) -> Maintenance {
    let mut table = table_run(&plan);
    let mut failures = Vec::new();
    if let (Some(parent), Some(default)) = (
        &plan.parent,
        plan.parent
            .as_ref()
            .and_then(|p| p.default_partition.as_ref()),
    ) {
        let target = Partitioned {
            schema: &parent.schema,
            table: &parent.table,
            oid: parent.oid,
            column: &plan.policy.column,
        };
        for action in plan.actions {
            let Action::Drain { name, from, to, .. } = &action else {
                continue;
            };
            let began = Instant::now();
            let period = Period {
                name,
                from: *from,
                to: *to,
            };
            match period
                .drain(
                    client,
                    &target,
                    parent,
                    default,
                    batch,
                    header.cfg.lock_retries,
                    progress,
                )
                .await
            {
                Ok((rows, attempts)) => table.steps.push(Step {
                    action: Action::Drain {
                        name: name.clone(),
                        from: *from,
                        to: *to,
                        rows,
                    },
                    attempts: Some(attempts),
                    duration_ms: Some(ms(began.elapsed())),
                }),
                Err(e) => {
                    table.not_done.push(action.clone());
                    table.error = Some(e.to_string());
                    table.hint = e.hint();
                    table.exit_code = e.exit_code();
                    failures.push(e);
                    break;
                }
            }
        }
        if failures.is_empty() {
            let left: i64 = client
                .query_one(
                    &format!(
                        "SELECT pg_catalog.count(*) FROM {}.{}",
                        quote_ident(&default.schema),
                        quote_ident(&default.name)
                    ),
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(-1);
            if left == 0 {
                table.notes.push(empty_note(default));
            }
        }
    }
    Maintenance {
        report: Header {
            mode: Mode::Apply,
            ..header
        }
        .report(vec![table]),
        failures,
    }
}

struct Period<'a> {
    name: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period<'_> {
    /// Returns the rows moved and the most attempts any step needed.
    #[allow(clippy::too_many_arguments)]
    async fn drain(
        &self,
        client: &Client,
        target: &Partitioned<'_>,
        parent: &Parent,
        default: &DefaultPartition,
        batch: u32,
        retries: u32,
        progress: &dyn Progress,
    ) -> Result<(i64, u32)> {
        let name = self.name;
        let child = format!("{}.{}", quote_ident(&parent.schema), quote_ident(name));
        let props = child::properties(client, target).await?;
        let mut attempts = 1;
        // A standalone table of this name with dhctl's bounds CHECK is an earlier drain that
        // stopped before its attach: carry on with it (it may already hold rows).
        let resumed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint \
                 WHERE conrelid = pg_catalog.to_regclass($1)::oid AND conname = 'dhctl_partition_bounds')",
                &[&child],
            )
            .await
            .map_err(|e| Error::sql(format!("looking for an earlier drain into {name}"), &e))?
            .get(0);
        if !resumed {
            let sql = child::standalone_sql(target, name, self.from, self.to, &props);
            attempts = apply::retry(client, &sql, retries, progress, name)
                .await
                .map_err(|(e, n)| {
                    apply::failed(
                        format!(
                            "creating partition {name} of {} to drain into",
                            target.table
                        ),
                        target,
                        &e,
                        n,
                        Some(format!(
                            "a relation named {name} may already exist in schema {}; run \
                             `dhctl partition status` to see what it is",
                            target.schema
                        )),
                    )
                })?;
        }
        let columns = self.columns(client, parent).await?;
        let source = format!(
            "{}.{}",
            quote_ident(&default.schema),
            quote_ident(&default.name)
        );
        let column = quote_ident(target.column);
        let moving = format!(
            "WITH moved AS (DELETE FROM {source} WHERE ctid IN (SELECT ctid FROM {source} \
             WHERE {column} >= $1 AND {column} < $2 LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {columns}) INSERT INTO {child} ({columns}) SELECT {columns} FROM moved"
        );
        let size = i64::from(batch.max(1));
        let mut moved = 0i64;
        loop {
            let (n, tries) = retrying(
                retries,
                is_lock_timeout,
                &|attempt| progress.retrying(name, attempt, "lock_timeout"),
                async || {
                    client
                        .execute(&moving, &[&self.from, &self.to, &size])
                        .await
                },
            )
            .await
            .map_err(|(e, n)| self.stopped(target, &e, n, moved))?;
            attempts = attempts.max(tries);
            moved += n as i64;
            if (n as i64) < size {
                break;
            }
        }
        // The last rows and the attach in one transaction, with the parent locked against
        // writes (reads go on): an insert already routed to the default and waiting for it
        // would otherwise fail once the attach narrows the default ("violates partition
        // constraint"); blocked at the parent, it is routed after the commit, to the new
        // partition. The lock lasts for moving the last (< one batch of) rows and ATTACH's scan
        // of what is left in the default, and waits for it no longer than lock_timeout.
        let (lo, hi) = (
            quote_literal(&super::period::sql_timestamp(self.from)),
            quote_literal(&super::period::sql_timestamp(self.to)),
        );
        let last = format!(
            "LOCK TABLE {} IN EXCLUSIVE MODE;\n\
             WITH moved AS (DELETE FROM {source} WHERE {column} >= {lo} AND {column} < {hi} \
             RETURNING {columns}) INSERT INTO {child} ({columns}) SELECT {columns} FROM moved;\n{}",
            target.parent(),
            child::attach_sql(target, name, self.from, self.to, &props)
        );
        let tries = apply::retry(client, &last, retries, progress, name)
            .await
            .map_err(|(e, n)| self.stopped(target, &e, n, moved))?;
        let total: i64 = client
            .query_one(&format!("SELECT pg_catalog.count(*) FROM {child}"), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(moved);
        Ok((total, attempts.max(tries)))
    }

    /// The parent's columns a row is copied by: not dropped, not generated (the new partition
    /// computes those itself).
    async fn columns(&self, client: &Client, parent: &Parent) -> Result<String> {
        let rows = client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 \
                 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                &[&parent.oid],
            )
            .await
            .map_err(|e| Error::sql(format!("reading the columns of {}", parent.table), &e))?;
        Ok(rows
            .iter()
            .map(|r| quote_ident(r.get::<_, &str>(0)))
            .collect::<Vec<_>>()
            .join(", "))
    }

    fn stopped(
        &self,
        target: &Partitioned<'_>,
        e: &tokio_postgres::Error,
        attempts: u32,
        moved: i64,
    ) -> Error {
        apply::failed(
            format!(
                "draining the DEFAULT partition of {} into {}",
                target.table, self.name
            ),
            target,
            e,
            attempts,
            Some(format!(
                "{moved} row(s) of the period are in {}.{} (standalone, not yet a partition); \
                 run drain-default again to finish: it carries on with that table",
                target.schema, self.name
            )),
        )
    }
}
