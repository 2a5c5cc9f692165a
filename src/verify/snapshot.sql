-- The shape of a database's schemas, one row per attribute of an object:
-- (kind, table, name, attribute, value). $1 is the main schema (the one holding the history
-- table): its objects are named unqualified, every other schema's as schema.name. The caller
-- sets the same search_path on every database it snapshots, so that format_type, pg_get_expr,
-- pg_get_constraintdef, pg_get_indexdef(…, true) and friends print the same text for the same
-- definition, with no string surgery on names.
-- Covered: every schema but the system ones (pg_*, information_schema). Left out: refinery's
-- history table, extension members, and partitions (children of partitioned tables; they are the
-- partition check's business), with everything on them.
SELECT kind, tbl, name, attr, value FROM (
WITH ext AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
),
ns AS (
    SELECT n.oid, n.nspname,
           CASE WHEN n.nspname = $1::text THEN '' ELSE pg_catalog.quote_ident(n.nspname) || '.' END AS prefix
    FROM pg_namespace n
    WHERE n.nspname::text !~ '^pg_' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass::oid AND ext.objid = n.oid)
),
rel AS (
    SELECT c.oid, ns.prefix || c.relname AS relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity
    FROM pg_class c JOIN ns ON c.relnamespace = ns.oid
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND NOT c.relispartition
      AND c.relname <> 'refinery_schema_history'
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass::oid AND ext.objid = c.oid)
),
tbl AS (SELECT * FROM rel WHERE relkind IN ('r', 'p', 'f'))
-- Schemas other than the main one and public (which every new database has): their existence.
SELECT 'schema' AS kind, pg_catalog.quote_ident(ns.nspname) AS tbl, '' AS name, 'exists' AS attr, 'yes' AS value
FROM ns WHERE ns.nspname <> $1::text AND ns.nspname <> 'public'
UNION ALL
SELECT 'table', t.relname, '', x.attr, x.value
FROM tbl t CROSS JOIN LATERAL (VALUES
    ('kind', CASE t.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' ELSE 'table' END),
    ('partition key', pg_catalog.pg_get_partkeydef(t.oid)),
    ('unlogged', CASE t.relpersistence WHEN 'u' THEN 'yes' END),
    ('row level security', CASE WHEN t.relforcerowsecurity THEN 'forced' WHEN t.relrowsecurity THEN 'enabled' END)
) x(attr, value)
UNION ALL
SELECT 'column', t.relname, a.attname, x.attr, x.value
FROM tbl t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
CROSS JOIN LATERAL (VALUES
    ('type', pg_catalog.format_type(a.atttypid, a.atttypmod)),
    ('default', pg_catalog.pg_get_expr(d.adbin, d.adrelid)),
    ('not null', CASE WHEN a.attnotnull THEN 'yes' ELSE 'no' END),
    ('identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END),
    ('generated', CASE a.attgenerated WHEN 's' THEN 'stored' WHEN 'v' THEN 'virtual' END),
    ('collation', CASE WHEN a.attcollation <> 0::oid AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid) THEN a.attcollation::regcollation::text END)
) x(attr, value)
UNION ALL
SELECT 'constraint', t.relname, con.conname, 'definition', pg_catalog.pg_get_constraintdef(con.oid)
FROM tbl t JOIN pg_constraint con ON con.conrelid = t.oid
-- NOT NULL is compared as a column attribute (PostgreSQL 18 also lists it as a constraint).
WHERE con.contype <> 'n'
UNION ALL
SELECT 'index', t.relname, ic.relname, x.attr, x.value
FROM rel t
JOIN pg_index i ON i.indrelid = t.oid
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true) AS def) g
CROSS JOIN LATERAL (VALUES
    -- From USING on: the index and table names before it are already the row's key.
    ('definition', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || pg_catalog.substr(g.def, pg_catalog.strpos(g.def, ' USING ') + 1)),
    ('invalid', CASE WHEN NOT i.indisvalid THEN 'yes' END)
) x(attr, value)
-- Indexes that back a primary key, unique or exclusion constraint come and go with it.
WHERE t.relkind IN ('r', 'p', 'm')
  AND NOT EXISTS (
    SELECT 1 FROM pg_constraint k
    WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
)
UNION ALL
SELECT 'trigger', t.relname, tg.tgname, 'definition', pg_catalog.pg_get_triggerdef(tg.oid, true)
FROM rel t JOIN pg_trigger tg ON tg.tgrelid = t.oid
WHERE NOT tg.tgisinternal AND tg.tgparentid = 0::oid
UNION ALL
SELECT 'policy', t.relname, pol.polname, 'definition',
    'AS ' || CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END
    || ' FOR ' || CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
    || ' TO ' || (SELECT pg_catalog.string_agg(r.name, ', ' ORDER BY r.name)
                  FROM (SELECT CASE WHEN u.role = 0::oid THEN 'public' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(u.role)) END AS name
                        FROM pg_catalog.unnest(pol.polroles) AS u(role)) r)
    || coalesce(' USING (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) || ')', '')
    || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', '')
