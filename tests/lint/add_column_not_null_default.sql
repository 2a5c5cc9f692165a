-- guards: add-column-not-null add-column-volatile-default
-- migrate:up
ALTER TABLE api_keys ADD COLUMN owner text NOT NULL DEFAULT 'unknown';
