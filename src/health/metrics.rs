//! `/metrics`: what the last readiness round found, in the Prometheus text exposition format
//! (version 0.0.4), encoded by the `prometheus-client` crate once per round and served to every
//! scrape that shares the round, as `/health/ready`'s JSON is. A scrape never runs a check of
//! its own: the single flight and the result cache bound the load whatever the scrape rate.
//!
//! Each round builds a fresh registry from what it found, so a value that could not be read
//! (PostgreSQL down, no privilege on the history table) is absent rather than stale, while the
//! dependencies' `up` gauges say why. The counter of rounds and the latency histograms live
//! across rounds. The figures are pure functions of the round's facts (unit-tested below);
//! docs/health.md lists every metric.

use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::report::{Check, Verdict};
use super::schema::{Facts, Partitions, TableFacts};
use crate::migrations::status::{Counts, Entry, State};
use crate::partitions::{plan, Policy};

/// The `Content-Type` that matches the encoder (`text/plain; version=0.0.4; charset=utf-8`).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Check latency buckets, in seconds: from a local `SELECT 1` (well under a millisecond) up to
/// and past the largest sensible check timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What lives across rounds: the count of rounds, the latency histograms and the start time.
pub struct Metrics {
    rounds: Counter,
    latency: Family<DependencyLabel, Histogram, fn() -> Histogram>,
    started_at: f64,
}

/// What one round found, as the metrics need it.
pub struct Round<'a> {
    /// When the round ended (this host's clock).
    pub at: DateTime<Utc>,
    pub ready: bool,
    pub postgres: &'a Check,
    pub redis: &'a Check,
    /// The schema reads, when PostgreSQL answered.
    pub schema: Option<&'a Facts>,
    pub policies: &'a [Policy],
}

impl Metrics {
    pub fn new(started_at: DateTime<Utc>) -> Metrics {
        Metrics {
            rounds: Counter::default(),
            latency: Family::new_with_constructor(latency_histogram),
            started_at: unix_seconds(started_at),
        }
    }

    /// Counts the round, observes its latencies and encodes everything it found.
    pub fn record(&self, round: &Round<'_>) -> Bytes {
        self.rounds.inc();
        for (dependency, check) in [("postgres", round.postgres), ("redis", round.redis)] {
            self.latency
                .get_or_create(&DependencyLabel { dependency })
                .observe(check.latency_ms / 1000.0);
        }
        let mut registry = Registry::default();
        self.register_process(&mut registry, round);
        register_dependencies(&mut registry, round);
        registry.register_with_unit(
            "dhctl_dependency_check_duration",
            "How long each dependency's readiness check took",
            Unit::Seconds,
            self.latency.clone(),
        );
        let facts = round.schema;
        let collectors = Family::<CollectorLabel, Gauge>::default();
        let migrations = facts.and_then(|f| f.migrations.as_ref().ok());
        let partitions = facts.and_then(|f| f.partitions.as_ref().ok());
        for (collector, read) in [
            ("migrations", migrations.is_some()),
            ("partitions", partitions.is_some()),
        ] {
            collectors
                .get_or_create(&CollectorLabel { collector })
                .set(i64::from(read));
        }
        registry.register(
            "dhctl_collector_up",
            "Whether the last round could read this part of the schema (1) or not (0: its metrics are absent until it can)",
            collectors,
        );
        if let Some(entries) = migrations {
            register_migrations(&mut registry, &MigrationFigures::of(entries));
        }
        if let Some(partitions) = partitions {
            let figures = PartitionFigures::all(round.policies, partitions);
            register_partitions(&mut registry, &figures);
        }
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail; an empty body would be the visible sign if it did.
        let _ = prometheus_text::encode(&mut text, &registry);
        Bytes::from(text)
    }

