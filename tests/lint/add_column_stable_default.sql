-- guards: add-column-volatile-default
-- migrate:up
ALTER TABLE audit_logs ADD COLUMN seen_at timestamptz DEFAULT now();
