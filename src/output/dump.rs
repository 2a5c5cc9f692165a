//! The human side of `dhctl dump`: the SQL itself, the line saying where it was written, the
//! `--check` verdict with its diff, and the dump's warnings on stderr.

use std::io::{IsTerminal, Write};

use super::escape;
use crate::dump::file::Comparison;
use crate::error::Error;

/// The dump on stdout. Redirected (the usual case: `> schema.sql`), byte for byte what
/// `--output` writes; on a terminal with control characters escaped, like every human line. A
/// failed write is an error, a reader that stopped before the end (`| head`) too: a partial
/// dump must not pass for a whole one.
pub fn sql(text: &str) -> Result<(), Error> {
    if std::io::stdout().is_terminal() {
        super::write_whole(escape::text(text).as_bytes(), "the dump")
    } else {
        super::write_whole(text.as_bytes(), "the dump")
    }
}

/// What the database holds that the dump does not represent: one `warning:` line each.
pub fn warnings(lines: &[String]) {
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        let _ = writeln!(stderr, "warning: dump: {}", escape::field(line));
    }
}

pub fn written_human(objects: usize, history_rows: usize, path: &str) -> String {
    format!(
        "wrote {path}: {objects} statements, {history_rows} migration history rows\n",
        path = escape::field(path)
    )
}

pub fn check_human(c: &Comparison) -> String {
    match &c.diff {
        None => format!(
            "{} is up to date with the database\n",
            escape::field(&c.path)
        ),
        Some(diff) => format!(
            "{diff}\n{} differs from the database's schema: run `dhctl dump --output {}` and \
             commit the result\n",
            escape::field(&c.path),
            escape::field(&c.path)
        ),
    }
}
