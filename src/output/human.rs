//! Human renderings of each report: comfy-table tables and one-line summaries.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};

use super::escape;
use crate::migrations::migrate::MigrateReport;
use crate::migrations::new::NewReport;
use crate::migrations::rollback::RollbackReport;
use crate::migrations::StatusReport;

/// Narrower than this, a terminal's reported width is not believed: a pty that reports 0 columns
/// (some CI runners, `stty cols 0`, a serial console) would make comfy-table squeeze every
/// column to one character, which is worse than not wrapping at all.
const MIN_TABLE_WIDTH: u16 = 20;

/// How a table fits the terminal: wrapped to a width that makes sense, else not wrapped.
pub(crate) fn arrangement(terminal_width: Option<u16>) -> ContentArrangement {
    match terminal_width {
        Some(width) if width >= MIN_TABLE_WIDTH => ContentArrangement::Dynamic,
        _ => ContentArrangement::Disabled,
    }
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    if std::env::var_os("NO_COLOR").is_some() {
        t.force_no_tty();
    }
    let fit = arrangement(t.width());
    t.set_content_arrangement(fit);
    t.set_header(header.iter().map(Cell::new));
    t
}

/// A table cell holding one value (a name, a file, a version): control characters escaped,
/// newlines included, so a value can neither drive the terminal nor forge a row.
pub(crate) fn cell(value: impl std::fmt::Display) -> Cell {
    Cell::new(escape::field(&value.to_string()))
}

/// A table cell whose lines are meant (verify's details): control characters but `\n` escaped.
pub(crate) fn lines_cell(value: &str) -> Cell {
    Cell::new(escape::text(value))
}

fn millis(ms: Option<f64>) -> String {
    ms.map(|m| format!("{m:.1} ms")).unwrap_or_default()
}

pub fn migrate(r: &MigrateReport) -> String {
    let mut out = migrations_part(r);
    if !r.ahead.is_empty() {
        out.push_str(&format!(
            "the database is ahead of this release: {} applied migration(s) newer than every file here ({}); nothing to do for them\n",
            r.ahead.len(),
            r.ahead
                .iter()
                .map(|e| format!("{}_{}", e.version, e.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(lint) = &r.lint {
        // A dry run shows the lock plan; a run shows the findings --allow-unsafe let through.
        let shown = crate::lint::Report {
            plan: lint.plan.clone().filter(|_| r.dry_run),
            ..lint.clone()
        };
        if shown.plan.is_some() || !shown.findings.is_empty() {
            out.push_str(&super::lint::human(&shown, false));
        }
    }
    if let Some(partitions) = &r.partitions {
        out.push_str(&super::partitions::ensured(partitions));
    }
    out
}

fn migrations_part(r: &MigrateReport) -> String {
    let mut out = String::new();
    if r.creates_database {
        out.push_str(&match r.dry_run {
            true => format!(
                "{}: the database does not exist; migrate would create it\n",
                r.database
            ),
            false => format!("{}: created the database\n", r.database),
        });
    }
    if r.steps.is_empty() {
        return out
            + &format!(
                "{}: up to date ({} migrations applied)\n",
                r.database, r.already_applied
            );
    }
    let mut t = table(&["version", "name", "transaction", "duration"]);
    for s in &r.steps {
        t.add_row(vec![
            cell(s.version),
            cell(&s.name),
            cell(match s.transaction {
                crate::migrations::catalog::Transaction::Wrapped => "wrapped",
                crate::migrations::catalog::Transaction::None => "none",
            }),
            cell(millis(s.duration_ms)).set_alignment(CellAlignment::Right),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    if r.dry_run {
        out.push_str(&format!(
            "dry run: {} migration(s) would be applied to {}; nothing was changed\n",
            r.steps.len(),
            r.database
        ));
        for s in r.steps.iter().filter(|s| s.sql.is_some()) {
            out.push_str(&format!(
                "\n-- {}\n{}\n",
                s.file,
                s.sql.as_deref().unwrap_or_default().trim_end()
            ));
        }
    } else {
        out.push_str(&format!(
            "applied {} migration(s) to {} in {:.1} ms\n",
            r.steps.len(),
            r.database,
            r.duration_ms
        ));
    }
    out
}

pub fn status(r: &StatusReport) -> String {
    let mut t = table(&["version", "name", "state", "applied at"]);
    for e in &r.migrations {
        t.add_row(vec![
            cell(e.version),
            cell(&e.name),
            cell(e.state.as_str()),
            cell(
                e.applied_at
                    .map(|a| a.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ),
        ]);
    }
    let c = r.counts;
    let mut summary = format!(
        "{}: {} applied, {} pending",
        r.database, c.applied, c.pending
    );
    if c.modified > 0 {
        summary.push_str(&format!(", {} modified", c.modified));
    }
    if c.missing > 0 {
        summary.push_str(&format!(", {} missing", c.missing));
    }
    if c.ahead > 0 {
        summary.push_str(&format!(", {} ahead (applied by a newer release)", c.ahead));
    }
    format!("{t}\n{summary}\n")
}

pub fn rollback(r: &RollbackReport) -> String {
    if r.rolled_back.is_empty() {
        return format!("{}: nothing to roll back\n", r.database);
    }
    let mut t = table(&["version", "name", "duration"]);
    for s in &r.rolled_back {
        t.add_row(vec![
            cell(s.version),
            cell(&s.name),
            cell(millis(s.duration_ms)).set_alignment(CellAlignment::Right),
        ]);
    }
    let mut out = format!("{t}\n");
    if r.dry_run {
        out.push_str(&format!(
            "dry run: {} migration(s) would be rolled back on {}; nothing was changed\n",
            r.rolled_back.len(),
            r.database
        ));
        for s in r.rolled_back.iter().filter(|s| s.sql.is_some()) {
            out.push_str(&format!(
                "\n-- {} (down)\n{}\n",
                s.file,
                s.sql.as_deref().unwrap_or_default().trim_end()
            ));
        }
    } else {
        out.push_str(&format!(
            "rolled back {} migration(s) on {}\n",
            r.rolled_back.len(),
            r.database
        ));
    }
    out
}

pub fn new(r: &NewReport) -> String {
    format!("created {}\n", r.path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_without_a_believable_width_gets_unwrapped_tables() {
        for width in [None, Some(0), Some(1), Some(19)] {
            assert!(
                matches!(arrangement(width), ContentArrangement::Disabled),
                "{width:?}"
            );
        }
        for width in [Some(20), Some(80), Some(u16::MAX)] {
            assert!(
                matches!(arrangement(width), ContentArrangement::Dynamic),
                "{width:?}"
            );
        }
    }

    #[test]
    fn cells_escape_what_they_hold() {
        let mut t = table(&["name"]);
        t.add_row(vec![cell("a\x1b[2J\nforged row")]);
        let shown = t.to_string();
        assert!(shown.contains("a\\x1b[2J\\nforged row"), "{shown}");
        assert!(!shown.contains('\x1b'));
    }
}
