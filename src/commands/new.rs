//! `dhctl new NAME`: write a migration file named by the UTC clock.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, NewArgs};
use crate::error::Result;
use crate::migrations::new;
use crate::output::{self, human};

pub fn run(args: &NewArgs, global: &GlobalArgs) -> Result<i32> {
    let dir = args
        .migrations
        .migrations_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("sql"));
    let report = new::run(&dir, &args.name, chrono::Utc::now())?;
    output::emit(global.format, &report, human::new);
    Ok(0)
}
