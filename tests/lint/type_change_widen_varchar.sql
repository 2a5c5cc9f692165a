-- guards: column-type-rewrite
-- migrate:up
ALTER TABLE api_keys ALTER COLUMN name TYPE varchar(500);
ALTER TABLE webhooks ALTER COLUMN description TYPE text;
