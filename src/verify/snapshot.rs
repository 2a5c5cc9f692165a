//! The shape of a database's schemas, read from the catalog with one query (`snapshot.sql`),
//! and its fingerprint. The same query reads the live database and the scratch database the
//! migrations are rebuilt in, under the same `search_path`, so the two snapshots are comparable
//! text for text.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The catalog query. `$1` is the main schema (named unqualified in the rows); the caller sets
/// the same `search_path` on both databases first.
pub const QUERY: &str = include_str!("snapshot.sql");

/// Prefixed to the hashed text, so that a change of what a snapshot contains (a new kind or
/// attribute) is a deliberate new fingerprint version, not a silent change of every hash.
const FINGERPRINT_VERSION: &str = "dhctl-schema-v1";

/// What sort of object a snapshot row describes. The order is the order of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Schema,
    Table,
    Column,
    Constraint,
    Index,
    Trigger,
    Policy,
    View,
    MaterializedView,
    Sequence,
    Function,
    Type,
}

impl ObjectKind {
    /// The kind as `snapshot.sql` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Policy => "policy",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Function => "function",
            ObjectKind::Type => "type",
        }
    }

    fn parse(text: &str) -> Option<ObjectKind> {
        use ObjectKind::*;
        [
            Schema,
            Table,
            Column,
            Constraint,
            Index,
            Trigger,
            Policy,
            View,
            MaterializedView,
            Sequence,
            Function,
            Type,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// Objects that belong to a table (and disappear with it).
    pub fn is_part_of_table(self) -> bool {
        matches!(
            self,
            ObjectKind::Column
                | ObjectKind::Constraint
                | ObjectKind::Index
                | ObjectKind::Trigger
                | ObjectKind::Policy
        )
    }
}

/// Names one object: `table` is the relation (for tables, views and sequences: the object
/// itself; for a schema: the schema), `name` the column, constraint, index, trigger, function or
/// type ("" for relations). Objects outside the main schema carry their schema: `auth.users`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    pub table: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    /// How reports name the object: "column api_keys.label", "index idx_x on api_keys".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.as_str();
        match self.kind {
            ObjectKind::Column => write!(f, "column {}.{}", self.table, self.name),
            ObjectKind::Constraint
            | ObjectKind::Index
            | ObjectKind::Trigger
            | ObjectKind::Policy => {
                write!(f, "{kind} {} on {}", self.name, self.table)
            }
            ObjectKind::Function | ObjectKind::Type => write!(f, "{kind} {}", self.name),
            _ => write!(f, "{kind} {}", self.table),
        }
    }
}

/// Attribute name → value ("type" → "uuid", "not null" → "yes"). An attribute without a value
/// (a column with no default) is absent.
pub type Attributes = BTreeMap<String, String>;

/// One schema's objects and their attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub objects: BTreeMap<ObjectKey, Attributes>,
}

impl Snapshot {
    /// Builds a snapshot from the query's rows: (kind, table, name, attribute, value).
    pub fn from_rows<I, R>(rows: I) -> Result<Snapshot>
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = Option<String>>,
    {
        let mut snapshot = Snapshot::default();
        for row in rows {
            let mut cells = row.into_iter();
            let mut next = || cells.next().flatten().unwrap_or_default();
            let (kind, table, name, attr, value) = (next(), next(), next(), next(), next());
            let kind = ObjectKind::parse(&kind).ok_or_else(|| {
                Error::usage(format!(
                    "the schema snapshot returned an unknown object kind `{kind}` (a dhctl bug)"
                ))
            })?;
            snapshot
                .objects
                .entry(ObjectKey { kind, table, name })
                .or_default()
                .insert(attr, value);
        }
        Ok(snapshot)
    }

    /// Tables (and partitioned tables) in the snapshot.
    pub fn table_count(&self) -> usize {
        self.objects
            .keys()
            .filter(|k| k.kind == ObjectKind::Table)
            .count()
    }

    /// `sha256:<hex>` over a canonical text of the snapshot: one line per attribute, in key
    /// order, fields separated by tabs with tabs, newlines and backslashes escaped, so that no
    /// two different snapshots produce the same text.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_VERSION.as_bytes());
        hasher.update(b"\n");
        for (key, attributes) in &self.objects {
            for (attr, value) in attributes {
                let fields = [key.kind.as_str(), &key.table, &key.name, attr, value];
                let line: Vec<String> = fields.iter().map(|f| escape(f)).collect();
                hasher.update(line.join("\t").as_bytes());
                hasher.update(b"\n");
            }
        }
        // sha2 0.11's digest type does not implement LowerHex: hex-encode the bytes ourselves.
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(7 + digest.len() * 2);
        hex.push_str("sha256:");
        for byte in &digest {
            hex.push(HEX[usize::from(byte >> 4)]);
            hex.push(HEX[usize::from(byte & 0x0f)]);
        }
        hex
    }
}

const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

fn escape(field: &str) -> String {
    field
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: [&str; 5]) -> Vec<Option<String>> {
        cells.iter().map(|c| Some(c.to_string())).collect()
    }

    fn snapshot(rows: &[[&str; 5]]) -> Snapshot {
        Snapshot::from_rows(rows.iter().map(|r| row(*r))).unwrap()
    }

    #[test]
    fn fingerprints_are_stable_and_sensitive() {
        let a = snapshot(&[
            ["table", "t", "", "kind", "table"],
            ["column", "t", "a", "type", "integer"],
        ]);
        let same = snapshot(&[
            ["column", "t", "a", "type", "integer"],
            ["table", "t", "", "kind", "table"],
        ]);
        let other = snapshot(&[
            ["table", "t", "", "kind", "table"],
            ["column", "t", "a", "type", "bigint"],
        ]);
        assert_eq!(
            a.fingerprint(),
            same.fingerprint(),
            "row order is irrelevant"
        );
        assert_ne!(a.fingerprint(), other.fingerprint());
        assert!(a.fingerprint().starts_with("sha256:"));
        assert_eq!(a.fingerprint().len(), 7 + 64);
    }

    #[test]
    fn field_boundaries_cannot_be_forged() {
        let a = snapshot(&[["column", "t", "a\tb", "type", "x"]]);
        let b = snapshot(&[["column", "t\ta", "b", "type", "x"]]);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn objects_are_named_as_reports_name_them() {
        let key = |kind, table: &str, name: &str| {
            ObjectKey {
                kind,
                table: table.into(),
                name: name.into(),
            }
            .to_string()
        };
        assert_eq!(
            key(ObjectKind::Index, "api_keys", "idx_x"),
            "index idx_x on api_keys"
        );
        assert_eq!(
            key(ObjectKind::Column, "api_keys", "label"),
            "column api_keys.label"
        );
        assert_eq!(key(ObjectKind::Table, "t", ""), "table t");
        assert_eq!(
            key(ObjectKind::Function, "", "f(integer)"),
            "function f(integer)"
        );
    }

    #[test]
    fn an_unknown_kind_is_an_error() {
        assert!(Snapshot::from_rows([row(["gizmo", "t", "", "a", "b"])]).is_err());
    }
}