FROM tbl t JOIN pg_policy pol ON pol.polrelid = t.oid
UNION ALL
SELECT CASE v.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, v.relname, '', 'definition', pg_catalog.pg_get_viewdef(v.oid, true)
FROM rel v WHERE v.relkind IN ('v', 'm')
UNION ALL
SELECT 'sequence', s.relname, '', x.attr, x.value
FROM rel s JOIN pg_sequence q ON q.seqrelid = s.oid
CROSS JOIN LATERAL (VALUES
    ('type', pg_catalog.format_type(q.seqtypid, NULL)),
    ('increment', q.seqincrement::text),
    ('cycle', CASE WHEN q.seqcycle THEN 'yes' ELSE 'no' END)
) x(attr, value)
WHERE s.relkind = 'S'
UNION ALL
SELECT 'function', '', p.oid::regprocedure::text, x.attr, x.value
FROM pg_proc p JOIN ns ON p.pronamespace = ns.oid
CROSS JOIN LATERAL (VALUES
    ('returns', pg_catalog.pg_get_function_result(p.oid)),
    ('language', (SELECT lanname FROM pg_language WHERE oid = p.prolang)::text),
    ('body', CASE WHEN p.prosqlbody IS NOT NULL THEN pg_catalog.pg_get_function_sqlbody(p.oid) ELSE p.prosrc END),
    ('volatility', p.provolatile::text),
    ('security definer', CASE WHEN p.prosecdef THEN 'yes' ELSE 'no' END)
) x(attr, value)
WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass::oid AND ext.objid = p.oid)
UNION ALL
SELECT 'type', '', ns.prefix || ty.typname, x.attr, x.value
FROM pg_type ty JOIN ns ON ty.typnamespace = ns.oid
CROSS JOIN LATERAL (VALUES
    ('enum labels', (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = ty.oid)),
    ('base type', CASE WHEN ty.typtype = 'd' THEN pg_catalog.format_type(ty.typbasetype, ty.typtypmod) END),
    ('domain constraints', (SELECT pg_catalog.string_agg(pg_catalog.pg_get_constraintdef(dc.oid), ' ' ORDER BY dc.conname) FROM pg_constraint dc WHERE dc.contypid = ty.oid)),
    ('attributes', CASE WHEN ty.typtype = 'c' THEN (
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END),
    ('range subtype', (SELECT pg_catalog.format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = ty.oid))
) x(attr, value)
-- Enums, domains, ranges, and composite types made by CREATE TYPE (not a table's row type).
WHERE (ty.typtype IN ('e', 'd', 'r')
       OR (ty.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = ty.typrelid) = 'c'))
  AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass::oid AND ext.objid = ty.oid)
) AS shape
WHERE value IS NOT NULL
