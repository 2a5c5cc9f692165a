-- guards: index-on-partitioned-table index-without-concurrently not-rerunnable manual-partition-change
-- migrate:up transaction:false
CREATE INDEX IF NOT EXISTS idx_request_logs_method ON ONLY request_logs (method);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_request_logs_2024_01_method ON request_logs_2024_01 (method);
ALTER INDEX idx_request_logs_method ATTACH PARTITION idx_request_logs_2024_01_method;
