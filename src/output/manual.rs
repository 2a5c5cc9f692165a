//! dhctl's own documentation as files: shell completion scripts (clap_complete) and man pages
//! (clap_mangen), both generated from the clap definitions in `cli`, so they cannot drift from
//! `--help`.

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

/// The roff source of dhctl.1: synopsis, global options and the list of subcommands.
pub fn man_page() -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .expect("rendering into a Vec cannot fail");
    page
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
    clap_mangen::generate_to(Cli::command(), dir).map_err(io)?;
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("dhctl") && name.ends_with(".1"))
        .collect();
    files.sort();
    Ok(ManPages {
        dir: dir.to_path_buf(),
        files,
    })
}

/// The human rendering of [`ManPages`]: one written path per line.
pub fn human(pages: &ManPages) -> String {
    pages
        .files
        .iter()
        .map(|file| format!("{}\n", pages.dir.join(file).display()))
        .collect()
}
