//! Tables of cases for the pure plan: month ends, leap years, ISO weeks, gaps, foreign partitions
//! with odd bounds, a table with none, retention edges.

use super::*;
use crate::partitions::period::{Interval, Retention};
use crate::partitions::policy::{Policy, RetentionMode};

fn t(s: &str) -> DateTime<Utc> {
    let s = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    DateTime::parse_from_rfc3339(&s)
        .unwrap()
        .with_timezone(&Utc)
}

fn policy(interval: Interval, premake: u32) -> Policy {
    Policy {
        file: "partitions/t.toml".into(),
        table: "t".into(),
        column: "created_at".into(),
        interval,
        premake,
        retention: None,
        retention_mode: RetentionMode::Drop,
    }
}

fn part(name: &str, from: &str, to: &str) -> Existing {
    Existing {
        schema: "public".into(),
        name: name.into(),
        from: (from != "MIN").then(|| t(from)),
        to: (to != "MAX").then(|| t(to)),
        detach_pending: false,
        foreign: false,
    }
}

/// `name from to` of each create action.
fn created(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Create { name, from, to } => {
                format!("{name} {} {}", from.format("%F"), to.format("%F"))
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn create_wants_the_current_period_and_the_next_ahead() {
    // (interval, now, ahead, existing, wanted "name from to")
    type Case = (
        Interval,
        &'static str,
        u32,
        Vec<Existing>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        // A table with no partitions at all.
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            3,
            vec![],
            vec![
                "t_2026_11 2026-11-01 2026-12-01",
                "t_2026_12 2026-12-01 2027-01-01",
                "t_2027_01 2027-01-01 2027-02-01",
                "t_2027_02 2027-02-01 2027-03-01",
            ],
        ),
        // The last second of a year is still December.
        (
            Interval::Month,
            "2026-12-31T23:59:59Z",
            1,
            vec![],
            vec![
                "t_2026_12 2026-12-01 2027-01-01",
                "t_2027_01 2027-01-01 2027-02-01",
            ],
        ),
        // Leap February.
        (
            Interval::Month,
            "2024-01-31T12:00:00Z",
            1,
            vec![],
            vec![
                "t_2024_01 2024-01-01 2024-02-01",
                "t_2024_02 2024-02-01 2024-03-01",
            ],
        ),
        (
            Interval::Day,
            "2024-02-28T22:00:00Z",
            2,
            vec![],
            vec![
                "t_2024_02_28 2024-02-28 2024-02-29",
                "t_2024_02_29 2024-02-29 2024-03-01",
                "t_2024_03_01 2024-03-01 2024-03-02",
            ],
        ),
        (
            Interval::Day,
            "2023-02-28T22:00:00Z",
            1,
            vec![],
            vec![
                "t_2023_02_28 2023-02-28 2023-03-01",
                "t_2023_03_01 2023-03-01 2023-03-02",
            ],
        ),
        // ISO weeks start on Monday; this Sunday belongs to the week of Monday 2026-11-09.
        (
            Interval::Week,
            "2026-11-15T23:00:00Z",
            1,
            vec![],
            vec![
                "t_2026_11_09 2026-11-09 2026-11-16",
                "t_2026_11_16 2026-11-16 2026-11-23",
            ],
        ),
        (
            Interval::Week,
            "2027-01-01T00:00:00Z",
            0,
            vec![],
            vec!["t_2026_12_28 2026-12-28 2027-01-04"],
        ),
        // A time given off UTC is placed by its UTC instant: 01:00+05 on Dec 1 is still November.
        (
            Interval::Month,
            "2026-12-01T01:00:00+05:00",
            0,
            vec![],
            vec!["t_2026_11 2026-11-01 2026-12-01"],
        ),
        // Everything exists: nothing to do.
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            1,
            vec![
                part("t_2026_11", "2026-11-01", "2026-12-01"),
                part("t_2026_12", "2026-12-01", "2027-01-01"),
            ],
            vec![],
        ),
        // A missing middle is filled; partitions in the past are left alone.
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            3,
            vec![
                part("t_2024_01", "2024-01-01", "2024-02-01"),
                part("t_2026_11", "2026-11-01", "2026-12-01"),
                part("t_2027_01", "2027-01-01", "2027-02-01"),
            ],
            vec![
                "t_2026_12 2026-12-01 2027-01-01",
                "t_2027_02 2027-02-01 2027-03-01",
            ],
        ),
        // A foreign partition with another name but exact bounds counts; so does a quarter that
        // covers whole months, and a MAXVALUE catch-all.
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            3,
            vec![
                part("nov", "2026-11-01", "2026-12-01"),
                part("q", "2026-12-01", "2027-03-01"),
            ],
            vec![],
        ),
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            3,
            vec![
                part("t_2026_11", "2026-11-01", "2026-12-01"),
                part("rest", "2027-01-01", "MAX"),
            ],
            vec!["t_2026_12 2026-12-01 2027-01-01"],
        ),
        // Two foreign halves that together cover a month.
        (
            Interval::Month,
            "2026-11-15T10:00:00Z",
            0,
            vec![
                part("a", "2026-11-01", "2026-11-16"),
                part("b", "2026-11-16", "2026-12-01"),
            ],
            vec![],
        ),
    ];
    for (interval, now, ahead, existing, wanted) in cases {
        let actions = create(&policy(interval, 3), &existing, t(now), ahead).unwrap();
        assert_eq!(
            created(&actions),
            wanted,
            "{interval:?} at {now} ahead {ahead}"
        );
    }
}

