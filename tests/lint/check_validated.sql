-- expect: constraint-without-not-valid
-- migrate:up
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_action_not_empty CHECK (action <> '');
