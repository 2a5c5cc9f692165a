//! Packaging and documentation: shell completions, man pages, the Dockerfile's binaries, and the
//! docs' YAML examples and configuration reference, checked against the real binary and the
//! clap definitions so that none of them can drift silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;
use yaml_rust2::{Yaml, YamlLoader};

use crate::harness::*;

/// A URL with a password: nothing generated from the command line may show it.
const URL_WITH_PASSWORD: &str = "postgres://u:sup3rsecret@127.0.0.1:1/x";

const SUBCOMMANDS: [&str; 9] = [
    "migrate",
    "lint",
    "rollback",
    "status",
    "verify",
    "new",
    "partition",
    "completions",
    "man",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = dhctl(URL_WITH_PASSWORD).args(["completions", shell]).run();
        run.expect_code(0);
        assert!(run.stdout.len() > 500, "{shell}: script too short");
        for word in SUBCOMMANDS
            .iter()
            .chain(&["create", "prune", "database-url"])
        {
            assert!(run.stdout.contains(word), "{shell}: no mention of {word}");
        }
        assert!(
            !run.stdout.contains("sup3rsecret"),
            "{shell}: shows the password"
        );
    }
    dhctl(URL_WITH_PASSWORD)
        .args(["completions", "tcsh"])
        .run()
        .expect_code(2);
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let run = dhctl(URL_WITH_PASSWORD).args(["completions", "bash"]).run();
    run.expect_code(0);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dhctl.bash");
    std::fs::write(&script, &run.stdout).unwrap();
    // `bash -n` parses without running; then sourcing it must register the completion function.
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "bash -n {0} && source {0} && complete -p dhctl",
            script.display()
        ))
        .output()
        .expect("run bash");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("_dhctl"));
}

#[test]
fn man_page_documents_every_subcommand_and_variable() {
    let run = dhctl(URL_WITH_PASSWORD).args(["man"]).run();
    run.expect_code(0);
    let page = &run.stdout;
    assert!(page.contains(".TH dhctl 1"), "no title line:\n{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    for word in SUBCOMMANDS {
        assert!(page.contains(word), "no mention of {word}");
    }
    for variable in ["DATABASE_URL", "DHCTL_LOCK_WAIT", "DHCTL_FORMAT"] {
        assert!(page.contains(variable), "no mention of {variable}");
    }
    assert!(
        !page.contains("sup3rsecret"),
        "the man page shows the password"
    );
    assert_renders_cleanly(page, "dhctl.1");
}

#[test]
fn man_dir_writes_a_page_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let run = dhctl(URL_WITH_PASSWORD)
        .args(["man", "--format", "json", "--dir"])
        .args([&out])
        .run();
    run.expect_code(0);
    let files: Vec<String> = run.json()["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    for wanted in [
        "dhctl.1",
        "dhctl-migrate.1",
        "dhctl-rollback.1",
        "dhctl-status.1",
        "dhctl-verify.1",
        "dhctl-partition-create.1",
        "dhctl-partition-prune.1",
    ] {
        assert!(
            files.iter().any(|f| f == wanted),
            "{wanted} not in {files:?}"
        );
        let page = read(&out.join(wanted));
        assert!(page.contains(".TH "), "{wanted} is not a man page");
        assert_renders_cleanly(&page, wanted);
    }
}

/// Renders a man page with groff when it is installed (Debian's man-db pulls it in) and fails on
/// any warning: a page that man(1) garbles is as broken as one that is missing.
fn assert_renders_cleanly(page: &str, name: &str) {
    use std::io::Write;
    let child = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        // No groff: the structural checks above are all this machine can do.
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "{name}: groff warns:\n{warnings}"
    );
}

/// A fenced ```yaml block of a Markdown file.
#[derive(Debug)]
struct YamlExample {
    /// `file:line` of the opening fence.
    origin: String,
    text: String,
}

