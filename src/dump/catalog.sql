-- The statements of a schema dump, one row each: (section, key1, key2, key3, statement).
-- Run with search_path = '' (pg_catalog only), so that format_type, pg_get_expr,
-- pg_get_indexdef, regclass and friends qualify every name that is not pg_catalog's: the text
-- loads whatever the loading session's search_path is, and does not depend on the dumping one's.
-- The caller sorts the rows (by section, then the keys in natural order) and joins them; the
-- sections are listed in src/dump/mod.rs (`Section`). Nothing here prints an OID, a time or a
-- sequence value. PostgreSQL 14+ (tgparentid, prosqlbody, regcollation).
WITH ext AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
),
ns AS (
    SELECT n.oid, n.nspname FROM pg_namespace n
    WHERE n.nspname::text !~ '^pg_' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass AND ext.objid = n.oid)
),
rel AS (
    SELECT c.*, c.oid::regclass::text AS qname
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I')
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
),
tbl AS (SELECT * FROM rel WHERE relkind IN ('r', 'p')),
-- A relation's storage parameters as CREATE TABLE writes them: its own, then its TOAST
-- table's, prefixed `toast.` (NULL when it has none).
relopts AS (
    SELECT c.oid,
           ' WITH (' || NULLIF(pg_catalog.array_to_string(
               coalesce(c.reloptions, '{}'::text[])
               || ARRAY(SELECT 'toast.' || o FROM pg_class tc, pg_catalog.unnest(tc.reloptions) AS o
                        WHERE tc.oid = c.reltoastrelid AND c.reltoastrelid <> 0),
               ', '), '') || ')' AS with_clause
    FROM rel c
),
-- A partition's primary key, unique or exclusion constraint that belongs to its parent's but is
-- not named as the loading server names the copy it makes (ChooseIndexName: `<partition>_pkey`,
-- `<partition>_<index columns>_key` or `_excl`, where that fits in a name).
hand_named_con AS (
    SELECT con.oid, con.conrelid
    FROM pg_constraint con JOIN tbl t ON t.oid = con.conrelid
    WHERE t.relispartition AND con.conparentid <> 0 AND con.contype IN ('p', 'u', 'x')
      AND con.conname::text IS DISTINCT FROM (
          SELECT CASE WHEN pg_catalog.octet_length(n.name) <= 63 THEN n.name END
          FROM (SELECT t.relname::text
                       || CASE WHEN con.contype = 'p' THEN '_pkey'
                               ELSE '_' || pg_catalog.string_agg(a.attname::text, '_' ORDER BY a.attnum)
                                    || CASE WHEN con.contype = 'u' THEN '_key' ELSE '_excl' END END AS name
                FROM pg_attribute a WHERE a.attrelid = con.conindid AND a.attnum > 0) n)
),
-- Partitions made as a table of their own and attached, as pg_dump does: those whose columns
-- are not in their parent's order (made alone, then attached; PARTITION OF takes the parent's
-- order), and those with a constraint of hand_named_con (made on the table, ATTACH takes it
-- instead of making one).
standalone AS (
    SELECT t.oid FROM tbl t JOIN pg_inherits i ON i.inhrelid = t.oid
    WHERE t.relispartition
      AND (ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
           IS DISTINCT FROM
           ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.inhparent AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
           OR t.oid IN (SELECT conrelid FROM hand_named_con))
),
-- Functions, with what their signature or their parsed body (BEGIN ATOMIC, RETURN …) names:
-- `uses` 0 nothing but types, 1 the function of a cast made by CREATE CAST (a SQL-standard
-- body, parsed when the function is made, may need the cast), 2 tables, 3 views (through the functions they call too), and
-- `depth`, the longest chain of the dump's functions they call, so callees come first.
fn_base AS (
    SELECT p.oid, p.prokind, p.oid::regprocedure::text AS sig,
           coalesce((SELECT pg_catalog.max(CASE WHEN rc.relkind IN ('v', 'm') THEN 3 ELSE 2 END)
                     FROM pg_class rc
                     WHERE rc.relkind <> 'c'
                       AND (rc.oid IN (SELECT ty.typrelid FROM pg_type ty
                                       WHERE ty.oid = ANY (pg_catalog.array_append(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.prorettype)))
                            OR rc.oid IN (SELECT d.refobjid FROM pg_depend d
                                          WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                            AND d.refclassid = 'pg_class'::regclass))),
                    -- The server records the cast's function, not the cast: a body that calls
                    -- the function of a cast made by CREATE CAST (a WITH INOUT or WITHOUT
                    -- FUNCTION cast leaves no trace, docs/dump.md's order limits).
                    (SELECT 1 FROM pg_depend d
                     WHERE p.prosqlbody IS NOT NULL
                       AND d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_proc'::regclass
                       AND d.refobjid IN (SELECT c.castfunc FROM pg_cast c WHERE c.oid >= 16384)
                     LIMIT 1), 0) AS uses
    FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    WHERE p.prokind IN ('f', 'p', 'w')
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
      -- A range type's constructors come with CREATE TYPE.
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')
),
fn_calls AS (
    SELECT DISTINCT d.objid AS caller, d.refobjid AS callee
    FROM pg_depend d JOIN fn_base a ON a.oid = d.objid JOIN fn_base b ON b.oid = d.refobjid
    WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_proc'::regclass AND d.objid <> d.refobjid
),
-- A function's depth is the longest chain of calls below it, its `uses` the most any function
-- it reaches uses. Both are computed per function, never per call path: UNION (not UNION ALL)
-- keeps each (function, value) pair once, so a layered graph (every function of one layer
-- calling every function of the next) costs calls x depth rows, not one row per path, which is
-- exponential in the layers. A call cycle (possible through CREATE OR REPLACE) stops at the
-- number of functions, which no chain without a cycle exceeds.
fn_depth AS (
    WITH RECURSIVE d(oid, depth) AS (
        SELECT oid, 0 FROM fn_base
        UNION
        SELECT c.caller, d.depth + 1 FROM d JOIN fn_calls c ON c.callee = d.oid
        WHERE d.depth < (SELECT pg_catalog.count(*) FROM fn_base)
    )
    SELECT oid, pg_catalog.max(depth) AS depth FROM d GROUP BY oid
),
fn_uses AS (
    WITH RECURSIVE u(oid, uses) AS (
        SELECT oid, uses FROM fn_base
        UNION
        SELECT c.caller, u.uses FROM u JOIN fn_calls c ON c.callee = u.oid
    )
    SELECT oid, pg_catalog.max(uses) AS uses FROM u GROUP BY oid
),
fn AS (
    SELECT f.oid, f.prokind, f.sig, fd.depth, fu.uses
    FROM fn_base f JOIN fn_depth fd ON fd.oid = f.oid JOIN fn_uses fu ON fu.oid = f.oid
),
-- How many views stand between a view and the tables (0: it reads no other view), so that a
-- view is created after the views it reads.
view_deps AS (
    SELECT DISTINCT rw.ev_class AS view, d.refobjid AS uses
    FROM pg_rewrite rw JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
    JOIN rel u ON u.oid = d.refobjid AND u.relkind IN ('v', 'm')
    WHERE d.refobjid <> rw.ev_class
),
-- Per view, like fn_depth: (view, depth) pairs kept once, bounded by the number of views.
view_depth AS (
    WITH RECURSIVE chain(view, depth) AS (
        SELECT v.oid, 0 FROM rel v WHERE v.relkind IN ('v', 'm')
        UNION
        SELECT vd.view, chain.depth + 1 FROM chain JOIN view_deps vd ON vd.uses = chain.view
        WHERE chain.depth < (SELECT pg_catalog.count(*) FROM rel WHERE relkind IN ('v', 'm'))
    )
    SELECT view, pg_catalog.max(depth) AS depth FROM chain GROUP BY view
),
-- `opts`: every option; `unbounded`: those but start and bounds, which an identity column's
-- definition cannot write for a sequence of another type than its column (CREATE checks them
-- against the column's type): ALTER SEQUENCE … AS sets them later (95) from `bounds`.
seq_opts AS (
    SELECT s.seqrelid,
           ' START WITH ' || s.seqstart || ' INCREMENT BY ' || s.seqincrement
           || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax
           || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END AS opts,
           ' INCREMENT BY ' || s.seqincrement
           || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END AS unbounded,
           ' START WITH ' || s.seqstart || ' RESTART WITH ' || s.seqstart
           || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax AS bounds
    FROM pg_sequence s
),
-- The sequence behind each identity column.
identity_seq AS (
    SELECT d.refobjid AS relid, d.refobjsubid AS attnum, d.objid AS seqid
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype = 'i' AND d.refobjsubid > 0
      AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid AND s.relkind = 'S')
),
-- `def` is the column as CREATE TABLE writes it; `opts` its part after the name, type and
-- collation, which is all a typed table's column (CREATE TABLE … OF type) may add.
col AS (
    SELECT c.attrelid, c.attnum, c.attname, c.head || c.opts AS def, c.opts, c.ident
    FROM (SELECT a.attrelid, a.attnum, a.attname, ic.ident,
           pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
                   THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END AS head,
           CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') STORED'
                   WHEN a.attgenerated = 'v' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') VIRTUAL'
                   WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                   ELSE '' END
           || coalesce(' ' || ic.ident, '')
           -- PostgreSQL 18+ names a NOT NULL constraint: the name is written where it is not
           -- the server's (`<table>_<column>_not_null`), and a NOT VALID one is added later (90).
           || CASE WHEN NOT a.attnotnull OR NOT coalesce(nn.convalidated, true) THEN ''
                   WHEN nn.conname::text IS DISTINCT FROM pg_catalog.concat(tc.relname::text, '_', a.attname::text, '_not_null')
                        AND nn.conname IS NOT NULL
                   THEN ' CONSTRAINT ' || pg_catalog.quote_ident(nn.conname) || ' NOT NULL'
                   ELSE ' NOT NULL' END AS opts
    FROM pg_attribute a
    JOIN pg_class tc ON tc.oid = a.attrelid
    JOIN pg_type ty ON ty.oid = a.atttypid
    LEFT JOIN pg_constraint nn ON nn.conrelid = a.attrelid AND nn.contype = 'n' AND nn.conkey = ARRAY[a.attnum]
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN identity_seq iseq ON iseq.relid = a.attrelid AND iseq.attnum = a.attnum
    -- `ident`: the identity as a column definition and ALTER COLUMN … ADD write it (its
    -- sequence's type, which they have no words for, is set in section 95). NULL where the
    -- column has no sequence of its own: PostgreSQL 17+ marks a partition's column identity
    -- when its parent's is; ATTACH gives it, so the partition's column does not say it.
    CROSS JOIN LATERAL (SELECT
        CASE WHEN a.attidentity IN ('a', 'd') AND iseq.seqid IS NOT NULL THEN
             'GENERATED ' || CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END
             || ' AS IDENTITY (SEQUENCE NAME ' || iseq.seqid::regclass::text
             || coalesce((SELECT CASE WHEN q.seqtypid = a.atttypid THEN so.opts ELSE so.unbounded END
                          FROM seq_opts so JOIN pg_sequence q ON q.seqrelid = so.seqrelid
                          WHERE so.seqrelid = iseq.seqid), '') || ')'
        END AS ident) ic
    WHERE a.attnum > 0 AND NOT a.attisdropped) c
),
-- Constraints written inside CREATE TABLE: the valid checks of tables that are not partitions.
-- Primary keys, unique and exclusion constraints are added right after the table (64): CREATE
-- TABLE silently drops a unique constraint that repeats the primary key's columns, ALTER TABLE
-- keeps it. Everything else is added after every table (90).
inline_con AS (
    SELECT con.oid, con.conrelid FROM pg_constraint con JOIN tbl t ON t.oid = con.conrelid
    WHERE NOT t.relispartition AND con.conislocal AND con.contype = 'c' AND con.convalidated
),
-- The types the dump creates: enums, ranges, domains, composite types.
ty_own AS (
    SELECT ty.oid, ty.typtype FROM pg_type ty JOIN ns ON ns.oid = ty.typnamespace
    WHERE (ty.typtype IN ('e', 'r', 'd')
           OR (ty.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class tc WHERE tc.oid = ty.typrelid AND tc.relkind = 'c')))
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = ty.oid)
),
-- Which of them each is made of: a composite's attributes, a range's subtype, a domain's base
-- type and the types its checks and default name; an array stands for its element type and a
-- multirange for its range.
ty_uses AS (
    SELECT DISTINCT u.ty, coalesce(mr.rngtypid, el.oid, u.used) AS used
    FROM (SELECT t.oid AS ty, a.atttypid AS used
          FROM ty_own t JOIN pg_type ty ON ty.oid = t.oid
          JOIN pg_attribute a ON a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE t.typtype = 'c'
          UNION ALL
          SELECT r.rngtypid, r.rngsubtype FROM pg_range r JOIN ty_own t ON t.oid = r.rngtypid
          UNION ALL
          SELECT t.oid, ty.typbasetype FROM ty_own t JOIN pg_type ty ON ty.oid = t.oid WHERE t.typtype = 'd'
          UNION ALL
          SELECT t.oid, d.refobjid
          FROM ty_own t JOIN pg_constraint dc ON dc.contypid = t.oid
          JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = dc.oid AND d.refclassid = 'pg_type'::regclass
          UNION ALL
          SELECT t.oid, d.refobjid
          FROM ty_own t JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.refclassid = 'pg_type'::regclass
          WHERE t.typtype = 'd' AND d.deptype = 'n') u
    LEFT JOIN pg_type el ON el.typarray = u.used
    LEFT JOIN pg_range mr ON mr.rngmultitypid = coalesce(el.oid, u.used)
),
-- The longest chain of the dump's types each is made of, so that a type comes after those it
-- uses whatever their names. UNION (not UNION ALL) keeps one row per (type, depth): no call
-- path is enumerated.
ty_depth AS (
    WITH RECURSIVE chain(ty, depth) AS (
        SELECT oid, 0 FROM ty_own
        UNION
        SELECT u.ty, chain.depth + 1 FROM chain JOIN ty_uses u ON u.used = chain.ty
        WHERE chain.depth < 100 AND u.ty <> u.used
    )
    SELECT ty, pg_catalog.lpad(pg_catalog.max(depth)::text, 3, '0') AS depth FROM chain GROUP BY ty
),
-- Domains whose default calls one of the dump's functions or sequences (nextval): the default
-- is set once those exist (112), not in CREATE DOMAIN (30, before both).
dom_late_default AS (
    SELECT DISTINCT d.objid AS oid
    FROM pg_depend d JOIN ty_own t ON t.oid = d.objid AND t.typtype = 'd'
    WHERE d.classid = 'pg_type'::regclass AND d.deptype = 'n' AND d.refobjid >= 16384
      AND d.refclassid IN ('pg_proc'::regclass, 'pg_class'::regclass)
),
-- Casts made by CREATE CAST: not the built-in ones (below FirstNormalObjectId), nor an
-- extension's, nor those made with another object (a range's cast to its multirange).
cast_own AS (
    SELECT c.* FROM pg_cast c
    WHERE c.oid >= 16384
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_cast'::regclass AND ext.objid = c.oid)
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'i')
),
-- A partition's index that belongs to its parent's index, behind no constraint, whose name is
-- not the one the loading server would give it when the parent's index is made (ChooseIndexName's
-- `<partition>_<index columns>_idx`, where that fits in a name; a name with a number added
-- against a clash is dumped too).
hand_named AS (
    SELECT ic.oid
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN rel t ON t.oid = i.indrelid
    WHERE t.relispartition AND ic.relispartition
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
      AND ic.relname::text IS DISTINCT FROM (
          SELECT CASE WHEN pg_catalog.octet_length(n.name) <= 63 THEN n.name END
          FROM (SELECT t.relname::text || '_' || pg_catalog.string_agg(a.attname::text, '_' ORDER BY a.attnum) || '_idx' AS name
                FROM pg_attribute a WHERE a.attrelid = ic.oid AND a.attnum > 0) n)
),
-- Index trees: each index of a partitioned table that belongs to no other index (its root),
-- with the partitions' indexes that belong to it, at any depth.
idx_tree AS (
    WITH RECURSIVE m(root, idx, depth) AS (
        SELECT i.indexrelid, i.indexrelid, 0
        FROM pg_index i JOIN rel t ON t.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE t.relkind = 'p' AND NOT ic.relispartition
        UNION ALL
        SELECT m.root, inh.inhrelid, m.depth + 1 FROM m JOIN pg_inherits inh ON inh.inhparent = m.idx
    )
    SELECT * FROM m
),
-- The trees written index by index, as pg_dump writes every tree: the root ON ONLY its table,
-- each partition's index with its name (85, after every other partitioned index was made, so
-- none takes it), then attached to its parent's (87). Those are the trees that hold an index of
-- hand_named, whose name the server would not give the copy it makes (or would give another
-- copy: two indexes alike on a partitioned table); the others are written as one CREATE INDEX
-- that makes the whole tree. Not a tree that holds an index behind a constraint.
explicit_idx AS (
    SELECT x.root, x.idx, x.depth FROM idx_tree x
    WHERE x.root IN (SELECT y.root FROM idx_tree y JOIN hand_named h ON h.oid = y.idx)
      AND x.root NOT IN (SELECT y.root FROM idx_tree y JOIN pg_index i ON i.indexrelid = y.idx
                         JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                                              AND k.contype IN ('p', 'u', 'x'))
)
SELECT section, k1, k2, k3, stmt FROM (
-- 10: schemas (public too: IF NOT EXISTS makes it a no-op where it exists). A database without
-- the public schema drops the one every new database has, so the loaded one has none either.
SELECT 10 AS section, ns.nspname::text AS k1, '' AS k2, '' AS k3,
       'CREATE SCHEMA IF NOT EXISTS ' || pg_catalog.quote_ident(ns.nspname) || ';' AS stmt
FROM ns
UNION ALL
SELECT 10, 'public', '', '', 'DROP SCHEMA IF EXISTS public;'
WHERE NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = 'public')
UNION ALL
-- 20: extensions, into the schema they live in, at the version the loading server installs.
SELECT 20, e.extname::text, '', '',
       'CREATE EXTENSION IF NOT EXISTS ' || pg_catalog.quote_ident(e.extname)
       || ' WITH SCHEMA ' || e.extnamespace::regnamespace::text || ';'
