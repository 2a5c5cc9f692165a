//! The `dhctl` binary: prepare the environment, parse, run one command, exit with its code.
//! Everything else lives in the library (`dhctl::commands`).

use dhctl::cli::Cli;
use dhctl::{commands, output};

fn main() {
    // Before parsing: .env feeds the same variables the flags read.
    let env_problem = commands::prepare_environment();
    let cli = match Cli::parse_with_origin() {
        Ok(cli) => cli,
        Err(e) => output::usage_error(&e),
    };
    commands::init_logging(cli.global.verbose);
    let code = commands::execute(&cli, env_problem);
    std::process::exit(code);
}
