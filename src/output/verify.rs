//! The human rendering of `dhctl verify`: one table row per check, its problems and notes under
//! its summary (the fingerprint is the fingerprint row's), then a verdict line.

use super::human::{cell, lines_cell, table};
use crate::verify::{Outcome, VerifyReport};

pub fn human(r: &VerifyReport) -> String {
    let mut t = table(&["name", "status", "summary"]);
    for c in &r.checks {
        let result = match c.status {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skipped",
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
    let failed = r
        .checks
        .iter()
        .filter(|c| c.status == Outcome::Fail)
        .count();
    let verdict = if r.passed {
        format!("all {} checks passed", r.checks.len())
    } else if failed == 0 {
        "not every check could run".to_string()
    } else {
        format!("{failed} of {} checks failed", r.checks.len())
    };
    format!(
        "{t}\n{} (schema {}): {verdict} in {:.1} ms\n",
        r.database, r.schema, r.duration_ms
    )
}
