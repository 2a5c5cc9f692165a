//! A fleet: the databases one command runs on (`--targets FILE`, docs/fleet.md), as read from
//! its TOML file, and the order they run in ([`schedule`]). Pure: the environment is passed in
//! as a lookup function, nothing connects, and every problem is found before the first target
//! runs (exit 2, naming the key or the target).
//!
//! ```toml
//! parallel = 4                   # at most this many targets at once (default 1)
//! on_error = "stop"              # or "continue"
//! order = ["canary", "default"]  # groups, one after another
//!
//! [[target]]
//! name = "eu-1"
//! url_env = "DATABASE_URL_EU1"   # or url = "postgres://…"
//! group = "canary"               # default "default"
//! ```

pub mod schedule;

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::error::{Error, Result};

pub use schedule::{schedule, Wave};

/// The group of a target that names none.
pub const DEFAULT_GROUP: &str = "default";

/// What a failed target does to the rest of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Targets already running finish; every target not started yet is skipped.
    Stop,
    /// Every target runs; the exit code is still the worst.
    Continue,
}

/// A fleet file, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    pub parallel: usize,
    pub on_error: OnError,
    /// The groups in the order they run.
    pub order: Vec<String>,
    pub targets: Vec<Target>,
}

/// One database of the fleet.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub group: String,
    /// The connection string (from `url`, or the variable `url_env` names). May hold a
    /// password: never printed, and kept out of Debug.
    pub url: String,
    /// Where the connection string came from, for messages: `url_env DATABASE_URL_EU1` or `url`.
    pub source: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Target({}, group {}, {})",
            self.name, self.group, self.source
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    parallel: Option<i64>,
    on_error: Option<OnError>,
    order: Option<Vec<String>>,
    #[serde(default)]
    target: Vec<TargetDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetDoc {
    name: String,
    url: Option<String>,
    url_env: Option<String>,
    group: Option<String>,
}

/// The most targets at once: beyond this, `parallel` is a typo (and each target holds at least
/// one connection).
pub const MAX_PARALLEL: usize = 256;

/// Reads a fleet file's text. `path` names the file in messages; `env` looks variables up.
pub fn parse(path: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Fleet> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
    let bad = |message: String, hint: &str| Error::usage_hint(format!("{path}: {message}"), hint);
    let parallel = match doc.parallel {
        None => 1,
        Some(n) if n >= 1 && n as u64 <= MAX_PARALLEL as u64 => n as usize,
        Some(n) => {
            return Err(bad(
                format!("parallel = {n} is out of range"),
                &format!("give at least 1 and at most {MAX_PARALLEL} targets at once"),
            ))
        }
    };
    if doc.target.is_empty() {
        return Err(bad(
            "no [[target]] is listed".into(),
            "add one [[target]] table per database, with name and url_env (or url)",
        ));
    }
    let mut targets: Vec<Target> = Vec::with_capacity(doc.target.len());
    for (i, t) in doc.target.into_iter().enumerate() {
        let which = format!("[[target]] #{}", i + 1);
        check_name(&t.name).map_err(|why| {
            bad(
                format!("{which}: name {why}"),
                "names are letters, digits, '-', '_' and '.', starting with a letter or digit",
            )
        })?;
        let name = t.name;
        if targets.iter().any(|o| o.name == name) {
            return Err(bad(
                format!("target \"{name}\" is listed twice"),
                "give every target its own name",
            ));
        }
        let group = t.group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        check_name(&group).map_err(|why| {
            bad(
                format!("target \"{name}\": group {why}"),
                "group names are letters, digits, '-', '_' and '.'",
            )
        })?;
        let (url, source) = match (t.url, t.url_env) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    format!("target \"{name}\" has both url and url_env"),
                    "keep one: url_env names a variable holding the connection string (keeps the password out of the file)",
                ))
            }
            (None, None) => {
                return Err(bad(
                    format!("target \"{name}\" has neither url nor url_env"),
                    "add url_env = \"VARIABLE\" (a variable holding the connection string) or url = \"postgres://…\"",
                ))
            }
            (Some(url), None) => {
                if url.trim().is_empty() {
                    return Err(bad(
                        format!("target \"{name}\": url is empty"),
                        "give the connection string, or use url_env",
                    ));
                }
                (url, "url".to_string())
            }
            (None, Some(var)) if !is_variable_name(&var) => {
                // Not quoted: an easy slip puts the connection string itself here.
                return Err(bad(
                    format!(
                        "target \"{name}\": url_env must name an environment variable \
                         (letters, digits, _)"
                    ),
                    "put the connection string in an environment variable and its name in url_env \
                     (or use url)",
                ));
            }
            (None, Some(var)) => match env(&var) {
                Some(value) if !value.trim().is_empty() => (value, format!("url_env {var}")),
                Some(_) => {
                    return Err(bad(
                        format!("target \"{name}\": the variable {var} (url_env) is empty"),
                        &format!("set {var} to the target's connection string"),
                    ))
                }
                None => {
                    return Err(bad(
                        format!("target \"{name}\": the variable {var} (url_env) is not set"),
                        &format!("set {var} to the target's connection string"),
                    ))
                }
            },
        };
        targets.push(Target {
            name,
            group,
            url,
            source,
        });
    }
    let groups: Vec<String> = {
        let mut seen = Vec::new();
        for t in &targets {
            if !seen.contains(&t.group) {
                seen.push(t.group.clone());
            }
        }
        seen
    };
    if let Some(t) = targets.iter().find(|t| groups.contains(&t.name)) {
        return Err(bad(
            format!("target \"{}\" has the name of a group", t.name),
            "--only takes a target or a group name: rename the target or the group",
        ));
    }
    let order = match doc.order {
        None => groups,
        Some(order) => {
            let mut seen = BTreeSet::new();
            for g in &order {
                if !seen.insert(g.as_str()) {
                    return Err(bad(
                        format!("order lists the group \"{g}\" twice"),
                        "list each group once",
                    ));
                }
                if !groups.contains(g) {
                    return Err(bad(
                        format!("order names the group \"{g}\", which no target belongs to"),
                        "remove it from order, or set group = \"…\" on its targets",
                    ));
                }
            }
            if let Some(t) = targets.iter().find(|t| !order.contains(&t.group)) {
                return Err(bad(
                    format!(
                        "target \"{}\" is in the group \"{}\", which order does not list",
                        t.name, t.group
                    ),
                    "add the group to order (groups run in exactly that order), or leave order out to run groups in the order the file first names them",
                ));
            }
            order
        }
    };
    Ok(Fleet {
        parallel,
        on_error: doc.on_error.unwrap_or(OnError::Stop),
        order,
        targets,
    })
}

