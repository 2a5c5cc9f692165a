//! The rules, statement by statement, against the schema as it stands when the statement runs.
//! docs/lint.md says why each exists and what the safe pattern is; the hints here are that
//! pattern in one line.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::locks::{self, Lock};
use super::schema::{Schema, Table};
use super::sql::{has_node, has_token, name, relation, table_ref, type_text, Parsed, Statement};
use super::{Finding, Mode, PlanStep, Rule, SectionKind};
use crate::migrations::catalog::Transaction;

/// Checks every statement of a section, learns what it creates, and records its locks.
pub(crate) fn check_section(
    parsed: &Parsed,
    mode: &Mode,
    schema: &mut Schema,
    findings: &mut Vec<Finding>,
    steps: &mut Vec<PlanStep>,
) {
    let count = parsed.statements.len();
    for (i, statement) in parsed.statements.iter().enumerate() {
        let locks = locks::plan(&statement.stmt, schema);
        let mut out = Out {
            statement,
            locks: &locks,
            findings,
        };
        if mode.transaction == Transaction::Wrapped {
            outside_transaction_only(&statement.stmt, &mut out);
        }
        if mode.section == SectionKind::Up {
            up(&statement.stmt, mode, schema, &mut out);
            // The last statement cannot have run before a failure that a rerun repeats.
            if mode.transaction == Transaction::None
                && i + 1 < count
                && !rerunnable(&statement.stmt)
            {
                out.report(
                    Rule::NotRerunnable,
                    format!("{} runs outside a transaction and fails when run again: if a later statement of this transaction:false section fails, the section cannot simply be rerun", head(&statement.text)),
                    "write it to be idempotent (CREATE … IF NOT EXISTS, DROP … IF EXISTS, ADD COLUMN IF NOT EXISTS), or move it into its own migration",
                );
            }
        }
        // A down section is checked against the schema as the up left it and teaches it
        // nothing (later migrations build on the up), so it needs no copy of the schema: a
        // copy per migration made linting N migrations cost N².
        if mode.section == SectionKind::Up {
            learn(&statement.stmt, schema);
        }
        steps.push(PlanStep {
            file: String::new(),
            line: statement.line,
            statement: statement.text.clone(),
            locks,
        });
    }
}

/// The start of a statement, up to its first parenthesis: `CREATE TABLE public.t`.
fn head(statement: &str) -> String {
    let cut = statement.find(['(', ';']).unwrap_or(statement.len());
    let head: String = statement[..cut].chars().take(80).collect();
    head.trim_end().to_string()
}

/// Where findings of one statement go.
struct Out<'a> {
    statement: &'a Statement,
    locks: &'a [Lock],
    findings: &'a mut Vec<Finding>,
}

impl Out<'_> {
    fn report(&mut self, rule: Rule, message: String, hint: &str) {
        self.findings.push(Finding {
            file: String::new(),
            line: self.statement.line,
            rule,
            severity: rule.severity(),
            message,
            hint: hint.to_string(),
            statement: self.statement.text.clone(),
            locks: self.locks.to_vec(),
        });
    }
}

const CONCURRENT_INDEX_HINT: &str = "put it in its own migration marked `-- migrate:up transaction:false` as CREATE INDEX CONCURRENTLY IF NOT EXISTS (a build that fails leaves an INVALID index: drop it with DROP INDEX CONCURRENTLY before rerunning)";
const PARTITIONED_INDEX_HINT: &str = "CREATE INDEX name ON ONLY parent (…); then per partition, in a transaction:false migration, CREATE INDEX CONCURRENTLY part_idx ON partition (…) and ALTER INDEX name ATTACH PARTITION part_idx; the parent's index becomes valid when every partition's is attached (docs/lint.md)";
const NOT_VALID_HINT: &str = "add it NOT VALID (a short lock, no scan), then VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan)";

