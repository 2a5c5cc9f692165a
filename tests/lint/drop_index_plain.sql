-- expect: drop-index-without-concurrently
-- migrate:up
DROP INDEX idx_api_keys_key_prefix;
