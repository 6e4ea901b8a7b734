#!/usr/bin/env python3
"""Build the embedded choropleth geometry of ispeed-web (`maps.json.gz`).

    python3 crates/web/data/prepare_maps.py [SHARED_DATA_DIR]

SHARED_DATA_DIR defaults to ../shared/data relative to the repository root
(../../../../shared/data relative to this file). Standard library only and
deterministic: a rerun on the same input writes the same bytes (gzip mtime 0).

Output, one JSON object (gzip level 9):

    {"provinces": LAYER, "wards": {"01": LAYER, ...}}
    LAYER = {"width": W, "height": H, "units": [{"code": "01", "d": "m..z"}, ...],
             "insets": [{"x": X, "y": Y, "width": W, "height": H}, ...]}   # insets optional

`d` is an SVG path in the layer's viewBox `0 0 W H` (y down), relative commands
only, coordinates to 0.1 px. Steps, per layer:

1. Project lon/lat equirectangularly: x = lon * cos(mid-latitude of the
   layer), y = -lat; fit into width 600 (the height follows the aspect ratio;
   if that would exceed 800 the height is 800 and the width follows), 2 px
   margin.
2. Split every ring into arcs at the points where rings meet (the source is a
   shared-arc topology, so neighbours have identical border vertices) and
   simplify each arc once with Douglas-Peucker (0.5 px), so neighbouring units
   keep identical borders: no slivers, no overlaps.
3. Round to 0.1 px. Rings under 0.3 px^2 are dropped, except each unit's
   largest ring; a dropped islet more than 2.5 px from any drawn geometry is
   drawn as a 1.6 px square instead, so remote islands (Hoang Sa, Truong Sa,
   Bach Long Vi, Con Co, ...) stay visible. Outer rings and holes get opposite
   windings (the default nonzero fill rule then draws holes as holes).
4. Ward layers only: an island special zone (dac_khu) whose removal more than
   halves the layer's bounding box (Hoang Sa 48, Truong Sa 56, Con Dao 79,
   Bach Long Vi 31) is drawn in an inset at its own scale, in a free corner
   of the map or, failing that, beside/below it; its frame is listed in
   "insets". The national layer has no insets: the archipelagos are in place.
"""
import gzip
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "../../../../shared/data"
ADMIN = SRC / "vn-admin-2025"
OUT = HERE / "maps.json.gz"

WIDTH, MAX_HEIGHT, PAD = 600, 800, 2.0
TOLERANCE = 0.5  # Douglas-Peucker, px
MIN_AREA = 0.3  # px^2
MARKER = 16  # islet marker side, tenths of a px
MARKER_CLEAR = 2.5  # px from other geometry before an islet gets a marker
INSET_GAP, INSET_PAD = 6.0, 4.0

NATIONAL_BUDGET, WARD_BUDGET = 120_000, 250_000  # bytes of path data


def polygons(geometry):
    """[[ring, hole, ...], ...] with open rings of (lon, lat) tuples."""
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    out = []
    for poly in polys:
        rings = []
        for ring in poly:
            pts = [tuple(c) for c in ring]
            if len(pts) > 1 and pts[0] == pts[-1]:
                pts.pop()
            dedup = [p for i, p in enumerate(pts) if p != pts[i - 1]] if len(pts) > 1 else pts
            rings.append(dedup)
        out.append(rings)
    return out


class Projection:
    """Equirectangular lon/lat -> px, fitted into a box."""

    def __init__(self, units, box_w, box_h, x0=0.0, y0=0.0, center=True, max_s=math.inf):
        lons = [p[0] for _, polys in units for poly in polys for p in poly[0]]
        lats = [p[1] for _, polys in units for poly in polys for p in poly[0]]
        self.k = math.cos(math.radians((min(lats) + max(lats)) / 2))
        self.lon0, self.lat1 = min(lons), max(lats)
        span_x, span_y = (max(lons) - min(lons)) * self.k, max(lats) - min(lats)
        self.s = min((box_w - 2 * PAD) / span_x, (box_h - 2 * PAD) / span_y, max_s)
        self.width, self.height = span_x * self.s + 2 * PAD, span_y * self.s + 2 * PAD
        dx = (box_w - self.width) / 2 if center else 0.0
        dy = (box_h - self.height) / 2 if center else 0.0
        self.ox, self.oy = x0 + PAD + dx, y0 + PAD + dy

    def __call__(self, p):
        return ((p[0] - self.lon0) * self.k * self.s + self.ox, (self.lat1 - p[1]) * self.s + self.oy)


def fit(units):
    """(projection, W, H): W is always 600; H follows, capped at 800 (tall layers are centred)."""
    proj = Projection(units, WIDTH, 1e9, center=False)
    if proj.height > MAX_HEIGHT:
        return Projection(units, WIDTH, MAX_HEIGHT), WIDTH, MAX_HEIGHT
    return proj, WIDTH, math.ceil(proj.height)


