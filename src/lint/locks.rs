//! The lock plan: which relations a statement locks, in which mode, and whether it rewrites or
//! scans them while holding the lock.
//!
//! Modes are PostgreSQL's documented ones for the supported versions (14 and newer):
//! <https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES> for the
//! conflict table, and each command's page (ALTER TABLE lists a lock level per sub-command:
//! <https://www.postgresql.org/docs/current/sql-altertable.html>). Where an ALTER TABLE has
//! several sub-commands, the strongest lock is taken, as the server does.

use serde::Serialize;
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SyntaxKind;

use super::schema::Schema;
use super::sql::{has_token, name, relation, table_ref};

/// A table-level lock mode, weakest first (the order of PostgreSQL's conflict table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// The mode as PostgreSQL's documentation and pg_locks write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// True when the gateway's INSERT/UPDATE/DELETE (ROW EXCLUSIVE) wait for this lock.
    pub fn blocks_writes(self) -> bool {
        self >= LockMode::Share
    }

    /// True when the gateway's SELECTs (ACCESS SHARE) wait for this lock.
    pub fn blocks_reads(self) -> bool {
        self == LockMode::AccessExclusive
    }
}

impl Serialize for LockMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a statement does to a relation's data while it holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Catalog work only: the lock is held for milliseconds (once granted).
    None,
    /// Reads every row (a validation, an index build): seconds to hours on a large table.
    Scan,
    /// Writes the whole table anew (a new relfilenode): its size in I/O, twice the disk.
    Rewrite,
}

/// One relation locked by one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    pub relation: String,
    pub mode: LockMode,
    pub effect: Effect,
    /// The relation's size on disk (all partitions counted) with `lint --pending`; null offline.
    pub size_bytes: Option<u64>,
}

/// Adds `lock`, merging with an entry for the same relation (strongest mode, largest effect).
pub(crate) fn push(locks: &mut Vec<Lock>, relation: &str, mode: LockMode, effect: Effect) {
    if relation.is_empty() {
        return;
    }
    match locks.iter_mut().find(|l| l.relation == relation) {
        Some(l) => {
            l.mode = l.mode.max(mode);
            l.effect = l.effect.max(effect);
        }
        None => locks.push(Lock {
            relation: relation.to_string(),
            mode,
            effect,
            size_bytes: None,
        }),
    }
}

