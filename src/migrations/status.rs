//! The pure core of `status`: catalog × history → one entry per migration. No I/O, no clock.

use chrono::{DateTime, Utc};
use serde::Serialize;

use std::collections::HashMap;

use super::catalog::Catalog;
use super::history::HistoryRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the history and the file is as it was applied.
    Applied,
    /// A file not yet applied, newer than every applied migration.
    Pending,
    /// A file not yet applied whose version is older than the newest applied migration (a
    /// branch merged late). `migrate` refuses it unless `--allow-out-of-order`; it counts as
    /// not applied wherever pending does (`status --exit-code`, verify, readiness).
    #[serde(rename = "out-of-order")]
    OutOfOrder,
    /// Applied, but the file's up section (or name) changed since.
    Modified,
    /// Applied, older than the newest file, and no file has its version any more.
    Missing,
    /// Applied and newer than every file: the database is ahead of this release (a newer
    /// release applied it during a rolling deploy). Not drift; `status --strict` and
    /// `verify` still fail on it.
    Ahead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::OutOfOrder => "out-of-order",
            State::Modified => "modified",
            State::Missing => "missing",
            State::Ahead => "ahead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub version: i64,
    pub name: String,
    /// The file, when one exists.
    pub file: Option<String>,
    pub state: State,
    /// When it was applied (RFC 3339), for applied, modified and missing entries.
    pub applied_at: Option<DateTime<Utc>>,
    /// For an out-of-order entry: the newest applied version it is older than.
    pub predates: Option<i64>,
}

/// What to do about out-of-order migrations: the same words in status, verify and migrate.
pub const OUT_OF_ORDER_ADVICE: &str = "migrate refuses them (exit 2); apply them in version order \
     with `dhctl migrate --allow-out-of-order` (DHCTL_ALLOW_OUT_OF_ORDER=true) if they do not \
     depend on the order, or give each file a version newer than the newest applied one \
     (`dhctl new` writes one)";

/// One line naming an out-of-order migration and the applied version it predates.
pub fn out_of_order_line(e: &Entry) -> String {
    format!(
        "migration {} is out-of-order: older than {}, the newest applied migration",
        e.file.as_deref().unwrap_or(&e.name),
        e.predates
            .map_or_else(|| "?".to_string(), |v| v.to_string())
    )
}

/// One entry per version found in either the catalog or the history, in version order. Linear:
/// the history is indexed by version once.
///
/// The one rule every command shares (migrate, status, rollback, verify, dhctl-health's
/// readiness): an applied version without a file is `ahead` when it is newer than every file,
/// else `missing` (drift). Without any file there is no release to be ahead of: `missing`.
pub fn diff(catalog: &Catalog, history: &[HistoryRow]) -> Vec<Entry> {
    let by_version: HashMap<i64, &HistoryRow> = history.iter().map(|h| (h.version, h)).collect();
    // Rows ahead of this release count too: a file older than them was skipped as well.
    let newest_applied = history.iter().map(|h| h.version).max();
    let mut entries: Vec<Entry> = Vec::with_capacity(catalog.migrations.len().max(history.len()));
    for m in &catalog.migrations {
        let applied = by_version.get(&m.version).copied();
        let predates = newest_applied.filter(|n| applied.is_none() && *n > m.version);
        let state = match applied {
            None if predates.is_some() => State::OutOfOrder,
            None => State::Pending,
            Some(h) if h.name == m.name && h.checksum == m.checksum.to_string() => State::Applied,
            Some(_) => State::Modified,
        };
        entries.push(Entry {
            version: m.version,
            name: m.name.clone(),
            file: Some(m.file.clone()),
            state,
            applied_at: applied.and_then(HistoryRow::applied_at),
            predates,
        });
    }
    let newest_file = catalog.migrations.iter().map(|m| m.version).max();
    for h in history {
        if catalog.get(h.version).is_none() {
            let state = match newest_file {
                Some(newest) if h.version > newest => State::Ahead,
                _ => State::Missing,
            };
            entries.push(Entry {
                version: h.version,
                name: h.name.clone(),
                file: None,
                state,
                applied_at: h.applied_at(),
                predates: None,
            });
        }
    }
    entries.sort_by_key(|e| e.version);
    entries
}

/// The entries that are ahead of this release.
pub fn ahead(entries: &[Entry]) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| e.state == State::Ahead)
        .cloned()
        .collect()
}

/// Counts by state, for summaries and exit codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub applied: usize,
    pub pending: usize,
    /// Not applied and older than the newest applied migration (not counted in `pending`).
    pub out_of_order: usize,
    pub modified: usize,
    pub missing: usize,
    pub ahead: usize,
}

impl Counts {
    pub fn of(entries: &[Entry]) -> Counts {
        let mut c = Counts::default();
        for e in entries {
            match e.state {
                State::Applied => c.applied += 1,
                State::Pending => c.pending += 1,
                State::OutOfOrder => c.out_of_order += 1,
                State::Modified => c.modified += 1,
                State::Missing => c.missing += 1,
                State::Ahead => c.ahead += 1,
            }
        }
        c
    }

    pub fn drift(&self) -> bool {
        self.drifted() > 0
    }

    /// Applied migrations whose file was modified since or is missing.
    pub fn drifted(&self) -> usize {
        self.modified + self.missing
    }

    /// Migrations the history table records, whatever their files say.
    pub fn recorded(&self) -> usize {
        self.applied + self.drifted() + self.ahead
    }

    /// Files not yet applied: pending and out-of-order.
    pub fn unapplied(&self) -> usize {
        self.pending + self.out_of_order
    }
}

