//! Migration files → validated migrations.
//!
//! Files are read as dbmate reads them (docs/dbmate.md): the name is `<digits><description>.sql`,
//! the leading digits being the version (`20240101000001_create_api_keys.sql`,
//! `001_Initial_Setup.sql`, `20220517213052_create-surveys-table.sql`); versions are 64-bit,
//! unique and applied in numeric order. Sections follow dbmate's markers at column 0:
//! `-- migrate:up`, then optionally `-- migrate:down`; `transaction:false` after a marker runs
//! that section outside a transaction. A file with no marker is all up and has no down. A line
//! that looks like a marker (indented, misspelt, another tool's) is an error, never SQL. Every
//! problem of every file is collected and reported at once, with the file's name, before any
//! connection is made.

use std::collections::BTreeMap;
use std::path::Path;

use super::split::{self, Span};
use crate::error::{Error, FileProblem, Result};
use crate::source::Source;

/// One section (up or down) of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's SQL exactly as in the file (LF line endings), without its marker line.
    pub sql: String,
    pub transaction: Transaction,
    /// The file's line number (1-based) on which `sql` starts.
    pub first_line: usize,
}

impl Section {
    /// True when the section holds only blanks and comments: a no-op (dbmate runs such a
    /// section as nothing and records it, so dhctl does too).
    pub fn is_noop(&self) -> bool {
        split::is_blank(&self.sql)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transaction {
    /// The section and its history change run in one transaction (the default).
    Wrapped,
    /// `transaction:false`: each statement runs on its own (CREATE INDEX CONCURRENTLY).
    None,
}

/// A validated migration.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    /// What the history's `name` column holds: see [`history_name`].
    pub name: String,
    pub file: String,
    pub up: Section,
    /// None: the file has no `-- migrate:down` marker, so it cannot be rolled back.
    /// Some section with no SQL ([`Section::is_noop`]): an explicit no-op down, as in dbmate;
    /// rolling back removes the history row and runs nothing.
    pub down: Option<Section>,
    /// refinery's checksum of (name, version, up SQL): what refinery_schema_history stores.
    pub checksum: u64,
}

impl Migration {
    /// The name refinery knows this migration by, `V{version}__{name}`.
    pub fn refinery_name(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }

    /// The refinery migration that applies the up section.
    pub fn to_refinery(&self) -> refinery::Migration {
        refinery::Migration::unapplied(&self.refinery_name(), &self.up.sql)
            .expect("catalog validated the name in refinery's format")
    }

    /// Maps a 1-based character position within a section's SQL to `file:line`.
    pub fn location(&self, section: &Section, char_position: usize) -> String {
        let newlines = section
            .sql
            .chars()
            .take(char_position.saturating_sub(1))
            .filter(|c| *c == '\n')
            .count();
        format!("{}:{}", self.file, section.first_line + newlines)
    }
}

/// Every migration, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub migrations: Vec<Migration>,
}

impl Catalog {
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// Every version, in order.
    pub fn versions(&self) -> Vec<i64> {
        self.migrations.iter().map(|m| m.version).collect()
    }
}

/// What kind of problem a file has; each kind has its own advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Name,
    Version,
    Duplicate,
    Entry,
    Encoding,
    Marker,
    EmptyUp,
    Psql,
    Transaction,
    Copy,
}

impl Kind {
    fn hint(self) -> &'static str {
        match self {
            Kind::Name => {
                "a migration file is named <version>_<description>.sql, the version being its \
                 leading digits (dbmate's rule); `dhctl new NAME` writes \
                 YYYYMMDDHHMMSS_name.sql"
            }
            Kind::Version => "a version is the file name's leading digits and must fit a 64-bit integer (at most 18 digits are always safe)",
            Kind::Duplicate => {
                "versions are compared as numbers (001 and 1 are one version): give one of the \
                 files a new version, e.g. a fresh timestamp from `dhctl new`"
            }
            Kind::Entry => {
                "every *.sql entry in the migrations folder must be a readable migration file; \
                 move anything else out of the folder (names starting with `.` are ignored)"
            }
            Kind::Encoding => "save the file as UTF-8 text; PostgreSQL takes no NUL byte in SQL",
            Kind::Marker => {
                "sections start with `-- migrate:up` and `-- migrate:down` at the start of a line \
                 (optionally followed by transaction:false), exactly as dbmate writes them; see \
                 docs/dbmate.md"
            }
            Kind::Transaction => {
                "dhctl runs each section in a transaction of its own and records it in that same \
                 transaction: remove the BEGIN/COMMIT/ROLLBACK from the section, or mark it \
                 `transaction:false` (and write it so that it can be rerun)"
            }
            Kind::Psql => {
                "migrations are sent to the server as SQL, not through psql: remove psql's \\ \
                 meta-commands (pg_dump 17.6 and later writes \\restrict and \\unrestrict lines)"
            }
            Kind::Copy => {
                "COPY FROM STDIN and COPY TO STDOUT need a client that sends or takes the rows, \
                 and dhctl sends none: write the rows as INSERT … VALUES, or COPY from or to a \
                 file on the database server"
            }
            Kind::EmptyUp => {
                "write the migration's SQL after `-- migrate:up`, or a comment saying why it does \
                 nothing (a comment-only up section is a no-op migration)"
            }
        }
    }
}

/// One problem with one file, before it becomes a [`FileProblem`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    kind: Kind,
    text: String,
}

/// A file's name and contents.
type File = (String, Vec<u8>);
/// A file's name and its problem.
type NamedProblem = (String, Problem);

fn problem(kind: Kind, text: impl Into<String>) -> Problem {
    Problem {
        kind,
        text: text.into(),
    }
}

