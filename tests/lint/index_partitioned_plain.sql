-- expect: index-on-partitioned-table
-- migrate:up
CREATE INDEX idx_request_logs_method ON request_logs (method);