/// CONCURRENTLY and VACUUM refuse to run inside a transaction block: the section fails at run
/// time, in an up or a down section alike.
fn outside_transaction_only(stmt: &ast::Stmt, out: &mut Out<'_>) {
    let concurrently = match stmt {
        ast::Stmt::CreateIndex(i) => i.concurrently_token().is_some(),
        ast::Stmt::DropIndex(d) => d.concurrently_token().is_some(),
        ast::Stmt::Reindex(r) => has_token(r.syntax(), SyntaxKind::CONCURRENTLY_KW),
        ast::Stmt::AlterTable(a) => a.actions().any(|action| {
            matches!(action, ast::AlterTableAction::DetachPartition(d)
                if matches!(d.detach_partition_option(), Some(ast::DetachPartitionOption::DetachConcurrently(_))))
        }),
        _ => false,
    };
    if concurrently {
        out.report(
            Rule::ConcurrentlyInTransaction,
            format!("{}: CONCURRENTLY cannot run inside a transaction block, and this section runs in one, so the migration fails when applied", head(&out.statement.text)),
            "mark the section `-- migrate:up transaction:false` (or `-- migrate:down transaction:false`), alone in its migration, with IF [NOT] EXISTS so that it can be rerun",
        );
    }
    if matches!(stmt, ast::Stmt::Vacuum(_)) {
        out.report(
            Rule::VacuumInTransaction,
            "VACUUM cannot run inside a transaction block, and this section runs in one: the migration fails when applied".into(),
            "mark the section `transaction:false`, or leave VACUUM to autovacuum or a maintenance job",
        );
    }
}

/// The rules of an up section.
fn up(stmt: &ast::Stmt, mode: &Mode, schema: &Schema, out: &mut Out<'_>) {
    match stmt {
        ast::Stmt::CreateIndex(index) => create_index(index, schema, out),
        ast::Stmt::DropIndex(drop) => {
            if drop.concurrently_token().is_some() {
                return;
            }
            for index in drop.index_refs() {
                let index = name(index.syntax());
                let table = schema.index_table(&index).map(str::to_string);
                if schema.is_new(&index) || table.as_deref().is_some_and(|t| schema.is_new(t)) {
                    continue;
                }
                let on = table.map(|t| format!(" on {t}")).unwrap_or_default();
                out.report(
                    Rule::DropIndexWithoutConcurrently,
                    format!("DROP INDEX {index} takes ACCESS EXCLUSIVE on its table{on}: every read and write of it waits"),
                    "DROP INDEX CONCURRENTLY IF EXISTS in a transaction:false migration (an index of a partitioned table has no concurrent drop: drop it when traffic is low and allow the finding with its reason)",
                );
            }
        }
        ast::Stmt::Reindex(reindex) => {
            if has_token(reindex.syntax(), SyntaxKind::CONCURRENTLY_KW) {
                return;
            }
            let target = match reindex.reindex_target() {
                Some(ast::ReindexTarget::ReindexTargetTable(t)) => table_ref(t.table_name_ref()),
                Some(ast::ReindexTarget::ReindexTargetIndex(i)) => i.index_ref().map(|i| {
                    let index = name(i.syntax());
                    schema.index_table(&index).unwrap_or(&index).to_string()
                }),
                _ => None,
            };
            if target.as_deref().is_some_and(|t| schema.is_new(t)) {
                return;
            }
            let what = target.unwrap_or_else(|| "its tables".into());
            out.report(
                Rule::ReindexWithoutConcurrently,
                format!("REINDEX blocks writes to {what} while it rebuilds (and reads that use the index)"),
                "REINDEX … CONCURRENTLY in a transaction:false migration",
            );
        }
        ast::Stmt::AlterTable(alter) => alter_table(alter, mode, schema, out),
        ast::Stmt::CreateTable(create) => {
            let parent = create
                .partition_of()
                .and_then(|p| table_ref(p.table_name_ref()));
            if let Some(parent) = parent.filter(|p| schema.is_managed(p) && !schema.is_new(p)) {
                manual_partition(&parent, "creates a partition of", out);
            }
        }
        ast::Stmt::DropTable(drop) => {
            for table in drop.table_name_refs() {
                let table = name(table.syntax());
                if schema.is_new(&table) {
                    continue;
                }
                match schema.managed_parent(&table) {
                    Some(parent) if parent != table => {
                        manual_partition(&parent, "drops a partition of", out)
                    }
                    _ => {}
                }
                if schema.created_earlier(&table) {
                    out.report(
                        Rule::DropBreaksGateway,
                        format!("DROP TABLE {table} drops a table an earlier migration created: the running gateway's queries on it fail from this moment"),
                        "expand/contract: first release a gateway that no longer uses the table, then drop it in a later migration (and allow this finding with that reason)",
                    );
                }
            }
        }
        ast::Stmt::Vacuum(vacuum) => {
            let full = vacuum.full_token().is_some()
                || vacuum
                    .vacuum_option_list()
                    .is_some_and(|o| has_token(o.syntax(), SyntaxKind::FULL_KW));
            let tables = locks::vacuum_tables(vacuum);
            if full && (tables.is_empty() || tables.iter().any(|t| !schema.is_new(t))) {
                let what = if tables.is_empty() {
                    "every table of the database".to_string()
                } else {
                    tables.join(", ")
                };
                out.report(
                    Rule::RewriteUnderLock,
                    format!("VACUUM FULL rewrites {what} under ACCESS EXCLUSIVE: reads and writes wait for the whole rewrite"),
                    "use pg_repack or pg_squeeze outside migrations, or plain VACUUM (no rewrite, no blocking lock)",
                );
            }
        }
        ast::Stmt::Cluster(cluster) => {
            let table = table_ref(cluster.table_name_ref());
            if table.as_deref().is_some_and(|t| schema.is_new(t)) {
                return;
            }
            let what = table.unwrap_or_else(|| "every clustered table".into());
            out.report(
                Rule::RewriteUnderLock,
                format!("CLUSTER rewrites {what} under ACCESS EXCLUSIVE: reads and writes wait for the whole rewrite"),
                "use pg_repack outside migrations; for time-ordered rows such as request_logs, partitioning keeps them ordered already",
            );
        }
        _ => {}
    }
}

