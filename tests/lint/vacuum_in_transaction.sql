-- expect: vacuum-in-transaction
-- applies: no
-- migrate:up
VACUUM (ANALYZE) audit_logs;