/// Loads and validates the catalog.
pub fn load(source: &Source) -> Result<Catalog> {
    match source {
        Source::Embedded => parse_files(
            crate::embedded::MIGRATIONS
                .iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect(),
        ),
        Source::Dir(dir) => {
            let (files, problems) = read_dir(dir)?;
            check(files, problems)
        }
    }
}

/// Every `*.sql` file in `dir`, and a problem for each `*.sql` entry that is not a readable
/// file (a directory, a dangling link, `.SQL`), so nothing that looks like a migration is
/// skipped in silence. Other files (a README) and hidden ones (an editor's `.#lock` link) are
/// not migrations.
fn read_dir(dir: &Path) -> Result<(Vec<File>, Vec<NamedProblem>)> {
    let entries = std::fs::read_dir(dir).map_err(|source| missing_dir(dir, source))?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let lower = name.to_lowercase();
        if !lower.ends_with(".sql") {
            continue;
        }
        let mut fail = |text: String| problems.push((name.clone(), problem(Kind::Entry, text)));
        if entry.file_name().to_str().is_none() {
            fail("the file name is not valid UTF-8; rename it".into());
            continue;
        }
        if !name.ends_with(".sql") {
            let stem = &name[..name.len() - 4];
            fail(format!(
                "ends in `{}`: dbmate and dhctl read only a lower-case `.sql` extension; rename it to {stem}.sql",
                &name[name.len() - 4..]
            ));
            continue;
        }
        let path = entry.path();
        // The entry's type comes with the listing (d_type): a regular file needs no stat of
        // its own, which saves a system call per file in a folder of thousands.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::read(&path) {
                Ok(bytes) => files.push((name, bytes)),
                Err(e) => fail(format!("cannot be read: {e}")),
            }
            continue;
        }
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(&path)
                    .map(|t| format!(" to {}", t.display()))
                    .unwrap_or_default();
                fail(format!(
                    "a symbolic link{target} that points at nothing; fix the link or remove it"
                ));
            }
            Err(e) => fail(format!("cannot be read: {e}")),
            Ok(meta) if meta.is_dir() => {
                fail("is a directory, not a migration file; rename or move it".into())
            }
            Ok(meta) if !meta.is_file() => {
                fail("is not a regular file (a pipe, socket or device); remove it".into())
            }
            Ok(_) => match std::fs::read(&path) {
                Ok(bytes) => files.push((name, bytes)),
                Err(e) => fail(format!("cannot be read: {e}")),
            },
        }
    }
    Ok((files, problems))
}

/// The error for a migrations folder that cannot be listed, with a hint when it is missing.
fn missing_dir(dir: &Path, source: std::io::Error) -> Error {
    match source.kind() {
        std::io::ErrorKind::NotFound => Error::usage_hint(
            format!("the migrations folder {} does not exist", dir.display()),
            "check --migrations-dir (env DHCTL_MIGRATIONS_DIR), relative paths start at the \
             current directory; without it dhctl uses the migrations compiled into it",
        ),
        std::io::ErrorKind::NotADirectory => Error::usage_hint(
            format!("the migrations folder {} is not a directory", dir.display()),
            "point --migrations-dir (env DHCTL_MIGRATIONS_DIR) at the folder holding the *.sql files",
        ),
        _ => Error::Io {
            path: dir.into(),
            source,
        },
    }
}

/// Validates a set of `(file name, contents)` pairs into a catalog, or reports every problem.
pub fn parse_files(files: Vec<(String, Vec<u8>)>) -> Result<Catalog> {
    check(files, Vec::new())
}