/// The locks of one statement, against the schema as it stands before the statement runs. A
/// statement dhctl does not model (GRANT, CREATE FUNCTION, DO) gets no entry: it takes no lock
/// on the gateway's tables, or none dhctl can name without running it.
pub(crate) fn plan(stmt: &ast::Stmt, schema: &Schema) -> Vec<Lock> {
    use LockMode::*;
    let mut locks = Vec::new();
    match stmt {
        ast::Stmt::CreateTable(create) => {
            if let Some(parent) = create
                .partition_of()
                .and_then(|p| table_ref(p.table_name_ref()))
            {
                // CREATE TABLE … PARTITION OF locks the parent ACCESS EXCLUSIVE (unlike ATTACH).
                push(&mut locks, &parent, AccessExclusive, Effect::None);
            }
            for reference in referenced_tables(create.syntax()) {
                push(&mut locks, &reference, ShareRowExclusive, Effect::None);
            }
        }
        ast::Stmt::CreateIndex(index) => {
            let Some(table) = relation(index.table_relation_name()) else {
                return locks;
            };
            let only = index
                .table_relation_name()
                .is_some_and(|r| r.only_token().is_some());
            let (mode, effect) = if index.concurrently_token().is_some() {
                (ShareUpdateExclusive, Effect::Scan)
            } else if only && schema.is_partitioned(&table) {
                // ON ONLY a partitioned table: an invalid index in the catalog, no data read.
                (Share, Effect::None)
            } else {
                (Share, Effect::Scan)
            };
            push(&mut locks, &table, mode, effect);
        }
        ast::Stmt::DropIndex(drop) => {
            let mode = if drop.concurrently_token().is_some() {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            for index in drop.index_refs() {
                let index = name(index.syntax());
                let table = schema.index_table(&index).unwrap_or(&index).to_string();
                push(&mut locks, &table, mode, Effect::None);
            }
        }
        ast::Stmt::Reindex(reindex) => {
            let concurrently = has_token(reindex.syntax(), SyntaxKind::CONCURRENTLY_KW);
            let mode = if concurrently {
                ShareUpdateExclusive
            } else {
                Share
            };
            match reindex.reindex_target() {
                Some(ast::ReindexTarget::ReindexTargetTable(t)) => {
                    if let Some(table) = table_ref(t.table_name_ref()) {
                        push(&mut locks, &table, mode, Effect::Scan);
                    }
                }
                Some(ast::ReindexTarget::ReindexTargetIndex(i)) => {
                    if let Some(index) = i.index_ref().map(|i| name(i.syntax())) {
                        let table = schema.index_table(&index).unwrap_or(&index).to_string();
                        push(&mut locks, &table, mode, Effect::Scan);
                    }
                }
                _ => push(
                    &mut locks,
                    "(every table of the target)",
                    mode,
                    Effect::Scan,
                ),
            }
        }
        ast::Stmt::AlterTable(alter) => alter_table(alter, schema, &mut locks),
        ast::Stmt::Vacuum(vacuum) => {
            let full = vacuum.full_token().is_some()
                || vacuum
                    .vacuum_option_list()
                    .is_some_and(|o| has_token(o.syntax(), SyntaxKind::FULL_KW));
            let (mode, effect) = if full {
                (AccessExclusive, Effect::Rewrite)
            } else {
                (ShareUpdateExclusive, Effect::Scan)
            };
            let tables = vacuum_tables(vacuum);
            if tables.is_empty() {
                push(&mut locks, "(every table)", mode, effect);
            }
            for table in tables {
                push(&mut locks, &table, mode, effect);
            }
        }
        ast::Stmt::Cluster(cluster) => {
            let table = table_ref(cluster.table_name_ref())
                .unwrap_or_else(|| "(every clustered table)".into());
            push(&mut locks, &table, AccessExclusive, Effect::Rewrite);
        }
        ast::Stmt::DropTable(drop) => {
            for table in drop.table_name_refs() {
                push(
                    &mut locks,
                    &name(table.syntax()),
                    AccessExclusive,
                    Effect::None,
                );
            }
        }
        ast::Stmt::Truncate(truncate) => {
            for table in truncate
                .syntax()
                .descendants()
                .filter_map(ast::TableNameRef::cast)
            {
                push(
                    &mut locks,
                    &name(table.syntax()),
                    AccessExclusive,
                    Effect::None,
                );
            }
        }
        ast::Stmt::Insert(insert) => {
            if let Some(target) = insert.relation_name_ref() {
                push(
                    &mut locks,
                    &name(target.syntax()),
                    RowExclusive,
                    Effect::None,
                );
            }
        }
        ast::Stmt::Update(update) => {
            if let Some(r) = update.relation_name() {
                push(&mut locks, &relation_name(&r), RowExclusive, Effect::Scan);
            }
        }
        ast::Stmt::Delete(delete) => {
            if let Some(r) = delete.relation_name() {
                push(&mut locks, &relation_name(&r), RowExclusive, Effect::Scan);
            }
        }
        ast::Stmt::CreateTrigger(trigger) => {
            if let Some(on) = trigger.on_relation() {
                if let Some(t) = on.syntax().descendants().find_map(ast::PathRef::cast) {
                    push(
                        &mut locks,
                        &name(t.syntax()),
                        ShareRowExclusive,
                        Effect::None,
                    );
                }
            }
        }
        ast::Stmt::Analyze(analyze) => {
            for t in analyze
                .syntax()
                .descendants()
                .filter_map(ast::TableNameRef::cast)
            {
                push(
                    &mut locks,
                    &name(t.syntax()),
                    ShareUpdateExclusive,
                    Effect::Scan,
                );
            }
        }
        _ => {}
    }
    locks
}

/// The table a `RelationName` (UPDATE/DELETE target) names, without ONLY or `*`.
fn relation_name(r: &ast::RelationName) -> String {
    r.relation_name_ref()
        .map(|n| name(n.syntax()))
        .unwrap_or_default()
}

/// Tables named by REFERENCES or FOREIGN KEY inside a statement.
pub(crate) fn referenced_tables(node: &squawk_syntax::SyntaxNode) -> Vec<String> {
    let mut tables = Vec::new();
    for n in node.descendants() {
        if let Some(r) = ast::ReferencesConstraint::cast(n.clone()) {
            tables.extend(table_ref(r.table()));
        } else if let Some(f) = ast::ForeignKeyConstraint::cast(n) {
            tables.extend(table_ref(f.table_name_ref()));
        }
    }
    tables
}

/// The tables a VACUUM names (none: the whole database).
pub(crate) fn vacuum_tables(vacuum: &ast::Vacuum) -> Vec<String> {
    vacuum
        .table_and_columns_list()
        .map(|list| {
            list.table_and_columnss()
                .filter_map(|t| relation(t.table_relation_name()))
                .collect()
        })
        .unwrap_or_default()
}

fn alter_table(alter: &ast::AlterTable, schema: &Schema, locks: &mut Vec<Lock>) {
    use LockMode::*;
    let Some(table) = relation(alter.table_relation_name()) else {
        return;
    };
    for action in alter.actions() {
        let (mode, effect) = match &action {
            ast::AlterTableAction::AddColumn(add) => {
                let rewrite = super::rules::add_column_rewrites(add);
                for reference in referenced_tables(add.syntax()) {
                    push(locks, &reference, ShareRowExclusive, Effect::None);
                }
                let scan = add.constraints().any(|c| {
                    matches!(
                        c,
                        ast::Constraint::PrimaryKeyConstraint(_)
                            | ast::Constraint::UniqueConstraint(_)
                            | ast::Constraint::CheckConstraint(_)
                            | ast::Constraint::ReferencesConstraint(_)
                    )
                });
                let effect = if rewrite {
                    Effect::Rewrite
                } else if scan {
                    Effect::Scan
                } else {
                    Effect::None
                };
                (AccessExclusive, effect)
            }
            ast::AlterTableAction::AlterColumn(column) => match column.option() {
                Some(ast::AlterColumnOption::SetType(set)) => {
                    let column = column
                        .column_name_ref()
                        .map(|c| name(c.syntax()))
                        .unwrap_or_default();
                    let effect =
                        if super::rules::type_change_rewrites(schema, &table, &column, &set) {
                            Effect::Rewrite
                        } else {
                            Effect::None
                        };
                    (AccessExclusive, effect)
                }
                Some(ast::AlterColumnOption::SetNotNull(_)) => {
                    let column = column
                        .column_name_ref()
                        .map(|c| name(c.syntax()))
                        .unwrap_or_default();
                    let effect = if schema.proven_not_null(&table, &column) {
                        Effect::None
                    } else {
                        Effect::Scan
                    };
                    (AccessExclusive, effect)
                }
                Some(ast::AlterColumnOption::SetStatistics(_)) => {
                    (ShareUpdateExclusive, Effect::None)
                }
                _ => (AccessExclusive, Effect::None),
            },
            ast::AlterTableAction::AddConstraint(add) => {
                let not_valid = has_token(add.syntax(), SyntaxKind::VALID_KW);
                match add.constraint() {
                    Some(ast::Constraint::ForeignKeyConstraint(fk)) => {
                        if let Some(reference) = table_ref(fk.table_name_ref()) {
                            push(locks, &reference, ShareRowExclusive, Effect::None);
                        }
                        let effect = if not_valid {
                            Effect::None
                        } else {
                            Effect::Scan
                        };
                        (ShareRowExclusive, effect)
                    }
                    Some(ast::Constraint::CheckConstraint(_)) => {
                        let effect = if not_valid {
                            Effect::None
                        } else {
                            Effect::Scan
                        };
                        (AccessExclusive, effect)
                    }
                    Some(
                        ast::Constraint::PrimaryKeyConstraint(_)
                        | ast::Constraint::UniqueConstraint(_)
                        | ast::Constraint::ExcludeConstraint(_),
                    ) => {
                        let effect = if has_token(add.syntax(), SyntaxKind::USING_KW) {
                            Effect::None
                        } else {
                            Effect::Scan
                        };
                        (AccessExclusive, effect)
                    }
                    _ => (AccessExclusive, Effect::None),
                }
            }
            ast::AlterTableAction::ValidateConstraint(_) => (ShareUpdateExclusive, Effect::Scan),
            ast::AlterTableAction::AttachPartition(attach) => {
                if let Some(child) = table_ref(attach.table_name_ref()) {
                    // The partition is scanned unless a CHECK constraint proves its bounds.
                    push(locks, &child, AccessExclusive, Effect::Scan);
                }
                (ShareUpdateExclusive, Effect::None)
            }
            ast::AlterTableAction::DetachPartition(detach) => {
                let concurrently = matches!(
                    detach.detach_partition_option(),
                    Some(
                        ast::DetachPartitionOption::DetachConcurrently(_)
                            | ast::DetachPartitionOption::DetachFinalize(_)
                    )
                );
                let mode = if concurrently {
                    ShareUpdateExclusive
                } else {
                    AccessExclusive
                };
                if let Some(child) = table_ref(detach.table_name_ref()) {
                    push(locks, &child, mode, Effect::None);
                }
                (mode, Effect::None)
            }
            ast::AlterTableAction::SetLogged(_)
            | ast::AlterTableAction::SetUnlogged(_)
            | ast::AlterTableAction::SetTablespace(_)
            | ast::AlterTableAction::SetAccessMethod(_) => (AccessExclusive, Effect::Rewrite),
            ast::AlterTableAction::ClusterOn(_)
            | ast::AlterTableAction::SetWithoutCluster(_)
            | ast::AlterTableAction::SetOptions(_)
            | ast::AlterTableAction::ResetOptions(_) => (ShareUpdateExclusive, Effect::None),
            ast::AlterTableAction::EnableTrigger(_)
            | ast::AlterTableAction::DisableTrigger(_)
            | ast::AlterTableAction::EnableAlwaysTrigger(_)
            | ast::AlterTableAction::EnableReplicaTrigger(_) => (ShareRowExclusive, Effect::None),
            _ => (AccessExclusive, Effect::None),
        };
        push(locks, &table, mode, effect);
    }
}
