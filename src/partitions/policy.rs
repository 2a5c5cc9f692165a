//! Partition policies: `partitions/<table>.toml` → validated [`Policy`] values.
//!
//! Every problem of every file is collected and reported at once, each naming the file and the
//! key, before any connection is made (exit 2). What only the database can tell (is the table
//! range-partitioned on a timestamptz column?) is checked by `catalog` before anything changes.

use std::path::Path;

use serde::Serialize;

use super::period::{Interval, Retention};
use crate::db::ident::{is_plain_name, MAX_IDENT_LEN};
use crate::error::{Error, FileProblem, Result};
use crate::source::Source;

/// The largest `premake`: a year of daily partitions. Beyond that a typo is likelier than a need.
pub const MAX_PREMAKE: u32 = 366;

const KEYS: [&str; 6] = [
    "table",
    "column",
    "interval",
    "premake",
    "retention",
    "retention_mode",
];

/// What happens to a partition past its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    /// Detach, then drop the table (its rows are gone).
    Drop,
    /// Detach and keep the table, for archiving by other means.
    Detach,
}

/// One validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Where it was read from, for messages: `partitions/request_logs.toml` or a path.
    pub file: String,
    pub table: String,
    pub column: String,
    pub interval: Interval,
    /// Periods kept created ahead of the current one.
    pub premake: u32,
    pub retention: Option<Retention>,
    pub retention_mode: RetentionMode,
}

/// Loads and validates every policy, sorted by table.
pub fn load(source: &Source) -> Result<Vec<Policy>> {
    let files = match source {
        Source::Embedded => crate::embedded::POLICIES
            .iter()
            .map(|(name, bytes)| (format!("partitions/{name}"), bytes.to_vec()))
            .collect(),
        Source::Dir(dir) => read_dir(dir)?,
    };
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for (file, bytes) in files {
        match parse(&file, &bytes) {
            Ok(policy) => policies.push(policy),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems_error(problems));
    }
    policies.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(policies)
}