FROM pg_extension e WHERE e.extname <> 'plpgsql'
UNION ALL
-- 30: types, each after the types it is made of (ty_depth), then enums (1), ranges (2),
-- domains (3), composites (4). A domain's NOT VALID checks are added right after it (CREATE
-- DOMAIN has no words for them).
SELECT 30, td.depth || ' 1', ty.oid::regtype::text, '',
       'CREATE TYPE ' || ty.oid::regtype::text || ' AS ENUM ('
       || coalesce((SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = ty.oid), '')
       || ');'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid
WHERE t.typtype = 'e'
UNION ALL
SELECT 30, td.depth || ' 2', ty.oid::regtype::text, '',
       'CREATE TYPE ' || ty.oid::regtype::text || ' AS RANGE (SUBTYPE = ' || pg_catalog.format_type(r.rngsubtype, NULL)
       || coalesce((SELECT ', SUBTYPE_OPCLASS = ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(o.opcname)
                    FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace
                    WHERE o.oid = r.rngsubopc AND NOT o.opcdefault), '')
       || CASE WHEN r.rngcollation <> 0 THEN ', COLLATION = ' || r.rngcollation::regcollation::text ELSE '' END
       || CASE WHEN r.rngsubdiff <> 0 THEN ', SUBTYPE_DIFF = ' || r.rngsubdiff::regproc::text ELSE '' END
       || ', MULTIRANGE_TYPE_NAME = ' || r.rngmultitypid::regtype::text
       || ');'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid JOIN pg_range r ON r.rngtypid = ty.oid
