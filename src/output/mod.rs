//! The only code that prints. Results go to stdout (a human table or one JSON document), logs,
//! progress and errors to stderr. A closed stdout (`dhctl status | head -1`) is not an error.

pub mod human;
pub mod progress;
pub mod verify;

use std::io::Write;

use serde::Serialize;

use crate::cli::Format;
use crate::error::Error;

/// Writes one result to stdout in the chosen format; `human` renders it as text.
pub fn emit<T: Serialize>(format: Format, value: &T, human: impl FnOnce(&T) -> String) {
    let text = match format {
        Format::Json => match serde_json::to_string_pretty(value) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("error: cannot encode the result as JSON: {e}");
                return;
            }
        },
        Format::Human => human(value),
    };
    write_stdout(&text);
}

fn write_stdout(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A reader that went away (broken pipe) has all it wanted.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints an error as `error: …` (and `hint: …`) on stderr; in JSON mode also as a JSON
/// document on stdout, so a CI job parsing stdout sees what went wrong.
pub fn error(format: Format, err: &Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    let hint = err.hint();
    if let Some(hint) = &hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    if format == Format::Json {
        let doc = serde_json::json!({
            "error": {
                "exit_code": err.exit_code(),
                "message": err.to_string(),
                "hint": hint,
                "holder": match err { Error::LockBusy { holder, .. } => serde_json::to_value(holder).ok(), _ => None },
            }
        });
        write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
    }
}

/// A warning or note on stderr (never stdout, which carries results).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
