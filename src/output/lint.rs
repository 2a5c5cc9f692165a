//! `dhctl lint`'s report: human (file:line, rule, message, hint, colour on a terminal), JSON,
//! or GitHub Actions workflow commands (one `::error`/`::warning` per finding, which a pull
//! request shows on the line).

use std::io::IsTerminal;

use super::escape;
use crate::cli::Format;
use crate::lint::{Lock, Report, Severity};

/// Prints the report on stdout in `format`.
pub fn emit(format: Format, report: &Report) {
    match format {
        Format::Json => super::emit(format, report, |_| String::new()),
        Format::Github => super::write_stdout(&github(report)),
        Format::Human => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            super::write_stdout(&human(report, colour));
        }
    }
}

/// The findings as lines for a terminal; `colour` adds ANSI colour to severities.
pub fn human(report: &Report, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    for f in &report.findings {
        let severity = match f.severity {
            Severity::Error => paint("1;31", "error"),
            Severity::Warning => paint("1;33", "warning"),
        };
        out.push_str(&format!(
            "{}:{}: {severity}[{}]: {}\n",
            escape::field(&f.file),
            f.line,
            f.rule.name(),
            escape::field(&f.message)
        ));
        if !f.statement.is_empty() {
            out.push_str(&format!("  statement: {}\n", escape::field(&f.statement)));
        }
        if !f.locks.is_empty() {
            out.push_str(&format!("  locks: {}\n", locks(&f.locks)));
        }
        out.push_str(&format!("  hint: {}\n", escape::field(&f.hint)));
    }
    if let Some(plan) = &report.plan {
        out.push_str("lock plan:\n");
        for step in plan {
            let what = if step.locks.is_empty() {
                "no lock on an existing relation".to_string()
            } else {
                locks(&step.locks)
            };
            out.push_str(&format!(
                "  {}:{}: {}\n    {what}\n",
                escape::field(&step.file),
                step.line,
                escape::field(&step.statement)
            ));
        }
    }
    out.push_str(&format!(
        "{} file(s) linted: {} error(s), {} warning(s)\n",
        report.files, report.errors, report.warnings
    ));
    out
}

/// `relation MODE (effect)`, comma-separated.
fn locks(locks: &[Lock]) -> String {
    locks
        .iter()
        .map(|l| {
            let effect = match l.effect {
                crate::lint::Effect::None => "",
                crate::lint::Effect::Scan => ", scans",
                crate::lint::Effect::Rewrite => ", rewrites",
            };
            let size = l
                .size_bytes
                .map(|b| format!(", {b} bytes on disk"))
                .unwrap_or_default();
            format!(
                "{} {}{effect}{size}",
                escape::field(&l.relation),
                l.mode.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// GitHub Actions workflow commands:
/// <https://docs.github.com/en/actions/reference/workflow-commands-for-github-actions>.
pub fn github(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let command = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let message = format!("{}\n{}\nhint: {}", f.message, f.statement, f.hint);
        out.push_str(&format!(
            "::{command} file={},line={},title={}::{}\n",
            property(&f.file),
            f.line,
            property(&format!("dhctl lint: {}", f.rule.name())),
            data(&message)
        ));
    }
    out.push_str(&format!(
        "{} file(s) linted: {} error(s), {} warning(s)\n",
        report.files, report.errors, report.warnings
    ));
    out
}

/// A workflow command's message: `%`, CR and LF escaped as GitHub's runner decodes them.
fn data(text: &str) -> String {
    escape::field(
        &text
            .replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A"),
    )
    .into_owned()
}

/// A workflow command's property value: also `:` and `,`.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{Effect, Finding, LockMode, Rule};

    fn report() -> Report {
        Report {
            findings: vec![Finding {
                file: "sql/2025_x,y.sql".into(),
                line: 7,
                rule: Rule::IndexWithoutConcurrently,
                severity: Severity::Error,
                message: "100% blocked\nreally".into(),
                hint: "use CONCURRENTLY".into(),
                statement: "CREATE INDEX i ON t (a);".into(),
                locks: vec![Lock {
                    relation: "t".into(),
                    mode: LockMode::Share,
                    effect: Effect::Scan,
                    size_bytes: Some(8192),
                }],
            }],
            files: 1,
            errors: 1,
            warnings: 0,
            plan: None,
            server_version: None,
            ..Report::default()
        }
    }

    #[test]
    fn github_commands_escape_what_the_runner_decodes() {
        let text = github(&report());
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "::error file=sql/2025_x%2Cy.sql,line=7,title=dhctl lint%3A index-without-concurrently::100%25 blocked%0Areally%0ACREATE INDEX i ON t (a);%0Ahint: use CONCURRENTLY"
        );
    }

    #[test]
    fn human_lines_name_file_line_rule_and_locks() {
        let text = human(&report(), false);
        assert!(
            text.starts_with("sql/2025_x,y.sql:7: error[index-without-concurrently]: 100% blocked"),
            "{text}"
        );
        assert!(
            text.contains("  locks: t SHARE, scans, 8192 bytes on disk\n"),
            "{text}"
        );
        assert!(
            text.ends_with("1 file(s) linted: 1 error(s), 0 warning(s)\n"),
            "{text}"
        );
    }
}