/// The drift message naming every modified or missing migration, if any.
pub fn drift_message(entries: &[Entry]) -> Option<String> {
    let lines: Vec<String> = entries
        .iter()
        .filter_map(|e| match e.state {
            State::Modified => Some(format!(
                "migration {} was modified after it was applied",
                e.file.as_deref().unwrap_or(&e.name)
            )),
            State::Missing => Some(format!(
                "migration {}_{} was applied but its file is missing",
                e.version, e.name
            )),
            _ => None,
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::catalog::parse_files;

    fn catalog(files: &[(&str, &str)]) -> Catalog {
        parse_files(
            files
                .iter()
                .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
                .collect(),
        )
        .unwrap()
    }

    fn row(c: &Catalog, version: i64) -> HistoryRow {
        let m = c.get(version).unwrap();
        HistoryRow {
            version,
            name: m.name.clone(),
            applied_on: "2026-01-02T03:04:05.123456789Z".into(),
            checksum: m.checksum.to_string(),
        }
    }

    #[test]
    fn states_cover_every_case() {
        let c = catalog(&[
            ("20240101000001_a.sql", "SELECT 1;"),
            ("20240101000002_b.sql", "SELECT 2;"),
            ("20240101000003_c.sql", "SELECT 3;"),
        ]);
        let mut modified = row(&c, 20240101000002);
        modified.checksum = "1".into();
        let missing = HistoryRow {
            version: 20230101000000,
            name: "gone".into(),
            applied_on: "bad".into(),
            checksum: "9".into(),
        };
        let entries = diff(&c, &[row(&c, 20240101000001), modified, missing]);
        let states: Vec<_> = entries.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(
            states,
            vec![
                (20230101000000, State::Missing),
                (20240101000001, State::Applied),
                (20240101000002, State::Modified),
                (20240101000003, State::Pending),
            ]
        );
        assert!(entries[1].applied_at.is_some());
        assert!(
            entries[0].applied_at.is_none(),
            "unparsable applied_on is shown as unknown"
        );
        let counts = Counts::of(&entries);
        assert_eq!(
            counts,
            Counts {
                applied: 1,
                pending: 1,
                out_of_order: 0,
                modified: 1,
                missing: 1,
                ahead: 0,
            }
        );
        let message = drift_message(&entries).unwrap();
        assert!(message.contains("20240101000002_b.sql was modified"));
        assert!(message.contains("20230101000000_gone was applied but its file is missing"));
    }

    #[test]
    fn applied_versions_newer_than_every_file_are_ahead_not_drift() {
        let c = catalog(&[
            ("20240101000001_a.sql", "SELECT 1;"),
            ("20240101000003_c.sql", "SELECT 3;"),
        ]);
        let row = |version, name: &str| HistoryRow {
            version,
            name: name.into(),
            applied_on: String::new(),
            checksum: "1".into(),
        };
        let entries = diff(
            &c,
            &[
                row(20240101000001, "a"),
                row(20240101000002, "gone"),
                row(20240101000003, "c"),
                row(20250101000000, "newer"),
            ],
        );
        let states: Vec<_> = entries.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(states[1], (20240101000002, State::Missing));
        assert_eq!(states[3], (20250101000000, State::Ahead));
        let counts = Counts::of(&entries);
        assert_eq!((counts.missing, counts.ahead), (1, 1));
        assert_eq!(ahead(&entries).len(), 1);
        assert!(!drift_message(&entries).unwrap().contains("newer"));
        let empty = Catalog::default();
        assert_eq!(
            diff(&empty, &[row(1, "x")])[0].state,
            State::Missing,
            "no file at all: nothing to be ahead of"
        );
    }

    #[test]
    fn a_renamed_file_with_the_same_sql_is_modified() {
        let c = catalog(&[("20240101000001_a.sql", "SELECT 1;")]);
        let mut r = row(&c, 20240101000001);
        r.name = "old_name".into();
        assert_eq!(diff(&c, &[r])[0].state, State::Modified);
    }

    #[test]
    fn a_file_older_than_the_newest_applied_is_out_of_order() {
        let c = catalog(&[
            ("20240101000001_a.sql", "SELECT 1;"),
            ("20240101000002_b.sql", "SELECT 2;"),
            ("20240101000003_c.sql", "SELECT 3;"),
            ("20240101000004_d.sql", "SELECT 4;"),
        ]);
        let entries = diff(&c, &[row(&c, 20240101000001), row(&c, 20240101000003)]);
        let states: Vec<_> = entries
            .iter()
            .map(|e| (e.version, e.state, e.predates))
            .collect();
        assert_eq!(
            states,
            vec![
                (20240101000001, State::Applied, None),
                (20240101000002, State::OutOfOrder, Some(20240101000003)),
                (20240101000003, State::Applied, None),
                (20240101000004, State::Pending, None),
            ]
        );
        let counts = Counts::of(&entries);
        assert_eq!(
            (counts.pending, counts.out_of_order, counts.unapplied()),
            (1, 1, 2)
        );
        assert!(!counts.drift());
        assert!(out_of_order_line(&entries[1]).contains("older than 20240101000003"));
        assert_eq!(
            serde_json::to_value(State::OutOfOrder).unwrap(),
            "out-of-order"
        );
    }

    #[test]
    fn no_history_means_everything_pending() {
        let c = catalog(&[("20240101000001_a.sql", "SELECT 1;")]);
        let entries = diff(&c, &[]);
        assert_eq!(entries[0].state, State::Pending);
        assert!(drift_message(&entries).is_none());
    }
}
