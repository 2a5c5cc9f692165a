//! Throwaway PostgreSQL clusters for tests that need a server configured differently from the
//! shared one (TLS on or off, other pg_hba rules): initdb into a temporary folder, run as the
//! `postgres` OS user (the server refuses root) on a free port, stopped and removed on drop.
//!
//! Binaries: DHCTL_TEST_PG_BIN (scripts/pg-matrix sets it to the major under test), else the
//! newest /usr/lib/postgresql/*/bin.
//!
//! Replication: [`Cluster::primary`] streams WAL, [`Cluster::standby_of`] clones one with
//! `pg_basebackup -R` (from the same bin folder) into a hot standby, and [`Cluster::promote`],
//! [`Cluster::stop`] play a failover.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("DHCTL_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "no DHCTL_TEST_PG_BIN and no /usr/lib/postgresql: install PostgreSQL server binaries",
        )
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .parse::<u32>()
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

/// Runs a command as the postgres OS user, panicking with its output on failure.
fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .arg("-u")
        .arg("postgres")
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// postgresql.conf lines of a primary that streams to standbys.
/// fsync is off: the cluster is thrown away, and a busy test machine's disk would otherwise
/// make every checkpoint of pg_basebackup and every commit slow.
pub const PRIMARY_CONF: &str =
    "wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\nfsync = off\nwal_keep_size = '256MB'\n";

/// pg_hba.conf that trusts local and 127.0.0.1 connections, replication ones included.
pub const REPLICATION_HBA: &str = "local all all trust\nlocal replication all trust\n\
    host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n";