WHERE t.typtype = 'r'
UNION ALL
SELECT 30, td.depth || ' 3', ty.oid::regtype::text, '',
       'CREATE DOMAIN ' || ty.oid::regtype::text || ' AS ' || pg_catalog.format_type(ty.typbasetype, ty.typtypmod)
       || CASE WHEN ty.typcollation <> 0 AND ty.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = ty.typbasetype)
               THEN ' COLLATE ' || ty.typcollation::regcollation::text ELSE '' END
       || CASE WHEN ty.oid IN (SELECT oid FROM dom_late_default) THEN ''
               ELSE coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(ty.typdefaultbin, 0), '') END
       || CASE WHEN ty.typnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce((SELECT pg_catalog.string_agg(' CONSTRAINT ' || pg_catalog.quote_ident(dc.conname) || ' ' || pg_catalog.pg_get_constraintdef(dc.oid), '' ORDER BY dc.conname COLLATE "C")
                    FROM pg_constraint dc WHERE dc.contypid = ty.oid AND dc.contype = 'c' AND dc.convalidated), '')
       || ';'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid
WHERE t.typtype = 'd'
UNION ALL
-- A domain over a domain takes its base's default in CREATE DOMAIN: one whose own was dropped
-- drops it again (key ' ': right after its CREATE DOMAIN).
SELECT 30, td.depth || ' 3', ty.oid::regtype::text, ' ',
       'ALTER DOMAIN ' || ty.oid::regtype::text || ' DROP DEFAULT;'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid
JOIN pg_type b ON b.oid = ty.typbasetype
WHERE t.typtype = 'd' AND ty.typdefaultbin IS NULL AND b.typtype = 'd' AND b.typdefaultbin IS NOT NULL
UNION ALL
SELECT 30, td.depth || ' 3', ty.oid::regtype::text, dc.conname::text,
       'ALTER DOMAIN ' || ty.oid::regtype::text || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(dc.conname)
       || ' ' || pg_catalog.pg_get_constraintdef(dc.oid) || ';'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid
JOIN pg_constraint dc ON dc.contypid = ty.oid AND dc.contype = 'c' AND NOT dc.convalidated
UNION ALL
SELECT 30, td.depth || ' 4', ty.oid::regtype::text, '',
       'CREATE TYPE ' || ty.oid::regtype::text || ' AS ('
       || coalesce((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                          || CASE WHEN a.attcollation <> 0 AND a.attcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = a.atttypid)
                                  THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END,
                          ', ' ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || ');'
FROM ty_own t JOIN ty_depth td ON td.ty = t.oid JOIN pg_type ty ON ty.oid = t.oid
WHERE t.typtype = 'c'
UNION ALL
-- 45: casts (cast_own), after the types and functions they name and before the tables, whose
-- defaults may use them.
SELECT 45, pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL), '',
       'CREATE CAST (' || pg_catalog.format_type(c.castsource, NULL) || ' AS ' || pg_catalog.format_type(c.casttarget, NULL) || ') '
       || CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || c.castfunc::regprocedure::text
                            WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END
       || CASE c.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END
       || ';'
FROM cast_own c
UNION ALL
-- 40: functions and procedures that need no relation; 47: those whose SQL-standard body uses
-- a cast made by CREATE CAST (45); 98: those that need tables, 110: views.
SELECT CASE fn.uses WHEN 0 THEN 40 WHEN 1 THEN 47 WHEN 2 THEN 98 ELSE 110 END, pg_catalog.lpad(fn.depth::text, 3, '0'), fn.sig, '',
       pg_catalog.rtrim(pg_catalog.pg_get_functiondef(fn.oid), E'\n') || ';'
FROM fn
UNION ALL
-- 50: sequences that are no identity column's; 95: their OWNED BY.
SELECT 50, s.qname, '', '',
       'CREATE ' || CASE WHEN s.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END || 'SEQUENCE ' || s.qname
       || ' AS ' || pg_catalog.format_type(q.seqtypid, NULL) || so.opts || ';'
FROM rel s JOIN pg_sequence q ON q.seqrelid = s.oid JOIN seq_opts so ON so.seqrelid = s.oid
WHERE s.relkind = 'S' AND NOT EXISTS (SELECT 1 FROM identity_seq i WHERE i.seqid = s.oid)
UNION ALL
-- An identity sequence whose type is not its column's (ALTER SEQUENCE … AS, which an identity
-- column's definition cannot say), with its start and bounds (seq_opts).
SELECT 95, s.qname, '', '',
       'ALTER SEQUENCE ' || s.qname || ' AS ' || pg_catalog.format_type(q.seqtypid, NULL) || so.bounds || ';'
FROM identity_seq i JOIN rel s ON s.oid = i.seqid JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN seq_opts so ON so.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = i.relid AND a.attnum = i.attnum
WHERE q.seqtypid <> a.atttypid
UNION ALL
SELECT 95, s.qname, '', '',
       'ALTER SEQUENCE ' || s.qname || ' OWNED BY ' || d.refobjid::regclass::text || '.'
       || pg_catalog.quote_ident((SELECT a.attname FROM pg_attribute a WHERE a.attrelid = d.refobjid AND a.attnum = d.refobjsubid)) || ';'
