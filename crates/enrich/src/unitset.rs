//! A version of the administrative units, as an admin loads it when units
//! change again (spec/units.md): provinces and wards (CSV, the shared
//! `units.csv` format) and ward boundaries (GeoJSON). Everything is checked
//! before anything is built, and every problem found is reported with its
//! line or ward, so that a bad file is refused with a clear message.

use std::collections::{HashMap, HashSet};

use crate::{csv, EnrichError, Units, WardIndex};

/// Most problems listed in one refusal.
const MAX_PROBLEMS: usize = 25;
/// Where Vietnam's units may lie (lon, lat), islands included.
const LON_RANGE: std::ops::RangeInclusive<f64> = 100.0..=120.0;
const LAT_RANGE: std::ops::RangeInclusive<f64> = 5.0..=25.0;

/// Units and boundaries that belong together.
#[derive(Debug)]
pub struct UnitSet {
    pub units: Units,
    pub wards: WardIndex,
}

/// Why a unit version was refused: every problem found, first ones first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} problem(s): {}", .0.len(), .0.join("; "))]
pub struct UnitProblems(pub Vec<String>);

impl UnitSet {
    /// Checks and builds a unit version. `provinces_csv` uses the columns
    /// `code,name,name_en,kind`; `units_csv` the columns of the shared
    /// `units.csv`; `wards_geojson` a FeatureCollection whose features carry
    /// `properties.code` and a Polygon or MultiPolygon.
    pub fn load(
        provinces_csv: &str,
        units_csv: &str,
        wards_geojson: &[u8],
    ) -> Result<UnitSet, UnitProblems> {
        let mut problems = Vec::new();
        let provinces = check_provinces(provinces_csv, &mut problems);
        let wards = check_wards_csv(units_csv, &provinces, &mut problems);
        check_geojson(wards_geojson, &wards, &mut problems);
        if !problems.is_empty() {
            problems.truncate(MAX_PROBLEMS);
            return Err(UnitProblems(problems));
        }
        let units = Units::from_csv_text(provinces_csv, units_csv).map_err(one)?;
        let index = WardIndex::from_geojson(wards_geojson).map_err(one)?;
        Ok(UnitSet {
            units,
            wards: index,
        })
    }
}

fn one(error: EnrichError) -> UnitProblems {
    UnitProblems(vec![error.to_string()])
}

fn digits(code: &str, n: usize) -> bool {
    code.len() == n && code.bytes().all(|b| b.is_ascii_digit())
}

fn check_provinces(text: &str, problems: &mut Vec<String>) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    match csv::rows("provinces.csv", text, &["code", "name", "name_en", "kind"]) {
        Err(e) => problems.push(e.to_string()),
        Ok(rows) => {
            for r in rows {
                let code = r.fields[0].trim();
                if code.is_empty() {
                    problems.push(format!("provinces.csv:{}: missing province code", r.line));
                } else if !digits(code, 2) {
                    problems.push(format!(
                        "provinces.csv:{}: province code {code:?} is not 2 digits",
                        r.line
                    ));
                } else if let Some(first) = seen.insert(code.to_owned(), r.line) {
                    problems.push(format!(
                        "provinces.csv:{}: province code {code} listed twice (first on line {first})",
                        r.line
                    ));
                }
                if r.fields[1].trim().is_empty() {
                    problems.push(format!("provinces.csv:{}: missing name", r.line));
                }
            }
        }
    }
    if seen.is_empty() && problems.is_empty() {
        problems.push("provinces.csv: no provinces".to_owned());
    }
    seen.into_keys().collect()
}

