-- guards: set-not-null-scan constraint-without-not-valid validate-in-same-transaction
-- migrate:up
ALTER TABLE api_keys ADD CONSTRAINT api_keys_created_by_not_null CHECK (created_by IS NOT NULL) NOT VALID;