fn create_index(index: &ast::CreateIndex, schema: &Schema, out: &mut Out<'_>) {
    let Some(table) = relation(index.table_relation_name()) else {
        return;
    };
    if schema.is_new(&table) {
        return;
    }
    let only = index
        .table_relation_name()
        .is_some_and(|r| r.only_token().is_some());
    let concurrently = index.concurrently_token().is_some();
    if schema.is_partitioned(&table) {
        if only {
            return;
        }
        let message = if concurrently {
            format!("{table} is partitioned: PostgreSQL cannot build an index CONCURRENTLY on a partitioned table, so this fails when applied")
        } else {
            format!("CREATE INDEX on partitioned {table} blocks writes to every partition (SHARE) while it builds each partition's index")
        };
        out.report(
            Rule::IndexOnPartitionedTable,
            message,
            PARTITIONED_INDEX_HINT,
        );
    } else if !concurrently {
        out.report(
            Rule::IndexWithoutConcurrently,
            format!("CREATE INDEX on {table} without CONCURRENTLY takes SHARE: the gateway's inserts and updates wait until the whole table is indexed"),
            CONCURRENT_INDEX_HINT,
        );
    }
}

fn manual_partition(parent: &str, what: &str, out: &mut Out<'_>) {
    out.report(
        Rule::ManualPartitionChange,
        format!("this {what} {parent}, whose partitions the policy partitions/{parent}.toml manages: `dhctl partition create/prune` and this migration would fight over them"),
        "change the policy (interval, premake, retention) and let `dhctl partition create` or `prune` do it, or run `dhctl partition` by hand",
    );
}

