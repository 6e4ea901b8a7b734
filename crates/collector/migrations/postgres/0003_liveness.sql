-- Schema version 3: test points' liveness and load, shared by every
-- collector instance (a heartbeat reaches one of them). One row per test
-- point, replaced by each accepted heartbeat; read by every instance's
-- registry sync (docs/scaling.md §1).
CREATE TABLE test_point_liveness (
    id             text   PRIMARY KEY,
    received_at_ms bigint NOT NULL,
    liveness       text   NOT NULL  -- JSON: sent_at_ms, load, capacity
);