/// Every ```yaml / ```yml block of `markdown`, fences indented inside lists included.
fn yaml_examples(name: &str, markdown: &str) -> Vec<YamlExample> {
    struct Fence {
        line: usize,
        /// The fence's indentation when it is a YAML block; None for other languages.
        yaml_indent: Option<usize>,
        text: String,
    }
    let mut examples = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in markdown.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let lang = info.split_whitespace().next().unwrap_or("");
                    open = Some(Fence {
                        line: i + 1,
                        yaml_indent: matches!(lang, "yaml" | "yml").then_some(indent),
                        text: String::new(),
                    });
                }
            }
            Some(fence) if trimmed.starts_with("```") => {
                if fence.yaml_indent.is_some() {
                    examples.push(YamlExample {
                        origin: format!("{name}:{}", fence.line),
                        text: std::mem::take(&mut fence.text),
                    });
                }
                open = None;
            }
            Some(fence) => {
                if let Some(fence_indent) = fence.yaml_indent {
                    fence.text.push_str(&line[indent.min(fence_indent)..]);
                    fence.text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{name}: a code fence is never closed");
    examples
}

/// Parses one example: every document must be a mapping or a list (a broken indentation often
/// still "parses" as one long string), and a Kubernetes object must say what it is.
fn check_yaml(example: &YamlExample) -> Result<usize, String> {
    let docs =
        YamlLoader::load_from_str(&example.text).map_err(|e| format!("{}: {e}", example.origin))?;
    if docs.is_empty() {
        return Err(format!("{}: empty YAML example", example.origin));
    }
    for doc in &docs {
        match doc {
            Yaml::Hash(_) => {
                if !doc["kind"].is_badvalue() {
                    for key in ["apiVersion", "metadata"] {
                        if doc[key].is_badvalue() {
                            return Err(format!(
                                "{}: Kubernetes {:?} without {key}",
                                example.origin, doc["kind"]
                            ));
                        }
                    }
                    if doc["metadata"]["name"].as_str().is_none() {
                        return Err(format!("{}: metadata.name missing", example.origin));
                    }
                }
            }
            Yaml::Array(_) => {}
            other => {
                return Err(format!(
                    "{}: a document is a {}, not a mapping or list (indentation?)",
                    example.origin,
                    match other {
                        Yaml::String(_) => "string",
                        Yaml::Null => "null",
                        _ => "scalar",
                    }
                ))
            }
        }
    }
    Ok(docs.len())
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    files
}

#[test]
fn every_yaml_example_in_the_docs_parses() {
    let mut problems = Vec::new();
    let mut per_file = Vec::new();
    for path in markdown_files() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let examples = yaml_examples(&name, &read(&path));
        per_file.push((name, examples.len()));
        for example in &examples {
            if let Err(problem) = check_yaml(example) {
                problems.push(problem);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Guard against a vacuous pass (a renamed fence language, a moved file).
    let count = |file: &str| per_file.iter().find(|(n, _)| n == file).map(|(_, c)| *c);
    assert!(
        count("docs/operations.md").unwrap_or(0) >= 4,
        "docs/operations.md should hold the Kubernetes and CI examples: {per_file:?}"
    );
}

#[test]
fn the_yaml_check_rejects_broken_examples() {
    let broken = [
        // A key indented under a scalar.
        "```yaml\nimage: dhctl\n  args: [migrate]\n```\n",
        // A duplicated key: the second silently wins in most parsers.
        "```yaml\nspec:\n  schedule: \"0 3 * * *\"\n  schedule: \"0 4 * * *\"\n```\n",
        // An unclosed flow sequence.
        "```yaml\nargs: [\"migrate\", \"--wait\"\n```\n",
        // A tab for indentation.
        "```yaml\nspec:\n\tcontainers: []\n```\n",
        // Lost its structure: one long string.
        "```yaml\njust some prose\n```\n",
        // A Kubernetes object without apiVersion.
        "```yaml\nkind: CronJob\nmetadata:\n  name: x\n```\n",
    ];
    for markdown in broken {
        let examples = yaml_examples("test.md", markdown);
        assert_eq!(examples.len(), 1, "{markdown}");
        assert!(
            check_yaml(&examples[0]).is_err(),
            "accepted a broken example:\n{markdown}"
        );
    }
    let good = "Text.\n\n- a list item:\n\n  ```yaml\n  apiVersion: v1\n  kind: Secret\n  metadata:\n    name: dhctl\n  ```\n\n```sh\nnot: yaml: at all\n```\n";
    let examples = yaml_examples("test.md", good);
    assert_eq!(examples.len(), 1);
    assert_eq!(check_yaml(&examples[0]), Ok(1));
}

/// Every long flag and environment variable of every dhctl command, from the clap definitions.
fn flags_and_variables() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long != "help" && long != "version" {
                    out.push(format!("--{long}"));
                }
            }
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&dhctl::cli::Cli::command(), &mut out);
    out.sort();
    out.dedup();
    out
}

