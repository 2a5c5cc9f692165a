//! The pure part of a dump: statements (as the catalog query returns them) sorted into their
//! deterministic order and joined into the file's text, with its header and the history rows.

use std::cmp::Ordering;

use crate::db::ident::quote_literal;
use crate::migrations::history::HistoryRow;

/// One statement of the dump: its section (the order of kinds, see [`title`]), the keys that
/// order it within the section (names, a partition's bound), and its SQL, ending in `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub section: i32,
    pub keys: [String; 3],
    pub sql: String,
}

/// What the history rows' `applied_on` says in the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedOn {
    /// The time the dump is loaded (computed by the loading server): the dump does not depend
    /// on when the migrations ran, so two databases migrated from the same files dump alike.
    Load,
    /// The times stored in the dumped database's history, as they are.
    Keep,
}

/// The migration history to record: the table's name, quoted, and its rows.
#[derive(Debug, Clone)]
pub struct History {
    pub table: String,
    pub rows: Vec<HistoryRow>,
}

/// The heading a section's statements follow in the text.
fn title(section: i32) -> &'static str {
    match section {
        10 => "Schemas",
        20 => "Extensions (at the version the loading server installs)",
        30 => "Types, each after the types it uses: enums, ranges, domains, composites",
        40 => "Functions and procedures",
        45 => "Casts",
        47 => "Functions and procedures whose SQL-standard body uses a cast",
        50 => "Sequences (their current values are data, not dumped)",
        60 => "Tables",
        // Column options are here too; the title is kept so that committed dumps stay as they were.
        62 => "Column storage, compression and statistics",
        64 => "Primary keys, unique and exclusion constraints",
        70 => "Partitions, in bound order",
        75 => "Partitions' columns that differ from their parent's",
        80 => "Indexes",
        85 => "Indexes of single partitions",
        86 => "Clustering",
        87 => "Partitions' indexes attached to their parent's",
        89 => "Partitions' foreign keys named otherwise than their parent's",
        90 => "Constraints added after the tables: foreign keys, NOT VALID checks, partitions' own",
        92 => "Partitions' checks validated where their parent's are not",
        95 => "Sequences owned by columns",
        96 => "Replica identity",
        98 => "Functions and procedures that use tables",
        100 => "Views and materialized views",
        105 => "Indexes of materialized views",
        106 => "Clustering of materialized views",
        107 => "Statistics targets of index columns",
        110 => "Functions and procedures that use views",
        112 => "Domain defaults that call the dump's functions or sequences",
        120 => "Triggers",
        122 => "Partitions' triggers enabled or disabled unlike their parent's",
        130 => "Row level security",
        140 => "Comments",
        _ => "Other",
    }
}