/// A fleet's exit code from its targets': 130 when one was interrupted, else the worst by
/// 2 (error) > 4 (drift) > 3 (lock busy) > 1 (check failed) > 0. An error outranks drift here,
/// unlike within one database, because a target that could not run says nothing about its
/// schema. 0 for no codes.
pub fn worst(codes: impl IntoIterator<Item = i32>) -> i32 {
    let rank = |code: i32| match code {
        0 => 0,
        1 => 1,
        3 => 2,
        4 => 3,
        130 => 5,
        _ => 4,
    };
    codes.into_iter().max_by_key(|&c| rank(c)).unwrap_or(0)
}

/// Why `name` is not a usable target or group name, if it is not.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() {
        Err("is empty".into())
    } else if name.len() > 63 || !first_ok || !rest_ok {
        Err(format!("\"{}\" is not a plain name", name.escape_debug()))
    } else {
        Ok(())
    }
}

/// An environment variable's name as url_env may give it: letters, digits and `_`, not starting
/// with a digit.
fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A TOML error as `path:line:column: message`, never quoting the file's text: a line may hold a
/// connection string with its password (toml's own Display shows the line).
fn toml_error(path: &str, text: &str, err: &toml::de::Error) -> Error {
    let place = err
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{column}")
        })
        .unwrap_or_default();
    Error::usage_hint(
        format!("{path}{place}: {}", scrub(err.message())),
        "the fleet file's keys are parallel, on_error, order and [[target]] tables with name, \
         url or url_env, and group (docs/fleet.md)",
    )
}

