//! Human renderings of the partition reports. `create` and `prune` print one line per partition
//! changed and nothing at all when nothing changed, so a daily cron job mails nothing.

use super::escape;
use super::table::{cell, table};
use crate::partitions::period::sql_timestamp;
use crate::partitions::plan::Then;
use crate::partitions::{Action, Inspection, Kept, RunReport};
use chrono::{DateTime, Utc};

fn bound(b: Option<DateTime<Utc>>, edge: &str) -> String {
    b.map(sql_timestamp).unwrap_or_else(|| edge.to_string())
}

fn span(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    format!("[{}, {})", bound(from, "MINVALUE"), bound(to, "MAXVALUE"))
}

/// A partition's name, schema-qualified when it lives outside its parent's schema.
fn partition_name(action: &Action, parent_schema: Option<&str>) -> String {
    match action.schema() {
        Some(schema) if Some(schema) != parent_schema => format!("{schema}.{}", action.name()),
        _ => action.name().to_string(),
    }
}

/// One line per action, in the past tense or, for a plan, the conditional.
fn describe(action: &Action, planned: bool, parent_schema: Option<&str>) -> String {
    let name = escape::field(&partition_name(action, parent_schema)).into_owned();
    let (verb, rest) = match action {
        Action::Create { from, to, .. } => (
            if planned { "would create" } else { "created" },
            format!("{name} {}", span(Some(*from), Some(*to))),
        ),
        Action::Detach { from, to, then, .. } => (
            match (planned, then) {
                (true, Then::Drop) => "would detach and drop",
                (true, Then::Keep) => "would detach (keeping the table)",
                (false, Then::Drop) => "detached and dropped",
                (false, Then::Keep) => "detached (table kept)",
            },
            format!("{name} {}", span(*from, Some(*to))),
        ),
        Action::Finalize { from, to, then, .. } => (
            match (planned, then) {
                (true, Then::Drop) => "would finish the pending detach of, and drop,",
                (true, Then::Keep) => "would finish the pending detach of",
                (false, Then::Drop) => "finished the pending detach of, and dropped,",
                (false, Then::Keep) => "finished the pending detach of (table kept)",
            },
            format!("{name} {}", span(*from, *to)),
        ),
        Action::Drain { from, to, rows, .. } => (
            if planned {
                "would move the DEFAULT partition's rows into new partition"
            } else {
                "moved the DEFAULT partition's rows into new partition"
            },
            format!(
                "{name} {} ({rows} row(s){})",
                span(Some(*from), Some(*to)),
                if planned { " counted now" } else { "" }
            ),
        ),
        Action::Reattach { from, to, .. } => (
            if planned {
                "would attach again (its detach was left pending on a period that takes writes)"
            } else {
                "attached again (its detach was left pending on a period that takes writes)"
            },
            format!("{name} {}", span(*from, *to)),
        ),
    };
    format!("{verb} {rest}")
}

