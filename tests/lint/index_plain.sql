-- expect: index-without-concurrently
-- migrate:up
CREATE INDEX idx_api_keys_name ON api_keys (name);
