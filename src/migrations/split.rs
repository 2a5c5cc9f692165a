//! Splits a section into statements for `transaction:false` migrations: PostgreSQL runs a
//! multi-statement simple query as one implicit transaction, in which CREATE INDEX CONCURRENTLY
//! fails (SQLSTATE 25001), so each statement must be sent on its own.
//!
//! Knows what can hide a `;`: quoted strings ('…', E'…' with backslash escapes), quoted
//! identifiers, dollar quotes ($$…$$, $tag$…$tag$), line comments and nested block comments.
//! A SQL-standard function body (`BEGIN ATOMIC … END;`) is kept whole. [`words`] uses the same
//! knowledge to list a statement's bare words (keywords and unquoted names), which is how
//! `verify` recognises what a statement is, and [`literal_spans`] to tell the catalog which lines
//! start inside a literal or a block comment, where a `-- migrate:down` line is text, not a marker.

/// A statement and its byte offset within the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    pub offset: usize,
    pub sql: &'a str,
}

pub fn split(sql: &str) -> Vec<Statement<'_>> {
    let mut statements = Vec::new();
    let mut start = 0;
    // Inside a SQL-standard function body (`BEGIN ATOMIC … END`, PostgreSQL 14+) a `;` ends a
    // body statement, not the CREATE: count BEGIN ATOMIC and CASE up, END down, as psql does.
    let mut atomic_depth = 0usize;
    let mut previous_word: Option<&str> = None;
    for token in scan(sql) {
        match token {
            Token::Word(w) => {
                let upper = w.text.to_ascii_uppercase();
                match upper.as_str() {
                    "ATOMIC" if previous_word.is_some_and(|p| p.eq_ignore_ascii_case("BEGIN")) => {
                        atomic_depth += 1;
                    }
                    "CASE" if atomic_depth > 0 => atomic_depth += 1,
                    "END" if atomic_depth > 0 => atomic_depth -= 1,
                    _ => {}
                }
                previous_word = Some(w.text);
            }
            Token::Semicolon(at) if atomic_depth == 0 => {
                push(&mut statements, sql, start, at);
                start = at + 1;
            }
            Token::Semicolon(_) => {}
        }
    }
    push(&mut statements, sql, start, sql.len());
    statements
}

/// A bare word of a statement (letters, digits, `_`, starting with a letter or `_`) and its byte
/// offset: everything outside quotes, dollar quotes and comments that a keyword could be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    pub offset: usize,
    pub text: &'a str,
}

/// The bare words of `sql`, in order.
pub fn words(sql: &str) -> Vec<Word<'_>> {
    scan(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            Token::Semicolon(_) => None,
        })
        .collect()
}

/// What matters for splitting and recognising statements: bare words and top-level `;`.
enum Token<'a> {
    Word(Word<'a>),
    Semicolon(usize),
}

fn scan(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escapes).unwrap_or(bytes.len());
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false).unwrap_or(bytes.len()),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = line_comment_end(sql, i);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i).unwrap_or(bytes.len());
            }
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => match dollar_tag(&sql[i..]) {
                Some(tag) => i = skip_dollar_quoted(sql, i, tag).unwrap_or(bytes.len()),
                None => i += 1,
            },
            b';' => {
                tokens.push(Token::Semicolon(i));
                i += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (is_ident_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                tokens.push(Token::Word(Word {
                    offset: start,
                    text: &sql[start..i],
                }));
            }
            b if is_ident_byte(b) => {
                // A number (or the rest of one): not a word.
                while i < bytes.len() && is_ident_byte(bytes[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    tokens
}

fn push<'a>(statements: &mut Vec<Statement<'a>>, sql: &'a str, start: usize, end: usize) {
    let text = &sql[start..end];
    let trimmed_start = text.len() - text.trim_start().len();
    let body = text.trim();
    if !is_blank(body) {
        statements.push(Statement {
            offset: start + trimmed_start,
            sql: body,
        });
    }
}

/// PostgreSQL's identifier bytes: letters, digits, `_`, and every byte of a non-ASCII character
/// (scan.l's `ident_cont`), so `café$x$` is one identifier, not `caf` then a dollar quote.
fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Where a `--` comment starting at `i` ends: after its newline, which for PostgreSQL (scan.l's
/// `newline`) and psql is `\n` or `\r`, so a bare CR ends it too.
fn line_comment_end(sql: &str, i: usize) -> usize {
    sql[i..].find(['\n', '\r']).map_or(sql.len(), |n| i + n + 1)
}

/// Index just past the closing quote (None when it never closes); a doubled quote is an
/// escaped one.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Index just past the closing `*/` of a (nested) block comment, None when it never closes.
fn skip_block_comment(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Index just past the closing tag of a dollar quote opened at `open`, None when it never closes.
fn skip_dollar_quoted(sql: &str, open: usize, tag: &str) -> Option<usize> {
    let body = open + tag.len();
    sql[body..].find(tag).map(|n| body + n + tag.len())
}

/// What a [`Span`] is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    String,
    QuotedIdentifier,
    DollarQuote,
    BlockComment,
}

impl std::fmt::Display for SpanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpanKind::String => "a string literal",
            SpanKind::QuotedIdentifier => "a quoted identifier",
            SpanKind::DollarQuote => "a dollar-quoted string",
            SpanKind::BlockComment => "a block comment",
        })
    }
}