/// `partition create` / `prune`: a line per partition, per partition kept and per note; empty
/// when nothing was done, except that a dry run says so. Errors go to stderr (main).
pub fn run(r: &RunReport) -> String {
    let mut out = String::new();
    for t in &r.tables {
        let schema = t.schema.as_deref();
        for step in &t.steps {
            let attempts = match step.attempts {
                Some(n) if n > 1 => format!(" after {n} attempts"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{}{attempts}\n",
                describe(&step.action, r.dry_run, schema)
            ));
        }
        for action in &t.not_done {
            out.push_str(&format!("not done: {}\n", describe(action, true, schema)));
        }
        for kept in &t.kept {
            out.push_str(&format!(
                "kept {}: {}\n",
                kept_name(kept, schema),
                kept.reason
            ));
        }
        for note in &t.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        if t.error.is_some() {
            out.push_str(&format!(
                "{}: failed (exit {}); the error is on stderr\n",
                t.table, t.exit_code
            ));
        }
    }
    if r.dry_run {
        if out.is_empty() {
            out.push_str("nothing to do\n");
        }
        out.push_str(&format!(
            "dry run at {}: nothing was changed\n",
            r.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    out
}

fn kept_name(kept: &Kept, parent_schema: Option<&str>) -> String {
    if Some(kept.schema.as_str()) == parent_schema {
        kept.name.clone()
    } else {
        format!("{}.{}", kept.schema, kept.name)
    }
}

/// The partition lines `migrate` adds after its own report (nothing when none were made).
pub fn ensured(r: &RunReport) -> String {
    run(r)
}

/// `partition status`: per table, a summary line, its partitions and the pending plan.
pub fn status(r: &Inspection) -> String {
    let mut out = String::new();
    for t in &r.tables {
        let retention = t
            .retention
            .map(|r| format!("retention {r} ({:?})", t.retention_mode).to_lowercase())
            .unwrap_or_else(|| "no retention".into());
        out.push_str(&format!(
            "{} — by {} on {}, premake {}, {retention}\n",
            t.table,
            t.interval.as_str(),
            t.column,
            t.premake
        ));
        if let Some(c) = &t.coverage {
            let now_covered = t.partitions.iter().any(|p| {
                !p.detach_pending
                    && p.from.is_none_or(|f| f <= r.now)
                    && p.to.is_none_or(|u| r.now < u)
            });
            let until = match (c.covered_until, now_covered) {
                (Some(until), _) => format!("rows can be written until {}", sql_timestamp(until)),
                (None, true) => "rows can be written with no end (a MAXVALUE bound)".into(),
                (None, false) if t.default_partition.is_some() => {
                    "no partition but the DEFAULT one takes rows of now".into()
                }
                (None, false) => "no partition takes rows of now".into(),
            };
            out.push_str(&format!(
                "runway: {} {}(s) after the current one; {until}\n",
                c.runway,
                t.interval.as_str()
            ));
            for gap in &c.gaps {
                out.push_str(&format!("gap: {}\n", span(Some(gap.from), Some(gap.to))));
            }
        }
        if !t.partitions.is_empty() {
            let mut grid = table(&["name", "from", "to", "notes"]);
            for p in &t.partitions {
                let mut notes = Vec::new();
                if p.detach_pending {
                    notes.push("detach pending".to_string());
                }
                if let Some(c) = &t.coverage {
                    notes.extend(
                        c.odd
                            .iter()
                            .filter(|o| o.name == p.name)
                            .map(|o| o.problem.clone()),
                    );
                }
                if t.would_prune.iter().any(|a| a.name() == p.name) {
                    notes.push("past retention".into());
                }
                grid.add_row(vec![
                    cell(&p.name),
                    cell(bound(p.from, "MINVALUE")),
                    cell(bound(p.to, "MAXVALUE")),
                    cell(notes.join("; ")),
                ]);
            }
            out.push_str(&format!("{grid}\n"));
        }
        let schema = t.schema.as_deref();
        for action in t.would_create.iter().chain(&t.would_prune) {
            out.push_str(&format!("{}\n", describe(action, true, schema)));
        }
        for kept in &t.would_keep {
            out.push_str(&format!(
                "would keep {}: {}\n",
                kept_name(kept, schema),
                kept.reason
            ));
        }
        for other in &t.others {
            let what = if other.what == "detached" {
                "a table named like a partition but not attached (kept by prune, or made by hand)"
                    .to_string()
            } else if other.what == "interrupted drain" {
                format!(
                    "left by an interrupted drain-default, holding moved rows; `dhctl partition \
                     drain-default --table {}` finishes it",
                    t.table
                )
            } else {
                other.what.clone()
            };
            out.push_str(&format!("{}.{}: {what}\n", other.schema, other.name));
        }
        if let Some(d) = &t.default_partition {
            out.push_str(&format!("DEFAULT partition {}.{}:", d.schema, d.name));
            if d.unreadable.is_some() {
                out.push_str(" rows not countable (see the problem below)\n");
            } else if d.is_empty() {
                out.push_str(" empty\n");
            } else {
                out.push('\n');
                for period in &d.rows {
                    out.push_str(&format!(
                        "  {} {} row(s)\n",
                        sql_timestamp(period.from),
                        period.rows
                    ));
                }
                if let Some(stranded) = d.stranded() {
                    let and = if d.rows.is_empty() { "" } else { "and " };
                    out.push_str(&format!("  {and}{stranded} (no period holds them)\n"));
                }
            }
        }
        for problem in &t.problems {
            out.push_str(&format!("problem: {problem}\n"));
        }
        out.push('\n');
    }
    out
}
