//! Command-line types (clap derive): flags are typed here, at the edge, by value parsers
//! (durations, `--now`, `--retention`, `--history-table`), so a bad value is refused before
//! anything runs. Connection settings are assembled in `config`; commands run in `commands`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::partitions::Retention;
use crate::source::Source;

/// Schema migrations and partition maintenance for the DataHub API gateway's PostgreSQL.
///
/// Migrations are version-ordered SQL files in dbmate's format (compiled into the binary from
/// sql/, or read from --migrations-dir), applied one transaction each under one advisory lock and
/// recorded in refinery's history table. Partition policies for the monthly request_logs and
/// webhook_deliveries partitions live in partitions/.
///
/// Exit codes: 0 ok · 1 check failed (pending migrations with `status --exit-code`, a failed
/// `verify` check, a `lint` error finding, `migrate` refusing one) · 2 error (connection, SQL,
/// bad input; a command that changes the database reaching only a standby; `migrate
/// --wait-replicas` running out) · 3 lock busy after --lock-wait ·
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

    /// Where `--targets` and `--database-url` came from (the command line or the environment);
    /// set by [`Cli::parse_with_origin`], never a flag.
    #[arg(skip)]
    pub origin: Origin,
}

/// Where a flag's value came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum From {
    /// Not given.
    #[default]
    Absent,
    /// On the command line.
    CommandLine,
    /// From its environment variable (or a `.env` line).
    Environment,
}

/// Where the subcommand's `--targets` and `--database-url` came from: a fleet refuses an
/// explicit `--database-url` rather than silently running elsewhere (docs/fleet.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub targets: From,
    pub database_url: From,
}

impl Cli {
    /// Parses the process's command line, recording where `--targets` and `--database-url`
    /// came from.
    pub fn parse_with_origin() -> std::result::Result<Cli, clap::Error> {
        Cli::parse_with_origin_from(std::env::args_os())
    }

    /// As [`Cli::parse_with_origin`], from `args`.
    pub fn parse_with_origin_from<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let mut leaf = &matches;
        while let Some((_, sub)) = leaf.subcommand() {
            leaf = sub;
        }
        let from = |id: &str| {
            // value_source asserts the id exists: not every subcommand has these flags.
            if leaf.try_get_raw(id).ok().flatten().is_none() {
                return From::Absent;
            }
            match leaf.value_source(id) {
                Some(clap::parser::ValueSource::CommandLine) => From::CommandLine,
                Some(clap::parser::ValueSource::EnvVariable) => From::Environment,
                _ => From::Absent,
            }
        };
        cli.origin = Origin {
            targets: from("targets"),
            database_url: from("database_url"),
        };
        Ok(cli)
    }
}

