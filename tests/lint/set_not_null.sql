-- expect: set-not-null-scan
-- migrate:up
ALTER TABLE api_keys ALTER COLUMN created_by SET NOT NULL;