    fn register_process(&self, registry: &mut Registry, round: &Round<'_>) {
        registry.register(
            "dhctl_build",
            "The dhctl-health build: its version as a label, value 1",
            Info::new([("version", super::routes::VERSION)]),
        );
        let started = FloatGauge::default();
        started.set(self.started_at);
        registry.register_with_unit(
            "process_start_time",
            "When this server started, in seconds since the Unix epoch (uptime: time() - this)",
            Unit::Seconds,
            started,
        );
        registry.register(
            "dhctl_health_checks",
            "Readiness rounds run (each: one check of every dependency and one schema read), whatever the number of probes and scrapes they answered",
            self.rounds.clone(),
        );
        let at = FloatGauge::default();
        at.set(unix_seconds(round.at));
        registry.register_with_unit(
            "dhctl_health_last_check_timestamp",
            "When the round these values come from ended, in seconds since the Unix epoch",
            Unit::Seconds,
            at,
        );
        let ready = Gauge::<i64>::default();
        ready.set(i64::from(round.ready));
        registry.register(
            "dhctl_health_ready",
            "Whether /health/ready answers 200 (1) or 503 (0)",
            ready,
        );
    }
}

fn register_dependencies(registry: &mut Registry, round: &Round<'_>) {
    let up = Family::<DependencyLabel, Gauge>::default();
    for (dependency, check) in [("postgres", round.postgres), ("redis", round.redis)] {
        up.get_or_create(&DependencyLabel { dependency })
            .set(i64::from(check.status == Verdict::Ok));
    }
    registry.register(
        "dhctl_dependency_up",
        "Whether the dependency passed its last readiness check (1) or not (0)",
        up,
    );
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::<i64>::default();
    g.set(value);
    g
}

fn count(n: usize) -> Gauge {
    gauge(i64::try_from(n).unwrap_or(i64::MAX))
}

fn register_migrations(registry: &mut Registry, m: &MigrationFigures) {
    registry.register(
        "dhctl_migrations_applied",
        "Migrations recorded in the history table",
        count(m.applied),
    );
    registry.register(
        "dhctl_migrations_pending",
        "Migration files not applied yet (out-of-order ones included)",
        count(m.pending),
    );
    registry.register(
        "dhctl_migrations_drifted",
        "Applied migrations whose file was modified since or is missing (dhctl status: modified, missing)",
        count(m.drifted),
    );
    registry.register(
        "dhctl_migrations_out_of_order",
        "Pending migrations older than the newest applied one",
        count(m.out_of_order),
    );
    registry.register(
        "dhctl_migrations_ahead",
        "Applied migrations newer than every file this server knows (a newer release applied them)",
        count(m.ahead),
    );
    if let Some(version) = m.newest_applied {
        registry.register(
            "dhctl_migrations_newest_applied_version",
            "The newest applied migration's version (YYYYMMDDHHMMSS)",
            gauge(version),
        );
    }
}

fn register_partitions(registry: &mut Registry, figures: &[PartitionFigures]) {
    let runway = Family::<TableLabel, FloatGauge>::default();
    let periods = Family::<TableLabel, Gauge>::default();
    let partitions = Family::<TableLabel, Gauge>::default();
    let oldest = Family::<TableLabel, FloatGauge>::default();
    let retention = Family::<TableLabel, FloatGauge>::default();
    let default_rows = Family::<TableLabel, Gauge>::default();
    for f in figures {
        let label = TableLabel {
            table: f.table.clone(),
        };
        runway.get_or_create(&label).set(f.runway_seconds);
        periods
            .get_or_create(&label)
            .set(i64::from(f.runway_periods));
        partitions
            .get_or_create(&label)
            .set(i64::try_from(f.partitions).unwrap_or(i64::MAX));
        if let Some(age) = f.oldest_age_seconds {
            oldest.get_or_create(&label).set(age);
        }
        if let Some(seconds) = f.retention_seconds {
            retention.get_or_create(&label).set(seconds);
        }
        if let Some(rows) = f.default_rows {
            default_rows.get_or_create(&label).set(rows);
        }
    }
    registry.register_with_unit(
        "dhctl_partition_runway",
        "How far ahead of now the table's partitions cover without a gap (0: now has no partition; +Inf: a MAXVALUE bound)",
        Unit::Seconds,
        runway,
    );
    registry.register(
        "dhctl_partition_runway_periods",
        "Whole periods after the current one that have a partition (dhctl verify fails below 1)",
        periods,
    );
    registry.register(
        "dhctl_partitions",
        "Partitions attached to the table (a DEFAULT partition not included)",
        partitions,
    );
    registry.register_with_unit(
        "dhctl_partition_oldest_age",
        "Time since the oldest partition's upper bound: prune drops it once this reaches the retention",
        Unit::Seconds,
        oldest,
    );
    registry.register_with_unit(
        "dhctl_partition_retention",
        "The policy's retention as of now (tables whose policy has one)",
        Unit::Seconds,
        retention,
    );
    registry.register(
        "dhctl_partition_default_rows",
        "Live rows in the table's DEFAULT partition, PostgreSQL's statistics estimate (tables that have one; it should be 0)",
        default_rows,
    );
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds()
        .map_or(d.num_seconds() as f64, |us| us as f64 / 1e6)
}

