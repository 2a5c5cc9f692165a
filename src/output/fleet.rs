//! A fleet run's report (`--targets`): each target's block on stderr as it ends (its progress
//! and errors, never interleaved with another's), then on stdout one document: in JSON
//! `{"targets": […], "exit_code", …}` with each target's usual document under `result`, or for
//! humans each target's usual output under a heading and a table with a row per target.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::{escape, table};
use crate::cli::Format;
use crate::error::Error;
use crate::report::ms;

/// One target's line of the report.
pub struct Row<'a, R> {
    pub name: &'a str,
    pub group: &'a str,
    /// None when the target was skipped.
    pub exit_code: Option<i32>,
    pub took: Option<Duration>,
    /// What the run changed or found, in a few words.
    pub summary: String,
    /// The command's human output for this target.
    pub detail: String,
    /// The command's report (its usual JSON document), when it made one.
    pub result: Option<&'a R>,
    pub error: Option<&'a Error>,
    /// The findings that made migrate refuse.
    pub lint: Option<&'a crate::lint::Report>,
}

/// The run as a whole.
pub struct Totals {
    pub exit_code: i32,
    pub interrupted: bool,
    pub parallel: usize,
    /// The most connections dhctl held at once, and what `parallel` allows.
    pub peak: usize,
    pub limit: usize,
    pub took: Duration,
}

/// A target's block on stderr, written at once when it ends: its progress lines (kept while it
/// ran) and its errors.
pub fn target_ended(name: &str, group: &str, progress: &str, errors: &[&Error]) {
    if progress.is_empty() && errors.is_empty() {
        return;
    }
    let mut text = format!("── {} ({}) ──\n", escape::field(name), escape::field(group));
    text.push_str(progress);
    for err in errors {
        text.push_str(&format!("error: {}\n", escape::text(&err.to_string())));
        if let Some(hint) = err.hint() {
            text.push_str(&format!("hint: {}\n", escape::text(&hint)));
        }
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[derive(Serialize)]
struct Document<'a, R: Serialize> {
    targets: Vec<Entry<'a, R>>,
    exit_code: i32,
    interrupted: bool,
    parallel: usize,
    connections: Connections,
    duration_ms: f64,
}

#[derive(Serialize)]
struct Connections {
    peak: usize,
    limit: usize,
}

#[derive(Serialize)]
struct Entry<'a, R: Serialize> {
    name: &'a str,
    group: &'a str,
    exit_code: Option<i32>,
    skipped: bool,
    duration_ms: Option<f64>,
    summary: &'a str,
    result: Option<&'a R>,
    error: Option<serde_json::Value>,
    lint: Option<&'a crate::lint::Report>,
}

/// Prints the fleet's report on stdout.
pub fn emit<R: Serialize>(format: Format, rows: &[Row<'_, R>], totals: &Totals) {
    match format {
        Format::Json => {
            let doc = Document {
                targets: rows
                    .iter()
                    .map(|r| Entry {
                        name: r.name,
                        group: r.group,
                        exit_code: r.exit_code,
                        skipped: r.exit_code.is_none(),
                        duration_ms: r.took.map(ms),
                        summary: &r.summary,
                        result: r.result,
                        error: r.error.map(|e| super::error_body(e, e.hint().as_deref())),
                        lint: r.lint,
                    })
                    .collect(),
                exit_code: totals.exit_code,
                interrupted: totals.interrupted,
                parallel: totals.parallel,
                connections: Connections {
                    peak: totals.peak,
                    limit: totals.limit,
                },
                duration_ms: ms(totals.took),
            };
            super::write_json(&doc);
        }
        Format::Human | Format::Github => super::write_stdout(&human(rows, totals)),
    }
}

fn human<R>(rows: &[Row<'_, R>], totals: &Totals) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.detail.trim().is_empty()) {
        out.push_str(&format!(
            "── {} ({}) ──\n{}",
            escape::field(r.name),
            escape::field(r.group),
            escape::text(&r.detail)
        ));
        if !r.detail.ends_with('\n') {
            out.push('\n');
        }
    }
    let mut t = table::table(&["name", "group", "outcome", "duration", "summary"]);
    for r in rows {
        let outcome = match r.exit_code {
            None => "skipped".to_string(),
            Some(0) => "ok".to_string(),
            Some(130) => "interrupted (130)".to_string(),
            Some(code) => format!("failed ({code})"),
        };
        let took = r
            .took
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_default();
        let summary = match r.error {
            Some(e) if r.summary.is_empty() => e.to_string(),
            _ => r.summary.clone(),
        };
        t.add_row(vec![
            table::cell(r.name),
            table::cell(r.group),
            table::cell(outcome),
            table::cell(took),
            table::lines_cell(&summary),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    let ran = rows.iter().filter(|r| r.exit_code.is_some()).count();
    let failed = rows
        .iter()
        .filter(|r| r.exit_code.is_some_and(|c| c != 0))
        .count();
    out.push_str(&format!(
        "{ran} of {} target(s) ran, {failed} failed, {} skipped{}; exit {} in {:.1} s (at most {} connection(s) at once, {} allowed)\n",
        rows.len(),
        rows.len() - ran,
        if totals.interrupted { ", interrupted" } else { "" },
        totals.exit_code,
        totals.took.as_secs_f64(),
        totals.peak,
        totals.limit,
    ));
    out
}
