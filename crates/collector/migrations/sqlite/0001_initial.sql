-- ispeed collector, SQLite schema version 1.

-- Every accepted submission, in ingest order (seq). Raw coordinates and the
-- receipt are for admins and audits; public outputs use rollups only.
CREATE TABLE results (
    seq              INTEGER PRIMARY KEY,
    result_id        TEXT    NOT NULL UNIQUE,
    body_hash        BLOB    NOT NULL,
    received_at_ms   INTEGER NOT NULL,
    measured_at_ms   INTEGER NOT NULL,
    day              INTEGER NOT NULL,
    device_hash      BLOB    NOT NULL,
    client_kind      TEXT    NOT NULL,
    client_version   TEXT    NOT NULL,
    access           TEXT    NOT NULL,  -- JSON of proto::results::Access
    access_kind      TEXT    NOT NULL,
    test_point_id    TEXT    NOT NULL,
    session_id       TEXT    NOT NULL,
    ip_version       INTEGER NOT NULL,
    client_net       TEXT    NOT NULL,  -- truncated: /24 or /48
    asn              INTEGER,
    isp              TEXT    NOT NULL,
    location         TEXT,              -- JSON of proto::results::Location
    ward_chosen      TEXT,
    province_code    TEXT,
    ward_code        TEXT,
    place_source     TEXT    NOT NULL,
    download_mbps    REAL,
    upload_mbps      REAL,
    latency_ms       REAL,
    jitter_ms        REAL,
    ipv6_capable     INTEGER,
    client_metrics   TEXT    NOT NULL,  -- JSON of proto::results::ClientMetrics
    status           TEXT    NOT NULL,
    reasons          TEXT    NOT NULL,  -- JSON array of reason codes
    counted          INTEGER NOT NULL,
    receipt          TEXT    NOT NULL,
    UNIQUE (test_point_id, session_id)  -- one result per receipt
);
CREATE INDEX results_day ON results (day);

-- Results counted toward statistics per device and day (heavy-tester cap).
CREATE TABLE device_day (
    device_hash BLOB    NOT NULL,
    day         INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (device_hash, day)
) WITHOUT ROWID;

-- Rollup cells (see crates/collector/src/rollup.rs).
CREATE TABLE cells (
    grain      INTEGER NOT NULL,  -- 0 day, 1 month
    period     INTEGER NOT NULL,
    level      INTEGER NOT NULL,  -- 0 nation, 1 province, 2 ward
    parent     TEXT    NOT NULL,
    code       TEXT    NOT NULL,
    isp        TEXT    NOT NULL,
    access     TEXT    NOT NULL,
    ip_version INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    download   BLOB    NOT NULL,
    upload     BLOB    NOT NULL,
    latency    BLOB    NOT NULL,
    devices    BLOB    NOT NULL,
    PRIMARY KEY (grain, period, level, parent, code, isp, access, ip_version)
) WITHOUT ROWID;

-- Test points whose receipts are accepted.
CREATE TABLE test_points (
    id             TEXT    PRIMARY KEY,
    public_key     TEXT    NOT NULL UNIQUE,
    url            TEXT    NOT NULL,
    name           TEXT,
    province_code  TEXT,
    line_rate_mbps REAL    NOT NULL,
    approved       INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
