//! The checks themselves: each turns the gathered [`Context`] into a pass, fail or skip with
//! details that name objects. One function per [`Kind`]; `run` dispatches.

use super::{compare, Check, Context, Expected, Kind, Status};
use crate::error::Result;
use crate::migrations::status::{self, Counts, Entry, State};
use crate::partitions::inspect;

impl Check {
    pub(super) fn new(name: Kind, status: Status, summary: impl Into<String>) -> Check {
        Check {
            name,
            status,
            summary: summary.into(),
            details: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Runs one check over the gathered facts.
pub async fn run(kind: Kind, ctx: &Context<'_>) -> Result<Check> {
    Ok(match kind {
        Kind::History => history_check(ctx),
        Kind::Pending => pending_check(ctx),
        Kind::Schema => schema_check(ctx),
        Kind::Partitions => partitions_check(ctx).await?,
        Kind::Fingerprint => fingerprint_check(ctx),
    })
}

fn history_check(ctx: &Context<'_>) -> Check {
    let counts = Counts::of(&ctx.entries);
    // Applied migrations newer than every file (the database ahead of this release) do not
    // stop migrate during a rolling deploy, but this database is not what these files say.
    if !counts.drift() && counts.ahead == 0 {
        let summary = if ctx.history_table {
            format!(
                "{} applied migration(s), each file unchanged",
                counts.applied
            )
        } else {
            "no migration applied yet (no refinery_schema_history table)".to_string()
        };
        return Check::new(Kind::History, Status::Pass, summary);
    }
    let mut check = Check::new(
        Kind::History,
        Status::Fail,
        format!(
            "{} modified, {} missing and {} ahead of this release of {} applied migration(s)",
            counts.modified,
            counts.missing,
            counts.ahead,
            counts.applied + counts.modified + counts.missing + counts.ahead
        ),
    );
    check.details = status::drift_message(&ctx.entries)
        .map(|m| m.lines().map(str::to_string).collect())
        .unwrap_or_default();
    check
        .details
        .extend(status::ahead(&ctx.entries).iter().map(|e| {
            format!(
                "migration {}_{} was applied by a newer release: no file here has its version",
                e.version, e.name
            )
        }));
    check
}

fn pending_check(ctx: &Context<'_>) -> Check {
    let pending: Vec<&Entry> = ctx
        .entries
        .iter()
        .filter(|e| matches!(e.state, State::Pending | State::OutOfOrder))
        .collect();
    if pending.is_empty() {
        return Check::new(Kind::Pending, Status::Pass, "no migration pending");
    }
    let out_of_order = pending
        .iter()
        .filter(|e| e.state == State::OutOfOrder)
        .count();
    let summary = if out_of_order == 0 {
        format!(
            "{} migration(s) not applied; run `dhctl migrate`",
            pending.len()
        )
    } else {
        format!(
            "{} migration(s) not applied, {out_of_order} of them out-of-order: {}",
            pending.len(),
            status::OUT_OF_ORDER_ADVICE
        )
    };
    let mut check = Check::new(Kind::Pending, Status::Fail, summary);
    check.details = pending
        .iter()
        .map(|e| match e.state {
            State::OutOfOrder => status::out_of_order_line(e),
            _ => format!("{}: pending", e.file.as_deref().unwrap_or(&e.name)),
        })
        .collect();
    check
}

fn schema_check(ctx: &Context<'_>) -> Check {
    let expected =
        match &ctx.expected {
            Expected::Built(expected) => expected,
            Expected::Drift => return Check::new(
                Kind::Schema,
                Status::Skipped,
                "not compared: the history check failed, so the SQL that was applied is unknown",
            ),
            Expected::Unavailable(why) => {
                let mut check = Check::new(
                    Kind::Schema,
                    Status::Skipped,
                    format!("not compared: {}", why.reason),
                );
                check.details = vec![format!("to run it: {}", why.fix)];
                return check;
            }
        };
    let differences = compare::differences(expected, &ctx.live);
    let mut check = if differences.is_empty() {
        Check::new(
            Kind::Schema,
            Status::Pass,
            format!(
                "schema {} matches the {} applied migration(s): {} table(s), {} object(s)",
                ctx.facts.live,
                ctx.applied,
                ctx.live.table_count(),
                ctx.live.objects.len()
            ),
        )
    } else {
        let mut check = Check::new(
            Kind::Schema,
            Status::Fail,
            format!(
                "{} difference(s) between schema {} and what the {} applied migration(s) produce",
                differences.len(),
                ctx.facts.live,
                ctx.applied
            ),
        );
        check.details = differences.iter().map(ToString::to_string).collect();
        check
    };
    check.notes.clone_from(&ctx.build_notes);
    check
}

fn fingerprint_check(ctx: &Context<'_>) -> Check {
    let actual = ctx.live.fingerprint();
    match &ctx.options.expect_fingerprint {
        Some(expected) if *expected != actual => {
            let mut check = Check::new(
                Kind::Fingerprint,
                Status::Fail,
                format!("{actual}, not the expected {expected}"),
            );
            check.details = vec![format!(
                "schema {} differs from the one fingerprinted as {expected}; run `dhctl verify` \
                 on both databases and compare",
                ctx.facts.live
            )];
            check
        }
        Some(_) => Check::new(
            Kind::Fingerprint,
            Status::Pass,
            format!("{actual} (as expected)"),
        ),
        None => Check::new(Kind::Fingerprint, Status::Pass, actual),
    }
}

/// Coverage of every policy's table, from `partitions::inspect` (read after the scratch
/// transaction's ROLLBACK, so it sees the live database).
async fn partitions_check(ctx: &Context<'_>) -> Result<Check> {
    if ctx.policies.is_empty() {
        return Ok(Check::new(
            Kind::Partitions,
            Status::Pass,
            "no partition policy",
        ));
    }
    let inspection = inspect(&ctx.session.client, ctx.policies, ctx.options.now).await?;
    let mut details = Vec::new();
    let mut runways = Vec::new();
    for table in &inspection.tables {
        let name = &table.table;
        details.extend(table.problems.iter().map(|p| format!("{name}: {p}")));
        let Some(coverage) = &table.coverage else {
            if table.problems.is_empty() {
                details.push(format!(
                    "{name}: cannot be read as {} describes it",
                    table.policy
                ));
            }
            continue;
        };
        for gap in &coverage.gaps {
            details.push(format!(
                "{name}: no partition for {} to {} (within the premake horizon, {}); run `dhctl partition create`",
                stamp(gap.from),
                stamp(gap.to),
                stamp(coverage.horizon)
            ));
        }
        details.extend(
            coverage
                .odd
                .iter()
                .map(|o| format!("{name}: partition {}: {}", o.name, o.problem)),
        );
        if coverage.runway < 1 {
            let until = coverage
                .covered_until
                .map(|t| format!("rows dated from {} on have no partition", stamp(t)))
                .unwrap_or_else(|| "the current period has no partition".to_string());
            details.push(format!(
                "{name}: runway {} period(s) ahead of {}; {until}; run `dhctl partition create`",
                coverage.runway,
                stamp(inspection.now)
            ));
        }
        runways.push(format!("{name} {} ahead", coverage.runway));
    }
    let (status, summary) = if details.is_empty() {
        (Status::Pass, format!("runway: {}", runways.join(", ")))
    } else {
        (
            Status::Fail,
            format!("{} problem(s) with partition coverage", details.len()),
        )
    };
    let mut check = Check::new(Kind::Partitions, status, summary);
    check.details = details;
    Ok(check)
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
