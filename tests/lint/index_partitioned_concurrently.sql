-- expect: index-on-partitioned-table
-- applies: no
-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_request_logs_method ON request_logs (method);
