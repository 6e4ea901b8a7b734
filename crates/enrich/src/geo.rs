//! Point → ward: an R-tree over the bounding box of every polygon part, then
//! an exact even-odd point-in-polygon test on the few candidates.

use crate::EnrichError;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::io::Read;

const WARDS_GZ: &[u8] = include_bytes!("../data/wards.geojson.gz");

/// `[lon, lat]`, GeoJSON order.
type Pt = [f64; 2];

/// One polygon of a ward (a MultiPolygon has several): its rings, exterior
/// first, as ranges into [`WardIndex::points`].
#[derive(Debug)]
struct Part {
    ward: u32,
    rings: Vec<(u32, u32)>,
}

/// Spatial index of the ward polygons.
#[derive(Debug)]
pub struct WardIndex {
    codes: Vec<String>,
    parts: Vec<Part>,
    /// Every ring's vertices, concatenated (one allocation for ~535k points).
    points: Vec<Pt>,
    /// Part bounding boxes `[min, max]` in part order, for `locate_linear`.
    boxes: Vec<[Pt; 2]>,
    /// The same boxes in an R-tree; the data is the index into `parts`.
    tree: RTree<GeomWithData<Rectangle<Pt>, u32>>,
}

impl WardIndex {
    /// Inflates and indexes the embedded `wards.geojson.gz` (3,321 wards).
    /// Takes tens of milliseconds: do it once at start-up and share the index.
    pub fn embedded() -> Result<WardIndex, EnrichError> {
        let mut json = Vec::with_capacity(12 << 20);
        flate2::read::GzDecoder::new(WARDS_GZ)
            .read_to_end(&mut json)
            .map_err(EnrichError::Gzip)?;
        Self::from_geojson(&json)
    }

    /// Indexes a GeoJSON FeatureCollection of Polygon/MultiPolygon features
    /// whose `properties.code` is the ward code (WGS 84 lon/lat).
    pub fn from_geojson(bytes: &[u8]) -> Result<WardIndex, EnrichError> {
        let fc: FeatureCollection = serde_json::from_slice(bytes)?;
        let mut index = WardIndex {
            codes: Vec::new(),
            parts: Vec::new(),
            points: Vec::new(),
            boxes: Vec::new(),
            tree: RTree::new(),
        };
        for f in fc.features {
            let ward = index.codes.len() as u32;
            index.codes.push(f.properties.code);
            let Some(Geometry { kind, coordinates }) = f.geometry else {
                continue;
            };
            let polygons = match (kind.as_str(), coordinates) {
                (_, Coords::Empty) => continue,
                ("Polygon", Coords::Poly(p)) => vec![p],
                ("MultiPolygon", Coords::Multi(m)) => m,
                (kind, _) => {
                    return Err(EnrichError::Geometry(format!(
                        "ward {}: unsupported or malformed {kind} geometry",
                        index.codes[ward as usize]
                    )))
                }
            };
            for polygon in polygons {
                let mut rings = Vec::with_capacity(polygon.len());
                for ring in polygon.into_iter().filter(|r| !r.is_empty()) {
                    let start = index.points.len() as u32;
                    index.points.extend(ring);
                    rings.push((start, index.points.len() as u32));
                }
                // The exterior ring bounds the part; holes lie inside it.
                let Some(&(s, e)) = rings.first() else {
                    continue;
                };
                let ext = &index.points[s as usize..e as usize];
                let (mut lo, mut hi) = (ext[0], ext[0]);
                for p in ext {
                    lo = [lo[0].min(p[0]), lo[1].min(p[1])];
                    hi = [hi[0].max(p[0]), hi[1].max(p[1])];
                }
                index.boxes.push([lo, hi]);
                index.parts.push(Part { ward, rings });
            }
        }
        if index.parts.is_empty() {
            return Err(EnrichError::Geometry("no polygons".into()));
        }
        let rects = index.boxes.iter().enumerate();
        index.tree = RTree::bulk_load(
            rects
                .map(|(i, &[lo, hi])| GeomWithData::new(Rectangle::from_corners(lo, hi), i as u32))
                .collect(),
        );
        Ok(index)
    }

