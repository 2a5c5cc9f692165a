//! Compiles sql/ and partitions/ into the binary: an init container needs no files beside it.
//! Every file ending in .sql (resp. .toml) is embedded, valid or not: the catalog validates them
//! at run time and a unit test fails the build's tests when the embedded set is invalid. As when
//! the catalog reads a folder, hidden files are left out and an entry that would be skipped in
//! silence (`X.SQL`, a directory or a dangling link named `*.sql`) fails the build, naming it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for (constant, folder, extension) in [
        ("MIGRATIONS", "sql", "sql"),
        ("POLICIES", "partitions", "toml"),
    ] {
        let dir = Path::new(&root).join(folder);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let lower = name.to_lowercase();
            if name.starts_with('.') || !lower.ends_with(&format!(".{extension}")) {
                return false;
            }
            if !name.ends_with(&format!(".{extension}")) || !p.is_file() {
                panic!(
                    "{folder}/{name} looks like a {extension} file but is not one (an upper-case \
                     extension, a directory or a dangling link): rename, fix or remove it"
                );
            }
            true
        });
        files.sort();
        writeln!(code, "pub static {constant}: &[(&str, &[u8])] = &[").unwrap();
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            writeln!(
                code,
                "    ({name:?}, include_bytes!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    std::fs::write(Path::new(&out).join("embedded.rs"), code).expect("write embedded.rs");
}
