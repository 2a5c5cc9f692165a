//! `dhctl completions SHELL`: rendered from the clap definitions, so it never drifts from
//! `--help`. Does not connect.

use crate::cli::{CompletionsArgs, GlobalArgs};
use crate::error::Result;
use crate::output::{self, manual};

pub fn run(args: &CompletionsArgs, _global: &GlobalArgs) -> Result<i32> {
    output::write_stdout_bytes(&manual::completions(args.shell));
    Ok(0)
}