    /// The code of the ward containing (`lat`, `lon`), or `None` outside
    /// every ward (abroad, at sea, one of the ~200 tiny islets lost to
    /// simplification) or for NaN/infinite/out-of-range input. Borders are
    /// simplified by 4–300 m, so a point that close to one may get the
    /// neighbouring ward.
    pub fn locate(&self, lat: f64, lon: f64) -> Option<&str> {
        if !valid(lat, lon) {
            return None;
        }
        let pt = [lon, lat];
        let hit = self
            .tree
            .locate_all_at_point(&pt)
            .find(|c| self.part_contains(c.data, pt))?;
        Some(&self.codes[self.parts[hit.data as usize].ward as usize])
    }

    /// [`locate`](Self::locate) without the R-tree: a linear scan over every
    /// part's bounding box, then the same exact test. Only the reference
    /// the tests and `examples/lookup_bench.rs` compare against.
    pub fn locate_linear(&self, lat: f64, lon: f64) -> Option<&str> {
        if !valid(lat, lon) {
            return None;
        }
        let pt = [lon, lat];
        let inside = |[lo, hi]: &[Pt; 2]| {
            lo[0] <= pt[0] && pt[0] <= hi[0] && lo[1] <= pt[1] && pt[1] <= hi[1]
        };
        let hit = (0..self.boxes.len() as u32)
            .find(|&i| inside(&self.boxes[i as usize]) && self.part_contains(i, pt))?;
        Some(&self.codes[self.parts[hit as usize].ward as usize])
    }

    /// Number of wards (features) indexed.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether no ward is indexed (never true: loading refuses that).
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Even-odd rule over all rings of the part: a point inside a hole
    /// crosses the exterior and the hole, an even count, so it is outside.
    fn part_contains(&self, part: u32, [x, y]: Pt) -> bool {
        let mut inside = false;
        for &(s, e) in &self.parts[part as usize].rings {
            let ring = &self.points[s as usize..e as usize];
            let mut j = ring.len() - 1;
            for (i, &[xi, yi]) in ring.iter().enumerate() {
                let [xj, yj] = ring[j];
                // Half-open in y, so a vertex exactly at the ray's height
                // counts once, not twice; (yi > y) != (yj > y) also rules
                // out a zero denominator.
                if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                    inside = !inside;
                }
                j = i;
            }
        }
        inside
    }
}

fn valid(lat: f64, lon: f64) -> bool {
    // NaN fails both comparisons.
    lat.abs() <= 90.0 && lon.abs() <= 180.0
}

#[derive(Deserialize)]
struct FeatureCollection {
    features: Vec<Feature>,
}

#[derive(Deserialize)]
struct Feature {
    properties: Properties,
    geometry: Option<Geometry>,
}

#[derive(Deserialize)]
struct Properties {
    code: String,
}

#[derive(Deserialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: String,
    coordinates: Coords,
}

/// GeoJSON coordinates of any nesting depth, recognised by shape so that
/// `type` may come after `coordinates`, without serde's buffering of untagged
/// enums or a `serde_json::Value` per number (this runs over ~1M numbers).
enum Coords {
    Empty,
    Num(f64),
    Pos(Pt),
    Ring(Vec<Pt>),
    Poly(Vec<Vec<Pt>>),
    Multi(Vec<Vec<Vec<Pt>>>),
}

impl<'de> Deserialize<'de> for Coords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CoordsVisitor)
    }
}

struct CoordsVisitor;