/// The file's first lines: what it is, how to load it, what it leaves out.
const HEADER: &str = "\
-- dhctl dump: this database's schema as SQL, built from its catalog (docs/dump.md).
-- Load it into an empty database: psql -X -v ON_ERROR_STOP=1 -f FILE
-- Not in it: table rows (but the migration history's), sequence values, owners, grants.
";

/// Session settings for the load: names in the dump are qualified, so search_path is pg_catalog alone,
/// and function bodies are not checked (a function may name a table made later in the file).
/// lc_monetary is the one the dump was read with (`super::PINNED`), so a money constant
/// (`DEFAULT '$1.00'::money`) reads back whatever the loading server's locale.
const PREAMBLE: &str = "\
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET lc_monetary = 'C';
SET check_function_bodies = false;
SET client_min_messages = warning;
SET search_path = pg_catalog;
";

/// Sorts the statements and joins them into the dump's text (see [`super::Dump`]).
pub fn assemble(
    mut statements: Vec<Statement>,
    history: Option<&History>,
    applied_on: AppliedOn,
    warnings: Vec<String>,
) -> super::Dump {
    statements.sort_by(|a, b| {
        a.section
            .cmp(&b.section)
            .then_with(|| {
                a.keys
                    .iter()
                    .zip(&b.keys)
                    .map(|(x, y)| natural(x, y))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            })
            .then_with(|| a.sql.cmp(&b.sql))
    });
    let mut sql = String::from(HEADER);
    for warning in &warnings {
        sql.push_str("-- WARNING: ");
        sql.push_str(&one_line(warning));
        sql.push('\n');
    }
    sql.push('\n');
    sql.push_str(PREAMBLE);
    let mut section = None;
    for statement in &statements {
        if section != Some(statement.section) {
            section = Some(statement.section);
            sql.push_str("\n-- ");
            sql.push_str(title(statement.section));
            sql.push('\n');
        }
        sql.push('\n');
        sql.push_str(&statement.sql);
        sql.push('\n');
    }
    let history_rows = history.map_or(0, |h| h.rows.len());
    if let Some(history) = history.filter(|h| !h.rows.is_empty()) {
        sql.push_str(
            "\n-- Migration history (refinery's table, read by dhctl status and verify)\n\n",
        );
        sql.push_str(&history_insert(history, applied_on));
    }
    super::Dump {
        objects: statements.len() + usize::from(history_rows > 0),
        history_rows,
        not_dumped: warnings,
        sql,
    }
}

/// The INSERT of the history rows, in version order.
fn history_insert(history: &History, applied_on: AppliedOn) -> String {
    let mut rows = history.rows.clone();
    rows.sort_by_key(|r| r.version);
    let values: Vec<String> = rows
        .iter()
        .map(|r| match applied_on {
            AppliedOn::Load => format!(
                "    ({}, {}, {})",
                r.version,
                quote_literal(&r.name),
                quote_literal(&r.checksum)
            ),
            AppliedOn::Keep => format!(
                "    ({}, {}, {}, {})",
                r.version,
                quote_literal(&r.name),
                quote_literal(&r.applied_on),
                quote_literal(&r.checksum)
            ),
        })
        .collect();
    match applied_on {
        // refinery's RFC 3339 text, in UTC, of the loading transaction's start.
        AppliedOn::Load => format!(
            "INSERT INTO {} (version, name, applied_on, checksum)\n\
             SELECT h.version, h.name,\n       \
             pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),\n       \
             h.checksum\n\
             FROM (VALUES\n{}\n) AS h(version, name, checksum);\n",
            history.table,
            values.join(",\n")
        ),
        AppliedOn::Keep => format!(
            "INSERT INTO {} (version, name, applied_on, checksum) VALUES\n{};\n",
            history.table,
            values.join(",\n")
        ),
    }
}

/// A warning as one comment line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Natural order: runs of digits compare by their value, everything else byte by byte; equal
/// texts under that order fall back to plain byte order, so the order is total. Partition bounds
/// (`FROM ('2024-09-01 …') TO (…)`, `FROM (9) TO (10)`) then sort by value.
pub fn natural(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let (m, rest_x) = digits(x);
                let (n, rest_y) = digits(y);
                let (m_trim, n_trim) = (trim_zeros(m), trim_zeros(n));
                let order = m_trim.len().cmp(&n_trim.len()).then(m_trim.cmp(n_trim));
                if order.is_ne() {
                    return order;
                }
                x = rest_x;
                y = rest_y;
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn digits(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(section: i32, keys: [&str; 3], sql: &str) -> Statement {
        Statement {
            section,
            keys: keys.map(str::to_string),
            sql: sql.into(),
        }
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        assert_eq!(
            natural("FROM (9) TO (10)", "FROM (10) TO (11)"),
            Ordering::Less
        );
        assert_eq!(natural("t_2024_02", "t_2024_10"), Ordering::Less);
        assert_eq!(natural("a", "b"), Ordering::Less);
        assert_eq!(
            natural("a1", "a01"),
            "a1".cmp("a01"),
            "total: ties fall back"
        );
        assert_eq!(natural("", "a"), Ordering::Less);
        assert_eq!(natural("abc", "abc"), Ordering::Equal);
    }

    #[test]
    fn statements_are_ordered_by_section_then_keys_whatever_order_they_come_in() {
        let rows = vec![
            statement(70, ["001 t", "1 FOR VALUES FROM (10) TO (20)", "t_b"], "B;"),
            statement(60, ["t", "", ""], "T;"),
            statement(70, ["001 t", "2", "t_default"], "D;"),
            statement(70, ["001 t", "1 FOR VALUES FROM (9) TO (10)", "t_a"], "A;"),
            statement(10, ["s", "", ""], "S;"),
        ];
        let mut reversed = rows.clone();
        reversed.reverse();
        let one = assemble(rows, None, AppliedOn::Load, Vec::new());
        let two = assemble(reversed, None, AppliedOn::Load, Vec::new());
        assert_eq!(one.sql, two.sql);
        let order: Vec<&str> = one
            .sql
            .lines()
            .filter(|l| l.len() == 2 && l.ends_with(';'))
            .collect();
        assert_eq!(order, ["S;", "T;", "A;", "B;", "D;"]);
        assert_eq!(one.objects, 5);
    }

    #[test]
    fn warnings_are_in_the_header_on_one_line_each() {
        let dump = assemble(
            Vec::new(),
            None,
            AppliedOn::Load,
            vec!["rule r on t\nis not dumped".into()],
        );
        assert!(dump.sql.contains("-- WARNING: rule r on t is not dumped\n"));
    }

    fn history() -> History {
        History {
            table: "\"public\".\"refinery_schema_history\"".into(),
            rows: vec![
                HistoryRow {
                    version: 2,
                    name: "b".into(),
                    applied_on: "2026-01-02T00:00:00Z".into(),
                    checksum: "22".into(),
                },
                HistoryRow {
                    version: 1,
                    name: "it's".into(),
                    applied_on: "2026-01-01T00:00:00Z".into(),
                    checksum: "11".into(),
                },
            ],
        }
    }

    #[test]
    fn history_rows_carry_no_time_unless_kept() {
        let load = assemble(Vec::new(), Some(&history()), AppliedOn::Load, Vec::new());
        assert!(!load.sql.contains("2026-01"), "{}", load.sql);
        assert!(load
            .sql
            .contains("    (1, 'it''s', '11'),\n    (2, 'b', '22')"));
        assert_eq!(load.history_rows, 2);
        let keep = assemble(Vec::new(), Some(&history()), AppliedOn::Keep, Vec::new());
        assert!(keep
            .sql
            .contains("    (1, 'it''s', '2026-01-01T00:00:00Z', '11'),"));
    }
}
