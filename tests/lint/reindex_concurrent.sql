-- guards: reindex-without-concurrently concurrently-in-transaction
-- migrate:up transaction:false
REINDEX INDEX CONCURRENTLY idx_api_keys_key_prefix;
