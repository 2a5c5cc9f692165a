-- expect: constraint-builds-index
-- migrate:up
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_resource_unique UNIQUE (resource_type, resource_id, id);