FROM rel s JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a' AND d.refobjsubid > 0
WHERE s.relkind = 'S'
UNION ALL
-- 60: tables that are not partitions, with their columns and inline constraints. A typed table
-- (CREATE TABLE … OF type) has its type's columns: only their options are written
-- (`col WITH OPTIONS DEFAULT …`), and the parentheses only when there is something in them.
SELECT 60, t.qname, '', '',
       -- A column that comes out NULL (a catalog state this query does not know) makes the
       -- statement NULL, which the dump refuses (src/dump/mod.rs): never a column left out.
       CASE WHEN EXISTS (SELECT 1 FROM col c WHERE c.attrelid = t.oid AND c.def IS NULL) THEN NULL ELSE '' END
       || 'CREATE ' || CASE WHEN t.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END || 'TABLE ' || t.qname
       || CASE WHEN t.reloftype = 0 THEN ' (' || coalesce(E'\n    ' || pg_catalog.array_to_string(e.items, E',\n    '), '') || E'\n)'
               ELSE ' OF ' || t.reloftype::regtype::text
                    || CASE WHEN pg_catalog.cardinality(e.items) > 0
                            THEN E' (\n    ' || pg_catalog.array_to_string(e.items, E',\n    ') || E'\n)' ELSE '' END END
       || CASE WHEN t.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(t.oid) ELSE '' END
       || coalesce(' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_am am WHERE am.oid = t.relam AND am.amname <> 'heap'), '')
       || coalesce((SELECT ro.with_clause FROM relopts ro WHERE ro.oid = t.oid), '')
       || ';'
FROM tbl t
CROSS JOIN LATERAL (SELECT
    ARRAY(SELECT CASE WHEN t.reloftype <> 0 THEN pg_catalog.quote_ident(c.attname) || ' WITH OPTIONS' || c.opts ELSE c.def END
          FROM col c WHERE c.attrelid = t.oid AND (t.reloftype = 0 OR c.opts <> '') ORDER BY c.attnum)
    || ARRAY(SELECT 'CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid)
             FROM inline_con ic JOIN pg_constraint con ON con.oid = ic.oid
             WHERE ic.conrelid = t.oid
             ORDER BY con.conname COLLATE "C") AS items) e
WHERE NOT t.relispartition
UNION ALL
-- 62: column settings CREATE TABLE has no words for: storage, compression, statistics target
-- (where not the type's default), options (n_distinct …); 75: a partition's columns where they
-- differ from its parent's (a partition made PARTITION OF got the parent's default, NOT NULL,
-- storage and compression; not its options). A column's `pg_…` options are the server's own
-- (it sets and replaces them itself) and are left out.
SELECT CASE WHEN t.relispartition THEN 75 ELSE 62 END, t.qname, pg_catalog.lpad(a.attnum::text, 5, '0'), x.ord::text,
       'ALTER TABLE ONLY ' || t.qname || ' ALTER COLUMN ' || pg_catalog.quote_ident(a.attname) || ' ' || x.change || ';'
FROM tbl t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_inherits inh ON inh.inhrelid = t.oid AND t.relispartition AND t.oid NOT IN (SELECT oid FROM standalone)
LEFT JOIN pg_attribute pa ON pa.attrelid = inh.inhparent AND pa.attname = a.attname AND NOT pa.attisdropped
LEFT JOIN pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
CROSS JOIN LATERAL (VALUES
    (1, CASE WHEN inh.inhrelid IS NOT NULL AND a.attgenerated = '' AND pa.attrelid IS NOT NULL
                  AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) IS DISTINCT FROM pg_catalog.pg_get_expr(pd.adbin, pd.adrelid)
             THEN coalesce('SET DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), 'DROP DEFAULT') END),
    (2, CASE WHEN inh.inhrelid IS NOT NULL AND a.attnotnull AND NOT pa.attnotnull THEN 'SET NOT NULL' END),
    (3, CASE WHEN a.attstorage <> CASE WHEN inh.inhrelid IS NOT NULL THEN pa.attstorage ELSE ty.typstorage END
             THEN 'SET STORAGE ' || CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL'
                                                      WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END END),
    (4, CASE WHEN a.attcompression <> CASE WHEN inh.inhrelid IS NOT NULL THEN pa.attcompression ELSE '' END
             THEN 'SET COMPRESSION ' || CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' ELSE 'DEFAULT' END END),
    (5, CASE WHEN coalesce(a.attstattarget::int, -1) >= 0 THEN 'SET STATISTICS ' || a.attstattarget END),
    -- A partition's own identity column (PostgreSQL 14-16; 17+ refuses one), after SET NOT NULL.
    (7, CASE WHEN inh.inhrelid IS NOT NULL THEN 'ADD ' || (SELECT c.ident FROM col c WHERE c.attrelid = a.attrelid AND c.attnum = a.attnum) END),
    (6, 'SET (' || NULLIF(pg_catalog.array_to_string(
            ARRAY(SELECT o FROM pg_catalog.unnest(a.attoptions) AS o WHERE pg_catalog.left(o, 3) <> 'pg_' ORDER BY o COLLATE "C"),
            ', '), '') || ')')
) x(ord, change)
WHERE x.change IS NOT NULL
UNION ALL
-- 70: partitions, after their parent, in bound order (the DEFAULT partition last). One of
-- `standalone` is made as a table (with the checks it has from its parent, which ATTACH
-- requires), given its copies of its parent's primary key, unique and exclusion constraints,
-- and attached.
SELECT 70, pg_catalog.lpad(((SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(t.oid)) - 1)::text, 3, '0') || ' ' || i.inhparent::regclass::text,
       CASE WHEN pg_catalog.pg_get_expr(t.relpartbound, t.oid) = 'DEFAULT' THEN '2' ELSE '1 ' || pg_catalog.pg_get_expr(t.relpartbound, t.oid) END,
       t.qname || ' 1',
       CASE WHEN EXISTS (SELECT 1 FROM col c WHERE c.attrelid = t.oid AND c.def IS NULL) THEN NULL ELSE '' END
       || 'CREATE ' || CASE WHEN t.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END || 'TABLE ' || t.qname
       || CASE WHEN t.oid IN (SELECT oid FROM standalone)
               THEN ' (' || coalesce(E'\n    ' || pg_catalog.array_to_string(
                        ARRAY(SELECT c.def FROM col c WHERE c.attrelid = t.oid ORDER BY c.attnum)
                        || ARRAY(SELECT 'CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid)
                                 FROM pg_constraint con
                                 WHERE con.conrelid = t.oid
                                   AND con.contype = 'c' AND con.coninhcount > 0 AND con.convalidated
                                 ORDER BY con.conname COLLATE "C"),
                        E',\n    '), '') || E'\n)'
               ELSE ' PARTITION OF ' || i.inhparent::regclass::text || ' ' || pg_catalog.pg_get_expr(t.relpartbound, t.oid) END
       || CASE WHEN t.relkind = 'p' THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(t.oid) ELSE '' END
       || coalesce(' USING ' || (SELECT pg_catalog.quote_ident(am.amname) FROM pg_am am WHERE am.oid = t.relam AND am.amname <> 'heap'), '')
       || coalesce((SELECT ro.with_clause FROM relopts ro WHERE ro.oid = t.oid), '')
       || ';'
FROM tbl t JOIN pg_inherits i ON i.inhrelid = t.oid
WHERE t.relispartition
UNION ALL
-- A standalone partition's copies of its parent's keys, each by ALTER TABLE (CREATE TABLE
-- drops a unique constraint alike its primary key, and makes the primary key first) in the
-- order its parent's are made (64: the primary key, then by name). ATTACH gives each parent
-- constraint, in the order they were made, the first alike copy not yet taken in the order
-- the copies were made: so each copy goes back to its own parent constraint.
SELECT 70, pg_catalog.lpad(((SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(t.oid)) - 1)::text, 3, '0') || ' ' || i.inhparent::regclass::text,
       CASE WHEN pg_catalog.pg_get_expr(t.relpartbound, t.oid) = 'DEFAULT' THEN '2' ELSE '1 ' || pg_catalog.pg_get_expr(t.relpartbound, t.oid) END,
       t.qname || ' 2 ' || CASE WHEN pc.contype = 'p' THEN '1 ' ELSE '2 ' END || pc.conname::text,
       'ALTER TABLE ' || t.qname || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid) || ';'
FROM tbl t JOIN pg_inherits i ON i.inhrelid = t.oid
JOIN pg_constraint con ON con.conrelid = t.oid AND con.contype IN ('p', 'u', 'x') AND con.conparentid <> 0
JOIN pg_constraint pc ON pc.oid = con.conparentid
WHERE t.oid IN (SELECT oid FROM standalone)
UNION ALL
SELECT 70, pg_catalog.lpad(((SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(t.oid)) - 1)::text, 3, '0') || ' ' || i.inhparent::regclass::text,
       CASE WHEN pg_catalog.pg_get_expr(t.relpartbound, t.oid) = 'DEFAULT' THEN '2' ELSE '1 ' || pg_catalog.pg_get_expr(t.relpartbound, t.oid) END,
       t.qname || ' 3',
       'ALTER TABLE ' || i.inhparent::regclass::text || ' ATTACH PARTITION ' || t.qname || ' ' || pg_catalog.pg_get_expr(t.relpartbound, t.oid) || ';'
FROM tbl t JOIN pg_inherits i ON i.inhrelid = t.oid
WHERE t.oid IN (SELECT oid FROM standalone)
UNION ALL
-- 80: indexes of tables (85: of partitions, made by the partition itself, not its parent;
-- 105: of materialized views). Indexes behind a constraint come with the constraint.
SELECT CASE WHEN t.relkind = 'm' THEN 105 WHEN t.relispartition THEN 85 ELSE 80 END,
       CASE WHEN t.relispartition THEN '1 ' ELSE '' END || t.qname, ic.relname::text, '',
       -- A partitioned table's index is dumped without ONLY, so that it is made on every
       -- partition too (and valid), as CREATE INDEX made it; the root of a tree of
       -- explicit_idx with ONLY (its partitions' indexes are made and attached below).
       CASE WHEN i.indexrelid IN (SELECT root FROM explicit_idx) THEN pg_catalog.pg_get_indexdef(i.indexrelid)
            ELSE pg_catalog.replace(pg_catalog.pg_get_indexdef(i.indexrelid), ' ON ONLY ' || t.qname || ' USING ', ' ON ' || t.qname || ' USING ') END
       || ';'
FROM rel t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE t.relkind IN ('r', 'p', 'm') AND NOT ic.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
UNION ALL
-- 85 (after the partitions' own indexes, which may make copies of theirs in their partitions):
-- the partitions' indexes of explicit_idx, each with its name (ONLY where the partition is
-- partitioned itself); 87: each attached to its parent's, deepest first, so that every index
-- of the tree is valid at the end.
SELECT 85, '2 ' || t.qname, ic.relname::text, '', pg_catalog.pg_get_indexdef(i.indexrelid) || ';'
FROM explicit_idx x JOIN pg_index i ON i.indexrelid = x.idx JOIN rel t ON t.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE x.depth > 0
UNION ALL
SELECT 87, pg_catalog.lpad((100 - x.depth)::text, 3, '0') || ' ' || t.qname, ic.relname::text, '',
       'ALTER INDEX ' || pi.inhparent::regclass::text || ' ATTACH PARTITION ' || ic.oid::regclass::text || ';'
FROM explicit_idx x JOIN pg_index i ON i.indexrelid = x.idx JOIN rel t ON t.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_inherits pi ON pi.inhrelid = ic.oid
WHERE x.depth > 0
UNION ALL
-- 86: CLUSTER ON (106 for a materialized view: after the view and its indexes).
SELECT CASE WHEN t.relkind = 'm' THEN 106 ELSE 86 END, t.qname, '', '',
       'ALTER TABLE ONLY ' || t.qname || ' CLUSTER ON ' || pg_catalog.quote_ident(ic.relname) || ';'
FROM rel t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE t.relkind IN ('r', 'm') AND i.indisclustered
UNION ALL
-- 64: primary keys, unique and exclusion constraints of tables that are not partitions, before
-- the partitions (which get them from their parent); 90: constraints added after every table:
-- foreign keys (so a cycle between two tables loads), checks and (18+) NOT NULLs NOT VALID, and a partition's own
-- constraints (not those it has from its parent).
SELECT CASE WHEN NOT t.relispartition AND con.contype IN ('p', 'u', 'x') THEN 64 ELSE 90 END,
       t.qname,
       CASE WHEN con.contype = 'p' THEN '1 ' ELSE '2 ' END || con.conname::text, '',
       'ALTER TABLE ' || CASE WHEN t.relkind = 'r' AND con.contype <> 'f' THEN 'ONLY ' ELSE '' END || t.qname
       || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid) || ';'
FROM tbl t JOIN pg_constraint con ON con.conrelid = t.oid
WHERE (con.contype IN ('p', 'u', 'x', 'c', 'f') OR (con.contype = 'n' AND NOT con.convalidated))
  AND con.conparentid = 0 AND con.conislocal
  AND NOT EXISTS (SELECT 1 FROM inline_con ic WHERE ic.oid = con.oid)
  AND NOT (t.relispartition AND con.coninhcount > 0)
UNION ALL
-- 96: replica identity other than the default.
SELECT 96, t.qname, '', '',
       'ALTER TABLE ONLY ' || t.qname || ' REPLICA IDENTITY '
       || CASE t.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING'
               ELSE 'USING INDEX ' || pg_catalog.quote_ident((SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = t.oid AND i.indisreplident)) END
       || ';'
FROM tbl t WHERE t.relreplident <> 'd'
  AND NOT (t.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = t.oid AND i.indisreplident))
UNION ALL
-- 100: views and materialized views, each after the views it reads, and a view's column
-- defaults right after it. A materialized view is always created WITH NO DATA, as
-- `pg_dump --schema-only` does: its query may fail on the empty tables of the load, and whether
-- the dumped one is populated is state, not schema (it does not change the dump).
SELECT 100, pg_catalog.lpad(vd.depth::text, 3, '0'), v.qname, '',
       'CREATE ' || CASE WHEN v.relkind = 'm' THEN 'MATERIALIZED ' ELSE '' END || 'VIEW ' || v.qname
       || coalesce((SELECT ro.with_clause FROM relopts ro WHERE ro.oid = v.oid), '')
       || E' AS\n' || pg_catalog.rtrim(pg_catalog.pg_get_viewdef(v.oid), E';\n')
       || CASE WHEN v.relkind = 'm' THEN E'\n  WITH NO DATA' ELSE '' END
       || ';'
FROM rel v JOIN view_depth vd ON vd.view = v.oid
UNION ALL
SELECT 100, pg_catalog.lpad(vd.depth::text, 3, '0'), v.qname, pg_catalog.lpad(a.attnum::text, 5, '0'),
       'ALTER VIEW ' || v.qname || ' ALTER COLUMN ' || pg_catalog.quote_ident(a.attname)
       || ' SET DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ';'
FROM rel v JOIN view_depth vd ON vd.view = v.oid
JOIN pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE v.relkind = 'v'
UNION ALL
-- 107: statistics targets of index columns (ALTER INDEX … ALTER COLUMN n SET STATISTICS), once
-- every index exists.
SELECT 107, ic.oid::regclass::text, pg_catalog.lpad(a.attnum::text, 5, '0'), '',
       'ALTER INDEX ' || ic.oid::regclass::text || ' ALTER COLUMN ' || a.attnum || ' SET STATISTICS ' || a.attstattarget || ';'
FROM rel ic JOIN pg_attribute a ON a.attrelid = ic.oid AND a.attnum > 0
WHERE ic.relkind IN ('i', 'I') AND coalesce(a.attstattarget::int, -1) >= 0
UNION ALL
-- 89: a partition's copy of its parent's foreign key named otherwise than the parent's (the name
-- the server gives the copy): added before the parent's (90, deepest partitions first), which
-- then takes it as its copy instead of making one.
SELECT 89, pg_catalog.lpad((100 - (SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(t.oid)))::text, 3, '0') || ' ' || t.qname,
       con.conname::text, '',
       'ALTER TABLE ' || t.qname || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ' || pg_catalog.pg_get_constraintdef(con.oid) || ';'