fn alter_table(alter: &ast::AlterTable, mode: &Mode, schema: &Schema, out: &mut Out<'_>) {
    let Some(table) = relation(alter.table_relation_name()) else {
        return;
    };
    let new = schema.is_new(&table);
    let earlier = schema.created_earlier(&table);
    let every_partition = if schema.is_partitioned(&table) {
        " and every partition of it"
    } else {
        ""
    };
    for action in alter.actions() {
        match &action {
            ast::AlterTableAction::AddColumn(add) if !new => {
                let column = add.column_name().map(|c| name(c.syntax())).unwrap_or_default();
                let has_default = add.constraints().any(|c| {
                    matches!(
                        c,
                        ast::Constraint::DefaultConstraint(_) | ast::Constraint::GeneratedConstraint(_)
                    )
                }) || is_serial(add.ty().map(|t| type_text(t.syntax())).as_deref());
                let not_null = add
                    .constraints()
                    .any(|c| matches!(c, ast::Constraint::NotNullConstraint(_) | ast::Constraint::PrimaryKeyConstraint(_)));
                if not_null && !has_default {
                    out.report(
                        Rule::AddColumnNotNull,
                        format!("ADD COLUMN {column} NOT NULL without a default fails on {table} as soon as it holds a row"),
                        "add it with a constant DEFAULT (no rewrite since PostgreSQL 11), or add it nullable, backfill in batches, then CHECK (col IS NOT NULL) NOT VALID + VALIDATE + SET NOT NULL in later migrations",
                    );
                }
                if add_column_rewrites(add) {
                    out.report(
                        Rule::AddColumnVolatileDefault,
                        format!("ADD COLUMN {column} with a volatile default (or a stored generated or identity column) rewrites {table}{every_partition} under ACCESS EXCLUSIVE"),
                        "add the column without a default (or with a constant one), set the default for new rows with ALTER COLUMN … SET DEFAULT, and backfill old rows in batches",
                    );
                }
                if add.constraints().any(|c| {
                    matches!(c, ast::Constraint::PrimaryKeyConstraint(_) | ast::Constraint::UniqueConstraint(_))
                }) {
                    out.report(
                        Rule::ConstraintBuildsIndex,
                        format!("ADD COLUMN {column} UNIQUE/PRIMARY KEY builds its index on {table} under ACCESS EXCLUSIVE"),
                        "add the column, CREATE UNIQUE INDEX CONCURRENTLY in a transaction:false migration, then ADD CONSTRAINT … UNIQUE USING INDEX",
                    );
                }
                if add.constraints().any(|c| {
                    matches!(c, ast::Constraint::CheckConstraint(_) | ast::Constraint::ReferencesConstraint(_))
                }) {
                    out.report(
                        Rule::ConstraintWithoutNotValid,
                        format!("ADD COLUMN {column} with CHECK or REFERENCES validates every row of {table} while holding the lock"),
                        NOT_VALID_HINT,
                    );
                }
            }
            ast::AlterTableAction::AlterColumn(column) if !new => {
                let col = column.column_name_ref().map(|c| name(c.syntax())).unwrap_or_default();
                match column.option() {
                    Some(ast::AlterColumnOption::SetType(set))
                        if type_change_rewrites(schema, &table, &col, &set) =>
                    {
                        let ty = set.ty().map(|t| type_text(t.syntax())).unwrap_or_default();
                        out.report(
                            Rule::ColumnTypeRewrite,
                            format!("ALTER COLUMN {col} TYPE {ty} rewrites {table}{every_partition} (and its indexes) under ACCESS EXCLUSIVE"),
                            "expand/contract: add a new column, write both from the gateway, backfill in batches, switch reads, drop the old column later (docs/lint.md); varchar(n) to a larger n or to text needs no rewrite",
                        );
                    }
                    Some(ast::AlterColumnOption::SetNotNull(_)) if !schema.proven_not_null(&table, &col) => {
                        out.report(
                            Rule::SetNotNullScan,
                            format!("SET NOT NULL on {table}.{col} scans the whole table under ACCESS EXCLUSIVE"),
                            "first ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT c in a later migration; SET NOT NULL then skips the scan, and the CHECK can be dropped",
                        );
                    }
                    _ => {}
                }
            }
            ast::AlterTableAction::AddConstraint(add) if !new => {
                let not_valid = has_token(add.syntax(), SyntaxKind::VALID_KW);
                match add.constraint() {
                    Some(ast::Constraint::CheckConstraint(_)) if !not_valid => out.report(
                        Rule::ConstraintWithoutNotValid,
                        format!("ADD CHECK on {table} scans every row under ACCESS EXCLUSIVE"),
                        NOT_VALID_HINT,
                    ),
                    Some(ast::Constraint::ForeignKeyConstraint(fk)) if !not_valid => {
                        let target = table_ref(fk.table_name_ref()).unwrap_or_default();
                        out.report(
                            Rule::ConstraintWithoutNotValid,
                            format!("ADD FOREIGN KEY on {table} scans every row while it blocks writes to {table} and {target} (SHARE ROW EXCLUSIVE)"),
                            NOT_VALID_HINT,
                        );
                    }
                    Some(
                        ast::Constraint::PrimaryKeyConstraint(_)
                        | ast::Constraint::UniqueConstraint(_)
                        | ast::Constraint::ExcludeConstraint(_),
                    ) if !has_token(add.syntax(), SyntaxKind::USING_KW) => out.report(
                        Rule::ConstraintBuildsIndex,
                        format!("ADD PRIMARY KEY/UNIQUE on {table} builds its index under ACCESS EXCLUSIVE: reads and writes wait for the build"),
                        "CREATE UNIQUE INDEX CONCURRENTLY in a transaction:false migration, then ADD CONSTRAINT name PRIMARY KEY/UNIQUE USING INDEX index_name",
                    ),
                    _ => {}
                }
            }
            ast::AlterTableAction::ValidateConstraint(validate) if !new => {
                let constraint = validate
                    .constraint_name_ref()
                    .map(|c| name(c.syntax()))
                    .unwrap_or_default();
                if mode.transaction == Transaction::Wrapped && schema.added_not_valid_here(&constraint) {
                    out.report(
                        Rule::ValidateInSameTransaction,
                        format!("VALIDATE CONSTRAINT {constraint} runs in the transaction that added it, so its scan of {table} happens while the ADD's lock is still held"),
                        "move VALIDATE CONSTRAINT to a later migration: on its own it takes SHARE UPDATE EXCLUSIVE and blocks no reads or writes",
                    );
                }
            }
            ast::AlterTableAction::SetLogged(_)
            | ast::AlterTableAction::SetUnlogged(_)
            | ast::AlterTableAction::SetTablespace(_)
            | ast::AlterTableAction::SetAccessMethod(_)
                if !new =>
            {
                out.report(
                    Rule::RewriteUnderLock,
                    format!("this ALTER TABLE rewrites {table}{every_partition} under ACCESS EXCLUSIVE (SET LOGGED/UNLOGGED, SET TABLESPACE or SET ACCESS METHOD)"),
                    "do it in a maintenance window, or build a new table and switch to it (expand/contract)",
                );
            }
            ast::AlterTableAction::DetachPartition(detach) if !new => {
                let concurrent = detach.detach_partition_option().is_some();
                if !concurrent {
                    out.report(
                        Rule::DetachWithoutConcurrently,
                        format!("DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on {table}: every read and write of it waits"),
                        "DETACH PARTITION … CONCURRENTLY in a transaction:false migration (then DETACH PARTITION … FINALIZE if it was interrupted)",
                    );
                }
                if schema.is_managed(&table) {
                    manual_partition(&table, "detaches a partition of", out);
                }
            }
            ast::AlterTableAction::AttachPartition(_) if !new && schema.is_managed(&table) => {
                manual_partition(&table, "attaches a partition to", out);
            }
            ast::AlterTableAction::RenameColumn(rename) if earlier => {
                let from = rename.column_name_ref().map(|c| name(c.syntax())).unwrap_or_default();
                out.report(
                    Rule::RenameBreaksGateway,
                    format!("RENAME COLUMN {table}.{from}: the running gateway's queries that name it fail from this moment"),
                    "expand/contract: add the new column, write both, backfill, switch the gateway, drop the old one later",
                );
            }
            ast::AlterTableAction::TableRenameTo(_) if earlier => out.report(
                Rule::RenameBreaksGateway,
                format!("RENAME of table {table}: the running gateway's queries on it fail from this moment"),
                "release a gateway that works with both names first (a view with the old name can bridge the switch)",
            ),
            ast::AlterTableAction::DropColumn(drop) if earlier => {
                let col = drop.column_name_ref().map(|c| name(c.syntax())).unwrap_or_default();
                out.report(
                    Rule::DropBreaksGateway,
                    format!("DROP COLUMN {table}.{col}: the running gateway's queries that name it fail from this moment"),
                    "first release a gateway that no longer reads or writes the column, then drop it in a later migration (and allow this finding with that reason)",
                );
            }
            _ => {}
        }
    }
}

