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
    UNION ALL SELECT 'pg_ts_parser'::regclass, o.oid, 'text search parser' FROM pg_ts_parser o JOIN ns ON ns.oid = o.prsnamespace
    UNION ALL SELECT 'pg_ts_template'::regclass, o.oid, 'text search template' FROM pg_ts_template o JOIN ns ON ns.oid = o.tmplnamespace
    -- Base types (CREATE TYPE … (INPUT = …)) and shell types; not the array types PostgreSQL
    -- makes beside a type, nor the multirange beside a range.
    UNION ALL SELECT 'pg_type'::regclass, o.oid, 'type' FROM pg_type o JOIN ns ON ns.oid = o.typnamespace
        WHERE o.typtype IN ('b', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = o.typelem AND e.typarray = o.oid)
    -- Objects of the database that are in no schema: PostgreSQL's own have OIDs below 16384.
    UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass, o.oid, 'foreign-data wrapper' FROM pg_foreign_data_wrapper o
    UNION ALL SELECT 'pg_foreign_server'::regclass, o.oid, 'server' FROM pg_foreign_server o
    UNION ALL SELECT 'pg_transform'::regclass, o.oid, 'transform' FROM pg_transform o
    UNION ALL SELECT 'pg_am'::regclass, o.oid, 'access method' FROM pg_am o WHERE o.oid >= 16384
    UNION ALL SELECT 'pg_language'::regclass, o.oid, 'language' FROM pg_language o WHERE o.oid >= 16384
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
-- pg_describe_object names the kind itself ("collation public.ci", "server files"). What the
-- dump writes and uses it (a column of that collation, an index of that operator class) is
-- named too (the first three): the dump will not load until it exists.
SELECT pg_catalog.pg_describe_object(own.classid, own.oid, 0) || ' is not dumped'
       || coalesce('; ' || (SELECT pg_catalog.string_agg(u.what, ', ' ORDER BY u.what COLLATE "C")
                            FROM (SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS what
                                  FROM pg_depend d
                                  WHERE d.refclassid = own.classid AND d.refobjid = own.oid AND d.deptype = 'n'
                                    AND d.classid IN ('pg_class'::regclass, 'pg_type'::regclass, 'pg_constraint'::regclass, 'pg_attrdef'::regclass)
                                  ORDER BY 1 LIMIT 3) u)
                   || ' uses it: the dump will not load', '')
FROM own WHERE own.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass)
UNION ALL
-- A range's canonical function (C only) is not written: the range is made without it.
SELECT 'range type ' || r.rngtypid::regtype::text || ' has canonical function ' || r.rngcanonical::regproc::text
       || ', which is not dumped: the dump makes the range without it'
FROM pg_range r JOIN pg_type ty ON ty.oid = r.rngtypid JOIN ns ON ns.oid = ty.typnamespace
WHERE r.rngcanonical <> 0
  AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_type'::regclass AND ext.objid = ty.oid)
UNION ALL
-- By name only: a user mapping's options may hold a password (pg_user_mappings shows them to
-- the mapping's user). pg_user_mapping itself is readable by superusers only.
SELECT 'user mapping for ' || CASE WHEN um.umuser = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(um.usename) END
       || ' on server ' || pg_catalog.quote_ident(um.srvname) || ' is not dumped'
FROM pg_user_mappings um
UNION ALL
-- By name only: a subscription's connection string may hold a password (and only its name and
-- database are readable by every role).
SELECT 'subscription ' || pg_catalog.quote_ident(s.subname) || ' is not dumped'
FROM pg_subscription s
WHERE s.subdbid = (SELECT d.oid FROM pg_database d WHERE d.datname = pg_catalog.current_database())
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text || ' is invalid (a failed CREATE INDEX CONCURRENTLY?); the dump creates it valid'
FROM pg_index i JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = i.indrelid
WHERE NOT i.indisvalid
UNION ALL
SELECT 'relation ' || c.oid::regclass::text || ' is in tablespace ' || pg_catalog.quote_ident(ts.spcname) || '; the dump creates it in the default tablespace'
FROM pg_class c JOIN own ON own.classid = 'pg_class'::regclass AND own.oid = c.oid
JOIN pg_tablespace ts ON ts.oid = c.reltablespace
UNION ALL
SELECT 'event trigger ' || pg_catalog.quote_ident(e.evtname) || ' is not dumped'
FROM pg_event_trigger e
WHERE NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_event_trigger'::regclass AND ext.objid = e.oid)
UNION ALL
SELECT 'publication ' || pg_catalog.quote_ident(p.pubname) || ' is not dumped' FROM pg_publication p
UNION ALL
-- Security labels (SELinux's sepgsql or another provider's) on anything of the database.
SELECT 'security label of provider ' || pg_catalog.quote_ident(l.provider) || ' on '
       || pg_catalog.pg_describe_object(l.classoid, l.objoid, l.objsubid) || ' is not dumped'
FROM pg_seclabel l
) AS warnings