impl<'de> Visitor<'de> for CoordsVisitor {
    type Value = Coords;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("GeoJSON coordinates")
    }

    fn visit_f64<E>(self, v: f64) -> Result<Coords, E> {
        Ok(Coords::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Coords, E> {
        Ok(Coords::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Coords, E> {
        Ok(Coords::Num(v as f64))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Coords, A::Error> {
        // The first non-empty element fixes the depth of the whole list.
        let first = loop {
            match seq.next_element::<Coords>()? {
                None => return Ok(Coords::Empty),
                Some(Coords::Empty) => continue,
                Some(c) => break c,
            }
        };
        match first {
            Coords::Num(x) => {
                let y = match seq.next_element::<Coords>()? {
                    Some(Coords::Num(y)) => y,
                    _ => return Err(de::Error::custom("a position needs two numbers")),
                };
                while seq.next_element::<IgnoredAny>()?.is_some() {} // altitude
                Ok(Coords::Pos([x, y]))
            }
            Coords::Pos(p) => collect(p, seq, |c| match c {
                Coords::Pos(p) => Some(p),
                _ => None,
            })
            .map(Coords::Ring),
            Coords::Ring(r) => collect(r, seq, |c| match c {
                Coords::Ring(r) => Some(r),
                _ => None,
            })
            .map(Coords::Poly),
            Coords::Poly(p) => collect(p, seq, |c| match c {
                Coords::Poly(p) => Some(p),
                _ => None,
            })
            .map(Coords::Multi),
            Coords::Multi(_) | Coords::Empty => {
                Err(de::Error::custom("coordinates nested too deeply"))
            }
        }
    }
}

/// Collects the rest of a list whose elements must all have `first`'s depth.
fn collect<'de, T, A: SeqAccess<'de>>(
    first: T,
    mut seq: A,
    take: fn(Coords) -> Option<T>,
) -> Result<Vec<T>, A::Error> {
    let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0) + 1);
    v.push(first);
    while let Some(c) = seq.next_element::<Coords>()? {
        match c {
            Coords::Empty => {}
            c => v.push(take(c).ok_or_else(|| de::Error::custom("mixed coordinate nesting"))?),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10×10 square with a 2×2 hole, a separate island, and a second ward
    /// given as MultiPolygon with `type` after `coordinates`.
    const SAMPLE: &str = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","properties":{"code":"A"},"geometry":{"type":"MultiPolygon","coordinates":[
        [[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]],
        [[[20,0],[21,0],[21,1],[20,1],[20,0]]]]}},
      {"type":"Feature","properties":{"code":"B","extra":1},"geometry":{"coordinates":[
        [[4.5,4.5,0],[5.5,4.5,0],[5.5,5.5,0],[4.5,5.5,0],[4.5,4.5,0]]],"type":"Polygon"}},
      {"type":"Feature","properties":{"code":"C"},"geometry":null}
    ]}"#;

    #[test]
    fn holes_multipolygons_and_edges() {
        let idx = WardIndex::from_geojson(SAMPLE.as_bytes()).unwrap();
        assert_eq!(idx.len(), 3);
        for (lat, lon, want) in [
            (1.0, 1.0, Some("A")),
            (5.0, 4.2, None),       // in A's hole, outside B
            (5.0, 5.0, Some("B")),  // in B, inside A's hole
            (0.5, 20.5, Some("A")), // A's island
            (0.5, 15.0, None),      // between A's parts
            (10.5, 5.0, None),
            (9.999, 9.999, Some("A")),
            (5.0, 0.0, Some("A")), // on the left edge: half-open rule counts it in
            (f64::NAN, 1.0, None),
            (1.0, f64::INFINITY, None),
            (91.0, 1.0, None),
        ] {
            assert_eq!(idx.locate(lat, lon), want, "({lat}, {lon})");
            assert_eq!(idx.locate_linear(lat, lon), want, "linear ({lat}, {lon})");
        }
    }

    #[test]
    fn malformed_geojson_is_an_error() {
        for bad in [
            "",
            "{}",
            r#"{"features":[]}"#,
            r#"{"features":[{"properties":{"code":"A"},"geometry":{"type":"Point","coordinates":[1,2]}}]}"#,
            r#"{"features":[{"properties":{"code":"A"},"geometry":{"type":"Polygon","coordinates":[[[1,2],[[3,4]]]]}}]}"#,
            r#"{"features":[{"properties":{"code":"A"},"geometry":{"type":"Polygon","coordinates":[[[1],[2,3]]]}}]}"#,
            r#"{"features":[{"properties":{"code":"A"},"geometry":{"type":"MultiPolygon","coordinates":[[[0,0],[1,0],[0,1],[0,0]]]}}]}"#,
        ] {
            assert!(WardIndex::from_geojson(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(WardIndex::from_geojson(b"\xff\x00garbage").is_err());
    }
}
