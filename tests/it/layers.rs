//! The library's top-level modules form layers (docs/architecture.md, "Layers"): no two of them
//! import each other, directly or through others, and the two domains that change the schema,
//! `migrations` and `partitions`, never import each other (the command layer joins them).
//! Checked on the source text: a `crate::name` in code (not in comments) is an import of `name`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of src/ and the top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        if matches!(file_name.as_str(), "lib.rs" | "main.rs" | "bin") {
            continue;
        }
        let module = file_name.trim_end_matches(".rs").to_string();
        let mut files = Vec::new();
        collect(&path, &mut files);
        let mut names = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                names.extend(named_modules(line));
            }
        }
        names.remove(&module);
        graph.insert(module, names);
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for names in graph.values_mut() {
        names.retain(|n| known.contains(n));
    }
    graph
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            collect(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// `crate::a::…` names `a`; `crate::{a, b::c}` names `a` and `b`.
fn named_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            names.extend(group.split(',').filter_map(|item| first_word(item.trim())));
        } else if let Some(name) = first_word(rest) {
            names.push(name);
        }
    }
    names
}

fn first_word(text: &str) -> Option<String> {
    let word: String = text
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Whether `to` can be reached from `from` along imports.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = imports();
    assert!(graph.len() > 10, "{graph:?}");
    let mut cycles = Vec::new();
    for a in graph.keys() {
        for b in graph.keys().filter(|b| a < *b) {
            if reaches(&graph, a, b) && reaches(&graph, b, a) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}\n{graph:#?}");
}

#[test]
fn migrations_and_partitions_never_import_each_other() {
    let graph = imports();
    assert!(!graph["migrations"].contains("partitions"), "{graph:#?}");
    assert!(!graph["partitions"].contains("migrations"), "{graph:#?}");
    // The command layer is where they meet.
    assert!(graph["commands"].contains("migrations") && graph["commands"].contains("partitions"));
}

#[test]
fn the_import_scanner_sees_grouped_and_plain_paths() {
    assert_eq!(
        named_modules("use crate::{db::DbConfig, error};"),
        vec!["db", "error"]
    );
    assert_eq!(
        named_modules("let x = crate::report::ms(d); crate::db::connect"),
        vec!["report", "db"]
    );
}
