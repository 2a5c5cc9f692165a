-- migrate:up
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_resource_unique UNIQUE USING INDEX audit_logs_resource_unique;