fn check(files: Vec<File>, mut problems: Vec<NamedProblem>) -> Result<Catalog> {
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    for (file, bytes) in files {
        match parse_file(&file, &bytes) {
            Ok(m) => {
                if let Some(other) = by_version.get(&m.version) {
                    let (first, second) = if other.file < m.file {
                        (other.file.clone(), m.file.clone())
                    } else {
                        (m.file.clone(), other.file.clone())
                    };
                    let text = format!("version {} is also used by {first}", m.version);
                    problems.push((second, problem(Kind::Duplicate, text)));
                } else {
                    by_version.insert(m.version, m);
                }
            }
            Err(p) => problems.push((file, p)),
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kinds: Vec<Kind> = problems.iter().map(|(_, p)| p.kind).collect();
        kinds.sort();
        kinds.dedup();
        return Err(Error::Catalog {
            problems: problems
                .into_iter()
                .map(|(file, p)| FileProblem {
                    file,
                    problem: p.text,
                })
                .collect(),
            hints: kinds.into_iter().map(|k| k.hint().to_string()).collect(),
        });
    }
    Ok(Catalog {
        migrations: by_version.into_values().collect(),
    })
}

/// Splits a file name into version and history name, as dbmate does (`^(\d+).*\.sql$`).
pub fn parse_file_name(file: &str) -> std::result::Result<(i64, String), String> {
    parse_name(file).map_err(|p| p.text)
}

fn parse_name(file: &str) -> std::result::Result<(i64, String), Problem> {
    let stem = file.strip_suffix(".sql").ok_or_else(|| {
        problem(
            Kind::Name,
            "not a migration name: a migration file ends in .sql",
        )
    })?;
    // dbmate would take such a name; dhctl refuses it: a control character in a name that is
    // printed to terminals and stored in the history table is a mistake or an attack.
    if stem.chars().any(char::is_control) {
        return Err(problem(
            Kind::Name,
            "the file name contains a control character; rename the file",
        ));
    }
    let digits_end = stem
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(stem.len());
    let digits = &stem[..digits_end];
    if digits.is_empty() {
        return Err(problem(
            Kind::Name,
            "not a migration name: it must start with its version, a number \
             (e.g. 20240101000001_create_users.sql or 001_init.sql)",
        ));
    }
    let version: i64 = digits.parse().map_err(|_| {
        problem(
            Kind::Version,
            format!(
                "version {digits} ({} digits) is too large for a 64-bit version",
                digits.len()
            ),
        )
    })?;
    Ok((version, history_name(digits, &stem[digits_end..])))
}

/// What the history's `name` column holds for a file `<digits><rest>.sql`: `rest` without the
/// separators (`_`, `-`, `.`) that lead it, each character other than an ASCII letter, digit or
/// `_` replaced by `_`, so refinery reads the name whole (its `\w+` stops at a `-` and takes
/// non-ASCII letters); the digits as written when nothing is left (`001.sql`). The seed's names
/// (`create_api_keys`) are unchanged by this, and so are their checksums.
pub fn history_name(digits: &str, rest: &str) -> String {
    let rest = rest.trim_start_matches(['_', '-', '.']);
    if rest.is_empty() {
        return digits.to_string();
    }
    rest.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `[a-z0-9_]+`, at most 200 characters: what `dhctl new` accepts as a name (refinery's name
/// column is varchar(255)).
pub fn is_description(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_DESCRIPTION
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The longest name `dhctl new` writes.
pub const MAX_DESCRIPTION: usize = 200;

/// refinery's `name` column is varchar(255).
const MAX_HISTORY_NAME: usize = 255;

fn parse_file(file: &str, bytes: &[u8]) -> std::result::Result<Migration, Problem> {
    let (version, name) = parse_name(file)?;
    if name.len() > MAX_HISTORY_NAME {
        return Err(problem(
            Kind::Name,
            format!(
                "the name after the version is {} characters; the history keeps at most {MAX_HISTORY_NAME}",
                name.len()
            ),
        ));
    }
    let line_of = |offset: usize| bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        problem(
            Kind::Encoding,
            format!(
                "line {}: not valid UTF-8 (byte {} of the file)",
                line_of(e.valid_up_to()),
                e.valid_up_to() + 1
            ),
        )
    })?;
    if let Some(at) = text.find('\0') {
        return Err(problem(
            Kind::Encoding,
            format!(
                "line {}: a NUL byte, which PostgreSQL refuses in SQL",
                line_of(at)
            ),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // CRLF → LF before anything else, so a Windows checkout is not drift.
    let text = text.replace("\r\n", "\n");
    // A CR on its own ends a `--` comment for PostgreSQL but not a line for dbmate's marker
    // reader: such a file would be cut differently by the two, so it is refused, not guessed.
    if let Some(at) = text.find('\r') {
        return Err(problem(
            Kind::Encoding,
            format!(
                "line {}: a carriage return that is not part of a CRLF line ending (old Mac line \
                 endings?); save the file with LF or CRLF line endings",
                text[..at].matches('\n').count() + 1
            ),
        ));
    }
    let (up, down) = parse_sections(&text)?;
    for section in std::iter::once(&up).chain(down.as_ref()) {
        ends_no_transaction(section)?;
        copies_no_client_data(section)?;
    }
    if up.sql.trim().is_empty() {
        return Err(problem(Kind::EmptyUp, "the up section is empty"));
    }
    let checksum = checksum(version, &name, &up.sql);
    Ok(Migration {
        version,
        name,
        file: file.to_string(),
        up,
        down,
        checksum,
    })
}

/// refinery's checksum (`refinery_core::Migration::unapplied`, runner.rs): SipHash-1-3 with
/// zero keys over the name, the version and the up SQL, in that order, as `Hash` feeds them.
/// Computed here because `unapplied` first matches the name against a Unicode regex that each
/// run would compile, most of the catalog's cost for a handful of files. The names it gets are
/// ASCII `[A-Za-z0-9_]+` ([`history_name`]), which refinery's `\w+` takes whole, so the hash
/// covers the same bytes; `checksum_is_refinerys` and the shipped files' pinned checksums hold
/// the two together.
fn checksum(version: i64, name: &str, sql: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.hash(&mut hasher);
    version.hash(&mut hasher);
    sql.hash(&mut hasher);
    hasher.finish()
}

/// A marker line: `-- migrate:up` or `-- migrate:down`, with optional `transaction:false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Up(Transaction),
    Down(Transaction),
}

/// What dbmate's `\s` matches (RE2: ASCII space, tab, newline, form feed, carriage return).
const DBMATE_SPACE: [char; 5] = [' ', '\t', '\n', '\x0c', '\r'];

/// Reads one line: Ok(None) for SQL or an ordinary comment, Ok(Some) for a marker at column 0
/// as dbmate's `(?m)^--\s*migrate:(up|down)(.*)$` reads it, Err for a line that looks like a
/// marker (or another tool's) and is not one: dbmate would take it as SQL of the section above.
fn read_marker(line: &str, line_no: usize) -> std::result::Result<Option<Marker>, Problem> {
    let bad = |text: String| Err(problem(Kind::Marker, format!("line {line_no}: {text}")));
    let shown = shown(line);
    if let Some(rest) = line.strip_prefix("--") {
        let rest = rest.trim_start_matches(DBMATE_SPACE);
        for (keyword, up) in [("migrate:up", true), ("migrate:down", false)] {
            let Some(after) = rest.strip_prefix(keyword) else {
                continue;
            };
            if !(after.is_empty() || after.starts_with(DBMATE_SPACE)) {
                return bad(format!(
                    "`{shown}` is not a marker; use `-- migrate:up` or `-- migrate:down`"
                ));
            }
            let mut transaction = Transaction::Wrapped;
            for option in after.split_whitespace() {
                transaction = match option {
                    "transaction:false" => Transaction::None,
                    "transaction:true" => Transaction::Wrapped,
                    other => {
                        return bad(format!(
                            "unknown option `{other}` in `{shown}`; the only option is transaction:false"
                        ))
                    }
                };
            }
            return Ok(Some(if up {
                Marker::Up(transaction)
            } else {
                Marker::Down(transaction)
            }));
        }
    }
    let Some(comment) = line.trim_start().strip_prefix("--") else {
        return Ok(None);
    };
    let body = comment.trim_start_matches('-').trim_start();
    let lower = body.to_ascii_lowercase();
    for (prefix, tool) in [
        ("+goose", "goose"),
        ("+migrate", "sql-migrate"),
        ("+micrate", "micrate"),
    ] {
        if lower.starts_with(prefix) {
            return bad(format!(
                "`{shown}` is a {tool} directive; dhctl reads dbmate's markers, `-- migrate:up` \
                 and `-- migrate:down`: rewrite the file's markers"
            ));
        }
    }
    let Some(after) = lower.strip_prefix("migrate") else {
        return Ok(None);
    };
    let looks_like_marker = after.starts_with(':') || {
        let word = after.trim_start_matches([' ', '\t', ':', '_', '-']);
        ["up", "down"].iter().any(|w| {
            word.strip_prefix(w)
                .is_some_and(|tail| !tail.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        })
    };
    if !looks_like_marker {
        return Ok(None);
    }
    if !line.starts_with("--") && read_marker(line.trim_start(), line_no).is_ok_and(|m| m.is_some())
    {
        return bad(format!(
            "`{shown}` is indented; a marker must start at the beginning of the line (dbmate \
             reads an indented one as SQL of the section above): remove the indentation"
        ));
    }
    bad(format!(
        "`{shown}` looks like a marker but is not one (a marker is exactly `-- migrate:up` or \
         `-- migrate:down`, lower case, with a colon); as written it would be SQL of the section \
         above: correct it"
    ))
}

/// A line as shown in a message: trimmed and cut to 60 characters.
fn shown(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

type Sections = (Section, Option<Section>);

/// A transactional section must not end (or start) the transaction dhctl runs it in: after a
/// COMMIT its first part would stay committed whatever happened next (a retry would run it
/// again), and after a ROLLBACK it would be recorded without having run. A procedure or DO
/// block cannot end a transaction block (SQLSTATE 2D000), so the top-level statements the
/// splitter sees are all there is to check.
fn ends_no_transaction(section: &Section) -> std::result::Result<(), Problem> {
    if section.transaction != Transaction::Wrapped {
        return Ok(());
    }
    for statement in split::split(&section.sql) {
        let code = &statement.sql[super::execute::code_start(statement.sql)..];
        let mut words = code
            .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase);
        let first = words.next().unwrap_or_default();
        let second = words.next().unwrap_or_default();
        let ends = match first.as_str() {
            "COMMIT" | "END" | "ABORT" | "BEGIN" => true,
            "ROLLBACK" => !super::execute::rolls_back_to_savepoint(code),
            "START" | "PREPARE" => second == "TRANSACTION",
            _ => false,
        };
        if ends {
            let offset = statement.offset + (statement.sql.len() - code.len());
            let line = section.first_line + section.sql[..offset].matches('\n').count();
            return Err(problem(
                Kind::Transaction,
                format!(
                    "line {line}: `{}` would end the transaction dhctl runs this section in",
                    code.lines().next().unwrap_or_default().trim()
                ),
            ));
        }
    }
    Ok(())
}

/// `COPY … FROM STDIN` and `COPY … TO STDOUT` switch the connection into a copy mode that only
/// a client feeding or reading the rows (psql) can leave; sent by dhctl they would end the
/// session with "unexpected message from server".
fn copies_no_client_data(section: &Section) -> std::result::Result<(), Problem> {
    for statement in split::split(&section.sql) {
        let words = split::words(statement.sql);
        if !words
            .first()
            .is_some_and(|w| w.text.eq_ignore_ascii_case("COPY"))
        {
            continue;
        }
        let to_client = words.windows(2).any(|pair| {
            let (a, b) = (pair[0].text, pair[1].text);
            (a.eq_ignore_ascii_case("FROM") && b.eq_ignore_ascii_case("STDIN"))
                || (a.eq_ignore_ascii_case("TO") && b.eq_ignore_ascii_case("STDOUT"))
        });
        if to_client {
            let offset = statement.offset + words[0].offset;
            let line = section.first_line + section.sql[..offset].matches('\n').count();
            return Err(problem(
                Kind::Copy,
                format!("line {line}: a COPY FROM STDIN or COPY TO STDOUT, which dhctl cannot run"),
            ));
        }
    }
    Ok(())
}

fn parse_sections(text: &str) -> std::result::Result<Sections, Problem> {
    let spans = split::literal_spans(text);
    let mut spans_left = spans.iter().peekable();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut up_marker: Option<(usize, Transaction)> = None;
    let mut down_marker: Option<(usize, Transaction)> = None;
    let mut line_start = 0;
    for (index, line) in lines.iter().enumerate() {
        let line_no = index + 1;
        let start = line_start;
        line_start += line.len() + 1;
        while spans_left
            .peek()
            .is_some_and(|s| s.end.is_some_and(|end| end <= start))
        {
            spans_left.next();
        }
        let inside: Option<&Span> = spans_left.peek().copied().filter(|s| s.contains(start));
        if inside.is_none() && line.trim_start().starts_with('\\') {
            // Outside literals a backslash starts no SQL token: the server would refuse it.
            return Err(problem(
                Kind::Psql,
                format!(
                    "line {line_no}: `{}` is a psql meta-command, which PostgreSQL cannot run",
                    shown(line)
                ),
            ));
        }
        let marker = match (read_marker(line, line_no), inside) {
            (Ok(None), _) => continue,
            // A function body or string that happens to hold a marker-like line: text.
            (_, Some(span)) if span.end.is_some() => continue,
            (_, Some(span)) => {
                return Err(problem(
                    Kind::Marker,
                    format!(
                        "line {line_no}: `{}` is inside {} that starts on line {} and never ends; close it before the marker",
                        shown(line),
                        span.kind,
                        text[..span.start].matches('\n').count() + 1
                    ),
                ))
            }
            (Err(p), None) => return Err(p),
            (Ok(Some(marker)), None) => marker,
        };
        let bad = |text: &str| Err(problem(Kind::Marker, format!("line {line_no}: {text}")));
        match marker {
            Marker::Up(t) => {
                if let Some((first, _)) = up_marker {
                    return bad(&format!(
                        "a second `-- migrate:up` marker (the first is on line {})",
                        first + 1
                    ));
                }
                if down_marker.is_some() {
                    return bad("`-- migrate:up` must come before `-- migrate:down`");
                }
                if !split::is_blank(&lines[..index].join("\n")) {
                    return bad(
                        "SQL before `-- migrate:up` would run nowhere; move it into a section",
                    );
                }
                up_marker = Some((index, t));
            }
            Marker::Down(t) => {
                if let Some((first, _)) = down_marker {
                    return bad(&format!(
                        "a second `-- migrate:down` marker (the first is on line {})",
                        first + 1
                    ));
                }
                if up_marker.is_none() {
                    return bad("`-- migrate:down` without a `-- migrate:up` before it");
                }
                down_marker = Some((index, t));
            }
        }
    }
    let section = |from: usize, to: usize, transaction| Section {
        sql: lines[from..to].join("\n"),
        transaction,
        first_line: from + 1,
    };
    Ok(match (up_marker, down_marker) {
        (None, _) => (section(0, lines.len(), Transaction::Wrapped), None),
        (Some((u, ut)), None) => (section(u + 1, lines.len(), ut), None),
        (Some((u, ut)), Some((d, dt))) => {
            (section(u + 1, d, ut), Some(section(d + 1, lines.len(), dt)))
        }
    })
}

/// Three migrations, versions 20240101000001 to 3, each `SELECT n;`: a catalog for unit tests.
#[cfg(test)]
pub(crate) fn three_selects() -> Catalog {
    parse_files(vec![
        ("20240101000001_a.sql".into(), b"SELECT 1;".to_vec()),
        ("20240101000002_b.sql".into(), b"SELECT 2;".to_vec()),
        ("20240101000003_c.sql".into(), b"SELECT 3;".to_vec()),
    ])
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, text: &str) -> Result<Catalog> {
        parse_files(vec![(name.into(), text.as_bytes().to_vec())])
    }

    fn problems(result: Result<Catalog>) -> Vec<FileProblem> {
        match result {
            Err(Error::Catalog { problems, .. }) => problems,
            other => panic!("expected a catalog error, got {other:?}"),
        }
    }

    /// The one problem of a one-file catalog, and the hint.
    fn refused(name: &str, text: &[u8]) -> (String, String) {
        let err = parse_files(vec![(name.into(), text.to_vec())]).unwrap_err();
        let hint = err.hint().unwrap_or_default();
        let found = problems(Err(err));
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0].file, name);
        (found[0].problem.clone(), hint)
    }

    #[test]
    fn the_embedded_catalog_is_valid() {
        let catalog = load(&Source::Embedded).expect("sql/ must be valid");
        assert_eq!(catalog.migrations.len(), 5);
        assert!(
            catalog
                .migrations
                .iter()
                .all(|m| m.down.as_ref().is_some_and(|d| !d.is_noop())),
            "every shipped migration has a down section"
        );
    }

    /// Databases migrated by earlier releases hold these names and checksums (read from
    /// refinery_schema_history after `dhctl migrate` with the release before dbmate-style
    /// names): reading files as dbmate does must change neither for the shipped files.
    #[test]
    fn the_shipped_files_keep_their_history_name_and_checksum() {
        let catalog = load(&Source::Embedded).unwrap();
        let recorded: Vec<(i64, &str, u64)> = catalog
            .migrations
            .iter()
            .map(|m| (m.version, m.name.as_str(), m.checksum))
            .collect();
        assert_eq!(
            recorded,
            vec![
                (20240101000001, "create_api_keys", 11501467601156426366),
                (20240101000002, "create_request_logs", 7722277191984836004),
                (20240101000003, "create_webhooks", 494911164052800795),
                (
                    20240101000004,
                    "create_webhook_deliveries",
                    7795020325101416430
                ),
                (
                    20240101000005,
                    "create_rate_limits_audit_logs",
                    211667761482900227
                ),
            ]
        );
    }

    #[test]
    fn sections_split_at_markers_and_keep_line_numbers() {
        let c = one(
            "20240101000001_a.sql",
            "-- migrate:up\nCREATE TABLE a();\n\n-- migrate:down\nDROP TABLE a;\n",
        )
        .unwrap();
        let m = &c.migrations[0];
        assert_eq!(m.version, 20240101000001);
        assert_eq!(m.up.sql, "CREATE TABLE a();\n");
        assert_eq!(m.up.first_line, 2);
        assert_eq!(m.down.as_ref().unwrap().sql, "DROP TABLE a;\n");
        assert_eq!(m.down.as_ref().unwrap().first_line, 5);
        assert_eq!(m.location(&m.up, 1), "20240101000001_a.sql:2");
    }

    #[test]
    fn names_are_read_as_dbmate_reads_them() {
        let cases = [
            (
                "20240101000001_create_api_keys.sql",
                20240101000001,
                "create_api_keys",
            ),
            ("001_Initial_Setup.sql", 1, "Initial_Setup"),
            ("202508140123_init_schema.sql", 202508140123, "init_schema"),
            (
                "20220517213052_create-surveys-table.sql",
                20220517213052,
                "create_surveys_table",
            ),
            ("00000000000000-initial-schema.sql", 0, "initial_schema"),
            (
                "10000000000000_demote-postgres.sql",
                10000000000000,
                "demote_postgres",
            ),
            ("0001__initial_setup.sql", 1, "initial_setup"),
            ("062_List_Location..sql", 62, "List_Location_"),
            ("20240101000001_çà va.sql", 20240101000001, "___va"),
            ("42.sql", 42, "42"),
            ("007.sql", 7, "007"),
            ("5create.sql", 5, "create"),
        ];
        for (file, version, name) in cases {
            let c =
                one(file, "-- migrate:up\nSELECT 1;\n").unwrap_or_else(|e| panic!("{file}: {e}"));
            let m = &c.migrations[0];
            assert_eq!((m.version, m.name.as_str()), (version, name), "{file}");
            // refinery reads the name whole, so its runner records what dhctl compares.
            assert_eq!(m.to_refinery().name(), name, "{file}");
            assert_eq!(m.to_refinery().checksum(), m.checksum, "{file}");
        }
    }

    #[test]
    fn versions_order_by_number_not_by_name() {
        let c = parse_files(vec![
            ("10_b.sql".into(), b"SELECT 10;".to_vec()),
            ("9_a.sql".into(), b"SELECT 9;".to_vec()),
            ("0100_c.sql".into(), b"SELECT 100;".to_vec()),
        ])
        .unwrap();
        let versions: Vec<i64> = c.migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![9, 10, 100]);
    }

    #[test]
    fn a_file_without_markers_is_all_up() {
        let c = one("20240101000001_a.sql", "CREATE TABLE a();\n").unwrap();
        assert_eq!(c.migrations[0].up.first_line, 1);
        assert!(c.migrations[0].down.is_none());
    }

    #[test]
    fn transaction_false_is_read_per_section() {
        let c = one("20240101000001_a.sql", "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t(x);\n-- migrate:down\nDROP INDEX i;\n").unwrap();
        assert_eq!(c.migrations[0].up.transaction, Transaction::None);
        assert_eq!(
            c.migrations[0].down.as_ref().unwrap().transaction,
            Transaction::Wrapped
        );
    }

    #[test]
    fn markers_follow_dbmates_spacing() {
        for text in [
            "--migrate:up\nSELECT 1;\n--migrate:down\n",
            "--\tmigrate:up   transaction:false\nSELECT 1;\n-- migrate:down   \n",
        ] {
            let c = one("1_a.sql", text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(c.migrations[0].up.sql, "SELECT 1;", "{text:?}");
            assert!(c.migrations[0].down.is_some());
        }
    }

    #[test]
    fn crlf_is_not_a_different_checksum() {
        let lf = one("20240101000001_a.sql", "-- migrate:up\nSELECT 1;\n").unwrap();
        let crlf = one("20240101000001_a.sql", "-- migrate:up\r\nSELECT 1;\r\n").unwrap();
        assert_eq!(lf.migrations[0].checksum, crlf.migrations[0].checksum);
    }

    #[test]
    fn an_empty_down_section_is_a_noop_down_not_a_missing_one() {
        for down in ["", "\n", "\n\n-- nothing to undo\n", "\n/* kept */\n"] {
            let text = format!("-- migrate:up\nSELECT 1;\n-- migrate:down{down}");
            let c = one("20240101000001_a.sql", &text).unwrap();
            let d = c.migrations[0].down.as_ref().expect("the marker is there");
            assert!(d.is_noop(), "{down:?}");
        }
        let none = one("20240101000001_a.sql", "-- migrate:up\nSELECT 1;\n").unwrap();
        assert!(none.migrations[0].down.is_none());
    }

    #[test]
    fn a_comment_only_up_section_is_a_noop_migration() {
        let c = one(
            "20240101000001_a.sql",
            "-- migrate:up\n-- views moved to 042_views.sql\n-- migrate:down\n",
        )
        .unwrap();
        assert!(c.migrations[0].up.is_noop());
    }

    #[test]
    fn markers_inside_literals_and_comments_are_text() {
        let text = "-- migrate:up\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n-- migrate:down\nSELECT 'x'\n$$;\nSELECT '\n-- migrate:down\n';\n/*\n-- +goose Down\n  -- migrate:down\n*/\nCOMMENT ON TABLE t IS E'\\'\n-- Migrate:down';\n-- migrate:down\nDROP FUNCTION f();\n";
        let c = one("1_f.sql", text).unwrap();
        let m = &c.migrations[0];
        assert!(m.up.sql.contains("SELECT 'x'"), "{}", m.up.sql);
        assert!(m.up.sql.contains("-- Migrate:down';"), "{}", m.up.sql);
        assert_eq!(m.down.as_ref().unwrap().sql, "DROP FUNCTION f();\n");
        assert_eq!(m.down.as_ref().unwrap().first_line, 16);
    }

    #[test]
    fn near_miss_markers_are_errors_naming_the_line() {
        let cases = [
            "  -- migrate:down",
            "\t-- migrate:down",
            "-- migrate down",
            "-- Migrate:down",
            "-- migrate:UP",
            "-- MIGRATE:DOWN",
            "-- migrate: down",
            "-- migrate-down",
            "---- migrate:down",
            "-- +goose Down",
            "-- +goose StatementBegin",
            "-- +goose NO TRANSACTION",
            "-- +migrate Down",
            "-- +micrate Down",
            "-- migrate:sideways",
            "-- migrate:downward",
            "-- migrate:up:",
            "-- migrate:down transaction:maybe",
        ];
        for line in cases {
            let text = format!("-- migrate:up\nSELECT 1;\n{line}\nSELECT 2;\n");
            let (problem, hint) = refused("20240101000001_a.sql", text.as_bytes());
            assert!(problem.starts_with("line 3: "), "{line:?}: {problem}");
            assert!(hint.contains("-- migrate:up"), "{line:?}: {hint}");
            assert!(
                !hint.contains("named"),
                "the naming hint is for naming errors: {hint}"
            );
        }
        let (indented, _) = refused("1_a.sql", b"-- migrate:up\nSELECT 1\n    -- migrate:down\n");
        assert!(indented.contains("indented"), "{indented}");
        let (goose, _) = refused("1_a.sql", b"-- +goose Up\nSELECT 1;\n");
        assert!(goose.contains("goose directive"), "{goose}");
    }

    #[test]
    fn ordinary_comments_about_migrating_are_not_markers() {
        for line in [
            "-- migrate the old rows first",
            "-- migrated: yes",
            "-- migrate upgrades later",
            "-- see migrate:up in docs",
            "-- +1 for this",
        ] {
            let text = format!("-- migrate:up\n{line}\nSELECT 1;\n");
            assert!(one("1_a.sql", &text).is_ok(), "{line:?}");
        }
    }

    #[test]
    fn a_marker_inside_an_unterminated_literal_is_an_error() {
        let (problem, _) = refused(
            "1_a.sql",
            b"-- migrate:up\nSELECT 'it''s;\nSELECT $$ oops;\n-- migrate:down\nSELECT 2;\n",
        );
        assert!(problem.starts_with("line 4: "), "{problem}");
        assert!(problem.contains("starts on line 2"), "{problem}");
    }

    #[test]
    fn bad_inputs_are_reported_with_the_file_and_a_fitting_hint() {
        let cases: &[(&str, &[u8], &str, &str)] = &[
            (
                "bad.sql",
                b"SELECT 1;",
                "must start with its version",
                "leading digits",
            ),
            (
                "_1_bad.sql",
                b"SELECT 1;",
                "must start with its version",
                "leading digits",
            ),
            (
                "99999999999999999999_a.sql",
                b"SELECT 1;",
                "too large",
                "64-bit",
            ),
            (
                "1_a.sql",
                b"-- migrate:up\n\n  \n-- migrate:down\nDROP TABLE a;",
                "up section is empty",
                "comment-only",
            ),
            ("1_a.sql", b"", "up section is empty", "comment-only"),
            (
                "1_a.sql",
                b"-- migrate:up transaction:maybe\nSELECT 1;",
                "unknown option",
                "-- migrate:up",
            ),
            (
                "1_a.sql",
                b"-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 2;",
                "line 1: `-- migrate:down` without",
                "-- migrate:up",
            ),
            (
                "1_a.sql",
                b"-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;",
                "line 3: a second `-- migrate:up` marker (the first is on line 1)",
                "-- migrate:up",
            ),
            (
                "1_a.sql",
                b"-- migrate:up\n-- migrate:down\n-- migrate:down\n",
                "line 3: a second `-- migrate:down`",
                "-- migrate:up",
            ),
            (
                "1_a.sql",
                b"SELECT 0;\n-- migrate:up\nSELECT 1;",
                "line 2: SQL before",
                "-- migrate:up",
            ),
            (
                "1_a.sql",
                b"-- migrate:up\nSELECT 1;\nSELECT '\xff';",
                "line 3: not valid UTF-8",
                "UTF-8",
            ),
            (
                "1_a.sql",
                b"-- migrate:up\nSELECT 1;\n\nSELECT '\0';",
                "line 4: a NUL byte",
                "NUL",
            ),
        ];
        for (name, bytes, expected, hint_part) in cases {
            let (problem, hint) = refused(name, bytes);
            assert!(problem.contains(expected), "{name}: {problem}");
            assert!(hint.contains(hint_part), "{name} {expected}: {hint}");
        }
    }

    #[test]
    fn psql_meta_commands_are_refused_outside_literals() {
        let (problem, hint) = refused(
            "1_dump.sql",
            b"-- migrate:up\n\\restrict abc\nCREATE TABLE a (id int);\n",
        );
        assert!(
            problem.starts_with("line 2: `\\restrict abc` is a psql meta-command"),
            "{problem}"
        );
        assert!(hint.contains("\\unrestrict"), "{hint}");
        let inside = "-- migrate:up\nSELECT E'a\n\\b';\nDO $$ BEGIN\n\\x\nEND $$;\n";
        assert!(one("1_ok.sql", inside).is_ok());
    }

    #[test]
    fn a_block_comment_before_the_up_marker_is_not_sql() {
        assert!(one(
            "1_a.sql",
            "/* header\n spanning lines */\n-- note\n-- migrate:up\nSELECT 1;\n"
        )
        .is_ok());
    }

    #[test]
    fn duplicate_versions_name_both_files() {
        let err = parse_files(vec![
            ("20240101000001_a.sql".into(), b"SELECT 1;".to_vec()),
            ("20240101000001_b.sql".into(), b"SELECT 2;".to_vec()),
            ("001_c.sql".into(), b"SELECT 2;".to_vec()),
            ("1_d.sql".into(), b"SELECT 2;".to_vec()),
        ])
        .unwrap_err();
        let hint = err.hint().unwrap();
        assert!(hint.contains("001 and 1 are one version"), "{hint}");
        let found = problems(Err(err));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].file, "1_d.sql");
        assert!(found[0].problem.contains("001_c.sql"));
        assert_eq!(found[1].file, "20240101000001_b.sql");
        assert!(found[1].problem.contains("20240101000001_a.sql"));
    }

    #[test]
    fn checksum_is_refinerys() {
        let c = one("20240101000001_a.sql", "-- migrate:up\nSELECT 1;\n").unwrap();
        let expected = refinery::Migration::unapplied("V20240101000001__a", "SELECT 1;\n")
            .unwrap()
            .checksum();
        assert_eq!(c.migrations[0].checksum, expected);
        // The hasher is dhctl's own now: it must agree with refinery's on names, versions and
        // SQL of every shape dhctl accepts.
        for (file, text) in [
            ("1_a.sql", "SELECT 1;"),
            ("001.sql", "SELECT 'é ✓ 日本';\n"),
            (
                "9223372036854775807_Mixed_Case_99.sql",
                "-- migrate:up\nSELECT 2;\r\n",
            ),
            (
                "20240101000002-with-dashes.v2.sql",
                "CREATE TABLE t (id int);\n\n\n",
            ),
        ] {
            let m = &one(file, text).unwrap().migrations[0];
            assert_eq!(m.checksum, m.to_refinery().checksum(), "{file}");
        }
    }

    #[test]
    fn folder_entries_that_look_like_migrations_are_never_skipped_in_silence() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("1_ok.sql"), "SELECT 1;").unwrap();
        std::fs::write(d.join("README.md"), "not a migration").unwrap();
        std::fs::write(d.join(".hidden.sql"), "ignored").unwrap();
        std::fs::write(d.join("2_upper.SQL"), "SELECT 2;").unwrap();
        std::fs::create_dir(d.join("3_dir.sql")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere.sql"), d.join("4_dangling.sql")).unwrap();
        std::os::unix::fs::symlink(d.join("1_ok.sql"), d.join("5_link.sql")).unwrap();
        let err = load(&Source::Dir(d.into())).unwrap_err();
        let hint = err.hint().unwrap();
        assert!(hint.contains("move anything else"), "{hint}");
        let found = problems(Err(err));
        let files: Vec<&str> = found.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            files,
            vec!["2_upper.SQL", "3_dir.sql", "4_dangling.sql"],
            "{found:?}"
        );
        assert!(found[0].problem.contains("rename it to 2_upper.sql"));
        assert!(found[1].problem.contains("directory"));
        assert!(found[2].problem.contains("points at nothing"));
        std::fs::remove_file(d.join("2_upper.SQL")).unwrap();
        std::fs::remove_dir(d.join("3_dir.sql")).unwrap();
        std::fs::remove_file(d.join("4_dangling.sql")).unwrap();
        let c = load(&Source::Dir(d.into())).unwrap();
        assert_eq!(c.migrations.len(), 2, "a link to a file is read");
    }

    #[test]
    fn a_missing_folder_gets_a_hint() {
        let err = load(&Source::Dir("/nonexistent/dhctl/migrations".into())).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(err.hint().unwrap().contains("--migrations-dir"));
    }

    /// A cheap stand-in for the cargo-fuzz target (fuzz/fuzz_targets/migration_file.rs), run
    /// with every `cargo test`: mutated files never panic the parser, and what it accepts comes
    /// from the file.
    #[test]
    fn mutated_files_never_panic() {
        let seeds: Vec<Vec<u8>> = crate::embedded::MIGRATIONS
            .iter()
            .map(|(_, b)| b.to_vec())
            .chain([
                b"-- migrate:up\nSELECT $a$\n-- migrate:down\n$a$; /* x\n-- +goose Down\n*/ SELECT E'\\'\n';\n-- migrate:down transaction:false\n\n".to_vec(),
                "-- migrate:up\n  -- migrate:down\n-- Migrate:UP\n'é\u{feff}\r\n--migrate:down".as_bytes().to_vec(),
            ])
            .collect();
        let tokens: [&[u8]; 12] = [
            b"\n-- migrate:up",
            b"\n-- migrate:down",
            b"'",
            b"$$",
            b"$t$",
            b"/*",
            b"*/",
            b"\"",
            b"\r\n",
            b"\0",
            b"\xff",
            b"\n  -- migrate:down",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n.max(1)
        };
        for round in 0..3000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len() + 1);
                match next(3) {
                    0 => bytes
                        .splice(at..at, tokens[next(tokens.len())].iter().copied())
                        .for_each(drop),
                    1 if at < bytes.len() => bytes.truncate(at),
                    _ if at < bytes.len() => bytes[at] = next(256) as u8,
                    _ => {}
                }
            }
            let name = if round % 7 == 0 {
                "x_1.sql"
            } else {
                "20240101000001_f.sql"
            };
            match parse_files(vec![(name.into(), bytes.clone())]) {
                Ok(c) => {
                    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
                    let m = &c.migrations[0];
                    assert!(text.contains(m.up.sql.trim()), "{text:?}");
                    if let Some(d) = &m.down {
                        assert!(text.contains(d.sql.trim()), "{text:?}");
                    }
                }
                Err(Error::Catalog { problems, .. }) => {
                    assert_eq!(problems.len(), 1);
                    assert_eq!(problems[0].file, name);
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
}