/// True when ADD COLUMN rewrites the table: a volatile default (evaluated per row), a serial
/// type (nextval), or a stored generated or identity column. A constant or stable default is
/// stored once in the catalog (PostgreSQL 11+) and rewrites nothing.
pub(crate) fn add_column_rewrites(add: &ast::AddColumn) -> bool {
    if is_serial(add.ty().map(|t| type_text(t.syntax())).as_deref()) {
        return true;
    }
    add.constraints().any(|c| match c {
        ast::Constraint::DefaultConstraint(d) => d.expr().is_some_and(|e| volatile(e.syntax())),
        ast::Constraint::GeneratedConstraint(g) => {
            // A virtual generated column (PostgreSQL 18) computes on read: no rewrite.
            has_token(g.syntax(), SyntaxKind::STORED_KW)
                || has_token(g.syntax(), SyntaxKind::IDENTITY_KW)
        }
        _ => false,
    })
}

fn is_serial(ty: Option<&str>) -> bool {
    matches!(
        ty,
        Some("serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8")
    )
}

/// Functions that are not volatile (pg_proc.provolatile 'i' or 's'), so a default calling them
/// is evaluated once. Any other call is taken as volatile: a false alarm costs an allow
/// comment, a missed rewrite costs an outage.
const NON_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_setting",
    "lower",
    "upper",
    "length",
    "concat",
    "md5",
    "to_timestamp",
    "to_date",
    "make_interval",
    "make_date",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_fill",
];

