-- expect: manual-partition-change
-- migrate:up
CREATE TABLE request_logs_2031_01 PARTITION OF request_logs
    FOR VALUES FROM ('2031-01-01 00:00:00+00') TO ('2031-02-01 00:00:00+00');
