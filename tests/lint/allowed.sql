-- guards: index-without-concurrently unused-allow
-- migrate:up
-- dhctl:allow index-without-concurrently audit_logs holds a few thousand rows in every deployment
CREATE INDEX idx_audit_logs_action ON audit_logs (action);
