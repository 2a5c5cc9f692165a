//! Compiles sql/ and partitions/ into the binary: an init container needs no files beside it.
//! Every file ending in .sql (resp. .toml) is embedded, valid or not: the catalog validates them
//! at run time and a unit test fails the build's tests when the embedded set is invalid. As when
//! the catalog reads a folder, hidden files are left out and an entry that would be skipped in
//! silence (`X.SQL`, a directory or a dangling link named `*.sql`) fails the build, naming it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let root = std::env::var("CARGO_MANIFEST_DIR").context("cargo sets CARGO_MANIFEST_DIR")?;
    let out = std::env::var("OUT_DIR").context("cargo sets OUT_DIR")?;
    let mut code = String::new();
    for (constant, folder, extension) in [
        ("MIGRATIONS", "sql", "sql"),
        ("POLICIES", "partitions", "toml"),
    ] {
        let dir = Path::new(&root).join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        writeln!(code, "pub static {constant}: &[(&str, &[u8])] = &[")?;
        for (name, path) in embedded(&dir, folder, extension)? {
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                code,
                "    ({name:?}, include_bytes!({:?})),",
                path.display().to_string()
            )?;
        }
        writeln!(code, "];")?;
    }
    std::fs::write(Path::new(&out).join("embedded.rs"), code).context("write embedded.rs")
}

/// The files of `dir` to embed, sorted by name: those whose name ends in `.<extension>`, hidden
/// ones left out. A missing folder embeds nothing.
fn embedded(dir: &Path, folder: &str, extension: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let suffix = format!(".{extension}");
    let mut files = Vec::new();
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || !name.to_lowercase().ends_with(&suffix) {
            continue;
        }
        if !name.ends_with(&suffix) || !path.is_file() {
            bail!(
                "{folder}/{name} looks like a {extension} file but is not one (an upper-case \
                 extension, a directory or a dangling link): rename, fix or remove it"
            );
        }
        files.push((name, path));
    }
    files.sort();
    Ok(files)
}