def douglas_peucker(pts, tol):
    n = len(pts)
    if n < 3:
        return list(pts)
    keep = [False] * n
    keep[0] = keep[-1] = True
    tol2 = tol * tol
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        ax, ay = pts[a]
        dx, dy = pts[b][0] - ax, pts[b][1] - ay
        ll = dx * dx + dy * dy
        best, bi = -1.0, -1
        for i in range(a + 1, b):
            px, py = pts[i][0] - ax, pts[i][1] - ay
            t = (px * dx + py * dy) / ll if ll else 0.0
            t = 0.0 if t < 0 else 1.0 if t > 1 else t
            ex, ey = t * dx - px, t * dy - py
            d = ex * ex + ey * ey
            if d > best:
                best, bi = d, i
        if best > tol2:
            keep[bi] = True
            stack.append((a, bi))
            stack.append((bi, b))
    return [p for p, k in zip(pts, keep) if k]


def simplify_rings(rings, proj):
    """Topology-preserving simplification of a list of open lon/lat rings; returns px rings."""
    JUNCTION = object()
    seen = {}
    for ring in rings:
        n = len(ring)
        for i, p in enumerate(ring):
            a, b = ring[i - 1], ring[(i + 1) % n]
            pair = (a, b) if a < b else (b, a)
            s = seen.get(p)
            if s is None:
                seen[p] = pair
            elif s is not JUNCTION and s != pair:
                seen[p] = JUNCTION
    cache = {}

    def arc(pts):
        key = pts if pts <= pts[::-1] else pts[::-1]
        res = cache.get(key)
        if res is None:
            res = douglas_peucker([proj(p) for p in key], TOLERANCE)
            cache[key] = res
        return res if key is pts else res[::-1]

    out = []
    for ring in rings:
        if len(ring) < 3:
            out.append([proj(p) for p in ring])
            continue
        cut = [i for i, p in enumerate(ring) if seen[p] is JUNCTION]
        if not cut:
            # A closed ring shared by nobody or in full (enclave): canonical start and direction.
            i = ring.index(min(ring))
            rot = ring[i:] + ring[:i]
            alt = [rot[0]] + rot[:0:-1]
            key = tuple(min(rot, alt))
            res = cache.get(key)
            if res is None:
                pts = [proj(p) for p in key]
                x0, y0 = pts[0]
                far = max(range(len(pts)), key=lambda j: (pts[j][0] - x0) ** 2 + (pts[j][1] - y0) ** 2)
                res = douglas_peucker(pts[: far + 1], TOLERANCE)[:-1] + douglas_peucker(pts[far:] + [pts[0]], TOLERANCE)[:-1]
                cache[key] = res
            out.append(res)
            continue
        start = cut[0]
        rot = ring[start:] + ring[:start]
        marks = [i - start for i in cut] + [len(ring)]
        rot.append(rot[0])
        pts = []
        for a, b in zip(marks, marks[1:]):
            pts.extend(arc(tuple(rot[a : b + 1]))[:-1])
        out.append(pts)
    return out


def tenths(ring):
    pts = [(round(x * 10), round(y * 10)) for x, y in ring]
    pts = [p for i, p in enumerate(pts) if p != pts[i - 1]] if len(pts) > 1 else pts
    return pts


def area2(pts):
    """Twice the signed area (units of the coordinates squared)."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))


def raw_area(ring, proj):
    return abs(area2([proj(p) for p in ring])) / 2


def samples(ring):
    """Points along a px ring's boundary, at most 1 px apart."""
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0)))
        for i in range(n):
            yield x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n