impl Cluster {
    /// Starts a cluster with extra `postgresql.conf` lines and the given pg_hba.conf.
    pub fn start(conf: &str, hba: &str, files: &[(&str, &[u8])]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("dhctl-cluster")
            .tempdir()
            .unwrap();
        let path = dir.path();
        chown_postgres(path);
        let data = path.join("db");
        as_postgres(
            &pg_bin().join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                // A throwaway cluster: not waiting for the disk saves seconds per test.
                "--no-sync",
            ],
        );
        for (name, bytes) in files {
            let file = data.join(name);
            std::fs::write(&file, bytes).unwrap();
            chown_postgres(&file);
            set_mode(&file, 0o600);
        }
        let port = free_port();
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut config,
            format!("\nport = {port}\nunix_socket_directories = '{}'\nlisten_addresses = '127.0.0.1,127.0.0.2'\n{conf}\n", path.display()).as_bytes(),
        )
        .unwrap();
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = path.join("server.log");
        as_postgres(
            &pg_bin().join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Cluster { dir, port }
    }

    /// A primary that streams WAL to standbys (see [`Cluster::standby_of`]).
    pub fn primary() -> Cluster {
        Cluster::start(PRIMARY_CONF, REPLICATION_HBA, &[])
    }

    /// [`Cluster::primary`] holding one (empty) database, `app`.
    pub fn primary_with_app() -> Cluster {
        let primary = Cluster::primary();
        primary
            .admin()
            .batch_execute("CREATE DATABASE app")
            .unwrap();
        primary
    }

    /// A hot standby of `primary`, cloned with `pg_basebackup -R` over 127.0.0.1 and started;
    /// it streams under `name` (its cluster_name, which the walreceiver sends as its
    /// application_name, so the primary's pg_stat_replication shows it).
    pub fn standby_of(primary: &Cluster, name: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("dhctl-standby")
            .tempdir()
            .unwrap();
        let path = dir.path();
        chown_postgres(path);
        let data = path.join("db");
        let basebackup = pg_bin().join("pg_basebackup");
        if basebackup.exists() {
            as_postgres(
                &basebackup,
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            );
        } else {
            low_level_backup(primary, &data);
        }
        let port = free_port();
        // The copy carries the primary's postgresql.conf; later lines win.
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut config,
            format!(
                "\nport = {port}\nunix_socket_directories = '{}'\ncluster_name = '{name}'\n",
                path.display()
            )
            .as_bytes(),
        )
        .unwrap();
        let standby = Cluster { dir, port };
        standby.pg_ctl(&["-w", "-t", "60", "start"]);
        standby
    }

    /// Pauses WAL replay on this standby (asked through its `app` database) and waits until the
    /// server says it is paused.
    pub fn pause_replay(&self) {
        self.value("app", "SELECT pg_wal_replay_pause()");
        assert!(crate::harness::wait_until(
            std::time::Duration::from_secs(60),
            || self.value("app", "SELECT pg_get_wal_replay_pause_state()") == "paused"
        ));
    }

    /// Waits until one session of this server waits on `event` (pg_stat_activity.wait_event).
    pub fn wait_for_event(&self, event: &str) {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE wait_event = '{event}'");
        assert!(
            crate::harness::wait_until(std::time::Duration::from_secs(60), || self
                .value("postgres", &sql)
                == "1"),
            "no session waited on {event}"
        );
    }

    /// `pg_ctl` on this cluster's data folder, logging to its server.log.
    fn pg_ctl(&self, args: &[&str]) {
        let data = self.path("db");
        let log = self.path("server.log");
        let mut all = vec!["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        all.extend_from_slice(args);
        as_postgres(&pg_bin().join("pg_ctl"), &all);
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) {
        self.pg_ctl(&["-w", "-t", "60", "promote"]);
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing is lost).
    pub fn stop(&self) {
        self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "stop"]);
    }

    /// `postgres://postgres@127.0.0.1:PORT/dbname` over TCP (pg_hba must trust 127.0.0.1).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The first column of the first row of `sql` in `dbname`, as text ("NULL" for null).
    pub fn value(&self, dbname: &str, sql: &str) -> String {
        let config = format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.path().display(),
            self.port
        );
        let mut client = postgres::Client::connect(&config, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {dbname} on port {}: {e}", self.port));
        client
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .into_iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    /// A blocking admin connection over the unix socket (which pg_hba trusts).
    pub fn admin(&self) -> postgres::Client {
        let config = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        postgres::Client::connect(&config, postgres::NoTls)
            .expect("admin connection over the unix socket")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("db");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin().join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

/// A primary with one database, `app`, and a hot standby of it streaming as `standby1`.
pub fn primary_and_standby() -> (Cluster, Cluster) {
    let primary = Cluster::primary_with_app();
    let standby = Cluster::standby_of(&primary, "standby1");
    (primary, standby)
}

/// What `pg_basebackup -R` does, with the server's low-level backup API and a file copy (docs:
/// continuous-archiving, "Making a Base Backup Using the Low Level API"), for bin folders that
/// ship no pg_basebackup: scripts/pg-matrix's embedded-postgres bundles hold only initdb, pg_ctl
/// and postgres. pg_wal is left empty: the standby streams the WAL from the backup's start, which
/// the primary keeps (PRIMARY_CONF's wal_keep_size).
fn low_level_backup(primary: &Cluster, data: &Path) {
    let mut admin = primary.admin();
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .unwrap()
        .get(0);
    // PostgreSQL 15 renamed the functions and dropped the exclusive mode.
    let (start, stop) = if version >= 150000 {
        (
            "SELECT pg_backup_start('dhctl-test', true)::text",
            "SELECT labelfile FROM pg_backup_stop()",
        )
    } else {
        (
            "SELECT pg_start_backup('dhctl-test', true, false)::text",
            "SELECT labelfile FROM pg_stop_backup(false)",
        )
    };
    admin.query_one(start, &[]).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(primary.path("db"))
        .arg(data)
        .status()
        .unwrap();
    assert!(status.success(), "copying the primary's data folder");
    let label: String = admin.query_one(stop, &[]).unwrap().get(0);
    for leftover in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(data.join(leftover));
    }
    for emptied in ["pg_wal", "pg_replslot", "pg_stat_tmp"] {
        for entry in std::fs::read_dir(data.join(emptied)).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                std::fs::remove_dir_all(entry).unwrap();
            } else {
                std::fs::remove_file(entry).unwrap();
            }
        }
    }
    std::fs::create_dir(data.join("pg_wal/archive_status")).unwrap();
    std::fs::write(data.join("backup_label"), label).unwrap();
    std::fs::write(data.join("standby.signal"), "").unwrap();
    let mut auto = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.auto.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut auto,
        format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n",
            primary.port
        )
        .as_bytes(),
    )
    .unwrap();
    let status = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(data)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Gives `path` to the `postgres` OS user, which the servers run as.
pub fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("postgres")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
