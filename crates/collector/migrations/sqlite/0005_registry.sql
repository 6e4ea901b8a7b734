-- The test-point network: registration by signed heartbeats, approval and
-- revocation by an admin, and the class of test point behind each result.
ALTER TABLE test_points ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
UPDATE test_points SET status = CASE WHEN approved THEN 'approved' ELSE 'pending' END;
-- 1: listed in the config file (approved at every start), 0: registered by heartbeat.
ALTER TABLE test_points ADD COLUMN configured INTEGER NOT NULL DEFAULT 0;
UPDATE test_points SET configured = approved;
-- JSON of store::TestPointDetails: what the last heartbeat declared.
ALTER TABLE test_points ADD COLUMN details TEXT;
ALTER TABLE test_points ADD COLUMN registered_at_ms INTEGER;
ALTER TABLE test_points ADD COLUMN approved_at_ms INTEGER;
ALTER TABLE test_points ADD COLUMN revoked_at_ms INTEGER;
-- vnix, on_net, cloud, international; NULL when the test point declared none.
ALTER TABLE results ADD COLUMN test_point_class TEXT;
-- A failover's download (spec/registry.md §6): the test point and session
-- whose checkpoint receipt backs it, and that receipt (redacted). A session
-- backs at most one result, as the primary receipt or as the download's.
ALTER TABLE results ADD COLUMN download_test_point_id TEXT;
ALTER TABLE results ADD COLUMN download_session_id TEXT;
ALTER TABLE results ADD COLUMN download_receipt TEXT;
CREATE UNIQUE INDEX results_download_session ON results (download_test_point_id, download_session_id)
    WHERE download_session_id IS NOT NULL;
