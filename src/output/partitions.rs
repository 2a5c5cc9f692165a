//! Human renderings of the partition reports. `create` and `prune` print one line per partition
//! changed and nothing at all when nothing changed, so a daily cron job mails nothing.

use super::escape;
use super::human::{cell, table};
use crate::partitions::period::sql_timestamp;
use crate::partitions::plan::Then;
use crate::partitions::{Action, Inspection, RunReport};
use chrono::{DateTime, Utc};

fn bound(b: Option<DateTime<Utc>>, edge: &str) -> String {
    b.map(sql_timestamp).unwrap_or_else(|| edge.to_string())
}

fn span(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    format!("[{}, {})", bound(from, "MINVALUE"), bound(to, "MAXVALUE"))
}

/// One line per action, in the past tense or, for a plan, the conditional.
fn describe(action: &Action, planned: bool) -> String {
    let (verb, rest) = match action {
        Action::Create { name, from, to } => (
            if planned { "would create" } else { "created" },
            format!("{} {}", escape::field(name), span(Some(*from), Some(*to))),
        ),
        Action::Detach {
            name,
            from,
            to,
            then,
        } => (
            match (planned, then) {
                (true, Then::Drop) => "would detach and drop",
                (true, Then::Keep) => "would detach (keeping the table)",
                (false, Then::Drop) => "detached and dropped",
                (false, Then::Keep) => "detached (table kept)",
            },
            format!("{} {}", escape::field(name), span(*from, Some(*to))),
        ),
        Action::Finalize {
            name,
            from,
            to,
            then,
        } => (
            match (planned, then) {
                (true, Then::Drop) => "would finish the pending detach of, and drop,",
                (true, Then::Keep) => "would finish the pending detach of",
                (false, Then::Drop) => "finished the pending detach of, and dropped,",
                (false, Then::Keep) => "finished the pending detach of",
            },
            format!("{} {}", escape::field(name), span(*from, *to)),
        ),
    };
    format!("{verb} {rest}")
}

/// `partition create` / `prune`: a line per partition; empty when nothing was done, except
/// that a dry run says so.
pub fn run(r: &RunReport) -> String {
    let mut out = String::new();
    for t in &r.tables {
        for step in &t.steps {
            let attempts = match step.attempts {
                Some(n) if n > 1 => format!(" after {n} attempts"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{}{attempts}\n",
                describe(&step.action, r.dry_run)
            ));
        }
        for action in &t.not_done {
            out.push_str(&format!("not done: {}\n", describe(action, true)));
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
            let until = c
                .covered_until
                .map(sql_timestamp)
                .unwrap_or_else(|| "nothing (no partition holds now)".into());
            out.push_str(&format!(
                "runway: {} {}(s) after the current one; rows can be written until {until}\n",
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
        for action in t.would_create.iter().chain(&t.would_prune) {
            out.push_str(&format!("{}\n", describe(action, true)));
        }
        for problem in &t.problems {
            out.push_str(&format!("problem: {problem}\n"));
        }
        out.push('\n');
    }
    out
}