#[test]
fn configuration_reference_names_every_flag_and_variable() {
    let doc = read(&root().join("docs/configuration.md"));
    let missing: Vec<String> = flags_and_variables()
        .into_iter()
        .filter(|name| !doc.contains(&format!("`{name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
    // The health server reads its settings from the environment, outside clap.
    for variable in [
        "PORT",
        "HOST",
        "DATABASE_POOL_MIN",
        "DATABASE_POOL_MAX",
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "HEALTH_CHECK_TIMEOUT_MS",
        "DHCTL_READY_REQUIRE_MIGRATED",
        "RUST_LOG",
        "NO_COLOR",
    ] {
        assert!(doc.contains(&format!("`{variable}`")), "{variable} missing");
    }
}

#[test]
fn the_image_ships_every_binary_of_the_crate() {
    let manifest: toml::Table = read(&root().join("Cargo.toml")).parse().unwrap();
    let dockerfile = read(&root().join("Dockerfile"));
    let bins = manifest["bin"].as_array().expect("[[bin]] tables");
    for bin in bins {
        let name = bin["name"].as_str().unwrap();
        assert!(
            dockerfile.contains(&format!("/target/release/{name} ")),
            "the Dockerfile does not copy {name} into the image"
        );
    }
    let version = format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"));
    assert!(
        dockerfile.contains(&version),
        "the Dockerfile's OCI version label should default to the crate version: {version}"
    );
}

/// Every `[…/dhctl, args…]` list in a parsed YAML tree: container commands, compose commands.
fn dhctl_command_lines(node: &Yaml, out: &mut Vec<Vec<String>>) {
    match node {
        Yaml::Array(items) => {
            let words: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            match words {
                Some(words)
                    if words
                        .first()
                        .is_some_and(|w| w == "dhctl" || w.ends_with("/dhctl")) =>
                {
                    out.push(words)
                }
                _ => items.iter().for_each(|i| dhctl_command_lines(i, out)),
            }
        }
        Yaml::Hash(map) => map.values().for_each(|v| dhctl_command_lines(v, out)),
        _ => {}
    }
}

#[test]
fn every_dhctl_command_in_compose_and_the_docs_is_one_dhctl_accepts() {
    let mut sources: Vec<(String, String)> = ["docker-compose.yml", "docker-compose.override.yml"]
        .iter()
        .map(|f| (f.to_string(), read(&root().join(f))))
        .collect();
    for path in markdown_files() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        for example in yaml_examples(&name, &read(&path)) {
            sources.push((example.origin, example.text));
        }
    }
    let mut lines = Vec::new();
    for (origin, text) in &sources {
        let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
        let before = lines.len();
        for d in &docs {
            dhctl_command_lines(d, &mut lines);
        }
        for line in &mut lines[before..] {
            line.insert(0, origin.clone());
        }
    }
    // The compose file's migrate and the docs' init container and two CronJobs at least.
    assert!(lines.len() >= 4, "too few dhctl commands found: {lines:?}");
    for line in &lines {
        let (origin, argv) = line.split_first().unwrap();
        if let Err(e) = <dhctl::cli::Cli as clap::Parser>::try_parse_from(argv) {
            panic!(
                "{origin}: `{}` is not a valid dhctl command:\n{e}",
                argv.join(" ")
            );
        }
    }
}
