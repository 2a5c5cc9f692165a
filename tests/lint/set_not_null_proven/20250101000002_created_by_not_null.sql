-- migrate:up
ALTER TABLE api_keys ALTER COLUMN created_by SET NOT NULL;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_created_by_not_null;
