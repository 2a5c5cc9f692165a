//! Compiles sql/ and partitions/ into the binary: an init container needs no files beside it.
//! Every file ending in .sql (resp. .toml) is embedded, valid or not: the catalog validates them
//! at run time and a unit test fails the build's tests when the embedded set is invalid.

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
        files.retain(|p| p.extension().and_then(|e| e.to_str()) == Some(extension));
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
