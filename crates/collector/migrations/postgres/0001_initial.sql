-- ispeed collector, PostgreSQL schema version 1 (spec/collector.md §4,
-- docs/scaling.md). The same data as the SQLite store, laid out for several
-- collector instances writing at once: uniqueness is enforced by
-- constraints, not by one writer.

CREATE TABLE meta (
    key   text  PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per accepted result id: idempotency across instances and months
-- (a unique index on the partitioned `results` would have to include `day`).
CREATE TABLE result_ids (
    result_id uuid    PRIMARY KEY,
    body_hash bytea   NOT NULL,
    day       integer NOT NULL
);

-- Every session that backs a result, as its receipt or as a failover's
-- download receipt: a receipt backs one result, whichever instance stores it.
CREATE TABLE receipt_sessions (
    test_point_id text NOT NULL,
    session_id    text NOT NULL,
    result_id     uuid NOT NULL,
    PRIMARY KEY (test_point_id, session_id)
);

CREATE SEQUENCE results_seq;

-- Raw results, one partition per month (created on first use).
CREATE TABLE results (
    seq                    bigint           NOT NULL DEFAULT nextval('results_seq'),
    result_id              uuid             NOT NULL,
    body_hash              bytea            NOT NULL,
    received_at_ms         bigint           NOT NULL,
    measured_at_ms         bigint           NOT NULL,
    day                    integer          NOT NULL,
    device_hash            bytea            NOT NULL,
    client_kind            text             NOT NULL,
    client_version         text             NOT NULL,
    access                 text             NOT NULL,
    access_kind            text             NOT NULL,
    test_point_id          text             NOT NULL,
    session_id             text             NOT NULL,
    ip_version             smallint         NOT NULL,
    client_net             text             NOT NULL,
    asn                    bigint,
    isp                    text             NOT NULL,
    location               text,
    ward_chosen            text,
    province_code          text,
    ward_code              text,
    place_source           text             NOT NULL,
    download_mbps          double precision,
    upload_mbps            double precision,
    latency_ms             double precision,
    jitter_ms              double precision,
    ipv6_capable           boolean,
    client_metrics         text             NOT NULL,
    status                 text             NOT NULL,
    reasons                text             NOT NULL,
    counted                boolean          NOT NULL,
    receipt                text             NOT NULL,
    source                 text,
    test_point_class       text,
    download_test_point_id text,
    download_session_id    text,
    download_receipt       text,
    PRIMARY KEY (day, seq)
) PARTITION BY RANGE (day);
CREATE INDEX results_result_id ON results (result_id);
CREATE INDEX results_province_day ON results (province_code, day);
CREATE INDEX results_source_day ON results (source, day) WHERE source IS NOT NULL;

CREATE TABLE device_day (
    device_hash bytea   NOT NULL,
    day         integer NOT NULL,
    n           integer NOT NULL,
    PRIMARY KEY (device_hash, day)
);

CREATE TABLE cells (
    grain      smallint NOT NULL,
    period     integer  NOT NULL,
    level      smallint NOT NULL,
    parent     text     NOT NULL,
    code       text     NOT NULL,
    isp        text     NOT NULL,
    access     text     NOT NULL,
    ip_version smallint NOT NULL,
    n          bigint   NOT NULL,
    download   bytea    NOT NULL,
    upload     bytea    NOT NULL,
    latency    bytea    NOT NULL,
    devices    bytea    NOT NULL,
    PRIMARY KEY (grain, period, level, parent, code, isp, access, ip_version)
);

-- Bumped in every transaction that writes a month's cells, so that any
-- instance can tell whether a cached answer for that month is still true.
CREATE TABLE month_versions (
    month   integer PRIMARY KEY,
    version bigint  NOT NULL
);

CREATE TABLE test_points (
    id               text    PRIMARY KEY,
    public_key       text    NOT NULL UNIQUE,
    url              text    NOT NULL,
    name             text,
    province_code    text,
    line_rate_mbps   double precision NOT NULL,
    status           text    NOT NULL,
    configured       boolean NOT NULL,
    details          text,
    registered_at_ms bigint,
    approved_at_ms   bigint,
    revoked_at_ms    bigint
);

CREATE TABLE users (
    id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text    NOT NULL UNIQUE,
    password_hash  text    NOT NULL,
    role           text    NOT NULL,
    province_code  text,
    created_at_ms  bigint  NOT NULL,
    disabled_at_ms bigint
);
CREATE TABLE sessions (
    token_hash    bytea   PRIMARY KEY,
    user_id       bigint  NOT NULL REFERENCES users (id),
    csrf          text    NOT NULL,
    created_at_ms bigint  NOT NULL,
    expires_at_ms bigint  NOT NULL
);
CREATE TABLE api_tokens (
    id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash    bytea   NOT NULL UNIQUE,
    user_id       bigint  NOT NULL REFERENCES users (id),
    name          text    NOT NULL,
    created_at_ms bigint  NOT NULL,
    revoked_at_ms bigint
);
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms   bigint NOT NULL,
    actor   text   NOT NULL,
    action  text   NOT NULL,
    target  text,
    details text
);
CREATE TABLE unit_versions (
    effective_month  integer PRIMARY KEY,
    name             text    NOT NULL,
    loaded_at_ms     bigint  NOT NULL,
    provinces_csv    text    NOT NULL,
    units_csv        text    NOT NULL,
    wards_geojson_gz bytea   NOT NULL,
    sha256           text    NOT NULL
);
CREATE TABLE campaigns (
    slug            text    PRIMARY KEY,
    name            text    NOT NULL,
    organisation    text    NOT NULL,
    province_code   text    NOT NULL,
    wards           text    NOT NULL,
    first_day       integer NOT NULL,
    last_day        integer NOT NULL,
    target_per_ward bigint  NOT NULL,
    tags            text    NOT NULL,
    created_by      text    NOT NULL,
    created_at_ms   bigint  NOT NULL
);
