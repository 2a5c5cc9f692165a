-- guards: constraint-without-not-valid
-- migrate:up
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_api_key_fk FOREIGN KEY (api_key_id) REFERENCES api_keys (id) NOT VALID;