/// Options every subcommand accepts (`--format`, `--verbose`). What only some commands use
/// lives in the groups below, flattened into exactly those commands (as sqlx-cli does), so
/// `--help` of `new` or `man` lists no connection flag it would ignore.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format: human tables on a terminal, or one JSON document on stdout (its fields are
    /// defined in docs/json.md); `github` writes `dhctl lint`'s findings as GitHub Actions
    /// annotations (other commands print human output with it).
    #[arg(long, global = true, env = "DHCTL_FORMAT", hide_env_values = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// More detail: the SQL of a dry run, debug logs on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// How to reach the database: every command that connects.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// PostgreSQL connection string, URL (postgres://user:pass@host:5432/db?sslmode=require) or
    /// key=value (host=… user=… dbname=… password='a b'). Several hosts
    /// (postgres://u@db1:5432,db2:5432/db, host=db1,db2 port=5432,5432) are tried in order:
    /// commands that change the database take the first writable primary, the others the first
    /// that answers (target_session_attrs=any, read-write or read-only chooses). sslmode as libpq: disable, prefer
    /// (default), require (both encrypt without verifying), verify-ca, verify-full;
    /// sslrootcert=FILE names the CA, sslcert/sslkey a client certificate. libpq's PGHOST,
    /// PGUSER, PGPASSWORD, PGSSLMODE, … and ~/.pgpass fill what it leaves out. Prefer the
    /// DATABASE_URL variable: a password given with --database-url is visible to other local
    /// users in the process list. The password is never printed.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PEM file of the CA(s) that sign the server's certificate. With sslmode prefer or require
    /// it turns chain verification on (as libpq's root.crt does); verify-ca and verify-full use
    /// it, or without it the Mozilla roots compiled into dhctl. An sslrootcert= in the
    /// connection string wins over it; it wins over PGSSLROOTCERT.
    #[arg(
        long,
        env = "DHCTL_SSL_ROOT_CERT",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ssl_root_cert: Option<PathBuf>,

    /// Keep retrying a connection that can heal (refused, reset, server starting up, only a
    /// standby answering a command that writes, as during a failover) for this long. Bad
    /// credentials or a bad URL fail at once. Default: no retry.
    /// DURATION: 500ms, 30s, 2m, 1m30s, 1h, 1d (a bare number is seconds; at most 7 days).
    #[arg(long, env = "DHCTL_WAIT", hide_env_values = true, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// The history table, schema-qualified (schema.name), for databases where it must live
    /// somewhere else. Default: refinery_schema_history, found by name in whichever schema holds
    /// it (created in the first schema of the role's search_path when there is none).
    #[arg(long, env = "DHCTL_HISTORY_TABLE", hide_env_values = true, value_name = "SCHEMA.NAME", value_parser = parse_history_table)]
    pub history_table: Option<crate::db::ident::TableName>,
}

/// Run on every database of a fleet file: migrate, rollback, status, verify, lint --pending and
/// partition create / prune / status.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Run on every target of this TOML file instead of DATABASE_URL (docs/fleet.md; refused
    /// with --database-url, or when DHCTL_TARGETS and DATABASE_URL are both exported): groups
    /// one after another in its `order`, targets of a group up to `parallel` at once, one
    /// report, the worst exit code (130, then 2 > 4 > 3 > 1 > 0). A bad file is exit 2 before
    /// anything connects.
    #[arg(
        long,
        env = "DHCTL_TARGETS",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub targets: Option<PathBuf>,

    /// With --targets: run only this target, or the targets of this group (repeatable).
    #[arg(long, value_name = "NAME|GROUP")]
    pub only: Vec<String>,

    /// With --targets: at most N targets at once, instead of the file's `parallel`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: Option<u32>,
}

/// The dhctl advisory lock and DDL lock_timeout: the commands that change the schema.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long to wait for the dhctl advisory lock held by another runner before exiting 3.
    /// DURATION as for --wait.
    #[arg(long, env = "DHCTL_LOCK_WAIT", hide_env_values = true, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub lock_wait: Duration,

    /// lock_timeout for every DDL transaction: how long a statement may queue behind the
    /// gateway's traffic for a table lock before it gives up and is retried. DURATION as for
    /// --wait.
    #[arg(long, env = "DHCTL_LOCK_TIMEOUT", hide_env_values = true, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// How many times a DDL transaction that hit lock_timeout (SQLSTATE 55P03) is retried, with
    /// jittered exponential backoff, before dhctl gives up with exit 2.
    #[arg(
        long,
        env = "DHCTL_LOCK_RETRIES",
        hide_env_values = true,
        value_name = "N",
        default_value_t = 5
    )]
    pub lock_retries: u32,
}

impl Default for LockArgs {
    /// The defaults of the flags above, for commands that take no lock (a unit test keeps the
    /// two in step).
    fn default() -> LockArgs {
        LockArgs {
            lock_wait: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(2),
            lock_retries: 5,
        }
    }
}

/// Where migrations come from: the commands that read them.
#[derive(Debug, Clone, Args)]
pub struct MigrationsDirArg {
    /// Read migrations from this folder instead of the set compiled into the binary. Files are
    /// dbmate's: `<version>_<description>.sql`, the version being the name's leading digits, with
    /// `-- migrate:up` / `-- migrate:down` markers (docs/dbmate.md).
    #[arg(
        long,
        env = "DHCTL_MIGRATIONS_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub migrations_dir: Option<PathBuf>,
}