/// True when an expression calls a function not known to be stable or immutable.
fn volatile(expr: &SyntaxNode) -> bool {
    expr.descendants()
        .filter_map(ast::CallExpr::cast)
        .any(|call| {
            let callee = call.expr().map(|e| name(e.syntax())).unwrap_or_default();
            let function = callee.rsplit('.').next().unwrap_or_default();
            !NON_VOLATILE.contains(&function)
        })
}

/// True when ALTER COLUMN … TYPE rewrites: unless the old type is known (from an earlier
/// migration) and the change is binary-coercible with no USING: varchar(n) to varchar(m ≥ n),
/// varchar or text; text and varchar to each other; numeric(p,s) to numeric(q ≥ p, s) or numeric.
pub(crate) fn type_change_rewrites(
    schema: &Schema,
    table: &str,
    column: &str,
    set: &ast::SetType,
) -> bool {
    if set.using_expr().is_some() {
        return true;
    }
    let Some(new) = set.ty().map(|t| canonical_type(&type_text(t.syntax()))) else {
        return true;
    };
    let Some(old) = schema.column_type(table, column).map(canonical_type) else {
        return true;
    };
    !coercible(&old, &new)
}

fn coercible(old: &str, new: &str) -> bool {
    if old == new {
        return true;
    }
    let (old_base, old_args) = split_type(old);
    let (new_base, new_args) = split_type(new);
    match (old_base, new_base) {
        ("varchar", "varchar") => match (old_args.first(), new_args.first()) {
            (_, None) => true,
            (Some(n), Some(m)) => m >= n,
            (None, Some(_)) => false,
        },
        ("varchar" | "text", "text") | ("text", "varchar") => new_args.is_empty(),
        ("numeric", "numeric") => match (old_args.as_slice(), new_args.as_slice()) {
            (_, []) => true,
            ([p, s], [q, t]) => q >= p && s == t,
            ([p], [q]) => q >= p,
            _ => false,
        },
        _ => false,
    }
}

/// `varchar(255)` → ("varchar", [255]).
fn split_type(ty: &str) -> (&str, Vec<u32>) {
    match ty.split_once('(') {
        Some((base, rest)) => (
            base.trim(),
            rest.trim_end_matches(')')
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect(),
        ),
        None => (ty.trim(), Vec::new()),
    }
}

/// One spelling per type, for the ones coercible() knows.
fn canonical_type(ty: &str) -> String {
    let ty = ty.trim();
    for (long, short) in [
        ("character varying", "varchar"),
        ("decimal", "numeric"),
        ("timestamp with time zone", "timestamptz"),
        ("integer", "int4"),
        ("int", "int4"),
        ("bigint", "int8"),
    ] {
        if let Some(rest) = ty.strip_prefix(long) {
            if rest.is_empty() || rest.starts_with('(') {
                return format!("{short}{rest}");
            }
        }
    }
    ty.to_string()
}

