-- expect: add-column-not-null
-- applies: no
-- migrate:up
ALTER TABLE api_keys ADD COLUMN owner text NOT NULL;