FROM tbl t JOIN pg_constraint con ON con.conrelid = t.oid JOIN pg_constraint pc ON pc.oid = con.conparentid
WHERE t.relispartition AND con.contype = 'f' AND con.conname <> pc.conname
UNION ALL
-- 92: a partition's check that it has from its parent's, validated where the parent's is not
-- (the parent's ADD CONSTRAINT … NOT VALID, 90, makes the copies not valid).
SELECT 92, t.qname, con.conname::text, '',
       'ALTER TABLE ' || CASE WHEN t.relkind = 'r' THEN 'ONLY ' ELSE '' END || t.qname || ' VALIDATE CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ';'
FROM tbl t JOIN pg_constraint con ON con.conrelid = t.oid
WHERE t.relispartition AND con.contype = 'c' AND con.coninhcount > 0 AND con.convalidated
  AND EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_constraint pc ON pc.conrelid = i.inhparent
              WHERE i.inhrelid = t.oid AND pc.conname = con.conname AND pc.contype = 'c' AND NOT pc.convalidated)
UNION ALL
-- 112: the defaults of dom_late_default, after every function and sequence.
SELECT 112, ty.oid::regtype::text, '', '',
       'ALTER DOMAIN ' || ty.oid::regtype::text || ' SET DEFAULT ' || pg_catalog.pg_get_expr(ty.typdefaultbin, 0) || ';'