/// True when running the statement again after it succeeded does no harm.
fn rerunnable(stmt: &ast::Stmt) -> bool {
    let node = stmt.syntax();
    match stmt {
        // A temporary table ends with the session; a rerun starts a new one.
        ast::Stmt::CreateTable(_) | ast::Stmt::CreateTableAs(_)
            if has_token(node, SyntaxKind::TEMP_KW)
                || has_token(node, SyntaxKind::TEMPORARY_KW) =>
        {
            true
        }
        ast::Stmt::CreateTable(_)
        | ast::Stmt::CreateIndex(_)
        | ast::Stmt::CreateSequence(_)
        | ast::Stmt::CreateSchema(_)
        | ast::Stmt::CreateExtension(_)
        | ast::Stmt::CreateTableAs(_)
        | ast::Stmt::CreateMaterializedView(_) => has_node(node, SyntaxKind::IF_NOT_EXISTS),
        ast::Stmt::CreateView(_)
        | ast::Stmt::CreateFunction(_)
        | ast::Stmt::CreateProcedure(_)
        | ast::Stmt::CreateTrigger(_)
        | ast::Stmt::CreateRule(_) => has_node(node, SyntaxKind::OR_REPLACE),
        ast::Stmt::DropTable(_)
        | ast::Stmt::DropIndex(_)
        | ast::Stmt::DropSequence(_)
        | ast::Stmt::DropView(_)
        | ast::Stmt::DropMaterializedView(_)
        | ast::Stmt::DropFunction(_)
        | ast::Stmt::DropProcedure(_)
        | ast::Stmt::DropSchema(_)
        | ast::Stmt::DropType(_)
        | ast::Stmt::DropTrigger(_)
        | ast::Stmt::DropExtension(_)
        | ast::Stmt::DropPolicy(_) => has_node(node, SyntaxKind::IF_EXISTS),
        ast::Stmt::CreateType(_) | ast::Stmt::CreatePolicy(_) | ast::Stmt::CreateDomain(_) => false,
        ast::Stmt::AlterTable(alter) => alter.actions().all(|action| match &action {
            ast::AlterTableAction::AddColumn(a) => a.if_not_exists().is_some(),
            ast::AlterTableAction::DropColumn(d) => d.if_exists().is_some(),
            ast::AlterTableAction::DropConstraint(d) => has_node(d.syntax(), SyntaxKind::IF_EXISTS),
            ast::AlterTableAction::AddConstraint(_)
            | ast::AlterTableAction::RenameColumn(_)
            | ast::AlterTableAction::RenameConstraint(_)
            | ast::AlterTableAction::TableRenameTo(_)
            | ast::AlterTableAction::AttachPartition(_)
            | ast::AlterTableAction::DetachPartition(_)
            | ast::AlterTableAction::SetSchema(_)
            | ast::AlterTableAction::InheritTable(_)
            | ast::AlterTableAction::NoInheritTable(_) => false,
            _ => true,
        }),
        _ => true,
    }
}

/// Updates the schema with what the statement creates, changes or drops.
fn learn(stmt: &ast::Stmt, schema: &mut Schema) {
    match stmt {
        ast::Stmt::CreateTable(create) => {
            let Some(table) = create.table_name().map(|t| name(t.syntax())) else {
                return;
            };
            let mut columns = std::collections::HashMap::new();
            if let Some(args) = create.table_arg_list() {
                for arg in args.args() {
                    if let ast::TableArg::Column(column) = arg {
                        if let (Some(n), Some(ty)) = (column.name(), column.ty()) {
                            columns.insert(name(n.syntax()), type_text(ty.syntax()));
                        }
                    }
                }
            }
            let made = Table {
                partitioned: create.partition_by().is_some(),
                parent: create
                    .partition_of()
                    .and_then(|p| table_ref(p.table_name_ref())),
                columns,
            };
            match create.if_not_exists() {
                Some(_) => schema.create_table_if_not_exists(&table, made),
                None => schema.create_table(&table, made),
            }
        }
        // Tables made from a query (and materialized views, which can be indexed) are new too.
        ast::Stmt::CreateTableAs(create) => {
            if let Some(table) = create.table_name().map(|t| name(t.syntax())) {
                schema.create_table(&table, Table::default());
            }
        }
        ast::Stmt::CreateMaterializedView(view) => {
            if let Some(path) = view.view().and_then(|v| v.path()) {
                schema.create_table(&name(path.syntax()), Table::default());
            }
        }
        ast::Stmt::CreateIndex(index) => {
            if let (Some(n), Some(table)) = (
                index.index().and_then(|i| i.path()),
                relation(index.table_relation_name()),
            ) {
                // The index lives in its table's schema (CREATE INDEX takes no schema for it):
                // `CREATE INDEX i ON upchieve.schools` makes upchieve.i, as DROP INDEX names it.
                let index = match table.rsplit_once('.') {
                    Some((table_schema, _)) => format!("{table_schema}.{}", name(n.syntax())),
                    None => name(n.syntax()),
                };
                schema.create_index(&index, &table);
            }
        }
        ast::Stmt::DropTable(drop) => {
            for table in drop.table_name_refs() {
                schema.drop_table(&name(table.syntax()));
            }
        }
        ast::Stmt::DropIndex(drop) => {
            for index in drop.index_refs() {
                schema.drop_index(&name(index.syntax()));
            }
        }
        ast::Stmt::AlterTable(alter) => {
            let Some(table) = relation(alter.table_relation_name()) else {
                return;
            };
            for action in alter.actions() {
                learn_action(&table, &action, schema);
            }
        }
        _ => {}
    }
}