#[test]
fn create_refuses_a_foreign_partition_that_overlaps_part_of_a_wanted_period() {
    let cases = vec![
        vec![part("t_custom", "2026-12-15", "2027-01-15")],
        vec![part("old", "MIN", "2026-11-10")],
        vec![
            part("a", "2026-11-01", "2026-11-10"),
            part("b", "2026-11-20", "2026-12-01"),
        ],
    ];
    for existing in cases {
        let err = create(
            &policy(Interval::Month, 3),
            &existing,
            t("2026-11-15T10:00:00Z"),
            3,
        )
        .unwrap_err();
        assert!(
            err.message.contains("wanted partition t_2026_1"),
            "{}",
            err.message
        );
        assert!(err.message.contains(&existing[0].name), "{}", err.message);
    }
}

#[test]
fn create_refuses_to_cover_a_partition_being_detached() {
    let mut pending = part("t_2026_11", "2026-11-01", "2026-12-01");
    pending.detach_pending = true;
    let err = create(
        &policy(Interval::Month, 3),
        &[pending],
        t("2026-11-15T10:00:00Z"),
        0,
    )
    .unwrap_err();
    assert!(err.message.contains("being detached"), "{}", err.message);
}

#[test]
fn create_caps_the_periods_per_run() {
    let p = policy(Interval::Day, 3);
    let err = create(&p, &[], t("2026-11-15T10:00:00Z"), 100_000).unwrap_err();
    assert!(err.message.contains("--ahead 100000"), "{}", err.message);
    assert_eq!(
        create(&p, &[], t("2026-11-15T10:00:00Z"), MAX_PERIODS_PER_RUN - 1)
            .unwrap()
            .len(),
        1000
    );
    // Past chrono's calendar is an error, not a panic.
    assert!(create(
        &policy(Interval::Month, 3),
        &[],
        DateTime::<Utc>::MAX_UTC,
        3
    )
    .is_err());
}

/// prune with the server's clock at `now`, no retention override, newest rows unknown.
fn prune_at(
    p: &Policy,
    set: &[Existing],
    now: DateTime<Utc>,
    retention: Retention,
    mode: RetentionMode,
) -> Vec<Action> {
    let clocks = Clocks {
        now,
        server_now: now,
    };
    prune(p, set, clocks, Some(retention), mode, None)
        .unwrap()
        .actions
}

