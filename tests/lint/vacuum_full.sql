-- expect: rewrite-under-lock
-- migrate:up transaction:false
VACUUM FULL audit_logs;
