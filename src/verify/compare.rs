//! The pure core of the schema check: the snapshot the migrations produce × the live snapshot →
//! every difference, each naming its object. No I/O.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::snapshot::{Attributes, ObjectKey, ObjectKind, Snapshot};

/// One way in which the database differs from what the migrations produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// "index idx_api_keys_key_prefix on api_keys"
    pub object: String,
    /// "missing in the database", "NOT NULL dropped", "default changed: …"
    pub change: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.change)
    }
}

/// Every difference, in object order. A table that exists on one side only is one difference:
/// its columns, constraints, indexes and triggers are not listed again; likewise a schema that
/// exists on one side only is one difference, whatever it holds.
pub fn differences(expected: &Snapshot, live: &Snapshot) -> Vec<Difference> {
    let keys: BTreeSet<&ObjectKey> = expected.objects.keys().chain(live.objects.keys()).collect();
    let one_sided = |kind: ObjectKind| -> BTreeSet<&str> {
        keys.iter()
            .filter(|k| k.kind == kind)
            .filter(|k| expected.objects.contains_key(k) != live.objects.contains_key(k))
            .map(|k| k.table.as_str())
            .collect()
    };
    // Views and materialized views carry indexes and triggers too.
    let mut one_sided_tables = one_sided(ObjectKind::Table);
    one_sided_tables.extend(one_sided(ObjectKind::MaterializedView));
    one_sided_tables.extend(one_sided(ObjectKind::View));
    let one_sided_schemas: Vec<String> = one_sided(ObjectKind::Schema)
        .into_iter()
        .map(|s| format!("{s}."))
        .collect();
    let in_one_sided_schema = |key: &ObjectKey| {
        key.kind != ObjectKind::Schema
            && one_sided_schemas
                .iter()
                .any(|s| key.table.starts_with(s.as_str()) || key.name.starts_with(s.as_str()))
    };
    let mut found = Vec::new();
    for key in keys {
        if key.kind.is_part_of_table() && one_sided_tables.contains(key.table.as_str()) {
            continue;
        }
        if in_one_sided_schema(key) {
            continue;
        }
        let object = key.to_string();
        match (expected.objects.get(key), live.objects.get(key)) {
            (Some(_), None) => found.push(Difference {
                object,
                change: "missing in the database".into(),
            }),
            (None, Some(_)) => found.push(Difference {
                object,
                change: "in the database, not in the migrations".into(),
            }),
            (Some(want), Some(have)) => {
                for change in attribute_changes(want, have) {
                    found.push(Difference {
                        object: object.clone(),
                        change,
                    });
                }
            }
            (None, None) => {}
        }
    }
    found
}

/// Each attribute that differs, phrased for a DBA.
fn attribute_changes(want: &Attributes, have: &Attributes) -> Vec<String> {
    let names: BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (w, h) = (want.get(name), have.get(name));
            (w != h).then(|| phrase(name, w.map(String::as_str), h.map(String::as_str)))
        })
        .collect()
}

fn phrase(attr: &str, want: Option<&str>, have: Option<&str>) -> String {
    match (attr, want, have) {
        ("not null", Some("yes"), _) => "NOT NULL dropped".into(),
        ("not null", _, Some("yes")) => "NOT NULL added".into(),
        ("invalid", None, Some(_)) => {
            "invalid in the database (an interrupted CREATE INDEX CONCURRENTLY?)".into()
        }
        (_, Some(w), None) => format!("{attr} dropped (the migrations have `{w}`)"),
        (_, None, Some(h)) => format!("{attr} added: `{h}`"),
        (_, w, h) => format!(
            "{attr} changed: migrations `{}`, database `{}`",
            w.unwrap_or_default(),
            h.unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(rows: &[[&str; 5]]) -> Snapshot {
        Snapshot::from_rows(
            rows.iter()
                .map(|r| r.iter().map(|c| Some(c.to_string())).collect::<Vec<_>>()),
        )
        .unwrap()
    }

    const BASE: &[[&str; 5]] = &[
        ["table", "api_keys", "", "kind", "table"],
        [
            "column",
            "api_keys",
            "name",
            "type",
            "character varying(255)",
        ],
        ["column", "api_keys", "name", "not null", "yes"],
        ["column", "api_keys", "is_active", "type", "boolean"],
        ["column", "api_keys", "is_active", "default", "true"],
        ["column", "api_keys", "is_active", "not null", "no"],
        [
            "index",
            "api_keys",
            "idx_k",
            "definition",
            "USING btree (name)",
        ],
    ];

    fn changed(edit: impl FnOnce(&mut Vec<[&'static str; 5]>)) -> Vec<String> {
        let mut rows = BASE.to_vec();
        edit(&mut rows);
        differences(&snapshot(BASE), &snapshot(&rows))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn identical_snapshots_have_no_difference() {
        assert!(changed(|_| {}).is_empty());
    }

    #[test]
    fn every_difference_names_its_object() {
        assert_eq!(
            changed(|r| r.retain(|c| c[2] != "idx_k")),
            vec!["index idx_k on api_keys: missing in the database"]
        );
        assert_eq!(
            changed(|r| r.push(["column", "api_keys", "label", "type", "text"])),
            vec!["column api_keys.label: in the database, not in the migrations"]
        );
        assert_eq!(
            changed(|r| r[4] = ["column", "api_keys", "is_active", "default", "false"]),
            vec!["column api_keys.is_active: default changed: migrations `true`, database `false`"]
        );
        assert_eq!(
            changed(|r| r[2] = ["column", "api_keys", "name", "not null", "no"]),
            vec!["column api_keys.name: NOT NULL dropped"]
        );
        assert_eq!(
            changed(|r| {
                r.remove(4);
            }),
            vec!["column api_keys.is_active: default dropped (the migrations have `true`)"]
        );
    }

    #[test]
    fn a_one_sided_table_is_one_difference() {
        let extra = changed(|r| {
            r.push(["table", "scratch_copy", "", "kind", "table"]);
            r.push(["column", "scratch_copy", "a", "type", "integer"]);
            r.push([
                "index",
                "scratch_copy",
                "i",
                "definition",
                "USING btree (a)",
            ]);
        });
        assert_eq!(
            extra,
            vec!["table scratch_copy: in the database, not in the migrations"]
        );
        let schema = changed(|r| {
            r.push(["schema", "audit", "", "exists", "yes"]);
            r.push(["table", "audit.log", "", "kind", "table"]);
            r.push(["column", "audit.log", "a", "type", "integer"]);
            r.push(["function", "", "audit.f()", "language", "sql"]);
            r.push(["type", "", "audit.mood", "enum labels", "'a'"]);
        });
        assert_eq!(
            schema,
            vec!["schema audit: in the database, not in the migrations"]
        );
        let missing = differences(&snapshot(BASE), &Snapshot::default());
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].to_string(),
            "table api_keys: missing in the database"
        );
    }
}
