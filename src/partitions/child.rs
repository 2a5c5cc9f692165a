//! What a new partition is built from and how it joins its parent: the standalone table (LIKE
//! the parent, with generated columns, in its tablespace, with the storage parameters of the
//! newest partition) with a CHECK on its bounds, then the ATTACH and what ATTACH does not copy
//! (replica identity, grants, owner). Used by create and by drain-default.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{Oid, Type};
use tokio_postgres::Client;

use super::apply::{Partitioned, BOUNDS_CHECK};
use super::period::sql_timestamp;
use crate::db::ident::{quote_ident, quote_literal};
use crate::error::Error;

/// What a new partition takes over from its parent besides columns and constraints.
pub struct Properties {
    owner: Option<String>,
    replica_identity: Option<String>,
    tablespace: Option<String>,
    grants: Vec<String>,
    storage: Option<String>,
    /// The parent has a DEFAULT partition (ATTACH then narrows it; see attach_sql).
    has_default: bool,
    pub notes: Vec<String>,
}

/// The parent's owner, grants, replica identity and tablespace, and the storage parameters of
/// its newest partition (a partitioned table cannot carry storage parameters itself; like
/// pg_partman's template table, the newest partition is what an operator tuned last).
const PROPERTIES: &str = "\
SELECT pg_catalog.pg_get_userbyid(c.relowner)::text,
       c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user),
       pg_catalog.pg_has_role(c.relowner, 'MEMBER'),
       c.relreplident::text,
       (SELECT x.indexrelid FROM pg_index x WHERE x.indrelid = c.oid AND x.indisreplident),
       (SELECT s.spcname::text FROM pg_tablespace s WHERE s.oid = c.reltablespace),
       (SELECT ch.reloptions FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid
        WHERE i.inhparent = c.oid AND ch.relkind = 'r' AND ch.oid <> COALESCE(
            (SELECT partdefid FROM pg_partitioned_table WHERE partrelid = c.oid), 0)
        ORDER BY ch.oid DESC LIMIT 1),
       EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = c.oid AND partdefid <> 0),
       c.relrowsecurity OR c.relforcerowsecurity
FROM pg_class c WHERE c.oid = $1";

const GRANTS: &str = "\
SELECT a.privilege_type::text, CASE WHEN a.grantee = 0::oid THEN NULL
       ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, a.is_grantable
FROM pg_class c, pg_catalog.aclexplode(c.relacl) a
WHERE c.oid = $1 AND a.grantee <> c.relowner";

pub async fn properties(client: &Client, target: &Partitioned<'_>) -> Result<Properties, Error> {
    let read = |e| Error::sql(format!("reading the properties of {}", target.table), &e);
    // Both in one round trip (pipelined), each with its parameter's type given so that no
    // separate prepare round trip precedes it: this runs once per partition created.
    let (row, grant_rows) = futures_util::future::join(
        client.query_typed_one(PROPERTIES, &[(&target.oid, Type::OID)]),
        client.query_typed(GRANTS, &[(&target.oid, Type::OID)]),
    )
    .await;
    let row = row.map_err(read)?;
    let grant_rows = grant_rows.map_err(read)?;
    let mut notes = Vec::new();
    let owner: String = row.get(0);
    let owner = match (row.get::<_, bool>(1), row.get::<_, bool>(2)) {
        (false, _) => None,
        (true, true) => Some(owner),
        (true, false) => {
            notes.push(format!(
                "new partitions of {} belong to dhctl's role, not to the parent's owner {owner}: \
                 dhctl's role is not a member of {owner}",
                target.table
            ));
            None
        }
    };
    let child_index: Option<Oid> = row.get(4);
    let replica_identity = match row.get::<_, String>(3).as_str() {
        "f" => Some("FULL".to_string()),
        "n" => Some("NOTHING".to_string()),
        "i" => child_index.map(|oid| format!("INDEX {oid}")),
        _ => None,
    };
    let storage = row.get::<_, Option<Vec<String>>>(6).and_then(|options| {
        let written: Vec<String> = options
            .iter()
            .filter_map(|o| {
                let (key, value) = o.split_once('=')?;
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                    .then(|| format!("{key} = {}", quote_literal(value)))
            })
            .collect();
        (!written.is_empty()).then(|| written.join(", "))
    });
    let mut grants: Vec<String> = grant_rows
        .iter()
        .filter_map(|r| {
            let privilege: String = r.get(0);
            // From the catalog, but checked before it is written into SQL.
            if !privilege
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ')
            {
                return None;
            }
            let grantee = match r.get::<_, Option<String>>(1) {
                Some(role) => quote_ident(&role),
                None => "PUBLIC".into(),
            };
            let option = if r.get(2) { " WITH GRANT OPTION" } else { "" };
            Some(format!("{privilege} TO {grantee}{option}"))
        })
        .collect();
    // Row-level security is not inherited by partitions: a grantee reading the partition
    // directly would see the rows the parent's policies hide. So, as PostgreSQL itself does, the
    // partition gets no grants; access goes through the parent and its policies.
    if row.get::<_, bool>(8) && !grants.is_empty() {
        grants.clear();
        notes.push(format!(
            "new partitions of {} get none of its grants: it has row-level security, which \
             partitions do not inherit, so a grant on a partition would bypass its policies; \
             query {} itself",
            target.table, target.table
        ));
    }
    Ok(Properties {
        owner,
        replica_identity,
        tablespace: row.get(5),
        grants,
        storage,
        has_default: row.get(7),
        notes,
    })
}

