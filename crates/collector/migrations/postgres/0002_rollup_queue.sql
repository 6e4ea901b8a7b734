-- Schema version 2: rollup cells are merged from a queue, not inside each
-- ingest transaction (docs/scaling.md §2). An ingest transaction appends
-- its counted results' contributions here; an applier (one at a time, under
-- an advisory lock) deletes a run of them, merges them into `cells` and
-- bumps `month_versions` in one transaction. Readers apply what is queued
-- before they answer, so statistics never miss an acknowledged result.
CREATE TABLE rollup_queue (
    id            bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day           integer  NOT NULL,
    province_code text,
    ward_code     text,
    isp           text     NOT NULL,
    access_kind   text     NOT NULL,
    ip_version    smallint NOT NULL,
    device_hash   bytea    NOT NULL,
    download_mbps double precision,
    upload_mbps   double precision,
    latency_ms    double precision
);
