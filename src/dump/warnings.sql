-- What a schema dump cannot represent, one line each, so that the dump says so instead of
-- silently leaving it out. Run like catalog.sql (search_path = '').
WITH ext AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
),
ns AS (
    SELECT n.oid FROM pg_namespace n
    WHERE n.nspname::text !~ '^pg_' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_namespace'::regclass AND ext.objid = n.oid)
),
mine AS (
    -- (catalog, oid, what it is) of every object in the dumped schemas that no extension owns.
    SELECT 'pg_class'::regclass AS classid, c.oid, c.relkind::text AS what FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
    UNION ALL SELECT 'pg_proc'::regclass, p.oid, 'proc ' || p.prokind::text FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
    UNION ALL SELECT 'pg_operator'::regclass, o.oid, 'operator' FROM pg_operator o JOIN ns ON ns.oid = o.oprnamespace
    UNION ALL SELECT 'pg_collation'::regclass, o.oid, 'collation' FROM pg_collation o JOIN ns ON ns.oid = o.collnamespace
    UNION ALL SELECT 'pg_opclass'::regclass, o.oid, 'operator class' FROM pg_opclass o JOIN ns ON ns.oid = o.opcnamespace
    UNION ALL SELECT 'pg_opfamily'::regclass, o.oid, 'operator family' FROM pg_opfamily o JOIN ns ON ns.oid = o.opfnamespace
    UNION ALL SELECT 'pg_conversion'::regclass, o.oid, 'conversion' FROM pg_conversion o JOIN ns ON ns.oid = o.connamespace
    UNION ALL SELECT 'pg_ts_config'::regclass, o.oid, 'text search configuration' FROM pg_ts_config o JOIN ns ON ns.oid = o.cfgnamespace
    UNION ALL SELECT 'pg_ts_dict'::regclass, o.oid, 'text search dictionary' FROM pg_ts_dict o JOIN ns ON ns.oid = o.dictnamespace
    UNION ALL SELECT 'pg_statistic_ext'::regclass, o.oid, 'statistics object' FROM pg_statistic_ext o JOIN ns ON ns.oid = o.stxnamespace
),
own AS (
    SELECT * FROM mine WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = mine.classid AND ext.objid = mine.oid)
)
SELECT line FROM (
SELECT 'table ' || i.inhrelid::regclass::text || ' inherits from ' || i.inhparent::regclass::text
       || ' (table inheritance other than partitioning is not dumped; the table is dumped without it)' AS line
FROM pg_inherits i JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = i.inhrelid
JOIN pg_class c ON c.oid = i.inhrelid
WHERE NOT c.relispartition
UNION ALL
SELECT 'partition ' || i.inhrelid::regclass::text || ' is being detached (DETACH CONCURRENTLY did not finish); it is dumped as a partition'
FROM pg_inherits i JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = i.inhrelid
WHERE i.inhdetachpending
UNION ALL
SELECT 'rule ' || pg_catalog.quote_ident(rw.rulename) || ' on ' || rw.ev_class::regclass::text || ' is not dumped'
FROM pg_rewrite rw JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = rw.ev_class
WHERE rw.rulename <> '_RETURN'
UNION ALL
SELECT 'foreign table ' || own.oid::regclass::text || ' is not dumped'
FROM own WHERE own.classid = 'pg_class'::regclass AND own.what = 'f'
UNION ALL
SELECT 'aggregate ' || own.oid::regprocedure::text || ' is not dumped'
FROM own WHERE own.classid = 'pg_proc'::regclass AND own.what = 'proc a'
UNION ALL
-- pg_describe_object names the kind itself ("collation public.ci").
SELECT pg_catalog.pg_describe_object(own.classid, own.oid, 0) || ' is not dumped'
FROM own WHERE own.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass)
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text || ' is invalid (a failed CREATE INDEX CONCURRENTLY?); the dump creates it valid'
FROM pg_index i JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = i.indrelid
WHERE NOT i.indisvalid
UNION ALL
SELECT 'relation ' || c.oid::regclass::text || ' is in tablespace ' || pg_catalog.quote_ident(ts.spcname) || '; the dump creates it in the default tablespace'
FROM pg_class c JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = c.oid
JOIN pg_tablespace ts ON ts.oid = c.reltablespace
UNION ALL
-- A partition's copy of its parent's index or constraint is named by the loading server, by its
-- rule (the partition's name first); one named otherwise (made on the partition before the
-- parent's and attached) comes back under the server's name.
SELECT 'index ' || pg_catalog.quote_ident(ic.relname) || ' of partition ' || c.oid::regclass::text
       || ' belongs to its parent''s index and is named by the server on load (' || pg_catalog.quote_ident(c.relname) || '_…)'
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = c.oid
WHERE c.relispartition AND ic.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = c.oid)
  AND pg_catalog.left(ic.relname, least(pg_catalog.length(c.relname), 20)) <> pg_catalog.left(c.relname, 20)
UNION ALL
SELECT 'constraint ' || pg_catalog.quote_ident(con.conname) || ' of partition ' || c.oid::regclass::text
       || ' belongs to its parent''s and is named by the server on load (' || pg_catalog.quote_ident(c.relname) || '_…)'
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = c.oid
WHERE c.relispartition AND con.conparentid <> 0 AND con.contype IN ('p', 'u', 'x')
  AND pg_catalog.left(con.conname, least(pg_catalog.length(c.relname), 20)) <> pg_catalog.left(c.relname, 20)
UNION ALL
SELECT 'event trigger ' || pg_catalog.quote_ident(e.evtname) || ' is not dumped'
FROM pg_event_trigger e
WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_event_trigger'::regclass AND ext.objid = e.oid)
UNION ALL
SELECT 'publication ' || pg_catalog.quote_ident(p.pubname) || ' is not dumped' FROM pg_publication p
) AS warnings
