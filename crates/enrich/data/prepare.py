#!/usr/bin/env python3
"""Regenerate the embedded data of ispeed-enrich from the shared reference data.

    python3 crates/enrich/data/prepare.py [SHARED_DATA_DIR]

SHARED_DATA_DIR defaults to ../../../../shared/data relative to this file (the
workspace's shared/data). Standard library only; the outputs are
deterministic (gzip mtime 0), so a rerun on the same input changes nothing.
"""
import csv
import gzip
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "../../../../shared/data"
ADMIN, ASN = SRC / "vn-admin-2025", SRC / "asn"

# The 11.6 MB ward GeoJSON compresses ~4x; the crate inflates it once at load.
with open(ADMIN / "wards.geojson", "rb") as f, open(HERE / "wards.geojson.gz", "wb") as out:
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=out, mtime=0) as gz:
        shutil.copyfileobj(f, gz)

for src in [ADMIN / "units.csv", ASN / "vn-asn.csv", ASN / "vn-prefixes-ipv4.csv", ASN / "vn-prefixes-ipv6.csv"]:
    shutil.copyfile(src, HERE / src.name)

# Only the province attributes are needed: point -> province goes through the
# ward's province_code (see the shared README), never the province polygons.
props = [f["properties"] for f in json.loads((ADMIN / "provinces.geojson").read_text("utf-8"))["features"]]
cols = ["code", "name", "name_en", "kind"]
with open(HERE / "provinces.csv", "w", encoding="utf-8", newline="") as out:
    w = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(cols)
    for p in sorted(props, key=lambda p: p["code"]):
        # The Rust side splits on commas without a quote parser.
        assert not any(c in str(p[k]) for k in cols for c in ',"\n'), p
        w.writerow([p[k] for k in cols])
print(f"wrote {HERE}: {len(props)} provinces")

# Pre-July-2025 wards and the 2025 wards that took them over (a split ward
# has several successors; `is_default` marks the one a bare old code maps to).
cols = ["old_ward_code", "old_ward_name", "old_district_name", "old_province_code", "new_ward_code", "is_default"]
with open(ADMIN / "legacy_to_2025.csv", encoding="utf-8") as f:
    # Island districts without wards (Bạch Long Vĩ, Côn Đảo, ...) have no
    # old ward code: nothing can name them, so they are left out.
    rows = [r for r in csv.DictReader(f) if r["old_ward_code"]]
buf = []
for r in sorted(rows, key=lambda r: (r["old_ward_code"], r["new_ward_code"])):
    assert not any(c in r[k] for k in cols for c in ',"\n'), r
    buf.append(",".join(r[k] for k in cols))
with open(HERE / "legacy.csv.gz", "wb") as out:
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=out, mtime=0) as gz:
        gz.write(("\n".join([",".join(cols)] + buf) + "\n").encode("utf-8"))
print(f"wrote {HERE}: {len(rows)} legacy rows")