/// Keeps only the policy for `table` when one is asked for.
pub fn select(policies: Vec<Policy>, table: Option<&str>) -> Result<Vec<Policy>> {
    let Some(table) = table else {
        return Ok(policies);
    };
    let known: Vec<&str> = policies.iter().map(|p| p.table.as_str()).collect();
    if !known.contains(&table) {
        return Err(Error::usage_hint(
            format!("--table {table}: no partition policy names that table"),
            format!(
                "policies exist for: {}; add partitions/{table}.toml to maintain another",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    Ok(policies.into_iter().filter(|p| p.table == table).collect())
}

/// Problems with policy files as one exit-2 error.
pub fn problems_error(problems: Vec<FileProblem>) -> Error {
    Error::usage_hint(
        problems
            .iter()
            .map(|p| format!("{}: {}", p.file, p.problem))
            .collect::<Vec<_>>()
            .join("\n"),
        "fix the policy file; docs/partitions.md lists the keys (table, column, interval, \
         premake, retention, retention_mode)",
    )
}

fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let io = |source| Error::Io {
        path: dir.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") && path.is_file() {
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            files.push((path.display().to_string(), bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one policy file; `file` names it in every problem.
pub fn parse(file: &str, bytes: &[u8]) -> std::result::Result<Policy, Vec<FileProblem>> {
    let problem = |text: String| FileProblem {
        file: file.to_string(),
        problem: text,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| vec![problem("not UTF-8 text".into())])?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![problem(format!("not valid TOML: {}", e.message()))])?;
    let mut problems = Vec::new();
    for key in doc.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        problems.push(problem(format!(
            "key `{key}`: unknown key; the keys are {}",
            KEYS.join(", ")
        )));
    }
    let mut string = |key: &str, required: bool| match doc.get(key) {
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(problem(format!(
                "key `{key}`: expected a string, found {}",
                other.type_str()
            )));
            None
        }
        None if required => {
            problems.push(problem(format!("key `{key}`: missing")));
            None
        }
        None => None,
    };
    let table = string("table", true);
    let column = string("column", true);
    let interval = string("interval", true);
    let retention = string("retention", false);
    let retention_mode = string("retention_mode", false);

    let stem = Path::new(file).file_stem().and_then(|s| s.to_str());
    if let Some(table) = &table {
        let longest = MAX_IDENT_LEN - "_YYYY_MM_DD".len();
        if !is_plain_name(table) {
            problems.push(problem(format!(
                "key `table`: `{table}` is not a plain name ([a-z_][a-z0-9_]*); \
                 dhctl maintains only plainly named tables"
            )));
        } else if table.len() > longest {
            problems.push(problem(format!(
                "key `table`: `{table}` is longer than {longest} bytes, so its partitions' \
                 names would exceed PostgreSQL's 63"
            )));
        } else if stem != Some(table.as_str()) {
            problems.push(problem(format!(
                "key `table`: `{table}` does not match the file name; name the file {table}.toml"
            )));
        }
    }
    if let Some(column) = &column {
        if !is_plain_name(column) {
            problems.push(problem(format!(
                "key `column`: `{column}` is not a plain name ([a-z_][a-z0-9_]*)"
            )));
        }
    }
    let interval = interval.and_then(|text| {
        let parsed = Interval::parse(&text);
        if parsed.is_none() {
            problems.push(problem(format!(
                "key `interval`: `{text}` is not an interval; use day, week or month"
            )));
        }
        parsed
    });
    let premake = match doc.get("premake") {
        Some(toml::Value::Integer(n)) if (1..=i64::from(MAX_PREMAKE)).contains(n) => {
            Some(*n as u32)
        }
        Some(toml::Value::Integer(n)) => {
            problems.push(problem(format!(
                "key `premake`: {n} is out of range; keep 1 to {MAX_PREMAKE} periods ahead"
            )));
            None
        }
        Some(other) => {
            problems.push(problem(format!(
                "key `premake`: expected an integer, found {}",
                other.type_str()
            )));
            None
        }
        None => {
            problems.push(problem("key `premake`: missing".into()));
            None
        }
    };
    let retention = retention.and_then(|text| match Retention::parse(&text) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(problem(format!("key `retention`: {e}")));
            None
        }
    });
    let retention_mode = match retention_mode.as_deref() {
        None | Some("drop") => RetentionMode::Drop,
        Some("detach") => RetentionMode::Detach,
        Some(other) => {
            problems.push(problem(format!(
                "key `retention_mode`: `{other}` is not a mode; use drop or detach"
            )));
            RetentionMode::Drop
        }
    };
    match (table, column, interval, premake) {
        (Some(table), Some(column), Some(interval), Some(premake)) if problems.is_empty() => {
            Ok(Policy {
                file: file.to_string(),
                table,
                column,
                interval,
                premake,
                retention,
                retention_mode,
            })
        }
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "table = \"request_logs\"\ncolumn = \"created_at\"\ninterval = \"month\"\n\
                        premake = 3\nretention = \"13 months\"\n";

    fn problems(file: &str, text: &str) -> Vec<String> {
        parse(file, text.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.file, p.problem))
            .collect()
    }

    #[test]
    fn the_shipped_policies_are_valid() {
        let policies = load(&Source::Embedded).unwrap();
        let tables: Vec<_> = policies.iter().map(|p| p.table.as_str()).collect();
        assert_eq!(tables, ["request_logs", "webhook_deliveries"]);
        for p in &policies {
            assert_eq!(p.interval, Interval::Month);
            assert_eq!(p.premake, 3);
            assert!(p.retention.is_some());
        }
    }

    #[test]
    fn a_good_policy_parses() {
        let p = parse("partitions/request_logs.toml", GOOD.as_bytes()).unwrap();
        assert_eq!(p.table, "request_logs");
        assert_eq!(p.retention.unwrap().to_string(), "13 months");
        assert_eq!(p.retention_mode, RetentionMode::Drop);
    }

    #[test]
    fn each_bad_key_is_named_with_its_file() {
        let f = "p/request_logs.toml";
        let cases = [
            (
                format!("{GOOD}colour = \"red\""),
                "key `colour`: unknown key",
            ),
            (
                GOOD.replace("\"month\"", "\"fortnight\""),
                "key `interval`: `fortnight`",
            ),
            (
                GOOD.replace("premake = 3", "premake = 0"),
                "key `premake`: 0 is out of range",
            ),
            (
                GOOD.replace("premake = 3", "premake = 9999"),
                "key `premake`: 9999 is out of range",
            ),
            (
                GOOD.replace("premake = 3", "premake = \"3\""),
                "key `premake`: expected an integer",
            ),
            (
                GOOD.replace("\"created_at\"", "\"created_at; drop table x\""),
                "key `column`: `created_at; drop",
            ),
            (
                GOOD.replace("\"request_logs\"", "\"Request_Logs\""),
                "key `table`: `Request_Logs` is not a plain name",
            ),
            (
                GOOD.replace("\"request_logs\"", "\"other\""),
                "key `table`: `other` does not match the file name",
            ),
            (
                GOOD.replace("13 months", "13 fortnights"),
                "key `retention`: `13 fortnights`",
            ),
            (
                format!("{GOOD}retention_mode = \"archive\""),
                "key `retention_mode`: `archive`",
            ),
            (
                GOOD.replace("interval = \"month\"\n", ""),
                "key `interval`: missing",
            ),
            ("table = ".to_string(), "not valid TOML"),
        ];
        for (text, wanted) in cases {
            let found = problems(f, &text);
            assert!(
                found.iter().any(|p| p.starts_with(f) && p.contains(wanted)),
                "{wanted:?} not in {found:?}"
            );
        }
    }

    #[test]
    fn select_rejects_an_unknown_table() {
        let policies = load(&Source::Embedded).unwrap();
        let err = select(policies.clone(), Some("audit_logs")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--table audit_logs"), "{err}");
        assert_eq!(select(policies, Some("request_logs")).unwrap().len(), 1);
    }
}