fn check_wards_csv(
    text: &str,
    provinces: &HashSet<String>,
    problems: &mut Vec<String>,
) -> HashSet<String> {
    let cols = [
        "code",
        "name",
        "kind",
        "province_code",
        "centroid_lat",
        "centroid_lon",
    ];
    let mut seen: HashMap<String, usize> = HashMap::new();
    match csv::rows("units.csv", text, &cols) {
        Err(e) => problems.push(e.to_string()),
        Ok(rows) => {
            for r in rows {
                let at = format!("units.csv:{}", r.line);
                let code = r.fields[0].trim();
                if code.is_empty() {
                    problems.push(format!("{at}: missing ward code"));
                } else if !digits(code, 5) {
                    problems.push(format!("{at}: ward code {code:?} is not 5 digits"));
                } else if let Some(first) = seen.insert(code.to_owned(), r.line) {
                    problems.push(format!(
                        "{at}: ward code {code} listed twice (first on line {first})"
                    ));
                }
                if r.fields[1].trim().is_empty() {
                    problems.push(format!("{at}: missing name"));
                }
                if !["xa", "phuong", "dac_khu"].contains(&r.fields[2]) {
                    problems.push(format!(
                        "{at}: kind {:?} is not xa, phuong or dac_khu",
                        r.fields[2]
                    ));
                }
                if !provinces.contains(r.fields[3]) {
                    problems.push(format!("{at}: unknown province_code {:?}", r.fields[3]));
                }
                let lat = r.fields[4]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| LAT_RANGE.contains(v));
                let lon = r.fields[5]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| LON_RANGE.contains(v));
                if lat.is_none() || lon.is_none() {
                    problems.push(format!("{at}: centroid is not a position in Vietnam"));
                }
            }
        }
    }
    if seen.is_empty() && problems.is_empty() {
        problems.push("units.csv: no wards".to_owned());
    }
    seen.into_keys().collect()
}

fn check_geojson(bytes: &[u8], wards: &HashSet<String>, problems: &mut Vec<String>) {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("wards.geojson: not JSON: {e}"));
            return;
        }
    };
    let Some(features) = value.get("features").and_then(|f| f.as_array()) else {
        problems.push("wards.geojson: not a FeatureCollection (no features)".to_owned());
        return;
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, feature) in features.iter().enumerate() {
        let at = format!("wards.geojson feature {}", i + 1);
        let code = feature
            .pointer("/properties/code")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .trim()
            .to_owned();
        let at = if code.is_empty() {
            problems.push(format!("{at}: missing properties.code"));
            at
        } else {
            let named = format!("{at} (ward {code})");
            if let Some(first) = seen.insert(code.clone(), i + 1) {
                problems.push(format!(
                    "{named}: ward code listed twice (first in feature {first})"
                ));
            }
            if !wards.contains(&code) {
                problems.push(format!("{named}: not a ward of units.csv"));
            }
            named
        };
        check_geometry(feature.get("geometry"), &at, problems);
        if problems.len() > MAX_PROBLEMS {
            return;
        }
    }
    let mut missing: Vec<&String> = wards.iter().filter(|w| !seen.contains_key(*w)).collect();
    missing.sort();
    for code in missing.into_iter().take(MAX_PROBLEMS) {
        problems.push(format!(
            "ward {code} of units.csv has no polygon in wards.geojson"
        ));
    }
}

fn check_geometry(geometry: Option<&serde_json::Value>, at: &str, problems: &mut Vec<String>) {
    let Some(geometry) = geometry.filter(|g| !g.is_null()) else {
        problems.push(format!("{at}: no geometry"));
        return;
    };
    let coordinates = geometry.get("coordinates");
    let polygons: Vec<&serde_json::Value> =
        match (geometry.get("type").and_then(|t| t.as_str()), coordinates) {
            (Some("Polygon"), Some(c)) => vec![c],
            (Some("MultiPolygon"), Some(serde_json::Value::Array(ps))) => ps.iter().collect(),
            (kind, _) => {
                problems.push(format!(
                    "{at}: geometry must be a Polygon or MultiPolygon, not {kind:?}"
                ));
                return;
            }
        };
    if polygons.is_empty() {
        problems.push(format!("{at}: empty MultiPolygon"));
    }
    for polygon in polygons {
        let Some(rings) = polygon.as_array().filter(|r| !r.is_empty()) else {
            problems.push(format!("{at}: a polygon without rings"));
            continue;
        };
        for (r, ring) in rings.iter().enumerate() {
            if let Err(why) = check_ring(ring) {
                let which = if r == 0 {
                    "exterior ring".to_owned()
                } else {
                    format!("hole {r}")
                };
                problems.push(format!("{at}: invalid polygon: {which} {why}"));
                return;
            }
        }
    }
}

