-- guards: index-without-concurrently concurrently-in-transaction not-rerunnable
-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_name ON api_keys (name);
