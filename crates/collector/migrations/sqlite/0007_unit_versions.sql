-- Later versions of the administrative units (spec/units.md). The embedded
-- 2025 units are the base; a version here applies from its effective month
-- on, checked in full before it was stored.
CREATE TABLE unit_versions (
    effective_month  INTEGER PRIMARY KEY,  -- Month number (year * 12 + month - 1)
    name             TEXT    NOT NULL,
    loaded_at_ms     INTEGER NOT NULL,
    provinces_csv    TEXT    NOT NULL,
    units_csv        TEXT    NOT NULL,
    wards_geojson_gz BLOB    NOT NULL,
    sha256           TEXT    NOT NULL
);
