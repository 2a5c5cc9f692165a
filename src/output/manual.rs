//! dhctl's own documentation as files: shell completion scripts (clap_complete) and man pages
//! (clap_mangen), both generated from the clap definitions in `cli`, so they cannot drift from
//! `--help`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use serde::Serialize;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// The completion script for `shell`. Rendered into memory first: clap_complete panics when its
/// writer fails, and a closed stdout (`dhctl completions bash | head`) must not be a panic.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dhctl", &mut script);
    script
}

/// The roff source of dhctl.1: synopsis, options, subcommands, EXIT STATUS and ENVIRONMENT.
pub fn man_page() -> Vec<u8> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    render(&cmd)
}

/// One page, as clap_mangen renders it, with the sections it does not know appended before
/// VERSION: what the exit codes mean and which variables configure this command.
fn render(cmd: &clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    // Rendering into a Vec cannot fail; a failure would only shorten the page.
    let _ = man.render_title(&mut page);
    let _ = man.render_name_section(&mut page);
    let _ = man.render_synopsis_section(&mut page);
    let _ = man.render_description_section(&mut page);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut page);
    }
    if cmd.has_subcommands() {
        let _ = man.render_subcommands_section(&mut page);
    }
    page.extend_from_slice(exit_status().as_bytes());
    page.extend_from_slice(environment(cmd).as_bytes());
    if cmd.get_version().is_some() {
        let _ = man.render_version_section(&mut page);
    }
    page
}

/// Escapes text for a roff line: backslashes, and a leading `.` or `'` that would be a request.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    match escaped.chars().next() {
        Some('.' | '\'') => format!("\\&{escaped}"),
        _ => escaped,
    }
}

/// A `.TP` entry: a bold tag and its paragraph.
fn tagged(tag: &str, text: &str) -> String {
    format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(tag), roff_text(text))
}

/// The exit codes of DESIGN.md's contract, the same on every page.
fn exit_status() -> String {
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in [
        ("0", "success; with status --exit-code, up to date"),
        (
            "1",
            "a check failed: migrations pending (status --exit-code), a failed verify check",
        ),
        ("2", "error: connection, SQL, bad input or usage"),
        ("3", "the dhctl advisory lock stayed busy for --lock-wait"),
        (
            "4",
            "drift: an applied migration was modified or its file is missing",
        ),
        (
            "130",
            "interrupted (SIGINT or SIGTERM); the statement in flight was cancelled",
        ),
    ] {
        out.push_str(&tagged(code, meaning));
    }
    out
}

/// Every variable this command (and its subcommands) reads, from the clap definitions, plus
/// the ones read outside clap.
fn environment(cmd: &clap::Command) -> String {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let first = help
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('.');
                out.push((
                    env.to_string_lossy().into_owned(),
                    format!("{flag}: {first}"),
                ));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut vars = Vec::new();
    walk(cmd, &mut vars);
    vars.sort();
    vars.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::from(".SH ENVIRONMENT\n");
    out.push_str(&roff_text(
        "A .env file in the working directory is read first; a variable already set wins over its \
         line. An empty DHCTL_* variable counts as unset. Flags win over both.",
    ));
    out.push('\n');
    for (name, meaning) in vars {
        out.push_str(&tagged(&name, &meaning));
    }
    out.push_str(&tagged(
        "RUST_LOG",
        "tracing filter for the logs on stderr, e.g. dhctl=debug",
    ));
    out.push_str(&tagged("NO_COLOR", "when set, no colour"));
    out
}

/// The man pages `dhctl man --dir` wrote.
#[derive(Debug, Serialize)]
pub struct ManPages {
    pub dir: PathBuf,
    /// File names, sorted: dhctl.1, dhctl-migrate.1, dhctl-partition-create.1, …
    pub files: Vec<String>,
}

/// Writes dhctl.1 and one page per subcommand into `dir`, creating it.
pub fn write_man_pages(dir: &Path) -> Result<ManPages> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut files = Vec::new();
    write_pages(&cmd, dir, &mut files).map_err(io)?;
    files.sort();
    Ok(ManPages {
        dir: dir.to_path_buf(),
        files,
    })
}

/// Writes `cmd`'s page and those of its subcommands (named as clap_mangen names them,
/// dhctl-partition-create.1), recording each file name.
fn write_pages(cmd: &clap::Command, dir: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, files)?;
    }
    let name = clap_mangen::Man::new(cmd.clone()).get_filename();
    std::fs::write(dir.join(&name), render(cmd))?;
    files.push(name);
    Ok(())
}

/// The human rendering of [`ManPages`]: one written path per line.
pub fn human(pages: &ManPages) -> String {
    pages.files.iter().fold(String::new(), |mut out, file| {
        let _ = writeln!(out, "{}", pages.dir.join(file).display());
        out
    })
}
