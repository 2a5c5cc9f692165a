-- guards: constraint-builds-index index-without-concurrently
-- migrate:up transaction:false
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS audit_logs_resource_unique ON audit_logs (resource_type, resource_id, id);
