-- guards: not-rerunnable
-- migrate:up transaction:false
CREATE TABLE IF NOT EXISTS key_events (id bigint, api_key_id uuid);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_name ON api_keys (name);
