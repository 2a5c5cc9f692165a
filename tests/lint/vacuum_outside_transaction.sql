-- guards: vacuum-in-transaction rewrite-under-lock
-- migrate:up transaction:false
VACUUM (ANALYZE) audit_logs;
