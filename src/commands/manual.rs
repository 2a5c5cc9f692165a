//! `dhctl completions SHELL` and `dhctl man`: rendered from the clap definitions, so they never
//! drift from `--help`. Neither connects.

use crate::cli::{CompletionsArgs, GlobalArgs, ManArgs};
use crate::error::Result;
use crate::output::{self, manual};

pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    output::write_stdout_bytes(&manual::completions(args.shell));
    Ok(0)
}

pub fn man(args: &ManArgs, global: &GlobalArgs) -> Result<i32> {
    match &args.dir {
        Some(dir) => output::emit(global.format, &manual::write_man_pages(dir)?, manual::human),
        None => output::write_stdout_bytes(&manual::man_page()),
    }
    Ok(0)
}
