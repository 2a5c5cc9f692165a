-- expect: rename-breaks-gateway
-- migrate:up
ALTER TABLE api_keys RENAME COLUMN created_by TO creator;