FROM dom_late_default l JOIN pg_type ty ON ty.oid = l.oid
WHERE ty.typdefaultbin IS NOT NULL
UNION ALL
-- 120: triggers (not those a partition has from its parent's, nor constraint internals).
SELECT 120, t.qname, tg.tgname::text, '', pg_catalog.pg_get_triggerdef(tg.oid) || ';'
       || CASE tg.tgenabled WHEN 'O' THEN ''
               ELSE E'\nALTER TABLE ' || t.qname || ' '
                    || CASE tg.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END
                    || ' TRIGGER ' || pg_catalog.quote_ident(tg.tgname) || ';' END
FROM rel t JOIN pg_trigger tg ON tg.tgrelid = t.oid
WHERE NOT tg.tgisinternal AND tg.tgparentid = 0
UNION ALL
-- 122: a trigger a partition has from its parent's, enabled or disabled unlike the parent's
-- (the parent's ALTER TABLE … TRIGGER above reaches its partitions), shallowest first.
SELECT 122, pg_catalog.lpad((SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(t.oid))::text, 3, '0') || ' ' || t.qname,
       tg.tgname::text, '',
       'ALTER TABLE ' || t.qname || ' '
       || CASE tg.tgenabled WHEN 'O' THEN 'ENABLE' WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END
       || ' TRIGGER ' || pg_catalog.quote_ident(tg.tgname) || ';'
FROM rel t JOIN pg_trigger tg ON tg.tgrelid = t.oid JOIN pg_trigger ptg ON ptg.oid = tg.tgparentid
-- (Before PostgreSQL 15 a clone is marked internal: a clone of a trigger of no constraint is not.)
WHERE (NOT tg.tgisinternal OR tg.tgconstraint = 0) AND tg.tgenabled <> ptg.tgenabled
UNION ALL
-- 130: row level security and policies (ENABLE and FORCE are independent switches: either
-- may be on without the other).
SELECT 130, t.qname, '', '',
       pg_catalog.concat_ws(E'\n',
           CASE WHEN t.relrowsecurity THEN 'ALTER TABLE ' || t.qname || ' ENABLE ROW LEVEL SECURITY;' END,
           CASE WHEN t.relforcerowsecurity THEN 'ALTER TABLE ' || t.qname || ' FORCE ROW LEVEL SECURITY;' END)
FROM tbl t WHERE t.relrowsecurity OR t.relforcerowsecurity
UNION ALL
SELECT 130, t.qname, pol.polname::text, '',
    'CREATE POLICY ' || pg_catalog.quote_ident(pol.polname) || ' ON ' || t.qname
    || ' AS ' || CASE WHEN pol.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END
    || ' FOR ' || CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
    || ' TO ' || (SELECT pg_catalog.string_agg(r.name, ', ' ORDER BY r.name COLLATE "C")
                  FROM (SELECT CASE WHEN u.role = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(u.role)) END AS name
                        FROM pg_catalog.unnest(pol.polroles) AS u(role)) r)
    || coalesce(' USING (' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) || ')', '')
    || coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid) || ')', '')
    || ';'
