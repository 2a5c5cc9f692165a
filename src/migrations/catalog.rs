//! Migration files → validated migrations.
//!
//! A file is `YYYYMMDDHHMMSS_description.sql` (the 14 digits are the version, a valid UTC time;
//! the description is `[a-z0-9_]+`) in dbmate's section syntax: `-- migrate:up`, then optionally
//! `-- migrate:down`; `transaction:false` after a marker runs that section outside a transaction.
//! A file with no marker is all up and has no down. Every problem of every file is collected and
//! reported at once, with the file's name, before any connection is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, FileProblem, Result};

/// Where migrations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The sql/ folder compiled into the binary.
    Embedded,
    /// A folder read at run time (`--migrations-dir`).
    Dir(PathBuf),
}

/// One section (up or down) of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's SQL exactly as in the file (LF line endings), without its marker line.
    pub sql: String,
    pub transaction: Transaction,
    /// The file's line number (1-based) on which `sql` starts.
    pub first_line: usize,
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
    /// The description part of the file name.
    pub name: String,
    pub file: String,
    pub up: Section,
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
        Source::Dir(dir) => parse_files(read_dir(dir)?),
    }
}

/// Every `*.sql` file in `dir` (other files, such as a README, are not migrations).
fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        files.push((entry.file_name().to_string_lossy().into_owned(), bytes));
    }
    Ok(files)
}

/// Validates a set of `(file name, contents)` pairs into a catalog, or reports every problem.
pub fn parse_files(files: Vec<(String, Vec<u8>)>) -> Result<Catalog> {
    let mut problems = Vec::new();
    let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
    for (file, bytes) in files {
        match parse_file(&file, &bytes) {
            Ok(m) => {
                if let Some(other) = by_version.get(&m.version) {
                    let (first, second) = if other.file < m.file {
                        (&other.file, &m.file)
                    } else {
                        (&m.file, &other.file)
                    };
                    problems.push(FileProblem {
                        file: second.clone(),
                        problem: format!(
                            "version {} is also used by {first}; give one of them a new timestamp",
                            m.version
                        ),
                    });
                } else {
                    by_version.insert(m.version, m);
                }
            }
            Err(problem) => problems.push(FileProblem { file, problem }),
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.file.cmp(&b.file));
        return Err(Error::Catalog { problems });
    }
    Ok(Catalog {
        migrations: by_version.into_values().collect(),
    })
}

/// Splits `YYYYMMDDHHMMSS_description.sql` into version and description.
pub fn parse_file_name(file: &str) -> std::result::Result<(i64, String), String> {
    let bad = || {
        "not a migration name: expected YYYYMMDDHHMMSS_description.sql with a description of \
         lower-case letters, digits and _"
            .to_string()
    };
    let stem = file.strip_suffix(".sql").ok_or_else(bad)?;
    let (digits, description) = stem.split_once('_').ok_or_else(bad)?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !is_description(description) {
        return Err(bad());
    }
    if chrono::NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").is_err() {
        return Err(format!(
            "version {digits} is not a valid UTC timestamp (YYYYMMDDHHMMSS)"
        ));
    }
    Ok((digits.parse().map_err(|_| bad())?, description.to_string()))
}