/// What went wrong, never any part of a value from the file: serde's messages quote the value
/// (`invalid type: string "…"`, ``unknown variant `…` ``), and the value may be a connection
/// string; quotes inside it (`\"`) defeat any attempt to cut the quoted part out. So the message
/// is reduced to the kind of error, plus what serde expected (which comes from dhctl's own
/// schema, never from the file); a message of any other shape says only that the TOML is
/// invalid there.
fn scrub(message: &str) -> String {
    let message = message.trim();
    let expected = || {
        message
            .rfind(", expected ")
            .map(|at| format!("; expected {}", &message[at + ", expected ".len()..]))
            .unwrap_or_default()
    };
    let kinds: [(&str, &str); 6] = [
        ("invalid type", "a value of the wrong type"),
        ("invalid value", "a value that is not allowed"),
        ("unknown variant", "a value that is not allowed"),
        ("invalid length", "a list of the wrong length"),
        ("duplicate key", "a key given twice"),
        ("duplicate field", "a key given twice"),
    ];
    // A key is named when it is a plain one (as a bare TOML key): a quoted key may be anything.
    let plain = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return match rest.split_once('`') {
            Some((key, _)) if plain(key) => format!("unknown field `{key}`{}", expected()),
            _ => format!("an unknown key{}", expected()),
        };
    }
    for (prefix, kind) in kinds {
        if message.starts_with(prefix) {
            return format!("{kind}{}", expected());
        }
    }
    // "missing field `name`": the name is one of dhctl's keys, never text from the file.
    if let Some(field) = message.strip_prefix("missing field `") {
        if let Some(field) = field.strip_suffix('`') {
            if plain(field) {
                return format!("the key {field} is missing");
            }
        }
    }
    "not valid TOML here (a syntax error: check quotes, brackets and `key = value`)".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> Option<String> {
        match key {
            "EU1" => Some("postgres://u:secret@eu1/db".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn read(text: &str) -> Result<Fleet> {
        parse("fleet.toml", text, &env)
    }

    fn refused(text: &str) -> String {
        let err = read(text).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        let shown = format!("{err} {}", err.hint().unwrap_or_default());
        assert!(!shown.contains("secret"), "{shown}");
        err.to_string()
    }

    #[test]
    fn the_worst_code_wins_in_the_fleets_order() {
        assert_eq!(worst([]), 0);
        assert_eq!(worst([0, 1, 0]), 1);
        assert_eq!(worst([1, 3]), 3);
        assert_eq!(worst([3, 4, 1]), 4);
        assert_eq!(worst([4, 2, 3]), 2);
        assert_eq!(worst([2, 130, 4]), 130);
    }

    #[test]
    fn a_full_file_reads_with_its_defaults() {
        let fleet = read(
            r#"
            parallel = 4
            on_error = "continue"
            order = ["canary", "default"]
            [[target]]
            name = "eu-1"
            url_env = "EU1"
            group = "canary"
            [[target]]
            name = "us-1"
            url = "postgres://me@us1/db"
            "#,
        )
        .unwrap();
        assert_eq!(fleet.parallel, 4);
        assert_eq!(fleet.on_error, OnError::Continue);
        assert_eq!(fleet.order, ["canary", "default"]);
        assert_eq!(fleet.targets[0].url, "postgres://u:secret@eu1/db");
        assert_eq!(fleet.targets[0].source, "url_env EU1");
        assert_eq!(fleet.targets[1].group, "default");
        assert!(!format!("{fleet:?}").contains("secret"));

        let minimal = read("[[target]]\nname = \"a\"\nurl = \"postgres://h/d\"\n").unwrap();
        assert_eq!(minimal.parallel, 1);
        assert_eq!(minimal.on_error, OnError::Stop);
        assert_eq!(minimal.order, ["default"]);
    }

    #[test]
    fn without_order_groups_run_in_the_order_the_file_names_them() {
        let fleet = read(
            "[[target]]\nname=\"a\"\nurl=\"x\"\ngroup=\"b\"\n[[target]]\nname=\"c\"\nurl=\"x\"\n\
             [[target]]\nname=\"d\"\nurl=\"x\"\ngroup=\"b\"\n",
        )
        .unwrap();
        assert_eq!(fleet.order, ["b", "default"]);
    }

    #[test]
    fn every_bad_file_is_refused_naming_the_key_or_the_target() {
        let t = "[[target]]\nname = \"a\"\nurl = \"postgres://h/d\"\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("paralel = 2\n{t}"), "unknown field `paralel`"),
            (
                "[[target]]\nname = \"a\"\nurl = \"x\"\nport = 1\n".into(),
                "unknown field `port`",
            ),
            (format!("parallel = 0\n{t}"), "parallel = 0"),
            (format!("parallel = -3\n{t}"), "parallel = -3"),
            (format!("parallel = 100000\n{t}"), "parallel = 100000"),
            (format!("on_error = \"skip\"\n{t}"), "fleet.toml:1:"),
            ("parallel = 2\n".into(), "no [[target]]"),
            (
                "[[target]]\nname = \"a\"\n".into(),
                "neither url nor url_env",
            ),
            (
                "[[target]]\nname = \"a\"\nurl = \"x\"\nurl_env = \"EU1\"\n".into(),
                "both url and url_env",
            ),
            (
                "[[target]]\nname = \"a\"\nurl_env = \"NOPE\"\n".into(),
                "NOPE (url_env) is not set",
            ),
            (
                "[[target]]\nname = \"a\"\nurl_env = \"EMPTY\"\n".into(),
                "EMPTY (url_env) is empty",
            ),
            (
                "[[target]]\nname = \"a\"\nurl = \"  \"\n".into(),
                "url is empty",
            ),
            (format!("{t}{t}"), "target \"a\" is listed twice"),
            (
                "[[target]]\nname = \"a b\"\nurl = \"x\"\n".into(),
                "not a plain name",
            ),
            ("[[target]]\nname = \"\"\nurl = \"x\"\n".into(), "is empty"),
            (
                format!("order = [\"canary\"]\n{t}[[target]]\nname = \"b\"\nurl = \"x\"\ngroup = \"canary\"\n"),
                "target \"a\" is in the group \"default\", which order does not list",
            ),
            (
                format!("order = [\"default\", \"canary\"]\n{t}"),
                "order names the group \"canary\"",
            ),
            (
                format!("order = [\"default\", \"default\"]\n{t}"),
                "lists the group \"default\" twice",
            ),
            (
                "[[target]]\nname = \"x\"\nurl = \"u\"\ngroup = \"x\"\n".into(),
                "target \"x\" has the name of a group",
            ),
            (
                "[[target]]\nname = 5\nurl = \"x\"\n".into(),
                "fleet.toml:2:",
            ),
        ];
        for (text, expected) in cases {
            let message = refused(&text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn a_toml_error_never_quotes_the_line_or_a_connection_string() {
        for text in [
            "target = [{ name = \"a\", url = \"postgres://u:secret@h/d\", x = 1 }]\n",
            "parallel = \"postgres://u:secret@h/d\"\n",
            "[[target]]\nname = \"a\"\nurl = \"postgres://u:secret@h/d\" junk\n",
        ] {
            refused(text);
        }
    }

    #[test]
    fn a_toml_error_never_echoes_a_value_in_backticks_or_after_an_escaped_quote() {
        for text in [
            "on_error = \"postgres://u:s3cret@h/d\"\n[[target]]\nname = \"a\"\nurl = \"x\"\n",
            "parallel = 'postgres://u:s3\"cret@h/d'\n[[target]]\nname = \"a\"\nurl = \"x\"\n",
            "parallel = \"a\\\"b s3cret\"\n",
            "[[target]]\nname = \"a\"\nurl = \"x\"\n\"p:s3cret\" = 1\n",
        ] {
            let message = refused(text);
            assert!(!message.contains("cret"), "{text:?}: {message}");
            assert!(
                message.contains(":1:") || message.contains(":4:"),
                "{message}"
            );
        }
    }

    #[test]
    fn scrub_keeps_the_kind_and_what_was_expected() {
        assert_eq!(
            scrub("unknown variant `postgres://u:p@h/d`, expected `stop` or `continue`"),
            "a value that is not allowed; expected `stop` or `continue`"
        );
        assert_eq!(
            scrub("invalid type: string \"a\\\"b\", expected u32"),
            "a value of the wrong type; expected u32"
        );
        assert_eq!(scrub("missing field `name`"), "the key name is missing");
        assert!(!scrub("missing field `a b`").contains("a b"));
        assert!(scrub("invalid basic string").starts_with("not valid TOML"));
        assert_eq!(
            scrub("unknown field `paralel`, expected `parallel`"),
            "unknown field `paralel`; expected `parallel`"
        );
        assert_eq!(
            scrub("unknown field `p:s3cret@h`, expected `x`"),
            "an unknown key; expected `x`"
        );
    }

    #[test]
    fn url_env_holding_a_connection_string_is_refused_unquoted() {
        let message = refused("[[target]]\nname = \"a\"\nurl_env = \"postgres://u:s3cret@h/d\"\n");
        assert!(
            message.contains("url_env must name an environment variable"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        assert!(is_variable_name("DATABASE_URL_EU1") && is_variable_name("_x"));
        assert!(!is_variable_name("1X") && !is_variable_name("") && !is_variable_name("A-B"));
    }
}
