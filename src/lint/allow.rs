//! `-- dhctl:allow RULE reason`: accepting one finding of the statement just below, on purpose
//! and with the reason written down. Several allows may stand on consecutive lines above one
//! statement. A reason is required and the rule must exist (else exit 2: a typo must not
//! silently allow nothing); an allow that matched no finding is a warning, so stale ones are
//! noticed.

use std::collections::HashSet;

use super::sql::Parsed;
use super::{Finding, Rule, Severity};
use crate::Error;

const MARKER: &str = "dhctl:allow";

/// One allow comment.
struct Allow {
    line: usize,
    rule: Rule,
    /// The line of the statement it stands above, if it stands right above one.
    statement: Option<usize>,
    used: bool,
}

/// Drops the findings that an allow covers and adds a warning for each allow that covered none.
pub(crate) fn apply(
    findings: Vec<Finding>,
    parsed: &Parsed,
    path: &str,
) -> crate::Result<Vec<Finding>> {
    let mut allows = read(parsed, path)?;
    let mut kept = Vec::with_capacity(findings.len());
    for finding in findings {
        let allow = allows
            .iter_mut()
            .find(|a| a.statement == Some(finding.line) && a.rule == finding.rule);
        match allow {
            Some(allow) => allow.used = true,
            None => kept.push(finding),
        }
    }
    for allow in allows.iter().filter(|a| !a.used) {
        let rule = Rule::UnusedAllow;
        let (message, hint) = match allow.statement {
            Some(line) => (
                format!(
                    "`dhctl:allow {}` matched no finding of the statement on line {line}",
                    allow.rule.name()
                ),
                "remove the comment: the statement no longer needs it",
            ),
            None => (
                format!(
                    "`dhctl:allow {}` stands above no statement",
                    allow.rule.name()
                ),
                "put the allow on the line just before the statement it is for",
            ),
        };
        kept.push(Finding {
            file: String::new(),
            line: allow.line,
            rule,
            severity: Severity::Warning,
            message,
            hint: hint.into(),
            statement: String::new(),
            locks: Vec::new(),
        });
    }
    Ok(kept)
}

/// Every allow comment of the section, each tied to the statement right below it.
fn read(parsed: &Parsed, path: &str) -> crate::Result<Vec<Allow>> {
    let mut allows = Vec::new();
    for comment in &parsed.comments {
        let Some(body) = comment.text.strip_prefix("--") else {
            continue;
        };
        let Some(rest) = body.trim_start().strip_prefix(MARKER) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(rule_name) = words.next() else {
            return Err(bad(path, comment.line, "names no rule"));
        };
        let Some(rule) = Rule::from_name(rule_name) else {
            return Err(bad(
                path,
                comment.line,
                &format!("names the unknown rule `{rule_name}`"),
            ));
        };
        if words.next().is_none() {
            return Err(bad(
                path,
                comment.line,
                &format!("allows `{rule_name}` without a reason"),
            ));
        }
        allows.push(Allow {
            line: comment.line,
            rule,
            statement: None,
            used: false,
        });
    }
    let allow_lines: HashSet<usize> = allows.iter().map(|a| a.line).collect();
    for allow in &mut allows {
        let below = parsed
            .statement_lines
            .iter()
            .map(|(first, _)| *first)
            .find(|first| *first > allow.line);
        allow.statement =
            below.filter(|first| (allow.line + 1..*first).all(|l| allow_lines.contains(&l)));
    }
    Ok(allows)
}

fn bad(path: &str, line: usize, what: &str) -> Error {
    let rules: Vec<&str> = Rule::ALL
        .iter()
        .filter(|r| Rule::from_name(r.name()).is_some())
        .map(|r| r.name())
        .collect();
    Error::usage_hint(
        format!("{path}:{line}: this dhctl:allow comment {what}"),
        format!(
            "write `-- dhctl:allow RULE why it is safe here` on the line just before the statement; rules: {}",
            rules.join(", ")
        ),
    )
}
