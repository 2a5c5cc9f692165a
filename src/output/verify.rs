//! The human rendering of `dhctl verify`: one table row per check, its problems and notes under
//! its summary (the fingerprint is the fingerprint row's), then a verdict line.

use super::table::{cell, lines_cell, table};
use crate::verify::{Status, VerifyReport};

pub fn human(r: &VerifyReport) -> String {
    let mut t = table(&["name", "status", "summary"]);
    for c in &r.checks {
        let result = match c.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
        };
        let mut details = c.summary.clone();
        for line in &c.details {
            details.push_str(&format!("\n• {line}"));
        }
        for note in &c.notes {
            details.push_str(&format!("\nnote: {note}"));
        }
        t.add_row(vec![
            cell(c.name.as_str()),
            cell(result),
            lines_cell(&details),
        ]);
    }
    let failed = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    let skipped: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .map(|c| c.name.as_str())
        .collect();
    let mut verdict = if failed == 0 && skipped.is_empty() {
        format!("all {} checks passed", r.checks.len())
    } else if failed == 0 {
        format!(
            "{} of {} checks passed",
            r.checks.len() - skipped.len(),
            r.checks.len()
        )
    } else {
        format!("{failed} of {} checks failed", r.checks.len())
    };
    if !skipped.is_empty() {
        let consequence = if r.require_all {
            "which --require-all makes a failure"
        } else {
            "not a failure without --require-all"
        };
        verdict.push_str(&format!(
            ", skipped: {} ({consequence})",
            skipped.join(", ")
        ));
    }
    format!(
        "{t}\n{} (schema {}): {verdict} in {:.1} ms\n",
        r.database, r.schema, r.duration_ms
    )
}
