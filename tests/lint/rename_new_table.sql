-- guards: rename-breaks-gateway drop-breaks-gateway
-- migrate:up
CREATE TABLE key_notes (id bigint, body text);
ALTER TABLE key_notes RENAME COLUMN body TO note;
ALTER TABLE key_notes DROP COLUMN note;
