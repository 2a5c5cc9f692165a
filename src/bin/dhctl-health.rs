//! The `dhctl-health` binary: read the environment, bind `HOST:PORT`, serve until SIGTERM or
//! SIGINT, exit 0 after draining (2 on a configuration or bind error). With `--check-url URL`
//! it is instead a one-shot probe for container HEALTHCHECKs: exit 0 on a 200, 1 when the
//! server is unhealthy or unreachable, 2 when the URL itself is unusable (a usage error).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use dhctl::health::config::environment_help;
use dhctl::health::logging;
use dhctl::health::probe::ProbeError;
use dhctl::health::{probe, serve, signal, HealthConfig};

/// Health endpoints of the DataHub API gateway (configured through the environment; see
/// docs/health.md).
#[derive(Parser)]
#[command(name = "dhctl-health", version, after_help = environment_help())]
struct Args {
    /// Probe mode: GET this http:// URL and exit 0 if it answers 200, 1 if it does not
    /// (2 when the URL is not a usable http:// URL).
    #[arg(long, value_name = "URL")]
    check_url: Option<String>,
    /// Probe mode: give up after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    timeout_ms: u64,
}

#[allow(
    clippy::print_stderr,
    reason = "probe mode answers a HEALTHCHECK with one plain line; the server logs through tracing"
)]
fn main() {
    let args = Args::parse();
    if let Some(url) = args.check_url {
        let code = match probe::check(&url, Duration::from_millis(args.timeout_ms.max(1))) {
            Ok(()) => 0,
            // A URL that cannot be probed says nothing about the server's health: exit 2, the
            // usage code, so a typo in a HEALTHCHECK is not mistaken for an unhealthy pod.
            Err(e @ ProbeError::BadUrl(_)) => {
                eprintln!("error: {e}");
                2
            }
            Err(e) => {
                eprintln!("unhealthy: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    // The same loader as dhctl's: a bad line is named by number, never echoed.
    let env_problem = dhctl::config::load_dotenv().err();
    let config = HealthConfig::from_env();
    logging::init();
    let config = match (env_problem, config) {
        (None, Ok(config)) => config,
        (Some(problem), _) => fail(&problem.to_string(), problem.hint()),
        (None, Err(e)) => fail(&e.to_string(), e.hint()),
    };
    match run(config) {
        Ok(()) => std::process::exit(0),
        // dhctl's errors already name their cause in their message, and may carry a hint.
        Err(e) => match e.downcast_ref::<dhctl::Error>() {
            Some(e) => fail(&e.to_string(), e.hint()),
            // `{:#}` is the message with its causes, as "cannot listen on HOST:PORT: <why>".
            None => fail(&format!("{e:#}"), None),
        },
    }
}

/// Starts the runtime, binds `HOST:PORT` and serves until a signal.
fn run(config: HealthConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        serve(listener, config, signal())
            .await
            .map_err(anyhow::Error::from)
    })
}

/// Logs the error as a JSON line and exits 2 (DESIGN.md: configuration and setup errors).
fn fail(message: &str, hint: Option<String>) -> ! {
    // An absent hint is an absent key, not `"hint":""` (issue 11, item 15).
    tracing::error!(hint = hint.as_deref(), "{message}");
    std::process::exit(2);
}