FROM tbl t JOIN pg_policy pol ON pol.polrelid = t.oid
UNION ALL
-- 140: comments.
SELECT 140, '1 ' || ns.nspname::text, '', '',
       'COMMENT ON SCHEMA ' || pg_catalog.quote_ident(ns.nspname) || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM ns JOIN pg_description d ON d.classoid = 'pg_namespace'::regclass AND d.objoid = ns.oid AND d.objsubid = 0
-- The comment every database's public schema has (whose owner, before PostgreSQL 15 the
-- bootstrap superuser, is the only role that may set it).
WHERE NOT (ns.nspname = 'public' AND d.description = 'standard public schema')
UNION ALL
SELECT 140, '2 ' || r.qname, pg_catalog.lpad(d.objsubid::text, 5, '0'), '',
       'COMMENT ON '
       || CASE WHEN d.objsubid > 0 THEN 'COLUMN ' || r.qname || '.' || pg_catalog.quote_ident((SELECT a.attname FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attnum = d.objsubid))
               ELSE CASE r.relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW ' WHEN 'S' THEN 'SEQUENCE '
                                   WHEN 'i' THEN 'INDEX ' WHEN 'I' THEN 'INDEX ' ELSE 'TABLE ' END || r.qname END
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
-- A partition's index made for its parent's gets the same name on load: the server's rule, or,
-- where the name is not the rule's, its own (`explicit_idx`, section 85).
FROM rel r JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = r.oid
UNION ALL
SELECT 140, '3 ' || fn.sig, '', '',
       'COMMENT ON ' || CASE WHEN fn.prokind = 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || fn.sig
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM fn JOIN pg_description d ON d.classoid = 'pg_proc'::regclass AND d.objoid = fn.oid
UNION ALL
SELECT 140, '4 ' || ty.oid::regtype::text, '', '',
       'COMMENT ON ' || CASE WHEN ty.typtype = 'd' THEN 'DOMAIN ' ELSE 'TYPE ' END || ty.oid::regtype::text
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM ty_own t JOIN pg_type ty ON ty.oid = t.oid
JOIN pg_description d ON d.classoid = 'pg_type'::regclass AND d.objoid = ty.oid
UNION ALL
-- A composite type's columns (their comments are the type's pg_class row's).
SELECT 140, '4 ' || ty.oid::regtype::text, '1 ' || pg_catalog.lpad(a.attnum::text, 5, '0'), '',
       'COMMENT ON COLUMN ' || ty.oid::regtype::text || '.' || pg_catalog.quote_ident(a.attname)
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM ty_own t JOIN pg_type ty ON ty.oid = t.oid
JOIN pg_attribute a ON a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid AND d.objsubid = a.attnum
WHERE t.typtype = 'c'
UNION ALL
SELECT 140, '4 ' || ty.oid::regtype::text, '2 ' || dc.conname::text, '',
       'COMMENT ON CONSTRAINT ' || pg_catalog.quote_ident(dc.conname) || ' ON DOMAIN ' || ty.oid::regtype::text
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM ty_own t JOIN pg_type ty ON ty.oid = t.oid JOIN pg_constraint dc ON dc.contypid = ty.oid
JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = dc.oid
UNION ALL
SELECT 140, '5 ' || t.qname, con.conname::text, '',
       'COMMENT ON CONSTRAINT ' || pg_catalog.quote_ident(con.conname) || ' ON ' || t.qname
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM tbl t JOIN pg_constraint con ON con.conrelid = t.oid
JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = con.oid
-- A partition's copy of its parent's primary key, unique or exclusion constraint has the same
-- name on load (the server's, or its own: hand_named_con); a foreign key's copy may not.
WHERE con.conparentid = 0 OR con.contype IN ('p', 'u', 'x')
UNION ALL
SELECT 140, '6 ' || t.qname, tg.tgname::text, '',
       'COMMENT ON TRIGGER ' || pg_catalog.quote_ident(tg.tgname) || ' ON ' || t.qname
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM rel t JOIN pg_trigger tg ON tg.tgrelid = t.oid
JOIN pg_description d ON d.classoid = 'pg_trigger'::regclass AND d.objoid = tg.oid
-- A partition's clone of its parent's trigger too: it has the parent's trigger's name.
WHERE NOT tg.tgisinternal OR (tg.tgparentid <> 0 AND tg.tgconstraint = 0)
UNION ALL
-- An extension's comment where it is not the one its control file gives (CREATE EXTENSION sets that).
SELECT 140, '0 ' || e.extname::text, '', '',
       'COMMENT ON EXTENSION ' || pg_catalog.quote_ident(e.extname) || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM pg_extension e JOIN pg_description d ON d.classoid = 'pg_extension'::regclass AND d.objoid = e.oid AND d.objsubid = 0
WHERE e.extname <> 'plpgsql'
  AND d.description IS DISTINCT FROM (SELECT x.comment FROM pg_catalog.pg_available_extensions() x(name, default_version, comment) WHERE x.name = e.extname)
UNION ALL
SELECT 140, '7 ' || t.qname, pol.polname::text, '',
       'COMMENT ON POLICY ' || pg_catalog.quote_ident(pol.polname) || ' ON ' || t.qname
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM tbl t JOIN pg_policy pol ON pol.polrelid = t.oid
JOIN pg_description d ON d.classoid = 'pg_policy'::regclass AND d.objoid = pol.oid
UNION ALL
SELECT 140, '8 ' || pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL), '',
       'COMMENT ON CAST (' || pg_catalog.format_type(c.castsource, NULL) || ' AS ' || pg_catalog.format_type(c.casttarget, NULL) || ')'
       || ' IS ' || pg_catalog.quote_literal(d.description) || ';'
FROM cast_own c JOIN pg_description d ON d.classoid = 'pg_cast'::regclass AND d.objoid = c.oid
) AS statements
