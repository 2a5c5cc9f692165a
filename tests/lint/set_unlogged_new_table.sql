-- guards: rewrite-under-lock
-- migrate:up
CREATE TABLE import_scratch (id bigint, payload jsonb);
ALTER TABLE import_scratch SET UNLOGGED;