/// `[a-z0-9_]+`, at most 200 characters (refinery's name column is varchar(255)).
pub fn is_description(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 200
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_file(file: &str, bytes: &[u8]) -> std::result::Result<Migration, String> {
    let (version, name) = parse_file_name(file)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (invalid byte at offset {}); save the file as UTF-8",
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // CRLF → LF before anything else, so a Windows checkout is not drift.
    let text = text.replace("\r\n", "\n");
    let (up, down) = parse_sections(&text)?;
    if is_blank_sql(&up.sql) {
        return Err(
            "the up section is empty; write the migration's SQL after `-- migrate:up`".into(),
        );
    }
    let down = down.filter(|d| !is_blank_sql(&d.sql));
    let checksum = refinery::Migration::unapplied(&format!("V{version}__{name}"), &up.sql)
        .map_err(|e| format!("refinery rejects the name: {e}"))?
        .checksum();
    Ok(Migration {
        version,
        name,
        file: file.to_string(),
        up,
        down,
        checksum,
    })
}

/// A marker line: `-- migrate:up` or `-- migrate:down`, with optional `transaction:false`.
enum Marker {
    Up(Transaction),
    Down(Transaction),
}

fn parse_marker(line: &str, line_no: usize) -> std::result::Result<Option<Marker>, String> {
    let trimmed = line.trim();
    let Some(rest) = trimmed.strip_prefix("--") else {
        return Ok(None);
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("migrate:") else {
        return Ok(None);
    };
    let mut words = rest.split_whitespace();
    let kind = words.next().unwrap_or("");
    let mut transaction = Transaction::Wrapped;
    for option in words {
        transaction = match option {
            "transaction:false" => Transaction::None,
            "transaction:true" => Transaction::Wrapped,
            other => return Err(format!("line {line_no}: unknown option `{other}` in `{trimmed}`; the only option is transaction:false")),
        };
    }
    match kind {
        "up" => Ok(Some(Marker::Up(transaction))),
        "down" => Ok(Some(Marker::Down(transaction))),
        other => Err(format!("line {line_no}: unknown marker `migrate:{other}`; use `-- migrate:up` or `-- migrate:down`")),
    }
}

type Sections = (Section, Option<Section>);

fn parse_sections(text: &str) -> std::result::Result<Sections, String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut up_marker: Option<(usize, Transaction)> = None;
    let mut down_marker: Option<(usize, Transaction)> = None;
    for (index, line) in lines.iter().enumerate() {
        let line_no = index + 1;
        match parse_marker(line, line_no)? {
            None => {}
            Some(Marker::Up(t)) => {
                if up_marker.is_some() {
                    return Err(format!("line {line_no}: a second `-- migrate:up` marker"));
                }
                if down_marker.is_some() {
                    return Err(format!(
                        "line {line_no}: `-- migrate:up` must come before `-- migrate:down`"
                    ));
                }
                let before = &lines[..index];
                if before.iter().any(|l| !is_blank_sql(l)) {
                    return Err(format!("line {line_no}: SQL before `-- migrate:up` would run nowhere; move it into a section"));
                }
                up_marker = Some((index, t));
            }
            Some(Marker::Down(t)) => {
                if down_marker.is_some() {
                    return Err(format!("line {line_no}: a second `-- migrate:down` marker"));
                }
                if up_marker.is_none() {
                    return Err(format!(
                        "line {line_no}: `-- migrate:down` without a `-- migrate:up` before it"
                    ));
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

/// True when the text has no SQL: only blank lines and `--` comments.
fn is_blank_sql(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, text: &str) -> Result<Catalog> {
        parse_files(vec![(name.into(), text.as_bytes().to_vec())])
    }

    fn problems(result: Result<Catalog>) -> Vec<FileProblem> {
        match result {
            Err(Error::Catalog { problems }) => problems,
            other => panic!("expected a catalog error, got {other:?}"),
        }
    }

    #[test]
    fn the_embedded_catalog_is_valid() {
        let catalog = load(&Source::Embedded).expect("sql/ must be valid");
        assert_eq!(catalog.migrations.len(), 5);
        assert!(
            catalog.migrations.iter().all(|m| m.down.is_some()),
            "every shipped migration has a down section"
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
    fn crlf_is_not_a_different_checksum() {
        let lf = one("20240101000001_a.sql", "-- migrate:up\nSELECT 1;\n").unwrap();
        let crlf = one("20240101000001_a.sql", "-- migrate:up\r\nSELECT 1;\r\n").unwrap();
        assert_eq!(lf.migrations[0].checksum, crlf.migrations[0].checksum);
    }

    #[test]
    fn an_empty_down_section_counts_as_none() {
        let c = one(
            "20240101000001_a.sql",
            "-- migrate:up\nSELECT 1;\n-- migrate:down\n\n-- nothing\n",
        )
        .unwrap();
        assert!(c.migrations[0].down.is_none());
    }

    #[test]
    fn bad_inputs_are_reported_with_the_file() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("2024_bad.sql", b"SELECT 1;", "not a migration name"),
            (
                "20240101000001_Bad.sql",
                b"SELECT 1;",
                "not a migration name",
            ),
            (
                "20241301000000_a.sql",
                b"SELECT 1;",
                "not a valid UTC timestamp",
            ),
            (
                "20240101000001_a.sql",
                b"-- migrate:up\n-- just a comment\n-- migrate:down\nDROP TABLE a;",
                "up section is empty",
            ),
            (
                "20240101000001_a.sql",
                b"-- migrate:sideways\nSELECT 1;",
                "unknown marker",
            ),
            (
                "20240101000001_a.sql",
                b"-- migrate:up transaction:maybe\nSELECT 1;",
                "unknown option",
            ),
            (
                "20240101000001_a.sql",
                b"-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 2;",
                "without a `-- migrate:up`",
            ),
            (
                "20240101000001_a.sql",
                b"SELECT 0;\n-- migrate:up\nSELECT 1;",
                "before `-- migrate:up`",
            ),
            (
                "20240101000001_a.sql",
                b"-- migrate:up\nSELECT '\xff';",
                "not valid UTF-8",
            ),
        ];
        for (name, bytes, expected) in cases {
            let found = problems(parse_files(vec![(name.to_string(), bytes.to_vec())]));
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(&found[0].file, name);
            assert!(
                found[0].problem.contains(expected),
                "{name}: {}",
                found[0].problem
            );
        }
    }

    #[test]
    fn duplicate_versions_name_both_files() {
        let found = problems(parse_files(vec![
            ("20240101000001_a.sql".into(), b"SELECT 1;".to_vec()),
            ("20240101000001_b.sql".into(), b"SELECT 2;".to_vec()),
        ]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file, "20240101000001_b.sql");
        assert!(found[0].problem.contains("20240101000001_a.sql"));
    }

    #[test]
    fn checksum_is_refinerys() {
        let c = one("20240101000001_a.sql", "-- migrate:up\nSELECT 1;\n").unwrap();
        let expected = refinery::Migration::unapplied("V20240101000001__a", "SELECT 1;\n")
            .unwrap()
            .checksum();
        assert_eq!(c.migrations[0].checksum, expected);
    }
}
