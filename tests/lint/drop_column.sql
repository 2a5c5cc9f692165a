-- expect: drop-breaks-gateway
-- migrate:up
ALTER TABLE audit_logs DROP COLUMN user_agent;
