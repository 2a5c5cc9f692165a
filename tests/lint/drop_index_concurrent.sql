-- guards: drop-index-without-concurrently concurrently-in-transaction
-- migrate:up transaction:false
DROP INDEX CONCURRENTLY IF EXISTS idx_api_keys_key_prefix;