impl MigrationsDirArg {
    /// The folder given, or the migrations compiled in.
    pub fn source(&self) -> Source {
        Source::dir_or_embedded(self.migrations_dir.as_deref())
    }
}

/// Where partition policies come from: the commands that read them.
#[derive(Debug, Clone, Args)]
pub struct PartitionsDirArg {
    /// Read partition policies from this folder instead of the set compiled into the binary.
    #[arg(
        long,
        env = "DHCTL_PARTITIONS_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub partitions_dir: Option<PathBuf>,
}

impl PartitionsDirArg {
    /// The folder given, or the policies compiled in.
    pub fn source(&self) -> Source {
        Source::dir_or_embedded(self.partitions_dir.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`) for `dhctl lint`, so a
    /// pull request shows each finding on its line; other commands print human output.
    Github,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then ensure the partitions every policy wants.
    ///
    /// Creates the database when it does not exist (unless --no-create-database), takes the dhctl
    /// advisory lock so that any number of runners may start at once, refuses to run (exit 4)
    /// while an applied migration is modified or missing, then applies each pending migration in
    /// its own transaction (or outside one, for `-- migrate:up transaction:false`). A failing
    /// migration leaves nothing behind; the ones before it stay applied. Out-of-order
    /// migrations (older than the newest applied one) are refused (exit 2, nothing applied)
    /// unless --allow-out-of-order. Needs a writable primary: with several hosts in
    /// DATABASE_URL it finds it, and a standby alone is refused (exit 2) before anything runs
    /// (docs/failover.md).
    ///
    /// Example: dhctl migrate --wait 60s --wait-replicas 30s
    Migrate(MigrateArgs),

    /// Undo applied migrations by running their down sections (destructive: drops what they made).
    ///
    /// Undoes the last applied migration, or the last --steps N, or every migration applied
    /// after --to VERSION (an applied version), or --all, newest-applied first: history order,
    /// which differs from version order once an out-of-order migration was applied (the plan
    /// names each such one). Refuses before running any SQL when a target has no `-- migrate:down`
    /// section (exit 2) or its file was modified or is missing (exit 4). Each down section runs
    /// with the removal of its history row in one transaction.
    ///
    /// Example: dhctl rollback --steps 2 --dry-run
    Rollback(RollbackArgs),

    /// Show every migration as applied, pending, out-of-order, modified, missing or ahead.
    /// Takes no lock.
    ///
    /// With --exit-code: 0 when up to date, 1 when migrations are pending or out-of-order
    /// (older than the newest applied one), 4 on drift. With --until-current DURATION: wait
    /// until nothing is pending (exit 0), 1 when DURATION runs out, 4 at once on drift.
    ///
    /// Example: dhctl status --exit-code --format json
    ///
    /// Example (an application's init container): dhctl status --until-current 10m
    Status(StatusArgs),

    /// Check that the live database is what the migrations say (history, pending, schema,
    /// partitions) and print a fingerprint of its schema. Takes no lock, changes nothing.
    ///
    /// The schema check replays the applied migrations in a scratch database (created and
    /// dropped, which needs CREATEDB; or --scratch-url) and compares it with the live one; the
    /// rebuild never reads, writes or locks a live object. Without a scratch database the
    /// schema check is skipped and the others decide.
    ///
    /// Exit 0 when every check passes (or is skipped, unless --require-all), 1 when one fails,
    /// 4 on history drift, 2 on error.
    ///
    /// Example: dhctl verify --format json
    Verify(VerifyArgs),

    /// Adopt a database made without dhctl: check its schema, then record the migrations it has.
    ///
    /// For a database built by hand, restored from a dump, or migrated by dbmate. First checks
    /// that the live schema is exactly what the migrations up to --version V build (verify's
    /// rebuild in a scratch database and comparison; partitions are not compared), then writes
    /// their history rows (refinery's checksums) in one transaction under the advisory lock.
    /// Exit 1 when the schema differs (each difference named, nothing written); exit 2 when
    /// the history table already has rows, V is not a version of the catalog, or a dbmate
    /// version has no file. With --from-dbmate the versions come from dbmate's
    /// schema_migrations instead. docs/baseline.md.
    ///
    /// Example: dhctl baseline --version 20240101000005 --dry-run
    // `--version` here is the migration version (the and Flyway's spelling), so this
    // subcommand does not take the propagated `--version` flag; `dhctl --version` still works.
    #[command(disable_version_flag = true)]
    Baseline(BaselineArgs),
    /// Print the database's schema as SQL that loads into an empty database, history included.
    ///
    /// Built from the catalog (no pg_dump needed, whatever the server's version): schemas,
    /// extensions, types, sequences, tables, partitions in bound order, constraints, indexes,
    /// views, functions, triggers, policies, comments, and the migration history's rows, so that
    /// `dhctl status` and `dhctl verify` pass on the loaded database. No table rows, sequence
    /// values, owners or grants; anything else it cannot represent is named in the file's header
    /// and on stderr. The same schema always gives the same bytes (docs/dump.md). Changes
    /// nothing; waits at most --lock-timeout behind a migration's ACCESS EXCLUSIVE lock (then
    /// exit 3); a dump during DDL is read again, or fails (exit 2), rather than mix two schemas.
    /// A failed write to stdout is exit 2, a reader that stopped early (`| head`) too when a
    /// write fails (a dump that fits in the pipe's buffer is written before head exits).
    ///
    /// --check FILE exits 1 and prints a unified diff when the live schema differs from FILE
    /// (CI: "schema.sql is stale"), 0 when equal, 2 when FILE is missing.
    ///
    /// Example: dhctl dump --output schema.sql; dhctl dump --check schema.sql
    Dump(DumpArgs),

    /// Lint migration files: what each statement locks, rewrites, scans or breaks.
    ///
    /// Offline: lints the whole catalog (compiled in, or --migrations-dir), or the files and
    /// folders named, against the tables earlier migrations made. Exit 0 when no finding is an
    /// error, 1 when one is, 2 when a file cannot be linted (the statement is named by
    /// file:line). Accept one finding with `-- dhctl:allow RULE reason` on the line just before
    /// the statement. Rules and safe patterns: docs/lint.md.
    ///
    /// Example: dhctl lint --plan sql/20250301000000_add_column.sql --format github
    Lint(LintArgs),

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

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// Stop after applying this version (a file name's leading digits).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,

    /// Print the plan (and with --verbose the SQL) without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not create the partitions the policies want after migrating.
    #[arg(long, env = "DHCTL_NO_PARTITIONS", hide_env_values = true)]
    pub no_partitions: bool,

    /// Fail (exit 2) instead of creating the database when it does not exist.
    #[arg(long, env = "DHCTL_NO_CREATE_DATABASE", hide_env_values = true)]
    pub no_create_database: bool,

    /// Take "now" for partition creation from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,

    /// After migrating, wait up to this long until every streaming standby of the primary has
    /// replayed the run's last commit (pg_stat_replication), so nothing reading from a replica
    /// sees the old schema; reports each standby's lag. Exit 2 when one is still behind at the
    /// end (the migration stays committed). No standby connected: nothing to wait for.
    /// The advisory lock is released before the wait. DURATION as for --wait.
    #[arg(long, env = "DHCTL_WAIT_REPLICAS", hide_env_values = true, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_replicas: Option<Duration>,

    /// Apply pending migrations even when `dhctl lint` finds errors in them (statements that
    /// lock, rewrite or scan an existing table, or fail at run time). Without it migrate
    /// refuses them (exit 1) before applying anything and prints the findings.
    #[arg(long, env = "DHCTL_ALLOW_UNSAFE", hide_env_values = true)]
    pub allow_unsafe: bool,

    /// Apply out-of-order migrations (not applied, older than the newest applied one: a branch
    /// merged late) with the others, in version order, after the lint gate. Without it migrate
    /// refuses them (exit 2), names each and applies nothing; `--dry-run` shows them marked.
    #[arg(long, env = "DHCTL_ALLOW_OUT_OF_ORDER", hide_env_values = true)]
    pub allow_out_of_order: bool,

    /// Tables smaller than this on disk (all partitions counted) are small: lint findings
    /// about locking, scanning or rewriting them are warnings and do not stop migrate (bytes,
    /// or with kB, MB, GB).
    #[arg(long, value_name = "SIZE", default_value = "10MB", value_parser = crate::lint::parse_size)]
    pub small_table: u64,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,

    /// The newest migration the database already has: it and every older migration of the
    /// catalog are recorded as applied.
    #[arg(
        long,
        value_name = "VERSION",
        required_unless_present = "from_dbmate",
        conflicts_with = "from_dbmate"
    )]
    pub version: Option<i64>,

    /// Record the versions dbmate applied, read from its schema_migrations table (each must be
    /// a migration file here), instead of --version.
    #[arg(long)]
    pub from_dbmate: bool,

    /// Check the schema and print what would be recorded, without writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Rebuild the migrations in this empty database (same server) instead of creating a
    /// scratch database, as for verify: for a role without CREATEDB.
    #[arg(
        long,
        env = "DHCTL_VERIFY_SCRATCH_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub scratch_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// Show every statement's lock plan: the relations it locks, the lock mode, and whether it
    /// rewrites or scans them.
    #[arg(long)]
    pub plan: bool,

    /// Connect (no lock, nothing written) and lint only the migrations not yet applied, with
    /// the live size of every table they lock: a finding about locking, scanning or rewriting
    /// a table below --small-table is a warning. Without it nothing connects and every
    /// existing table is assumed large.
    #[arg(long, conflicts_with = "paths")]
    pub pending: bool,

    /// With --pending: tables smaller than this on disk (all partitions counted) are small
    /// (bytes, or with kB, MB, GB).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "10MB",
        requires = "pending",
        value_parser = crate::lint::parse_size
    )]
    pub small_table: u64,

    /// Migration files or folders of them to lint (default: every migration of the catalog).
    /// Earlier migrations of the catalog still tell which tables exist.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,

    /// Undo this many of the most recently applied migrations.
    #[arg(long, value_name = "N", conflicts_with_all = ["to", "all"])]
    pub steps: Option<u32>,

    /// Undo every migration applied after VERSION, which must be an applied version (it stays
    /// applied). In version order this is every version newer than VERSION; docs/history.md
    /// says what it means once migrations were applied out of order.
    #[arg(long, value_name = "VERSION", conflicts_with = "all")]
    pub to: Option<i64>,

    /// Undo every applied migration.
    #[arg(long)]
    pub all: bool,

    /// Print what would be undone (and with --verbose the SQL) without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,

    /// Exit 1 when migrations are pending or out-of-order and 4 on drift (modified or
    /// missing), for CI.
    /// Applied migrations newer than every file (`ahead`: the database is ahead of this
    /// release, as in a rolling deploy) do not fail it.
    #[arg(long)]
    pub exit_code: bool,

    /// With --exit-code, also exit 4 when the database is ahead of this release. Not with
    /// --until-current, which counts a database ahead of this release as current (a rolling
    /// deploy).
    #[arg(long, requires = "exit_code", conflicts_with = "until_current")]
    pub strict: bool,

    /// Wait until no migration is left to apply, then print the status and exit 0; exit 1
    /// when DURATION runs out with migrations pending (or out-of-order), 4 at once on drift.
    /// Polls once a second without the lock on one connection (reopened if it drops); a
    /// database or history table that does not exist yet is waited for. One line per change
    /// of state on stderr. For an application's init container while a Job migrates.
    /// DURATION as for --wait.
    #[arg(long, env = "DHCTL_UNTIL_CURRENT", hide_env_values = true, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "exit_code")]
    pub until_current: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub migrations: MigrationsDirArg,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,
    /// lock_timeout while verify rebuilds the schema: how long a statement naming a live
    /// object may queue behind the gateway's traffic. DURATION as for --wait.
    #[arg(long, env = "DHCTL_LOCK_TIMEOUT", hide_env_values = true, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Take "now" for the partition checks from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,

    /// Also fail (exit 1) unless the schema's fingerprint is this one (as printed by verify on
    /// the environment to compare with), e.g. sha256:3f2a….
    #[arg(
        long,
        env = "DHCTL_EXPECT_FINGERPRINT",
        hide_env_values = true,
        value_name = "FINGERPRINT"
    )]
    pub expect_fingerprint: Option<String>,

    /// Rebuild the migrations in this empty database (same server) instead of creating a
    /// scratch database: for a role without CREATEDB. verify refuses it unless empty and leaves
    /// it empty.
    #[arg(
        long,
        env = "DHCTL_VERIFY_SCRATCH_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub scratch_url: Option<String>,

    /// Fail (exit 1) when a check is skipped (e.g. the schema check when no scratch database
    /// can be had), instead of reporting it and exiting on the others.
    #[arg(long, env = "DHCTL_VERIFY_REQUIRE_ALL", hide_env_values = true)]
    pub require_all: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Write the dump to FILE (atomically: a reader sees the old file or the whole new one)
    /// instead of stdout. A symbolic link is written through (the link stays), but not another
    /// user's link (to the file or a folder on its path) in a sticky world-writable folder such
    /// as /tmp; a device, FIFO, socket or folder is refused (redirect stdout to write into one).
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    pub output: Option<PathBuf>,

    /// Compare the dump with FILE instead of printing it: exit 0 when equal, 1 with a unified
    /// diff (FILE → live database) when not, 2 when FILE does not exist.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,

    /// lock_timeout of the dump's transaction: how long it may wait for the ACCESS SHARE locks
    /// printing a view or an expression takes, behind a migration's ACCESS EXCLUSIVE lock,
    /// before it gives up with exit 3. DURATION as for --wait.
    #[arg(long, env = "DHCTL_LOCK_TIMEOUT", hide_env_values = true, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Record the history rows' applied_on as stored, instead of the time the dump is loaded.
    /// The dump then depends on when the migrations ran: two databases migrated from the same
    /// files no longer dump alike.
    #[arg(long)]
    pub keep_applied_on: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    #[command(flatten)]
    pub migrations: MigrationsDirArg,

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

    /// Move the rows a DEFAULT partition holds into partitions of their own, period by period,
    /// in bounded batches that do not block the gateway's inserts, then attach each.
    ///
    /// Afterwards drop the empty default (DROP TABLE) so prune can detach concurrently.
    ///
    /// Example: dhctl partition drain-default --table request_logs --batch 5000
    DrainDefault(PartitionDrainArgs),
}

#[derive(Debug, Args)]
pub struct PartitionDrainArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// The table whose DEFAULT partition to drain.
    #[arg(long, value_name = "TABLE")]
    pub table: String,

    /// Rows moved per batch (each batch is one short transaction).
    #[arg(long, value_name = "N", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,

    /// Print the periods and row counts without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PartitionCreateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// How many periods after the current one to keep created (default: the policy's premake).
    #[arg(long, value_name = "N")]
    pub ahead: Option<u32>,

    /// Only this table (default: every policy).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock (tests, backfills).
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,

    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PartitionPruneArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub locks: LockArgs,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// Override the policy's retention, e.g. "13 months", "90 days". Needs --table: one
    /// retention for every table would cut the longer-lived ones short.
    #[arg(long, value_name = "DURATION", requires = "table", value_parser = Retention::parse)]
    pub retention: Option<Retention>,

    /// Only this table (default: every policy with a retention).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,

    /// Detach but keep the tables (as retention_mode = "detach" does).
    #[arg(long)]
    pub keep_table: bool,

    /// Print the plan without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PartitionStatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub partitions: PartitionsDirArg,

    /// Only this table (default: every policy).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Take "now" from this RFC 3339 time instead of the server's clock.
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

/// A `--now` value: an RFC 3339 time, limited to 1970–9000 so partition names keep four-digit
/// years.
fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    let parsed = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        format!("`{text}` is not an RFC 3339 time ({e}); write e.g. 2026-11-15T10:00:00Z")
    })?;
    let now = parsed.with_timezone(&Utc);
    if now.nanosecond() >= 1_000_000_000 {
        return Err(format!(
            "`{text}` is a leap second, which PostgreSQL reads as the next minute; use :59 or the next minute's :00"
        ));
    }
    if !(1970..=9000).contains(&now.year()) {
        return Err(format!(
            "`{text}` is out of range; use a time between 1970 and 9000"
        ));
    }
    Ok(now)
}

/// A `--history-table` value: schema.name.
fn parse_history_table(text: &str) -> Result<crate::db::ident::TableName, String> {
    crate::db::ident::TableName::parse(text)
}

/// What a duration may be, for error messages and `--help`.
const DURATION_FORMS: &str =
    "a number with a unit (ms, s, m, h, d), several in a row (1m30s, 1h 15m), or a bare number of seconds; e.g. 500ms, 30s, 1m30s, 2h, 1d";

/// The longest duration any flag takes: a wait beyond a week is a typo, not a plan.
const MAX_DURATION_SECS: f64 = 7.0 * 86400.0;

/// Parses a duration as systemd and Go write them: `500ms`, `2s`, `1m30s`, `1h 15m`, `1d`,
/// `1.5s`, or a bare number of seconds (`60`). Written by hand: the forms are few, and no crate
/// in the tree parses them (humantime would, but rejects `1.5s`, which dhctl always took).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration; write {DURATION_FORMS}"));
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return within_range(trimmed, seconds);
        }
    }
    let mut rest = trimmed;
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{trimmed}` is not a duration; write {DURATION_FORMS}"))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "" => {
                return Err(format!(
                    "`{trimmed}`: `{number}` needs a unit when more than one part is given; write {DURATION_FORMS}"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{trimmed}`; write {DURATION_FORMS}"
                ))
            }
        };
        total += value * scale;
        rest = after.trim_start();
    }
    within_range(trimmed, total)
}

fn within_range(text: &str, seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() || !(0.0..=MAX_DURATION_SECS).contains(&seconds) {
        return Err(format!("`{text}` is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_of_targets_and_database_url_is_recorded() {
        let cli = Cli::parse_with_origin_from([
            "dhctl",
            "status",
            "--targets",
            "f.toml",
            "--database-url",
            "postgres://h/d",
        ])
        .unwrap();
        assert_eq!(
            cli.origin,
            Origin {
                targets: From::CommandLine,
                database_url: From::CommandLine
            }
        );
        let cli = Cli::parse_with_origin_from(["dhctl", "new", "x"]).unwrap();
        assert_eq!(cli.origin, Origin::default());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn durations_take_days_and_compound_forms() {
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h 15m").unwrap(), Duration::from_secs(4500));
        assert_eq!(
            parse_duration("2s500ms").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_duration(" 3 min ").unwrap(), Duration::from_secs(180));
        for bad in [
            "",
            "1m30",
            "1x",
            "m",
            "1..5s",
            "8d",
            "1d1s1d1d1d1d1d1d",
            "1e3s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("e.g. 500ms") || err.contains("out of range"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn no_text_makes_the_duration_parser_panic() {
        let pieces = [
            "",
            "1",
            ".",
            "5",
            "ms",
            "s",
            "m",
            "d",
            " ",
            "é",
            "x",
            "99999999999999999999",
            "-",
            "\u{0}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let _ = parse_duration(&format!("{a}{b}{c}"));
                }
            }
        }
    }

    #[test]
    fn lock_defaults_match_the_flags() {
        use clap::{Command, FromArgMatches};
        let matches = LockArgs::augment_args(Command::new("t"))
            .try_get_matches_from(["t"])
            .unwrap();
        let parsed = LockArgs::from_arg_matches(&matches).unwrap();
        let default = LockArgs::default();
        assert_eq!(parsed.lock_wait, default.lock_wait);
        assert_eq!(parsed.lock_timeout, default.lock_timeout);
        assert_eq!(parsed.lock_retries, default.lock_retries);
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
