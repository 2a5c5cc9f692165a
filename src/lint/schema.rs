//! What the migrations so far made: tables (partitioned or not, whose partition), their column
//! types, indexes, and the CHECK (col IS NOT NULL) constraints that let SET NOT NULL skip its
//! scan. Learnt statement by statement while linting, so each rule sees the schema as it will be
//! when its statement runs.

use std::collections::{HashMap, HashSet};

/// A table some migration created.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub partitioned: bool,
    /// The parent, for a partition.
    pub parent: Option<String>,
    /// Column name → type as written (lower case).
    pub columns: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    tables: HashMap<String, Table>,
    /// Index name → its table.
    indexes: HashMap<String, String>,
    /// CHECK constraint name → (table, column) for `CHECK (column IS NOT NULL)`.
    not_null_checks: HashMap<String, (String, String)>,
    /// (table, column) with a validated CHECK (column IS NOT NULL).
    proven_not_null: HashSet<(String, String)>,
    /// Tables whose partitions a policy manages.
    managed: HashSet<String>,
    /// Tables and indexes the current migration created: new and empty.
    new: HashSet<String>,
    /// CHECK and FOREIGN KEY constraints the current migration added NOT VALID.
    added_not_valid: HashSet<String>,
    /// Tables that exist in the live database before the run (a live lint that met a
    /// `CREATE TABLE IF NOT EXISTS` of one): such a statement makes nothing.
    existing: HashSet<String>,
    /// Tables the current migration creates with IF NOT EXISTS while nothing says whether they
    /// exist: a live lint looks them up.
    if_not_exists: HashSet<String>,
}

impl Schema {
    pub fn new(managed: &[String]) -> Schema {
        Schema {
            managed: managed.iter().cloned().collect(),
            ..Schema::default()
        }
    }

    /// A new migration starts: what the previous one created now exists, and may be large.
    pub fn begin_migration(&mut self) {
        self.new.clear();
        self.added_not_valid.clear();
        self.if_not_exists.clear();
    }

    /// Tables the live database already has (see `existing`).
    pub fn with_existing(mut self, existing: &std::collections::BTreeSet<String>) -> Schema {
        self.existing = existing.iter().cloned().collect();
        self
    }

    /// `CREATE TABLE IF NOT EXISTS name`: nothing when an earlier migration made the table or
    /// the live database has it (the statements after it act on that table, which may be
    /// large); else `table` is new, and a live lint is told to look the name up.
    pub fn create_table_if_not_exists(&mut self, name: &str, table: Table) {
        if self.tables.contains_key(name) {
            return;
        }
        if self.existing.contains(name) {
            self.tables.insert(name.to_string(), table);
            return;
        }
        self.if_not_exists.insert(name.to_string());
        self.create_table(name, table);
    }

    /// The tables the current migration created with IF NOT EXISTS (see `if_not_exists`).
    pub fn if_not_exists_here(&self) -> impl Iterator<Item = &String> {
        self.if_not_exists.iter()
    }

    /// True when the current migration created the relation (table or index): it is empty and
    /// no other session uses it yet.
    pub fn is_new(&self, relation: &str) -> bool {
        self.new.contains(relation)
    }

    /// The tables and indexes the current migration created.
    pub fn created_here(&self) -> impl Iterator<Item = &String> {
        self.new.iter()
    }

    /// True when an earlier migration created the table (the gateway's code uses it).
    pub fn created_earlier(&self, name: &str) -> bool {
        self.tables.contains_key(name) && !self.is_new(name)
    }

    pub fn is_partitioned(&self, name: &str) -> bool {
        self.tables.get(name).is_some_and(|t| t.partitioned)
    }

    /// The policy-managed parent of `name`: itself when it is managed, its known parent, or the
    /// parent its name says it belongs to (`request_logs_2025_03`, as `partition create` names
    /// children; those are made at run time, so no migration knows them).
    pub fn managed_parent(&self, name: &str) -> Option<String> {
        if self.managed.contains(name) {
            return Some(name.to_string());
        }
        if let Some(parent) = self.tables.get(name).and_then(|t| t.parent.clone()) {
            if self.managed.contains(&parent) {
                return Some(parent);
            }
        }
        self.managed
            .iter()
            .find(|m| {
                name.strip_prefix(m.as_str())
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(is_period_suffix)
            })
            .cloned()
    }

