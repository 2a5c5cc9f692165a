//! Control characters never reach a terminal raw. Names, messages and SQL come from files, the
//! command line and the database (history rows, partition names, server error messages), and
//! any of them may carry an escape sequence: a planted history row named `x\x1b]0;pwned\x07` would
//! otherwise set the terminal's title, and `\x1b[2J` clear it. JSON output is escaped by serde;
//! this is the same promise for human output.
//!
//! Escaped: C0 controls, DEL, C1 controls (U+0080–U+009F, which some terminals obey as escapes)
//! and the Unicode bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
//! which reorder what is shown (a name that displays as `…gpj.exe`). Each becomes `\xNN` or
//! `\u{NNNN}`. A backslash is left as it is: the escaping protects the terminal, it is not a
//! reversible encoding (JSON output is the exact one).
//!
//! Two flavours: [`field`] for one-line values (a table cell, a name), which escapes newlines and
//! tabs too so a value cannot forge another line; [`text`] for what is multi-line by design (an
//! error listing one problem per line, a dry run's SQL), which keeps `\n` and `\t` and turns a
//! CRLF line end into `\n`.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is escaped in every flavour.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}' | '\u{061c}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    let code = c as u32;
    let _ = if code <= 0xff {
        write!(out, "\\x{code:02x}")
    } else {
        write!(out, "\\u{{{code:04x}}}")
    };
}

/// A one-line value with every control character escaped, newlines and tabs included.
pub fn field(value: &str) -> Cow<'_, str> {
    if !value.chars().any(is_unsafe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Multi-line text with every control character but `\n` and `\t` escaped; `\r\n` becomes `\n`
/// (a file checked out with CRLF line ends), a lone `\r` (which would overwrite the line on a
/// terminal) is escaped.
pub fn text(value: &str) -> Cow<'_, str> {
    if !value
        .chars()
        .any(|c| c != '\n' && c != '\t' && is_unsafe(c))
    {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A serialized JSON document with the controls JSON itself leaves raw (DEL, C1, the bidi
/// controls) written as `\uXXXX` escapes: the same value for a parser, harmless in a terminal
/// that shows the document. They can only occur inside strings (JSON's syntax is ASCII), where
/// `\uXXXX` is always a valid escape.
pub fn json(document: String) -> String {
    // C0 controls inside strings are escaped by JSON itself; outside them they are the
    // document's own line breaks and indentation.
    let raw = |c: char| c > '\u{1f}' && is_unsafe(c);
    if !document.chars().any(raw) {
        return document;
    }
    let mut out = String::with_capacity(document.len() + 16);
    for c in document.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The field formatter of dhctl's log lines on stderr. tracing-subscriber's own prints field
/// values raw (a database name, a host); this one escapes each as a [`field`] and, like the
/// default, leaves out the `log.*` fields of records bridged from the `log` crate.
pub struct LogFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for LogFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = LogVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogVisitor<'a, 'w> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for LogVisitor<'_, '_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let text = format!("{value:?}");
        let text = self::field(&text);
        self.result = match field.name() {
            "message" => write!(self.writer, "{separator}{text}"),
            name => write!(self.writer, "{separator}{name}={text}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(field("request_logs_2026_11"), Cow::Borrowed(_)));
        assert!(matches!(text("a\n\tb — é ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        assert_eq!(field("x\x1b]0;pwned\x07"), "x\\x1b]0;pwned\\x07");
        assert_eq!(text("x\x1b[2Jy\n"), "x\\x1b[2Jy\n");
        assert_eq!(field("del\x7f c1\u{9b}"), "del\\x7f c1\\x9b");
        assert_eq!(field("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(text("\u{2066}a\u{2069}"), "\\u{2066}a\\u{2069}");
    }

    #[test]
    fn json_documents_keep_their_values_and_lose_raw_controls() {
        let value = serde_json::json!({"name": "a\u{7f}\u{9b}\u{202e}b\x1b"});
        let shown = json(serde_json::to_string_pretty(&value).unwrap());
        assert!(!shown.chars().any(|c| c != '\n' && is_unsafe(c)), "{shown}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            value
        );
    }

    #[test]
    fn fields_stay_on_one_line_and_text_keeps_its_lines() {
        assert_eq!(field("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(text("a\r\nb\rc\n\td"), "a\nb\\rc\n\td");
    }

    #[test]
    fn escaped_output_never_holds_a_control_character() {
        let every: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!field(&every).chars().any(is_unsafe));
        assert!(!text(&every)
            .chars()
            .any(|c| c != '\n' && c != '\t' && is_unsafe(c)));
    }
}
