-- expect: column-type-rewrite
-- migrate:up
ALTER TABLE request_logs ALTER COLUMN response_status TYPE bigint;