/// The migrations' counts, from the status diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationFigures {
    /// In the history table, whatever their files say.
    pub applied: usize,
    pub pending: usize,
    /// Modified or missing.
    pub drifted: usize,
    /// Not applied and older than the newest applied one (a branch merged after a newer
    /// migration was applied): the status diff's `out-of-order` state, counted in `pending` too.
    pub out_of_order: usize,
    pub ahead: usize,
    pub newest_applied: Option<i64>,
}

impl MigrationFigures {
    /// The status diff's [`Counts`], in the metrics' terms.
    pub fn of(entries: &[Entry]) -> MigrationFigures {
        let counts = Counts::of(entries);
        MigrationFigures {
            applied: counts.recorded(),
            // Every state of a file not in the history: not applied yet.
            pending: counts.unapplied(),
            drifted: counts.drifted(),
            out_of_order: counts.out_of_order,
            ahead: counts.ahead,
            newest_applied: newest_applied(entries),
        }
    }
}

/// Whether the history table records the entry (whatever its file says).
fn recorded(state: State) -> bool {
    matches!(
        state,
        State::Applied | State::Modified | State::Missing | State::Ahead
    )
}

/// The newest version the history table records.
fn newest_applied(entries: &[Entry]) -> Option<i64> {
    entries
        .iter()
        .filter(|e| recorded(e.state))
        .map(|e| e.version)
        .max()
}

/// One policy's table, as the partition metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionFigures {
    pub table: String,
    pub runway_seconds: f64,
    pub runway_periods: u32,
    pub partitions: usize,
    pub oldest_age_seconds: Option<f64>,
    pub retention_seconds: Option<f64>,
    pub default_rows: Option<i64>,
}

impl PartitionFigures {
    fn all(policies: &[Policy], partitions: &Partitions) -> Vec<PartitionFigures> {
        policies
            .iter()
            .zip(&partitions.tables)
            .map(|(policy, facts)| PartitionFigures::of(policy, facts, partitions.now))
            .collect()
    }