    pub fn is_managed(&self, name: &str) -> bool {
        self.managed.contains(name)
    }

    pub fn index_table(&self, index: &str) -> Option<&str> {
        self.indexes.get(index).map(String::as_str)
    }

    pub fn column_type(&self, table: &str, column: &str) -> Option<&str> {
        self.tables
            .get(table)
            .and_then(|t| t.columns.get(column))
            .map(String::as_str)
    }

    pub fn proven_not_null(&self, table: &str, column: &str) -> bool {
        self.proven_not_null
            .contains(&(table.to_string(), column.to_string()))
    }

    pub fn added_not_valid_here(&self, constraint: &str) -> bool {
        self.added_not_valid.contains(constraint)
    }

    pub fn create_table(&mut self, name: &str, table: Table) {
        self.new.insert(name.to_string());
        self.tables.insert(name.to_string(), table);
    }

    pub fn drop_table(&mut self, name: &str) {
        self.tables.remove(name);
        self.indexes.retain(|_, t| t != name);
    }

    pub fn rename_table(&mut self, from: &str, to: &str) {
        if let Some(t) = self.tables.remove(from) {
            self.tables.insert(to.to_string(), t);
        }
        for table in self.indexes.values_mut().filter(|t| *t == from) {
            *table = to.to_string();
        }
        if self.new.remove(from) {
            self.new.insert(to.to_string());
        }
    }

    pub fn set_column(&mut self, table: &str, column: &str, ty: Option<String>) {
        if let Some(t) = self.tables.get_mut(table) {
            match ty {
                Some(ty) => t.columns.insert(column.to_string(), ty),
                None => t.columns.remove(column),
            };
        }
    }

    pub fn rename_column(&mut self, table: &str, from: &str, to: &str) {
        if let Some(t) = self.tables.get_mut(table) {
            if let Some(ty) = t.columns.remove(from) {
                t.columns.insert(to.to_string(), ty);
            }
        }
    }

    pub fn create_index(&mut self, index: &str, table: &str) {
        if !index.is_empty() {
            self.new.insert(index.to_string());
            self.indexes.insert(index.to_string(), table.to_string());
        }
    }

    pub fn drop_index(&mut self, index: &str) {
        self.indexes.remove(index);
    }

    /// Records a `CHECK (column IS NOT NULL)`; `validated` unless it was added NOT VALID.
    pub fn not_null_check(&mut self, name: &str, table: &str, column: &str, validated: bool) {
        let key = (table.to_string(), column.to_string());
        if validated {
            self.proven_not_null.insert(key.clone());
        }
        if !name.is_empty() {
            self.not_null_checks.insert(name.to_string(), key);
        }
    }

    pub fn added_not_valid(&mut self, constraint: &str) {
        if !constraint.is_empty() {
            self.added_not_valid.insert(constraint.to_string());
        }
    }

    /// VALIDATE CONSTRAINT: a CHECK (col IS NOT NULL) now proves the column.
    pub fn validate(&mut self, constraint: &str) {
        if let Some(key) = self.not_null_checks.get(constraint) {
            self.proven_not_null.insert(key.clone());
        }
    }
}

/// `2025_03` or `2025_03_17`: the period part of a child that `partition create` names.
fn is_period_suffix(rest: &str) -> bool {
    let parts: Vec<&str> = rest.split('_').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [y, m] => digits(y, 4) && digits(m, 2),
        [y, m, d] => digits(y, 4) && digits(m, 2) && digits(d, 2),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_named_like_partition_create_names_it_belongs_to_the_managed_parent() {
        let schema = Schema::new(&["request_logs".to_string()]);
        assert_eq!(
            schema.managed_parent("request_logs_2025_03").as_deref(),
            Some("request_logs")
        );
        assert_eq!(
            schema.managed_parent("request_logs_2025_03_17").as_deref(),
            Some("request_logs")
        );
        assert_eq!(schema.managed_parent("request_logs_archive"), None);
        assert_eq!(schema.managed_parent("api_keys"), None);
    }

    #[test]
    fn what_a_migration_created_is_new_only_until_the_next_migration() {
        let mut schema = Schema::new(&[]);
        schema.create_table("t", Table::default());
        assert!(schema.is_new("t"));
        assert!(!schema.created_earlier("t"));
        schema.begin_migration();
        assert!(!schema.is_new("t"));
        assert!(schema.created_earlier("t"));
    }
}