/// `CREATE TABLE` of the standalone child, with the CHECK on its bounds that lets ATTACH skip
/// its scan.
pub fn standalone_sql(
    target: &Partitioned<'_>,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    props: &Properties,
) -> String {
    let parent = target.parent();
    let child = target.qualified(name);
    let column = quote_ident(target.column);
    let (lo, hi) = (
        quote_literal(&sql_timestamp(from)),
        quote_literal(&sql_timestamp(to)),
    );
    let check = quote_ident(BOUNDS_CHECK);
    let with = props
        .storage
        .as_ref()
        .map(|s| format!(" WITH ({s})"))
        .unwrap_or_default();
    let tablespace = props
        .tablespace
        .as_ref()
        .map(|t| format!(" TABLESPACE {}", quote_ident(t)))
        .unwrap_or_default();
    // LIKE copies the NOT NULL and CHECK constraints ATTACH demands, and generated columns
    // (INCLUDING GENERATED, PostgreSQL 12+; ATTACH refuses a plain column where the parent has a
    // generated one); indexes and foreign keys declared on the parent are created on the child by
    // ATTACH itself. Identity columns are not copied: a partition's identity comes from the
    // parent's sequence.
    format!(
        "CREATE TABLE {child} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED){with}{tablespace};\n\
         ALTER TABLE {child} ADD CONSTRAINT {check} \
             CHECK ({column} IS NOT NULL AND {column} >= {lo} AND {column} < {hi});\n"
    )
}

/// ATTACH of the standalone child, then the CHECK dropped and the parent's replica identity,
/// grants and owner given to it.
pub fn attach_sql(
    target: &Partitioned<'_>,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    props: &Properties,
) -> String {
    let parent = target.parent();
    let child = target.qualified(name);
    let (lo, hi) = (
        quote_literal(&sql_timestamp(from)),
        quote_literal(&sql_timestamp(to)),
    );
    let check = quote_ident(BOUNDS_CHECK);
    // Next to a DEFAULT partition, an insert already routed to the default and waiting for the
    // lock ATTACH takes on it would fail once the attach narrows the default ("violates
    // partition constraint"). Held back at the parent instead (reads go on), it is routed after
    // the commit. Without a default nothing is narrowed, and writes are never held.
    let mut sql = if props.has_default {
        format!("LOCK TABLE {parent} IN EXCLUSIVE MODE;\n")
    } else {
        String::new()
    };
    sql.push_str(&format!(
        "ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES FROM ({lo}) TO ({hi});\n\
         ALTER TABLE {child} DROP CONSTRAINT {check};\n"
    ));
    match props.replica_identity.as_deref() {
        Some(index) if index.starts_with("INDEX ") => {
            // The child's index is made by ATTACH, so its name is only known after it: look it
            // up by the parent's index in the same transaction.
            let parent_index = index.trim_start_matches("INDEX ");
            // A dollar-quote tag the quoted names cannot contain, whatever the schema is called.
            let mut tag = String::from("$dhctl$");
            while child.contains(&tag) {
                tag.insert(tag.len() - 1, '_');
            }
            sql.push_str(&format!(
                "DO {tag} DECLARE i text; BEGIN \
                 SELECT pg_catalog.quote_ident(ci.relname) INTO STRICT i FROM pg_inherits h \
                 JOIN pg_class ci ON ci.oid = h.inhrelid JOIN pg_index x ON x.indexrelid = ci.oid \
                 WHERE h.inhparent = {parent_index}::oid AND x.indrelid = {}::regclass::oid; \
                 EXECUTE pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %s', {}, i); \
                 END {tag};\n",
                quote_literal(&child),
                quote_literal(&child)
            ));
        }
        Some(mode) => sql.push_str(&format!("ALTER TABLE {child} REPLICA IDENTITY {mode};\n")),
        None => {}
    }
    for grant in &props.grants {
        let (privilege, rest) = grant.split_once(" TO ").unwrap_or((grant, ""));
        sql.push_str(&format!("GRANT {privilege} ON TABLE {child} TO {rest};\n"));
    }
    if let Some(owner) = &props.owner {
        sql.push_str(&format!(
            "ALTER TABLE {child} OWNER TO {};\n",
            quote_ident(owner)
        ));
    }
    sql
}
