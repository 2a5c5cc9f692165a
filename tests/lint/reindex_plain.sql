-- expect: reindex-without-concurrently
-- migrate:up
REINDEX INDEX idx_api_keys_key_prefix;
