-- Campaigns (spec/campaigns.md): an organisation pushes a set of wards to a
-- target of samples over a period, with its own campaign tags (banners,
-- posters, QR codes).
CREATE TABLE campaigns (
    slug            TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    organisation    TEXT    NOT NULL,
    province_code   TEXT    NOT NULL,
    wards           TEXT    NOT NULL,  -- JSON array of ward codes
    first_day       INTEGER NOT NULL,
    last_day        INTEGER NOT NULL,
    target_per_ward INTEGER NOT NULL,
    tags            TEXT    NOT NULL,  -- JSON array of campaign tags
    created_by      TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL
);