class Grid:
    def __init__(self, cell):
        self.cell, self.cells = cell, {}

    def add(self, x, y):
        self.cells.setdefault((int(x // self.cell), int(y // self.cell)), []).append((x, y))

    def near(self, x, y, r):
        cx, cy = int(x // self.cell), int(y // self.cell)
        for i in (cx - 1, cx, cx + 1):
            for j in (cy - 1, cy, cy + 1):
                for px, py in self.cells.get((i, j), ()):
                    if (px - x) ** 2 + (py - y) ** 2 < r * r:
                        return True
        return False


def build_shapes(units, proj, stats):
    """units: [(code, polygons)] -> {code: [ring in tenths, oriented]} (markers included).

    stats (a dict) counts "rings" drawn, "markers" and "dropped" islets.
    """
    flat = [ring for _, polys in units for poly in polys for ring in poly]
    simple = iter(simplify_rings(flat, proj))
    shapes, tiny = {}, []
    for code, polys in units:
        rings = []  # (is_outer, tenths ring, area px^2, raw ring)
        for poly in polys:
            for k, ring in enumerate(poly):
                t = tenths(next(simple))
                a = abs(area2(t)) / 200 if len(t) >= 3 else 0.0
                rings.append((k == 0, t, a, ring))
        largest = max((r for r in rings if r[0]), key=lambda r: r[2])
        kept = []
        for r in rings:
            if r[2] >= MIN_AREA or r is largest:
                kept.append(r)
            elif r[0]:
                tiny.append((raw_area(r[3], proj), code, len(tiny), r[3]))
        out = []
        for outer, t, _, _ in kept:
            if (area2(t) > 0) != outer:
                t = t[::-1]
            out.append(t)
        shapes[code] = out
        stats["rings"] = stats.get("rings", 0) + len(out)
    grid = Grid(MARKER_CLEAR)
    for rings in shapes.values():
        for ring in rings:
            for x, y in samples([(x / 10, y / 10) for x, y in ring]):
                grid.add(x, y)
    for _, code, _, ring in sorted(tiny, key=lambda t: (-t[0], t[1], t[2])):
        pts = [proj(p) for p in ring]
        cx = (min(p[0] for p in pts) + max(p[0] for p in pts)) / 2
        cy = (min(p[1] for p in pts) + max(p[1] for p in pts)) / 2
        if grid.near(cx, cy, MARKER_CLEAR):
            stats["dropped"] = stats.get("dropped", 0) + 1
            continue
        stats["markers"] = stats.get("markers", 0) + 1
        grid.add(cx, cy)
        x, y = round(cx * 10) - MARKER // 2, round(cy * 10) - MARKER // 2
        square = [(x, y), (x + MARKER, y), (x + MARKER, y + MARKER), (x, y + MARKER)]
        shapes[code].append(square if area2(square) > 0 else square[::-1])
    return shapes


def num(n):
    """A length in tenths as the shortest decimal: 12 -> 1.2, 5 -> .5, 10 -> 1, -5 -> -.5."""
    sign, n = ("-" if n < 0 else ""), abs(n)
    whole, frac = divmod(n, 10)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole if whole else ''}.{frac}"


def path(rings):
    out, prev_num = [], ""
    cx = cy = 0

    def emit(n):
        nonlocal prev_num
        s = num(n)
        if prev_num and not (s[0] == "-" or (s[0] == "." and "." in prev_num)):
            out.append(" ")
        out.append(s)
        prev_num = s

    for ring in rings:
        out.append("m")
        prev_num = ""
        x0, y0 = ring[0]
        emit(x0 - cx)
        emit(y0 - cy)
        px, py = x0, y0
        for x, y in ring[1:]:
            emit(x - px)
            emit(y - py)
            px, py = x, y
        out.append("z")
        prev_num = ""
        cx, cy = x0, y0
    return "".join(out)


def segments_hit(rings, rect):
    x0, y0, x1, y1 = rect
    for ring in rings:
        for x, y in samples([(x / 10, y / 10) for x, y in ring]):
            if x0 <= x <= x1 and y0 <= y <= y1:
                return True
    return False


def inside(rings, x, y):
    """Nonzero/even-odd agnostic: is (x, y) inside any ring (px)?"""
    for ring in rings:
        c = False
        pts = [(a / 10, b / 10) for a, b in ring]
        for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
            if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                c = not c
        if c:
            return True
    return False


def ward_layer(units, stats):
    """units: [(code, polygons, kind)] of one province -> layer dict."""
    def bbox_area(us):
        lons = [p[0] for _, polys, _ in us for poly in polys for p in poly[0]]
        lats = [p[1] for _, polys, _ in us for poly in polys for p in poly[0]]
        k = math.cos(math.radians((min(lats) + max(lats)) / 2))
        return (max(lons) - min(lons)) * k * (max(lats) - min(lats))

    full = bbox_area(units)
    insets = [u for u in units if u[2] == "dac_khu" and len(units) > 1 and bbox_area([v for v in units if v is not u]) < full / 2]
    main = [(c, p) for c, p, _ in units if all(c != u[0] for u in insets)]
    proj, width, height = fit(main)
    shapes = build_shapes(main, proj, stats)
    frames = []
    main_rings = [r for rings in shapes.values() for r in rings]
    for code, polys, _ in insets:
        placed = None
        # Content size at the main map's scale (never enlarge an inset beyond it).
        probe = Projection([(code, polys)], 1e9, 1e9)
        cw, ch = (probe.width - 2 * PAD) / probe.s * proj.s, (probe.height - 2 * PAD) / probe.s * proj.s

        def box(frac):
            f = min(1.0, frac * min(width, height) / max(cw, ch))
            return math.ceil(max(cw * f, 24) + 2 * INSET_PAD), math.ceil(max(ch * f, 24) + 2 * INSET_PAD)

        # Corners nearest the zone's true direction first, then smaller sizes.
        lons = [p[0] for poly in polys for p in poly[0]]
        lats = [p[1] for poly in polys for p in poly[0]]
        tx, ty = proj(((min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2))
        dx, dy = tx - width / 2, ty - height / 2
        corners = sorted(((1, 1), (1, 0), (0, 1), (0, 0)), key=lambda c: -((2 * c[0] - 1) * width * dx + (2 * c[1] - 1) * height * dy))
        for fx, fy in corners:
            for frac in (0.4, 0.34, 0.28, 0.22):
                bw, bh = box(frac)
                x = 1 if fx == 0 else width - 1 - bw
                y = 1 if fy == 0 else height - 1 - bh
                rect = (x - INSET_GAP, y - INSET_GAP, x + bw + INSET_GAP, y + bh + INSET_GAP)
                if any((f["x"] < rect[2] and rect[0] < f["x"] + f["width"] and f["y"] < rect[3] and rect[1] < f["y"] + f["height"]) for f in frames):
                    continue
                if segments_hit(main_rings, rect) or inside(main_rings, x + bw / 2, y + bh / 2):
                    continue
                placed = (x, y, bw, bh)
                break
            if placed:
                break
        if placed is None:
            bw, bh = box(0.34)
            placed = (width - 1 - bw, height + INSET_GAP, bw, bh)  # below the map
            height = math.ceil(height + INSET_GAP + bh + 1)
        x, y, bw, bh = placed
        frames.append({"x": x, "y": y, "width": bw, "height": bh})
        iproj = Projection([(code, polys)], bw - 2 * INSET_PAD, bh - 2 * INSET_PAD, x + INSET_PAD, y + INSET_PAD, max_s=proj.s)
        shapes.update(build_shapes([(code, polys)], iproj, stats))
    layer = {
        "width": width,
        "height": height,
        "units": [{"code": c, "d": path(shapes[c])} for c, _, _ in units],
    }
    if frames:
        layer["insets"] = [{k: round(v, 1) for k, v in f.items()} for f in frames]
    return layer


def layer_bytes(layer):
    return sum(len(u["d"]) for u in layer["units"])


def main():
    provinces = json.loads((ADMIN / "provinces.geojson").read_text("utf-8"))["features"]
    wards = json.loads((ADMIN / "wards.geojson").read_text("utf-8"))["features"]
    units = sorted((f["properties"]["code"], polygons(f["geometry"])) for f in provinces)
    proj, width, height = fit(units)
    nstats, wstats = {}, {}
    shapes = build_shapes(units, proj, nstats)
    national = {"width": width, "height": height, "units": [{"code": c, "d": path(shapes[c])} for c, _ in units]}

    by_province = {}
    for f in sorted(wards, key=lambda f: f["properties"]["code"]):
        p = f["properties"]
        by_province.setdefault(p["province_code"], []).append((p["code"], polygons(f["geometry"]), p["kind"]))
    assert sorted(by_province) == [c for c, _ in units], "every province has wards"
    ward_layers = {code: ward_layer(by_province[code], wstats) for code, _ in units}

    doc = {"provinces": national, "wards": ward_layers}
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode("utf-8")
    with open(OUT, "wb") as out:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=out, mtime=0) as gz:
            gz.write(raw)

    nb = layer_bytes(national)
    print(f"national layer: {width}x{height}, {len(national['units'])} units, {nb:,} bytes of path data (budget {NATIONAL_BUDGET:,})")
    print(f"  {nstats.get('rings', 0)} rings, {nstats.get('markers', 0)} islets as markers, {nstats.get('dropped', 0)} islets dropped next to drawn land")
    sizes = sorted(((layer_bytes(l), c) for c, l in ward_layers.items()), reverse=True)
    for b, c in sizes[:5]:
        l = ward_layers[c]
        print(f"ward layer {c}: {l['width']}x{l['height']}, {len(l['units'])} wards, {b:,} bytes" + (f", insets {l['insets']}" if "insets" in l else ""))
    for c, l in ward_layers.items():
        if "insets" in l and c not in [c2 for _, c2 in sizes[:5]]:
            print(f"ward layer {c}: {l['width']}x{l['height']}, {len(l['units'])} wards, {layer_bytes(l):,} bytes, insets {l['insets']}")
    print(f"ward layers: {sum(b for b, _ in sizes):,} bytes of path data in total, median {sizes[len(sizes) // 2][0]:,}")
    print(f"  {wstats.get('rings', 0)} rings, {wstats.get('markers', 0)} islets as markers, {wstats.get('dropped', 0)} islets dropped next to drawn land")
    print(f"wrote {OUT}: {len(raw):,} bytes JSON, {OUT.stat().st_size:,} bytes gzip")
    assert nb <= NATIONAL_BUDGET, "national layer over budget"
    assert sizes[0][0] <= WARD_BUDGET, "a ward layer is over budget"


if __name__ == "__main__":
    main()
