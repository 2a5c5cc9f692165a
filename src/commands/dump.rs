//! `dhctl dump`: the schema as loadable SQL, on stdout, into a file, or compared with one.

use serde::Serialize;

use crate::cli::{DumpArgs, Format, GlobalArgs, LockArgs};
use crate::db::{Access, DbConfig};
use crate::dump::{self, file, AppliedOn};
use crate::error::Result;
use crate::output;

/// `--format json` of a dump printed or written (docs/json.md).
#[derive(Serialize)]
struct Written<'a> {
    database: String,
    /// The file written; null when the SQL is in `sql`.
    path: Option<String>,
    /// The dump's text; null with --output.
    sql: Option<&'a str>,
    objects: usize,
    history_rows: usize,
    not_dumped: &'a [String],
}

/// `--format json` of `--check` (docs/json.md).
#[derive(Serialize)]
struct Checked<'a> {
    database: String,
    #[serde(flatten)]
    comparison: &'a file::Comparison,
    not_dumped: &'a [String],
}

pub async fn run(args: &DumpArgs, global: &GlobalArgs) -> Result<i32> {
    let locks = LockArgs {
        lock_timeout: args.lock_timeout,
        ..LockArgs::default()
    };
    let cfg = DbConfig::from_args(&args.connect, &locks, Access::Read)?;
    // The file to check against is read first: a missing one fails before connecting.
    let committed = args.check.as_deref().map(file::read).transpose()?;
    if let Some(path) = &args.output {
        file::check_output(path)?;
    }
    let applied_on = if args.keep_applied_on {
        AppliedOn::Keep
    } else {
        AppliedOn::Load
    };
    let dump = dump::run(&cfg, applied_on).await?;
    output::dump::warnings(&dump.not_dumped);
    let database = cfg.display_target();
    if let (Some(path), Some(committed)) = (&args.check, committed) {
        let comparison = file::diff(&path.display().to_string(), &committed, &dump.sql);
        let report = Checked {
            database,
            comparison: &comparison,
            not_dumped: &dump.not_dumped,
        };
        output::emit(global.format, &report, |r| {
            output::dump::check_human(r.comparison)
        });
        return Ok(if comparison.equal { 0 } else { 1 });
    }
    let mut report = Written {
        database,
        path: None,
        sql: None,
        objects: dump.objects,
        history_rows: dump.history_rows,
        not_dumped: &dump.not_dumped,
    };
    match &args.output {
        Some(path) => {
            file::write_atomically(path, &dump.sql)?;
            report.path = Some(path.display().to_string());
            output::emit(global.format, &report, |r| {
                output::dump::written_human(r.objects, r.history_rows, &path.display().to_string())
            });
        }
        None if global.format == Format::Json => {
            report.sql = Some(&dump.sql);
            output::emit_whole(global.format, &report, |_| String::new(), "the dump")?;
        }
        None => output::dump::sql(&dump.sql)?,
    }
    Ok(0)
}