/// A stretch of text that can span lines and hides whatever it contains: a quoted string or
/// identifier, a dollar quote or a block comment. `end` is None when it never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: SpanKind,
    pub start: usize,
    pub end: Option<usize>,
}

impl Span {
    /// True when byte `at` lies strictly inside the span (after its opening character).
    pub fn contains(&self, at: usize) -> bool {
        self.start < at && self.end.is_none_or(|end| at < end)
    }
}

/// The spans of `sql`, in order and without overlap. Line comments are not spans: they end with
/// their line, so no line starts inside one.
pub fn literal_spans(sql: &str) -> Vec<Span> {
    let bytes = sql.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (kind, end) = match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                (SpanKind::String, skip_quoted(bytes, i, b'\'', escapes))
            }
            b'"' => (
                SpanKind::QuotedIdentifier,
                skip_quoted(bytes, i, b'"', false),
            ),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = line_comment_end(sql, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                (SpanKind::BlockComment, skip_block_comment(bytes, i))
            }
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => match dollar_tag(&sql[i..]) {
                Some(tag) => (SpanKind::DollarQuote, skip_dollar_quoted(sql, i, tag)),
                None => {
                    i += 1;
                    continue;
                }
            },
            b if is_ident_byte(b) || b == b'$' => {
                // A word or number; a `$` inside one (`a$1`) opens no dollar quote.
                while i < bytes.len() && (is_ident_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        spans.push(Span {
            kind,
            start: i,
            end,
        });
        i = end.unwrap_or(bytes.len());
    }
    spans
}

/// True when `sql` holds nothing to run: only whitespace, line comments and block comments.
pub fn is_blank(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = line_comment_end(sql, i);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i).unwrap_or(bytes.len());
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => return false,
        }
    }
    true
}

/// `$$` or `$tag$` at the start of `text` (a tag is an identifier without `$`).
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = &text[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag.is_empty()
        || (!tag.as_bytes()[0].is_ascii_digit()
            && tag.bytes().all(|b| is_ident_byte(b) || b >= 0x80));
    valid.then(|| &text[..end + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splits_on_top_level_semicolons() {
        assert_eq!(texts("SELECT 1; SELECT 2;\n"), vec!["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn semicolons_inside_quotes_comments_and_dollar_quotes_stay() {
        let sql = "SELECT ';'; SELECT \"a;b\"; -- x; y\nSELECT $$;$$; SELECT $f$ $$ ; $f$; /* ; /* ; */ */ SELECT E'\\';'; SELECT 'it''s;'";
        assert_eq!(
            texts(sql),
            vec![
                "SELECT ';'",
                "SELECT \"a;b\"",
                "-- x; y\nSELECT $$;$$",
                "SELECT $f$ $$ ; $f$",
                "/* ; /* ; */ */ SELECT E'\\';'",
                "SELECT 'it''s;'"
            ]
        );
    }

    #[test]
    fn comment_only_pieces_are_not_statements() {
        assert_eq!(texts("-- only a comment\n;\n  ;"), Vec::<&str>::new());
    }

    #[test]
    fn offsets_point_at_the_statement() {
        let sql = "SELECT 1;\n  CREATE INDEX CONCURRENTLY i ON t (x);";
        let s = split(sql);
        assert_eq!(&sql[s[1].offset..s[1].offset + 6], "CREATE");
    }

    #[test]
    fn sql_standard_function_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;";
        let found = texts(sql);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].ends_with("SELECT 2;\nEND"), "{found:?}");
        assert_eq!(found[1], "SELECT 3");
    }

    #[test]
    fn words_skip_quotes_comments_and_dollar_quotes() {
        let sql = "-- COMMIT\nCREATE /* x */ INDEX \"CONCURRENTLY\" ON t ('a b') ; DO $$ COMMIT $$; x1 1y";
        let found: Vec<&str> = words(sql).iter().map(|w| w.text).collect();
        assert_eq!(found, vec!["CREATE", "INDEX", "ON", "t", "DO", "x1"]);
        let create = words(sql)[0];
        assert_eq!(&sql[create.offset..create.offset + 6], "CREATE");
    }

    #[test]
    fn positional_parameters_are_not_dollar_quotes() {
        assert_eq!(
            texts("PREPARE p AS SELECT $1; SELECT 2"),
            vec!["PREPARE p AS SELECT $1", "SELECT 2"]
        );
    }

    #[test]
    fn literal_spans_cover_what_can_hide_a_line() {
        let sql = "SELECT 'a\nb', \"x\ny\", $f$\n$$\n$f$ -- 'not a string\n/* c /* d */\n*/ E'\\'\n' a$1 'open";
        let kinds: Vec<(SpanKind, bool)> = literal_spans(sql)
            .iter()
            .map(|s| (s.kind, s.end.is_some()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (SpanKind::String, true),
                (SpanKind::QuotedIdentifier, true),
                (SpanKind::DollarQuote, true),
                (SpanKind::BlockComment, true),
                (SpanKind::String, true),
                (SpanKind::String, false),
            ]
        );
        let first = literal_spans(sql)[0];
        assert!(first.contains(sql.find('b').unwrap()));
        assert!(!first.contains(first.start));
    }

    #[test]
    fn blank_means_only_whitespace_and_comments() {
        assert!(is_blank(""));
        assert!(is_blank("  \n-- x\n/* y\n /* z */ */\n"));
        assert!(!is_blank("-- x\nSELECT 1"));
        assert!(!is_blank(";"));
    }
}