fn pruned(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Detach { name, then, .. } => format!("detach {name} {then:?}"),
            Action::Finalize { name, then, .. } => format!("finalize {name} {then:?}"),
            Action::Reattach { name, .. } => format!("reattach {name}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn prune_takes_only_partitions_past_retention_and_never_the_current_one() {
    let months = |names: &[(&str, &str, &str)]| -> Vec<Existing> {
        names.iter().map(|(n, f, to)| part(n, f, to)).collect()
    };
    let set = months(&[
        ("t_2024_01", "2024-01-01", "2024-02-01"),
        ("t_2025_09", "2025-09-01", "2025-10-01"),
        ("t_2025_10", "2025-10-01", "2025-11-01"),
        ("t_2026_11", "2026-11-01", "2026-12-01"),
        ("t_2026_12", "2026-12-01", "2027-01-01"),
    ]);
    let p = policy(Interval::Month, 3);
    // (now, retention, mode, expected)
    let cases: Vec<(&str, &str, RetentionMode, Vec<&str>)> = vec![
        // Cutoff 2025-10-15: t_2025_10 ends 2025-11-01, not yet 13 months old.
        (
            "2026-11-15T10:00:00Z",
            "13 months",
            RetentionMode::Drop,
            vec!["detach t_2024_01 Drop", "detach t_2025_09 Drop"],
        ),
        // Exactly at the cutoff counts as old enough.
        (
            "2026-12-01T00:00:00Z",
            "13 months",
            RetentionMode::Drop,
            vec![
                "detach t_2024_01 Drop",
                "detach t_2025_09 Drop",
                "detach t_2025_10 Drop",
            ],
        ),
        (
            "2026-11-15T10:00:00Z",
            "13 months",
            RetentionMode::Detach,
            vec!["detach t_2024_01 Keep", "detach t_2025_09 Keep"],
        ),
        // A retention of one day would reach the current month: it is still never touched.
        (
            "2026-11-15T10:00:00Z",
            "1 day",
            RetentionMode::Drop,
            vec![
                "detach t_2024_01 Drop",
                "detach t_2025_09 Drop",
                "detach t_2025_10 Drop",
            ],
        ),
        // Two years ahead: everything but the last partition, which prune never takes.
        (
            "2028-12-15T00:00:00Z",
            "1 day",
            RetentionMode::Drop,
            vec![
                "detach t_2024_01 Drop",
                "detach t_2025_09 Drop",
                "detach t_2025_10 Drop",
                "detach t_2026_11 Drop",
            ],
        ),
        ("2024-01-15T00:00:00Z", "1 day", RetentionMode::Drop, vec![]),
    ];
    for (now, retention, mode, wanted) in cases {
        let actions = prune_at(&p, &set, t(now), Retention::parse(retention).unwrap(), mode);
        assert_eq!(pruned(&actions), wanted, "{now} {retention} {mode:?}");
    }
    // None for a table with no partitions; never a MAXVALUE partition.
    let r = Retention::parse("1 day").unwrap();
    assert!(prune_at(&p, &[], t("2030-01-01T00:00:00Z"), r, RetentionMode::Drop).is_empty());
    let open = [part("rest", "2020-01-01", "MAX")];
    assert!(prune_at(&p, &open, t("2030-01-01T00:00:00Z"), r, RetentionMode::Drop).is_empty());
}

#[test]
fn prune_finishes_pending_detaches_first_and_drops_them_only_when_old() {
    let mut old = part("t_2024_01", "2024-01-01", "2024-02-01");
    old.detach_pending = true;
    let mut young = part("t_2026_10", "2026-10-01", "2026-11-01");
    young.detach_pending = true;
    let set = [
        part("t_2023_12", "2023-12-01", "2024-01-01"),
        old,
        young,
        part("t_2026_11", "2026-11-01", "2026-12-01"),
    ];
    let actions = prune_at(
        &policy(Interval::Month, 3),
        &set,
        t("2026-11-15T10:00:00Z"),
        Retention::parse("13 months").unwrap(),
        RetentionMode::Drop,
    );
    assert_eq!(
        pruned(&actions),
        [
            "finalize t_2024_01 Drop",
            "finalize t_2026_10 Keep",
            "detach t_2023_12 Drop"
        ]
    );
}

#[test]
fn prune_never_takes_what_is_current_or_future_by_the_server_clock_whatever_now_says() {
    let p = policy(Interval::Month, 3);
    let set = [
        part("t_2024_01", "2024-01-01", "2024-02-01"),
        part("t_2026_11", "2026-11-01", "2026-12-01"),
        part("t_2026_12", "2026-12-01", "2027-01-01"),
    ];
    let clocks = Clocks {
        now: t("2028-06-01T00:00:00Z"),
        server_now: t("2026-11-15T10:00:00Z"),
    };
    let r = Retention::parse("1 month").unwrap();
    let plan = prune(&p, &set, clocks, Some(r), RetentionMode::Drop, None).unwrap();
    assert_eq!(pruned(&plan.actions), ["detach t_2024_01 Drop"]);
    let kept: Vec<&str> = plan.kept.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(kept, ["t_2026_11", "t_2026_12"]);
    assert!(plan.kept[0].reason.contains("server's clock"), "{plan:?}");
}

#[test]
fn prune_without_a_retention_detaches_nothing() {
    let p = policy(Interval::Month, 3);
    let set = [part("t_2024_01", "2024-01-01", "2024-02-01")];
    let now = t("2026-11-15T10:00:00Z");
    let clocks = Clocks {
        now,
        server_now: now,
    };
    let plan = prune(&p, &set, clocks, None, RetentionMode::Drop, None).unwrap();
    assert_eq!(plan, PrunePlan::default());
}

#[test]
fn prune_keeps_the_partition_with_the_newest_rows_when_none_is_current() {
    let p = policy(Interval::Month, 3);
    let set = [
        part("t_2024_01", "2024-01-01", "2024-02-01"),
        part("t_2024_02", "2024-02-01", "2024-03-01"),
        part("t_2024_03", "2024-03-01", "2024-04-01"),
    ];
    let now = t("2026-11-15T10:00:00Z");
    let clocks = Clocks {
        now,
        server_now: now,
    };
    let r = Some(Retention::parse("1 month").unwrap());
    let first = prune(&p, &set, clocks, r, RetentionMode::Drop, None).unwrap();
    assert!(first.needs_newest);
    assert_eq!(first.kept[0].name, "t_2024_03");
    let plan = prune(
        &p,
        &set,
        clocks,
        r,
        RetentionMode::Drop,
        Some(("public", "t_2024_02")),
    )
    .unwrap();
    assert!(!plan.needs_newest);
    assert_eq!(
        pruned(&plan.actions),
        ["detach t_2024_01 Drop", "detach t_2024_03 Drop"]
    );
    assert_eq!(plan.kept[0].name, "t_2024_02");
    assert!(plan.kept[0].reason.contains("newest rows"), "{plan:?}");
}

#[test]
fn prune_reattaches_a_pending_detach_of_a_period_that_still_takes_writes() {
    let mut current = part("t_2026_11", "2026-11-01", "2026-12-01");
    current.detach_pending = true;
    let set = [current, part("t_2026_12", "2026-12-01", "2027-01-01")];
    let now = t("2026-11-15T10:00:00Z");
    let clocks = Clocks {
        now: t("2028-01-01T00:00:00Z"),
        server_now: now,
    };
    let plan = prune(
        &policy(Interval::Month, 3),
        &set,
        clocks,
        Some(Retention::parse("1 day").unwrap()),
        RetentionMode::Drop,
        None,
    )
    .unwrap();
    assert_eq!(pruned(&plan.actions), ["reattach t_2026_11"]);
}

#[test]
fn coverage_counts_the_runway_and_finds_gaps_and_odd_partitions() {
    let p = policy(Interval::Month, 3);
    let now = t("2026-11-15T10:00:00Z");
    let full = [
        part("t_2026_11", "2026-11-01", "2026-12-01"),
        part("t_2026_12", "2026-12-01", "2027-01-01"),
        part("t_2027_01", "2027-01-01", "2027-02-01"),
        part("t_2027_02", "2027-02-01", "2027-03-01"),
    ];
    let c = coverage(&p, &full, now).unwrap();
    assert_eq!((c.runway, c.covered_until), (3, Some(t("2027-03-01"))));
    assert_eq!(c.horizon, t("2027-03-01"));
    assert!(c.gaps.is_empty() && c.odd.is_empty(), "{c:?}");

    let holed = [
        full[0].clone(),
        full[2].clone(),
        part("feb", "2027-02-01", "2027-02-15"),
    ];
    let c = coverage(&p, &holed, now).unwrap();
    assert_eq!((c.runway, c.covered_until), (0, Some(t("2026-12-01"))));
    let gaps: Vec<_> = c.gaps.iter().map(|g| (g.from, g.to)).collect();
    assert_eq!(
        gaps,
        [
            (t("2026-12-01"), t("2027-01-01")),
            (t("2027-02-15"), t("2027-03-01"))
        ]
    );
    assert_eq!(c.odd.len(), 1);
    assert!(c.odd[0].problem.contains("not one month"), "{:?}", c.odd);

    let none = coverage(&p, &[], now).unwrap();
    assert_eq!(
        (none.runway, none.covered_until, none.gaps.len()),
        (0, None, 1)
    );

    let misnamed = [part("t_2026_12", "2026-11-01", "2026-12-01")];
    let c = coverage(&p, &misnamed, now).unwrap();
    assert!(
        c.odd[0].problem.contains("would name it t_2026_11"),
        "{:?}",
        c.odd
    );

    let mut pending = full[0].clone();
    pending.detach_pending = true;
    assert_eq!(coverage(&p, &[pending], now).unwrap().covered_until, None);

    let forever = [part("all", "MIN", "MAX")];
    let c = coverage(&p, &forever, now).unwrap();
    assert!(c.runway >= 1000 && c.gaps.is_empty(), "{c:?}");
}
