//! Where `dhctl lint` and `migrate` get what [`super::lint`] needs: the catalog, the files named
//! on the command line, and the tables the partition policies manage. The only I/O of lint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{lint, Context, Input, Plan, Report, Target};
use crate::migrations::catalog::{self, Catalog, Migration};
use crate::partitions::policy::{self, Policy};
use crate::source::Source;
use crate::{Error, Result};

/// What `dhctl lint` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub migrations: Source,
    pub partitions: Source,
    /// Files or folders to lint; empty: the whole catalog.
    pub paths: Vec<PathBuf>,
    pub plan: Plan,
}

/// `dhctl lint`: lints the named files (or the whole catalog) against the schema that the
/// catalog's earlier migrations make. Nothing connects.
pub fn run(options: &Options) -> Result<Report> {
    let catalog = catalog::load(&options.migrations)?;
    let context = Context {
        managed: managed_tables(&policy::load(&options.partitions)?),
        ..Context::default()
    };
    if options.paths.is_empty() {
        let inputs: Vec<(String, &Migration)> = catalog
            .migrations
            .iter()
            .map(|m| (display(&options.migrations, &m.file), m))
            .collect();
        let inputs: Vec<Input<'_>> = inputs
            .iter()
            .map(|(path, m)| Input {
                migration: m,
                path,
                target: Target::Lint,
            })
            .collect();
        return lint(&inputs, &context, options.plan);
    }
    let (named, paths) = read_paths(&options.paths)?;
    // A named file replaces the catalog's migration of the same version (a changed file in CI).
    let mut all: BTreeMap<i64, (String, &Migration, Target)> = catalog
        .migrations
        .iter()
        .map(|m| {
            let path = display(&options.migrations, &m.file);
            (m.version, (path, m, Target::ContextOnly))
        })
        .collect();
    for m in &named.migrations {
        let path = paths
            .get(&m.file)
            .cloned()
            .unwrap_or_else(|| m.file.clone());
        all.insert(m.version, (path, m, Target::Lint));
    }
    let inputs: Vec<Input<'_>> = all
        .values()
        .map(|(path, m, target)| Input {
            migration: m,
            path,
            target: *target,
        })
        .collect();
    lint(&inputs, &context, options.plan)
}

/// Lints the pending migrations `migrate` is about to apply, the applied ones teaching only the
/// schema. Names are file names, as migrate's other messages write them.
pub fn pending(
    catalog: &Catalog,
    pending: &[i64],
    managed: &[String],
    existing: &BTreeSet<String>,
) -> Result<Report> {
    // migrate applies what the server accepts; a statement dhctl's parser cannot read is a
    // warning there, not a reason to refuse.
    let context = Context {
        managed: managed.to_vec(),
        unparseable: super::Unparseable::Warn,
        existing: existing.clone(),
    };
    lint_pending(catalog, pending, &context, Plan::Collect, |m| {
        m.file.clone()
    })
}

/// [`pending`] for `lint --pending`: files named as `dhctl lint` names them.
pub(crate) fn pending_in(
    catalog: &Catalog,
    source: &Source,
    pending: &[i64],
    managed: &[String],
    plan: Plan,
    existing: &BTreeSet<String>,
) -> Result<Report> {
    let context = Context {
        managed: managed.to_vec(),
        existing: existing.clone(),
        ..Context::default()
    };
    lint_pending(catalog, pending, &context, plan, |m| {
        display(source, &m.file)
    })
}

fn lint_pending(
    catalog: &Catalog,
    pending: &[i64],
    context: &Context,
    plan: Plan,
    path: impl Fn(&Migration) -> String,
) -> Result<Report> {
    let named: Vec<(String, &Migration)> = catalog
        .migrations
        .iter()
        .filter(|m| pending.last().is_none_or(|last| m.version <= *last))
        .map(|m| (path(m), m))
        .collect();
    let inputs: Vec<Input<'_>> = named
        .iter()
        .map(|(path, m)| Input {
            migration: m,
            path,
            target: if pending.contains(&m.version) {
                Target::Lint
            } else {
                Target::ContextOnly
            },
        })
        .collect();
    lint(&inputs, context, plan)
}

/// The tables whose partitions the policies manage, named as the linter names tables.
pub fn managed_tables(policies: &[Policy]) -> Vec<String> {
    policies
        .iter()
        .map(|p| {
            p.table
                .strip_prefix("public.")
                .unwrap_or(&p.table)
                .to_string()
        })
        .collect()
}

/// How a catalog file is named in findings: the path a CI annotation points at.
fn display(source: &Source, file: &str) -> String {
    match source {
        Source::Embedded => format!("sql/{file}"),
        Source::Dir(dir) => dir.join(file).display().to_string(),
    }
}

/// Reads the named files and every `*.sql` file of the named folders, validated as migrations
/// (name, markers); returns them and each file name's path as given.
fn read_paths(paths: &[PathBuf]) -> Result<(Catalog, BTreeMap<String, String>)> {
    let mut files = Vec::new();
    let mut shown = BTreeMap::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
        let entries: Vec<PathBuf> = if meta.is_dir() {
            let mut list: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| io(path, source))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            list.sort();
            list
        } else {
            vec![path.clone()]
        };
        for entry in entries {
            let Some(name) = entry.file_name().and_then(|n| n.to_str()) else {
                return Err(Error::usage(format!(
                    "{}: the file name is not valid UTF-8; rename it",
                    entry.display()
                )));
            };
            // A FIFO, socket or device would block the read or never end: only regular files
            // (or symlinks to them) are migrations.
            let meta = std::fs::metadata(&entry).map_err(|source| io(&entry, source))?;
            if !meta.is_file() {
                return Err(Error::usage(format!(
                    "{}: not a regular file (a FIFO, socket or device); name migration files or folders of them",
                    entry.display()
                )));
            }
            let bytes = std::fs::read(&entry).map_err(|source| io(&entry, source))?;
            shown.insert(name.to_string(), entry.display().to_string());
            files.push((name.to_string(), bytes));
        }
    }
    Ok((catalog::parse_files(files)?, shown))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.into(),
        source,
    }
}
