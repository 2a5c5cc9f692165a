//! The tables every human rendering shares: comfy-table with dhctl's style, fitted to the
//! terminal, and cells that escape what they hold.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};

use super::escape;

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

/// An empty table in dhctl's style with these column headers, fitted to the terminal.
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
