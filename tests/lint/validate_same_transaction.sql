-- expect: validate-in-same-transaction
-- migrate:up
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action_not_empty CHECK (action <> '') NOT VALID;
ALTER TABLE audit_logs VALIDATE CONSTRAINT audit_logs_action_not_empty;
