//! Command-line types (clap derive) and nothing else: parsing values into domain types happens in
//! `config`, running commands in the domain modules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Schema migrations and partition maintenance for the DataHub API gateway's PostgreSQL.
///
/// Migrations are timestamp-ordered SQL files (compiled into the binary from sql/, or read from
/// --migrations-dir) applied through refinery under one advisory lock. Partition policies for the
/// monthly request_logs and webhook_deliveries partitions live in partitions/.
///
/// Exit codes: 0 ok · 1 check failed (pending migrations with `status --exit-code`, a failed
/// `verify` check) · 2 error (connection, SQL, bad input) · 3 lock busy after --lock-wait ·
/// 4 drift (an applied migration was modified or its file is missing) · 130 interrupted.
///
/// A .env file in the working directory is loaded first; real environment variables win over it.
#[derive(Debug, Parser)]
#[command(
    name = "dhctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL connection string, URL (postgres://user:pass@host:5432/db?sslmode=require) or
    /// key=value (host=… user=… dbname=… password='a b'). sslmode as libpq: disable, prefer
    /// (default), require (both encrypt without verifying), verify-ca, verify-full;
    /// sslrootcert=FILE names the CA, sslcert/sslkey a client certificate. libpq's PGHOST,
    /// PGUSER, PGPASSWORD, PGSSLMODE, … and ~/.pgpass fill what it leaves out. Prefer the
    /// DATABASE_URL variable: a password given with --database-url is visible to other local
    /// users in the process list. The password is never printed.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Output format: human tables on a terminal, or one JSON document on stdout.
    #[arg(long, global = true, env = "DHCTL_FORMAT", value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Read migrations from this folder instead of the set compiled into the binary.
    #[arg(long, global = true, env = "DHCTL_MIGRATIONS_DIR", value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,

    /// Read partition policies from this folder instead of the set compiled into the binary.
    #[arg(long, global = true, env = "DHCTL_PARTITIONS_DIR", value_name = "DIR")]
    pub partitions_dir: Option<PathBuf>,

    /// PEM file of the CA(s) that sign the server's certificate. With sslmode prefer or require
    /// it turns chain verification on (as libpq's root.crt does); verify-ca and verify-full use
    /// it, or without it the Mozilla roots compiled into dhctl. An sslrootcert= in the
    /// connection string wins over it; it wins over PGSSLROOTCERT.
    #[arg(long, global = true, env = "DHCTL_SSL_ROOT_CERT", value_name = "FILE")]
    pub ssl_root_cert: Option<PathBuf>,

    /// Keep retrying a connection that can heal (refused, reset, server starting up) for this
    /// long, e.g. 60s. Bad credentials or a bad URL fail at once. Default: no retry.
    #[arg(long, global = true, env = "DHCTL_WAIT", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// How long to wait for the dhctl advisory lock held by another runner before exiting 3.
    #[arg(long, global = true, env = "DHCTL_LOCK_WAIT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub lock_wait: Duration,

    /// lock_timeout for every DDL transaction: how long a statement may queue behind the
    /// gateway's traffic for a table lock before it gives up and is retried.
    #[arg(long, global = true, env = "DHCTL_LOCK_TIMEOUT", value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// How many times a DDL transaction that hit lock_timeout (SQLSTATE 55P03) is retried, with
    /// jittered exponential backoff, before dhctl gives up with exit 2.
    #[arg(
        long,
        global = true,
        env = "DHCTL_LOCK_RETRIES",
        value_name = "N",
        default_value_t = 5
    )]
    pub lock_retries: u32,

    /// More detail: the SQL of a dry run, debug logs on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then ensure the partitions every policy wants.
    ///
    /// Creates the database when it does not exist (unless --no-create-database), takes the dhctl
    /// advisory lock so that any number of runners may start at once, refuses to run (exit 4)
    /// while an applied migration is modified or missing, then applies each pending migration in
    /// its own transaction (or outside one, for `-- migrate:up transaction:false`). A failing
    /// migration leaves nothing behind; the ones before it stay applied.
    ///
    /// Example: dhctl migrate --wait 60s
    Migrate(MigrateArgs),

    /// Undo applied migrations by running their down sections (destructive: drops what they made).
    ///
    /// Undoes the last applied migration, or the last --steps N, or every migration newer than
    /// --to VERSION. Refuses before running any SQL when a target has no `-- migrate:down`
    /// section (exit 2) or its file was modified or is missing (exit 4). Each down section runs
    /// with the removal of its history row in one transaction.
    ///
    /// Example: dhctl rollback --steps 2 --dry-run
    Rollback(RollbackArgs),

    /// Show every migration as applied, pending, modified or missing. Takes no lock.
    ///
    /// With --exit-code: 0 when up to date, 1 when migrations are pending, 4 on drift.
    ///
    /// Example: dhctl status --exit-code --format json
    Status(StatusArgs),

    /// Check that the live database is what the migrations say (history, pending, schema,
    /// partitions) and print a fingerprint of its schema. Takes no lock, changes nothing.
    ///
    /// The schema check replays the applied migrations in a scratch schema inside a transaction
    /// that is rolled back: no second database and no privilege beyond owning the database.
    ///
    /// Exit 0 when every check passes, 1 when one fails, 4 on history drift, 2 on error.
    ///
    /// Example: dhctl verify --format json
    Verify(VerifyArgs),

    /// Write a new migration file named <UTC timestamp>_<NAME>.sql with up and down markers.
    ///
    /// The file goes to --migrations-dir, or ./sql. NAME is lower-case letters, digits and _.
    ///
    /// Example: dhctl new add_api_keys_label
    New(NewArgs),

    /// Create upcoming partitions, prune old ones, or show them (request_logs, webhook_deliveries).
    #[command(subcommand)]
    Partition(PartitionCommand),

    /// Print a shell completion script on stdout. Needs no database.
    ///
    /// Example: dhctl completions bash > /etc/bash_completion.d/dhctl
    Completions(CompletionsArgs),

    /// Print dhctl's man page (roff) on stdout, or write one page per command to --dir.
    /// Needs no database.
    ///
    /// Example: dhctl man | man -l -
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write dhctl.1 and a page per subcommand (dhctl-migrate.1, dhctl-partition-create.1, …)
    /// into this folder instead of printing dhctl.1, for packagers.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Stop after applying this version (14 digits, YYYYMMDDHHMMSS).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,

    /// Print the plan (and with --verbose the SQL) without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not create the partitions the policies want after migrating.
    #[arg(long, env = "DHCTL_NO_PARTITIONS")]
    pub no_partitions: bool,

    /// Fail (exit 2) instead of creating the database when it does not exist.
    #[arg(long, env = "DHCTL_NO_CREATE_DATABASE")]
    pub no_create_database: bool,

    /// Take "now" for partition creation from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Undo this many of the most recently applied migrations.
    #[arg(long, value_name = "N", conflicts_with = "to")]
    pub steps: Option<u32>,

    /// Undo every applied migration newer than VERSION (VERSION itself stays applied).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,

    /// Print what would be undone (and with --verbose the SQL) without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Exit 1 when migrations are pending and 4 on drift (modified or missing), for CI.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Take "now" for the partition checks from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,

    /// Also fail (exit 1) unless the schema's fingerprint is this one (as printed by verify on
    /// the environment to compare with), e.g. sha256:3f2a….
    #[arg(long, env = "DHCTL_EXPECT_FINGERPRINT", value_name = "FINGERPRINT")]
    pub expect_fingerprint: Option<String>,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, e.g. add_api_keys_label ([a-z0-9_]+).
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Create the current period's partition and the next N, filling gaps. Quiet when there is
    /// nothing to do, so cron mails nothing.
    ///
    /// Each partition is built as a standalone table with a CHECK matching its bounds, then
    /// attached (SHARE UPDATE EXCLUSIVE on the parent: the gateway's reads and writes go on),
    /// under the dhctl advisory lock, with lock_timeout and bounded retries.
    ///
    /// Example (cron, daily): dhctl partition create --ahead 3
    Create(PartitionCreateArgs),

    /// Detach and drop partitions whose upper bound lies at least the retention in the past
    /// (destructive: their rows are deleted unless --keep-table or retention_mode = "detach").
    ///
    /// Never touches the current or a future period. Uses DETACH PARTITION … CONCURRENTLY, and
    /// finishes a detach an earlier run left pending.
    ///
    /// Example: dhctl partition prune --dry-run
    Prune(PartitionPruneArgs),

    /// Show each policy's partitions, bounds, runway and what create and prune would do.
    ///
    /// Example: dhctl partition status --format json
    Status(PartitionStatusArgs),
}

#[derive(Debug, Args)]
pub struct PartitionCreateArgs {
    /// How many periods after the current one to keep created (default: the policy's premake).
    #[arg(long, value_name = "N")]
    pub ahead: Option<u32>,

    /// Only this table (default: every policy).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock (tests, backfills).
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,

    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PartitionPruneArgs {
    /// Override the policy's retention, e.g. "13 months", "90 days".
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,

    /// Only this table (default: every policy with a retention).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,

    /// Detach but keep the tables (as retention_mode = "detach" does).
    #[arg(long)]
    pub keep_table: bool,

    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PartitionStatusArgs {
    /// Only this table (default: every policy).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,
}

/// Parses "500ms", "2s", "1m", "1h" or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 2s, 1m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=7.0 * 86400.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
