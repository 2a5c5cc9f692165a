-- expect: unused-allow
-- migrate:up
-- dhctl:allow index-without-concurrently no longer needed: the table is new
CREATE TABLE key_notes (id bigint, body text);