fn learn_action(table: &str, action: &ast::AlterTableAction, schema: &mut Schema) {
    match action {
        ast::AlterTableAction::AddColumn(add) => {
            if let Some(column) = add.column_name() {
                let ty = add.ty().map(|t| type_text(t.syntax()));
                schema.set_column(table, &name(column.syntax()), ty);
            }
        }
        ast::AlterTableAction::DropColumn(drop) => {
            if let Some(column) = drop.column_name_ref() {
                schema.set_column(table, &name(column.syntax()), None);
            }
        }
        ast::AlterTableAction::AlterColumn(alter) => {
            if let (Some(column), Some(ast::AlterColumnOption::SetType(set))) =
                (alter.column_name_ref(), alter.option())
            {
                let ty = set.ty().map(|t| type_text(t.syntax()));
                schema.set_column(table, &name(column.syntax()), ty);
            }
        }
        ast::AlterTableAction::RenameColumn(rename) => {
            if let (Some(from), Some(to)) = (rename.column_name_ref(), rename.column_name()) {
                schema.rename_column(table, &name(from.syntax()), &name(to.syntax()));
            }
        }
        ast::AlterTableAction::TableRenameTo(rename) => {
            if let Some(to) = rename.table_name() {
                schema.rename_table(table, &name(to.syntax()));
            }
        }
        ast::AlterTableAction::AddConstraint(add) => {
            let not_valid = has_token(add.syntax(), SyntaxKind::VALID_KW);
            let constraint = add
                .syntax()
                .descendants()
                .find_map(ast::ConstraintNameClause::cast)
                .and_then(|c| c.constraint_name())
                .map(|n| name(n.syntax()))
                .unwrap_or_default();
            if not_valid {
                schema.added_not_valid(&constraint);
            }
            if let Some(ast::Constraint::CheckConstraint(check)) = add.constraint() {
                if let Some(column) = check.expr().and_then(|e| is_not_null_of(e.syntax())) {
                    schema.not_null_check(&constraint, table, &column, !not_valid);
                }
            }
        }
        ast::AlterTableAction::ValidateConstraint(validate) => {
            if let Some(c) = validate.constraint_name_ref() {
                schema.validate(&name(c.syntax()));
            }
        }
        _ => {}
    }
}

/// `col IS NOT NULL` (in any parentheses) → `col`.
fn is_not_null_of(expr: &SyntaxNode) -> Option<String> {
    let words: Vec<String> = expr
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| {
            !matches!(
                t.kind(),
                SyntaxKind::WHITESPACE
                    | SyntaxKind::COMMENT
                    | SyntaxKind::L_PAREN
                    | SyntaxKind::R_PAREN
            )
        })
        .map(|t| t.text().to_string())
        .collect();
    match words.as_slice() {
        [column, is, not, null]
            if is.eq_ignore_ascii_case("is")
                && not.eq_ignore_ascii_case("not")
                && null.eq_ignore_ascii_case("null") =>
        {
            Some(
                match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => column.to_lowercase(),
                },
            )
        }
        _ => None,
    }
}
