//! `dhctl man`: the man pages, rendered from the clap definitions, so they never drift from
//! `--help`. Does not connect.

use crate::cli::{GlobalArgs, ManArgs};
use crate::error::Result;
use crate::output::{self, manual};

pub fn run(args: &ManArgs, global: &GlobalArgs) -> Result<i32> {
    match &args.dir {
        Some(dir) => output::emit(global.format, &manual::write_man_pages(dir)?, manual::human),
        None => output::write_stdout_bytes(&manual::man_page()),
    }
    Ok(0)
}
