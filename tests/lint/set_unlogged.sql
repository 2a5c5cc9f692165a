-- expect: rewrite-under-lock
-- migrate:up
ALTER TABLE audit_logs SET UNLOGGED;
