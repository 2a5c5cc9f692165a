-- migrate:up
ALTER TABLE api_keys VALIDATE CONSTRAINT api_keys_created_by_not_null;
