-- expect: add-column-volatile-default
-- migrate:up
ALTER TABLE audit_logs ADD COLUMN trace_id uuid DEFAULT gen_random_uuid();
