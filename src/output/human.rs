//! Human renderings of each report: comfy-table tables and one-line summaries.

use comfy_table::CellAlignment;

use super::table::{cell, table};
use crate::migrations::baseline::BaselineReport;
use crate::migrations::migrate::MigrateReport;
use crate::migrations::new::NewReport;
use crate::migrations::rollback::RollbackReport;
use crate::migrations::StatusReport;

fn millis(ms: Option<f64>) -> String {
    ms.map(|m| format!("{m:.1} ms")).unwrap_or_default()
}

/// A migrate run: the migrations, then the partitions ensured after them (None with
/// `--no-partitions` or `--dry-run`).
pub fn migrate(
    r: &MigrateReport,
    lint: Option<&crate::lint::Report>,
    partitions: Option<&crate::partitions::RunReport>,
) -> String {
    let mut out = migrations_part(r);
    if !r.ahead.is_empty() {
        out.push_str(&format!(
            "the database is ahead of this release: {} applied migration(s) newer than every file here ({}); nothing to do for them\n",
            r.ahead.len(),
            r.ahead
                .iter()
                .map(|e| format!("{}_{}", e.version, e.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(lint) = lint {
        // A dry run shows the lock plan; a run shows the findings --allow-unsafe let through.
        let shown = crate::lint::Report {
            plan: lint.plan.clone().filter(|_| r.dry_run),
            ..lint.clone()
        };
        if shown.plan.is_some() || !shown.findings.is_empty() {
            out.push_str(&super::lint::human(&shown, false));
        }
    }
    if let Some(partitions) = partitions {
        out.push_str(&super::partitions::ensured(partitions));
    }
    out
}

/// `migrate --wait-replicas`: one row per standby, or a line saying there is none.
pub fn replicas(r: &crate::db::replicas::Replicas) -> String {
    let mut ignored = String::new();
    for i in &r.ignored {
        ignored.push_str(&format!(
            "ignored {} ({}): {}\n",
            i.application_name,
            i.client_addr.as_deref().unwrap_or("local socket"),
            i.reason
        ));
    }
    if r.standbys.is_empty() {
        return format!(
            "{ignored}no standby is streaming from this server: nothing to wait for (target_lsn {})\n",
            r.target_lsn
        );
    }
    let mut t = table(&[
        "application name",
        "client addr",
        "replication state",
        "replay lsn",
        "lag bytes",
        "caught up",
    ]);
    for s in &r.standbys {
        t.add_row(vec![
            cell(&s.application_name),
            cell(s.client_addr.as_deref().unwrap_or("local socket")),
            cell(&s.replication_state),
            cell(s.replay_lsn.as_deref().unwrap_or("-")),
            cell(
                s.lag_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .set_alignment(CellAlignment::Right),
            cell(if s.caught_up { "yes" } else { "no" }),
        ]);
    }
    let verdict = if r.caught_up {
        "every standby has replayed"
    } else {
        "not every standby has replayed"
    };
    format!(
        "{t}\n{ignored}{verdict} target_lsn {} (waited {:.1} s)\n",
        r.target_lsn,
        r.waited_ms / 1000.0
    )
}

fn migrations_part(r: &MigrateReport) -> String {
    let mut out = String::new();
    if r.creates_database {
        out.push_str(&match r.dry_run {
            true => format!(
                "{}: the database does not exist; migrate would create it\n",
                r.database
            ),
            false => format!("{}: created the database\n", r.database),
        });
    }
    if r.steps.is_empty() {
        return out
            + &format!(
                "{}: up to date ({} migrations applied)\n",
                r.database, r.already_applied
            );
    }
    let mut t = table(&["version", "name", "transaction", "duration"]);
    for s in &r.steps {
        let name = match s.predates {
            Some(newest) => format!("{} (out-of-order: older than {newest})", s.name),
            None => s.name.clone(),
        };
        t.add_row(vec![
            cell(s.version),
            cell(name),
            cell(match s.transaction {
                crate::migrations::catalog::Transaction::Wrapped => "wrapped",
                crate::migrations::catalog::Transaction::None => "none",
            }),
            cell(millis(s.duration_ms)).set_alignment(CellAlignment::Right),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    let out_of_order = r.steps.iter().filter(|s| s.predates.is_some()).count();
    if out_of_order > 0 && r.dry_run && !r.allow_out_of_order {
        out.push_str(&format!(
            "{out_of_order} of them out-of-order (older than the newest applied migration): {}\n",
            crate::migrations::status::OUT_OF_ORDER_ADVICE
        ));
    }
    if r.dry_run {
        out.push_str(&dry_run_footer(
            &if out_of_order > 0 && !r.allow_out_of_order {
                format!(
                    "{} migration(s) would be applied to {} with --allow-out-of-order (without it migrate refuses and applies none)",
                    r.steps.len(),
                    r.database
                )
            } else {
                format!(
                    "{} migration(s) would be applied to {}",
                    r.steps.len(),
                    r.database
                )
            },
            r.steps.iter().map(|s| (s.file.clone(), s.sql.as_deref())),
        ));
    } else {
        out.push_str(&format!(
            "applied {} migration(s) to {} in {:.1} ms\n",
            r.steps.len(),
            r.database,
            r.duration_ms
        ));
    }
    out
}

pub fn status(r: &StatusReport) -> String {
    if let Some(table) = &r.dbmate_table {
        return format!(
            "{}: migrated by dbmate ({table} exists) and no dhctl history: none of the {} \
             migrations is recorded for dhctl, and `dhctl migrate` refuses to apply them again\n\
             hint: adopt it with `dhctl baseline --from-dbmate` (checks the schema, then records \
             dbmate's applied versions)\n",
            r.database,
            r.migrations.len()
        );
    }
    let mut t = table(&["version", "name", "state", "applied at"]);
    for e in &r.migrations {
        t.add_row(vec![
            cell(e.version),
            cell(&e.name),
            cell(e.state.as_str()),
            cell(
                e.applied_at
                    .map(|a| a.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ),
        ]);
    }
    let c = r.counts;
    let mut summary = format!(
        "{}: {} applied, {} pending",
        r.database, c.applied, c.pending
    );
    if c.modified > 0 {
        summary.push_str(&format!(", {} modified", c.modified));
    }
    if c.missing > 0 {
        summary.push_str(&format!(", {} missing", c.missing));
    }
    if c.out_of_order > 0 {
        summary.push_str(&format!(", {} out-of-order", c.out_of_order));
    }
    if c.ahead > 0 {
        summary.push_str(&format!(", {} ahead (applied by a newer release)", c.ahead));
    }
    let mut out = format!("{t}\n{summary}\n");
    let out_of_order: Vec<String> = r
        .migrations
        .iter()
        .filter(|e| e.state == crate::migrations::status::State::OutOfOrder)
        .map(crate::migrations::status::out_of_order_line)
        .collect();
    if !out_of_order.is_empty() {
        out.push_str(&format!(
            "{}\n{}\n",
            out_of_order.join("\n"),
            crate::migrations::status::OUT_OF_ORDER_ADVICE
        ));
    }
    out
}

pub fn rollback(r: &RollbackReport) -> String {
    if r.rolled_back.is_empty() {
        return format!("{}: nothing to roll back\n", r.database);
    }
    let mut t = table(&["version", "name", "duration"]);
    for s in &r.rolled_back {
        let name = match s.predates {
            Some(newer) => format!("{} (applied out of order, after {newer})", s.name),
            None => s.name.clone(),
        };
        t.add_row(vec![
            cell(s.version),
            cell(name),
            cell(millis(s.duration_ms)).set_alignment(CellAlignment::Right),
        ]);
    }
    let mut out = format!("{t}\n");
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if r.dry_run {
        out.push_str(&dry_run_footer(
            &format!(
                "{} migration(s) would be rolled back on {}",
                r.rolled_back.len(),
                r.database
            ),
            r.rolled_back
                .iter()
                .map(|s| (format!("{} (down)", s.file), s.sql.as_deref())),
        ));
    } else {
        out.push_str(&format!(
            "rolled back {} migration(s) on {}\n",
            r.rolled_back.len(),
            r.database
        ));
    }
    out
}

/// A dry run's footer: what it would have done, then the SQL of each step that carries some
/// (`--dry-run -v`), under a `-- <label>` line.
fn dry_run_footer<'a>(
    would: &str,
    steps: impl Iterator<Item = (String, Option<&'a str>)>,
) -> String {
    let mut out = format!("dry run: {would}; nothing was changed\n");
    for (label, sql) in steps {
        if let Some(sql) = sql {
            out.push_str(&format!("\n-- {label}\n{}\n", sql.trim_end()));
        }
    }
    out
}

pub fn baseline(r: &BaselineReport) -> String {
    let mut t = table(&["version", "name"]);
    for s in &r.steps {
        t.add_row(vec![cell(s.version), cell(&s.name)]);
    }
    let mut out = format!("{t}\n");
    if !r.differences.is_empty() {
        out.push_str(&format!(
            "{}: the schema is not what these {} migration(s) build; nothing was recorded. {} difference(s):\n",
            r.database,
            r.steps.len(),
            r.differences.len()
        ));
        for d in &r.differences {
            out.push_str(&format!("  {d}\n"));
        }
        out.push_str(
            "hint: make the database match (or choose the --version it matches), then run baseline again; `dhctl verify` names the same differences once adopted\n",
        );
        return out;
    }
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let from = match &r.dbmate_table {
        Some(table) => format!(" (dbmate's {table})"),
        None => String::new(),
    };
    if r.recorded {
        out.push_str(&format!(
            "{}: the schema matches; recorded {} migration(s){from} as applied\n",
            r.database,
            r.steps.len()
        ));
    } else {
        out.push_str(&format!(
            "dry run: the schema of {} matches; {} migration(s){from} would be recorded as applied; nothing was changed\n",
            r.database,
            r.steps.len()
        ));
    }
    out
}

pub fn new(r: &NewReport) -> String {
    format!("created {}\n", r.path.display())
}

#[cfg(test)]
mod tests {
    use crate::db::replicas::{Replicas, Standby};

    #[test]
    fn replicas_show_one_row_per_standby_with_its_lag() {
        let report = Replicas {
            target_lsn: "0/3000100".into(),
            caught_up: false,
            waited_ms: 1500.0,
            standbys: vec![Standby {
                application_name: "db2".into(),
                client_addr: None,
                replication_state: "streaming".into(),
                replay_lsn: Some("0/3000000".into()),
                lag_bytes: Some(256),
                caught_up: false,
            }],
            ignored: Vec::new(),
        };
        let text = super::replicas(&report);
        for expected in [
            "application name",
            "db2",
            "local socket",
            "256",
            "not every standby has replayed target_lsn 0/3000100 (waited 1.5 s)",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }
}