/// A ring: at least 4 positions, closed, in Vietnam, enclosing an area.
fn check_ring(ring: &serde_json::Value) -> Result<(), String> {
    let positions = ring.as_array().ok_or("is not an array")?;
    let mut points = Vec::with_capacity(positions.len());
    for p in positions {
        let pair = p
            .as_array()
            .filter(|a| a.len() >= 2)
            .ok_or("has a position that is not [lon, lat]")?;
        let (lon, lat) = (pair[0].as_f64(), pair[1].as_f64());
        match (lon, lat) {
            (Some(lon), Some(lat)) if LON_RANGE.contains(&lon) && LAT_RANGE.contains(&lat) => {
                points.push((lon, lat));
            }
            _ => {
                return Err(format!(
                    "has a position outside Vietnam or not numeric: {p}"
                ))
            }
        }
    }
    if points.len() < 4 {
        return Err(format!(
            "has {} positions (at least 4 needed)",
            points.len()
        ));
    }
    if points.first() != points.last() {
        return Err("is not closed (the last position must repeat the first)".to_owned());
    }
    let twice_area: f64 = points
        .windows(2)
        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
        .sum();
    if twice_area.abs() < 1e-12 {
        return Err("encloses no area".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVINCES: &str = "code,name,name_en,kind\n79,Hồ Chí Minh,Ho Chi Minh City,thanh_pho\n";
    const UNITS: &str = "code,name,kind,province_code,centroid_lat,centroid_lon\n\
                         26740,Sài Gòn,phuong,79,10.776,106.70\n\
                         26743,Bến Thành,phuong,79,10.77,106.69\n";

    fn square(code: &str, x: f64) -> String {
        format!(
            r#"{{"type":"Feature","properties":{{"code":"{code}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},10.7],[{x1},10.7],[{x1},10.8],[{x},10.8],[{x},10.7]]]}}}}"#,
            x1 = x + 0.01
        )
    }

    fn collection(features: &[String]) -> Vec<u8> {
        format!(
            r#"{{"type":"FeatureCollection","features":[{}]}}"#,
            features.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn a_good_version_loads_and_locates() {
        let set = UnitSet::load(
            PROVINCES,
            UNITS,
            &collection(&[square("26740", 106.70), square("26743", 106.68)]),
        )
        .unwrap();
        assert_eq!(set.wards.locate(10.75, 106.705), Some("26740"));
        assert_eq!(set.units.ward("26743").unwrap().name, "Bến Thành");
    }

    #[test]
    fn missing_codes_duplicates_and_invalid_polygons_are_named() {
        let good = collection(&[square("26740", 106.70), square("26743", 106.68)]);
        let cases: Vec<(String, Vec<u8>, &str)> = vec![
            (
                UNITS.replace("26743,", ","),
                good.clone(),
                "missing ward code",
            ),
            (
                UNITS.replace("26743,", "26740,"),
                good.clone(),
                "listed twice",
            ),
            (
                UNITS.replace(",79,10.77", ",99,10.77"),
                good.clone(),
                "unknown province_code",
            ),
            (
                UNITS.to_owned(),
                collection(&[square("26740", 106.70)]),
                "26743 of units.csv has no polygon",
            ),
            (
                UNITS.to_owned(),
                collection(&[square("26740", 106.70), square("26740", 106.68)]),
                "listed twice",
            ),
            (
                UNITS.to_owned(),
                collection(&[
                    square("26740", 106.70),
                    square("26743", 106.68).replace(",[106.68,10.7]]]", "]]"),
                ]),
                "not closed",
            ),
            (
                UNITS.to_owned(),
                collection(&[
                    square("26740", 106.70),
                    square("26743", 106.68).replace("10.8", "10.7"),
                ]),
                "encloses no area",
            ),
            (
                UNITS.to_owned(),
                collection(&[square("26740", 106.70), square("26743", 6.68)]),
                "outside Vietnam",
            ),
            (
                UNITS.to_owned(),
                collection(&[
                    square("26740", 106.70),
                    square("26743", 106.68).replace(r#""code":"26743""#, r#""name":"x""#),
                ]),
                "missing properties.code",
            ),
            (UNITS.to_owned(), b"{not json".to_vec(), "not JSON"),
        ];
        for (units, geojson, expected) in cases {
            let err = UnitSet::load(PROVINCES, &units, &geojson).unwrap_err();
            assert!(
                err.0.iter().any(|p| p.contains(expected)),
                "expected {expected:?} in {err}"
            );
        }
    }
}
