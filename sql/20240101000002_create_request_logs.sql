-- DH-008: one row per request through the gateway, partitioned by month on created_at.
-- Partitions after the first are made by `dhctl partition create` (policy
-- partitions/request_logs.toml); there is deliberately no DEFAULT partition (docs/partitions.md).
-- migrate:up
CREATE TABLE request_logs (
    id UUID DEFAULT gen_random_uuid(),
    api_key_id UUID REFERENCES api_keys(id),
    request_id VARCHAR(36) NOT NULL,
    method VARCHAR(10) NOT NULL,
    path VARCHAR(2048) NOT NULL,
    query_params JSONB,
    request_headers JSONB,
    request_body JSONB,
    response_status INTEGER,
    response_headers JSONB,
    response_body JSONB,
    response_time_ms INTEGER,
    ip_address INET,
    user_agent VARCHAR(1024),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- The seed's first partition. Bounds carry an explicit +00 so they are UTC month starts whatever
-- the session's TimeZone is.
CREATE TABLE request_logs_2024_01 PARTITION OF request_logs
    FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00');

-- A key's recent traffic (usage pages, per-key rate analysis), newest first.
CREATE INDEX idx_request_logs_api_key_id_created_at ON request_logs(api_key_id, created_at DESC);
-- Looking one request up by the X-Request-Id the gateway returned.
CREATE INDEX idx_request_logs_request_id ON request_logs(request_id);
-- Time-range scans within a month; rows arrive in created_at order, so BRIN stays tiny.
CREATE INDEX idx_request_logs_created_at ON request_logs USING brin (created_at);
-- Error investigation: recent 5xx/4xx responses.
CREATE INDEX idx_request_logs_error_status ON request_logs(response_status, created_at) WHERE response_status >= 400;

-- migrate:down
DROP TABLE request_logs;
