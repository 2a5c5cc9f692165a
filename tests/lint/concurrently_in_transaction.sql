-- expect: concurrently-in-transaction
-- applies: no
-- migrate:up
CREATE INDEX CONCURRENTLY idx_api_keys_name ON api_keys (name);