    /// A table that does not exist (or does not fit its policy) has no runway and no
    /// partitions; its retention is still the policy's.
    pub fn of(policy: &Policy, facts: &TableFacts, now: DateTime<Utc>) -> PartitionFigures {
        let retention_seconds = policy
            .retention
            .and_then(|r| r.cutoff(now))
            .map(|cutoff| seconds(now - cutoff));
        let mut figures = PartitionFigures {
            table: policy.table.clone(),
            runway_seconds: 0.0,
            runway_periods: 0,
            partitions: 0,
            oldest_age_seconds: None,
            retention_seconds,
            default_rows: facts.default_rows,
        };
        let Some(parent) = &facts.parent else {
            return figures;
        };
        figures.partitions = parent.partitions.len();
        if let Some(coverage) = plan::coverage(policy, &parent.partitions, now) {
            figures.runway_periods = coverage.runway;
            figures.runway_seconds = match coverage.covered_until {
                Some(until) => seconds(until - now).max(0.0),
                // No end to the coverage: a MAXVALUE bound carries it (runway counted).
                None if coverage.runway > 0 => f64::INFINITY,
                // Now has no partition.
                None => 0.0,
            };
        }
        figures.oldest_age_seconds = parent
            .partitions
            .iter()
            .filter_map(|p| p.to)
            .min()
            .map(|to| seconds(now - to).max(0.0));
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::parse_files;
    use crate::migrations::history::HistoryRow;
    use crate::migrations::status;
    use crate::partitions::live::{DefaultPartition, Parent};
    use crate::partitions::{Existing, Interval, Retention, RetentionMode};
    use chrono::TimeZone;

    /// The status diff of the files `files` (version n is `2024010100000n`) against a history
    /// that records `applied` as they are, `modified` with another checksum, and `gone`
    /// (versions without a file).
    fn entries(files: &[i64], applied: &[i64], modified: &[i64], gone: &[i64]) -> Vec<Entry> {
        let version = |n: i64| 20240101000000 + n;
        let catalog = parse_files(
            files
                .iter()
                .map(|n| {
                    (
                        format!("{}_m{n}.sql", version(*n)),
                        format!("SELECT {n};").into_bytes(),
                    )
                })
                .collect(),
        )
        .unwrap();
        let row = |n: i64, checksum: String| HistoryRow {
            version: version(n),
            name: format!("m{n}"),
            applied_on: "2026-01-02T03:04:05Z".into(),
            checksum,
        };
        let mut history: Vec<HistoryRow> = applied
            .iter()
            .map(|n| row(*n, catalog.get(version(*n)).unwrap().checksum.to_string()))
            .collect();
        history.extend(modified.iter().map(|n| row(*n, "1".into())));
        history.extend(gone.iter().map(|n| row(*n, "9".into())));
        status::diff(&catalog, &history)
    }

    #[test]
    fn migration_counts_follow_the_status_diff() {
        // 1 and 5 applied, 3 modified, 4 applied but its file deleted (missing), 9 applied by a
        // newer release (ahead); 2 and 6 not applied, both older than 9.
        let all = entries(&[1, 2, 3, 5, 6], &[1, 5], &[3], &[4, 9]);
        assert_eq!(
            MigrationFigures::of(&all),
            MigrationFigures {
                applied: 5,
                pending: 2,
                drifted: 2,
                out_of_order: 2,
                ahead: 1,
                newest_applied: Some(20240101000009),
            }
        );
    }

    #[test]
    fn out_of_order_means_not_applied_and_older_than_the_newest_applied() {
        for (files, applied, expected) in [
            (&[][..], &[][..], 0),
            // Nothing applied: nothing can be out of order.
            (&[1, 2][..], &[][..], 0),
            // Not applied, but after the newest applied: in order.
            (&[1, 2][..], &[1][..], 0),
            (&[1, 2, 3][..], &[2][..], 1),
            (&[1, 2, 3, 4, 5][..], &[2, 4][..], 2),
        ] {
            let e = entries(files, applied, &[], &[]);
            assert_eq!(
                MigrationFigures::of(&e).out_of_order,
                expected,
                "{files:?}, {applied:?} applied"
            );
            assert_eq!(
                MigrationFigures::of(&e).pending,
                files.len() - applied.len()
            );
        }
        assert_eq!(newest_applied(&entries(&[1, 2], &[], &[], &[])), None);
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn policy(retention: Option<&str>) -> Policy {
        Policy {
            file: "partitions/request_logs.toml".into(),
            table: "request_logs".into(),
            column: "created_at".into(),
            interval: Interval::Month,
            premake: 3,
            retention: retention.map(|r| Retention::parse(r).unwrap()),
            retention_mode: RetentionMode::Drop,
        }
    }

    fn part(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Existing {
        Existing {
            schema: "public".into(),
            name: format!("p{from:?}"),
            from,
            to,
            detach_pending: false,
            foreign: false,
        }
    }

    fn table(partitions: Vec<Existing>, default_rows: Option<i64>) -> TableFacts {
        TableFacts {
            parent: Some(Parent {
                table: "request_logs".into(),
                schema: "public".into(),
                oid: 1,
                partitions,
                default_partition: default_rows.map(|_| DefaultPartition {
                    schema: "public".into(),
                    name: "request_logs_default".into(),
                    rows: Vec::new(),
                    unreadable: None,
                    null_key_rows: 0,
                    far_rows: 0,
                }),
                others: Vec::new(),
            }),
            default_rows,
        }
    }

    #[test]
    fn runway_is_the_time_from_now_to_the_end_of_the_touching_partitions() {
        let now = at(2026, 11, 30) + chrono::TimeDelta::hours(12);
        // October (old), November (current), December, January; then a gap, then March.
        let facts = table(
            vec![
                part(Some(at(2026, 10, 1)), Some(at(2026, 11, 1))),
                part(Some(at(2026, 11, 1)), Some(at(2026, 12, 1))),
                part(Some(at(2026, 12, 1)), Some(at(2027, 1, 1))),
                part(Some(at(2027, 1, 1)), Some(at(2027, 2, 1))),
                part(Some(at(2027, 3, 1)), Some(at(2027, 4, 1))),
            ],
            Some(7),
        );
        let f = PartitionFigures::of(&policy(Some("13 months")), &facts, now);
        assert_eq!(f.runway_seconds, seconds(at(2027, 2, 1) - now));
        assert_eq!(f.runway_periods, 2);
        assert_eq!(f.partitions, 5);
        // The oldest partition ended on November 1st, 29.5 days ago.
        assert_eq!(f.oldest_age_seconds, Some(29.5 * 86400.0));
        // 13 months back from 2026-11-30 12:00 is 2025-10-30 12:00.
        assert_eq!(
            f.retention_seconds,
            Some(seconds(
                now - (at(2025, 10, 30) + chrono::TimeDelta::hours(12))
            ))
        );
        assert_eq!(f.default_rows, Some(7));
    }

    #[test]
    fn no_partition_for_now_no_table_and_maxvalue_are_reported_as_such() {
        let now = at(2026, 11, 15);
        let p = policy(None);
        let future_only = table(
            vec![part(Some(at(2026, 12, 1)), Some(at(2027, 1, 1)))],
            None,
        );
        let f = PartitionFigures::of(&p, &future_only, now);
        assert_eq!((f.runway_seconds, f.runway_periods), (0.0, 0));
        // Its upper bound is still ahead: an age of 0, not a negative one.
        assert_eq!(f.oldest_age_seconds, Some(0.0));
        assert_eq!((f.retention_seconds, f.default_rows), (None, None));

        let missing = TableFacts {
            parent: None,
            default_rows: None,
        };
        let f = PartitionFigures::of(&policy(Some("3 months")), &missing, now);
        assert_eq!(
            (f.runway_seconds, f.partitions, f.oldest_age_seconds),
            (0.0, 0, None)
        );
        assert!(f.retention_seconds.is_some());

        let unbounded = table(vec![part(Some(at(2026, 11, 1)), None)], None);
        let f = PartitionFigures::of(&p, &unbounded, now);
        assert_eq!(f.runway_seconds, f64::INFINITY);
        assert_eq!(f.oldest_age_seconds, None);
    }

    #[test]
    fn the_encoding_is_prometheus_text_with_the_conventional_names() {
        let metrics = Metrics::new(at(2026, 11, 30));
        let ok = Check::ok(std::time::Duration::from_micros(1500));
        let down = Check::failed(
            std::time::Duration::from_secs(1),
            super::super::report::Failure::new(super::super::report::Reason::Timeout, "x"),
        );
        let round = Round {
            at: at(2026, 11, 30),
            ready: false,
            postgres: &ok,
            redis: &down,
            schema: None,
            policies: &[],
        };
        metrics.record(&round);
        let text = String::from_utf8(metrics.record(&round).to_vec()).unwrap();
        let started = at(2026, 11, 30).timestamp();
        for line in [
            format!("dhctl_build_info{{version=\"{}\"}} 1", super::super::routes::VERSION),
            format!("process_start_time_seconds {started}.0"),
            "dhctl_health_checks_total 2".into(),
            "dhctl_health_ready 0".into(),
            "dhctl_dependency_up{dependency=\"postgres\"} 1".into(),
            "dhctl_dependency_up{dependency=\"redis\"} 0".into(),
            "dhctl_dependency_check_duration_seconds_count{dependency=\"redis\"} 2".into(),
            "dhctl_dependency_check_duration_seconds_bucket{dependency=\"postgres\",le=\"0.0025\"} 2"
                .into(),
            "dhctl_dependency_check_duration_seconds_bucket{dependency=\"postgres\",le=\"0.001\"} 0"
                .into(),
            "dhctl_collector_up{collector=\"migrations\"} 0".into(),
            "# TYPE dhctl_dependency_check_duration_seconds histogram".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        // Unread parts are absent, not zero.
        assert!(!text.contains("dhctl_migrations_pending"), "{text}");
        assert!(
            !text.contains("# EOF"),
            "OpenMetrics' terminator is not 0.0.4 text"
        );
    }
}
