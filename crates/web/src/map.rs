//! Choropleth maps of Vietnam: the 34 provinces, and the wards of each
//! province, drawn as accessible, responsive inline SVG.
//!
//! The geometry is compiled in (`data/maps.json.gz`, made by
//! `data/prepare_maps.py` from the shared 2025 boundaries; see
//! `data/README.md` for sources, licences and the credit line that must be
//! shown next to the maps). [`Maps::embedded`] parses it once; the caller
//! keeps the [`Maps`] and hands a [`MapLayer`] to [`choropleth`] with the
//! finished numbers of each unit.
//!
//! Every layer is a viewBox 600 wide and at most 800 high (tall provinces
//! are centred in 600 × 800). Units are SVG path data in that viewBox.
//! The national layer shows the Hoàng Sa and Trường Sa archipelagos in
//! place; ward layers whose island special zone lies far offshore (Hoàng
//! Sa, Trường Sa, Côn Đảo, Bạch Long Vĩ) draw it in a framed inset
//! ([`MapLayer::insets`]) at its own, never larger, scale.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::io::Read as _;

use serde::Deserialize;

/// The compiled-in geometry (see `data/README.md`).
const EMBEDDED: &[u8] = include_bytes!("../data/maps.json.gz");

/// Why the embedded map data could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum MapError {
    /// The gzip stream could not be inflated.
    Inflate(std::io::Error),
    /// The inflated data is not the expected JSON.
    Json(serde_json::Error),
    /// The data parsed but is inconsistent; the text says how.
    Invalid(String),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Inflate(e) => write!(f, "map data: cannot inflate: {e}"),
            MapError::Json(e) => write!(f, "map data: bad JSON: {e}"),
            MapError::Invalid(why) => write!(f, "map data: {why}"),
        }
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MapError::Inflate(e) => Some(e),
            MapError::Json(e) => Some(e),
            MapError::Invalid(_) => None,
        }
    }
}

/// All map layers: the provinces of Vietnam and, per province, its wards.
#[derive(Debug, Clone, Deserialize)]
pub struct Maps {
    provinces: MapLayer,
    wards: BTreeMap<String, MapLayer>,
}

impl Maps {
    /// Parses the embedded `data/maps.json.gz` (about 0.5 MB compressed,
    /// 1.5 MB of JSON). Call it once at start-up and keep the result.
    pub fn embedded() -> Result<Maps, MapError> {
        Maps::from_gzip(EMBEDDED)
    }

    fn from_gzip(bytes: &[u8]) -> Result<Maps, MapError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(MapError::Inflate)?;
        let maps: Maps = serde_json::from_slice(&json).map_err(MapError::Json)?;
        maps.validate()?;
        Ok(maps)
    }

    fn validate(&self) -> Result<(), MapError> {
        let check = |name: &str, layer: &MapLayer| -> Result<(), MapError> {
            let bad = |why: String| MapError::Invalid(format!("layer {name}: {why}"));
            if !(layer.width > 0.0
                && layer.height > 0.0
                && layer.width.is_finite()
                && layer.height.is_finite())
            {
                return Err(bad(format!("size {} x {}", layer.width, layer.height)));
            }
            if layer.units.is_empty() {
                return Err(bad("no units".into()));
            }
            let mut seen = BTreeSet::new();
            for unit in &layer.units {
                if !seen.insert(unit.code.as_str()) {
                    return Err(bad(format!("unit {} twice", unit.code)));
                }
                if unit.d.is_empty() || unit.d.contains(['"', '<', '>', '&']) {
                    return Err(bad(format!("unit {}: bad path", unit.code)));
                }
            }
            Ok(())
        };
        check("provinces", &self.provinces)?;
        for (code, layer) in &self.wards {
            check(code, layer)?;
        }
        let provinces: BTreeSet<&str> = self
            .provinces
            .units
            .iter()
            .map(|u| u.code.as_str())
            .collect();
        let with_wards: BTreeSet<&str> = self.wards.keys().map(String::as_str).collect();
        if provinces != with_wards {
            return Err(MapError::Invalid(
                "ward layers do not match the provinces".into(),
            ));
        }
        Ok(())
    }

    /// The national layer: one unit per province, codes `"01"` … `"96"`.
    pub fn provinces(&self) -> &MapLayer {
        &self.provinces
    }

    /// The wards of a province (unit codes are 5-digit ward codes), or
    /// `None` for an unknown province code.
    pub fn wards_of(&self, province_code: &str) -> Option<&MapLayer> {
        self.wards.get(province_code)
    }
}

/// One map: a viewBox `0 0 width height` and the units drawn in it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MapLayer {
    /// Width of the viewBox (600 in the embedded data).
    pub width: f64,
    /// Height of the viewBox (at most 800 in the embedded data).
    pub height: f64,
    /// The units, sorted by code (also the drawing order).
    pub units: Vec<MapUnit>,
    /// Frames of units drawn at a different scale (far-offshore island
    /// zones in some ward layers); [`choropleth`] draws a thin frame around
    /// each. Empty for the national layer.
    #[serde(default)]
    pub insets: Vec<Inset>,
}

/// One administrative unit of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MapUnit {
    /// Official code: 2 digits for a province, 5 for a ward.
    pub code: String,
    /// SVG path data in the layer's viewBox (relative commands).
    pub d: String,
}

/// A rectangle of a layer holding a unit drawn at its own scale.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Inset {
    /// Left edge, viewBox units.
    pub x: f64,
    /// Top edge, viewBox units.
    pub y: f64,
    /// Width, viewBox units.
    pub width: f64,
    /// Height, viewBox units.
    pub height: f64,
}

/// What a region shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// A reliable value, coloured on the scale.
    Value(f64),
    /// Too few samples: hatched, over a light tint of the value's colour if
    /// there is one, else over light grey.
    Insufficient(Option<f64>),
    /// Nothing measured: light grey. Also used for non-finite values.
    NoData,
}

/// The data of one unit of the layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Region<'a> {
    /// The unit's code in the layer; regions with unknown codes are ignored.
    pub code: &'a str,
    /// Its value and state.
    pub fill: Fill,
    /// Plain-text tooltip (escaped here), e.g. `"Hà Nội: 87.3 Mbit/s"`.
    pub title: String,
    /// Link target (escaped here); the region becomes a link when set.
    pub href: Option<String>,
}

/// The colour scale and its legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// Value drawn with the scale's first colour; lower values are clamped.
    pub min: f64,
    /// Value drawn with the scale's last colour; higher values are clamped.
    pub max: f64,
    /// `true` for speeds (high values dark), `false` for latency (low
    /// values dark): darker always means better.
    pub higher_is_better: bool,
    /// Unit shown after the legend title, e.g. `"Mbit/s"`; may be empty.
    pub unit_label: String,
    /// Legend title, plain text, e.g. `"Tốc độ tải xuống trung vị"`.
    pub title: String,
}

/// Translated text of the map, from the caller's i18n catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapText {
    /// Legend label of hatched regions, e.g. `"Chưa đủ mẫu"`.
    pub insufficient: String,
    /// Legend label of grey regions, e.g. `"Chưa có dữ liệu"`.
    pub no_data: String,
    /// Accessible name of the whole map (`aria-label`).
    pub aria_label: String,
}

/// Viridis (perceptually uniform, colour-blind safe), from dark to light.
const VIRIDIS: [[u8; 3]; 10] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x28, 0x78],
    [0x3e, 0x4a, 0x89],
    [0x31, 0x68, 0x8e],
    [0x26, 0x82, 0x8e],
    [0x1f, 0x9e, 0x89],
    [0x35, 0xb7, 0x79],
    [0x6d, 0xcd, 0x59],
    [0xb4, 0xde, 0x2c],
    [0xfd, 0xe7, 0x25],
];
const NO_DATA: [u8; 3] = [0xd9, 0xdc, 0xe0];
const INSUFFICIENT_BASE: [u8; 3] = [0xf1, 0xf2, 0xf4];
const HATCH: &str = "#4a5560";
const BORDER: &str = "#fff";
const FRAME: &str = "#9aa5b1";
const INK: &str = "#1f2933";
const MUTED: &str = "#52606d";
const FONT: &str =
    "system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Helvetica Neue',Arial,sans-serif";
/// Share of white mixed into the colour of an insufficient region.
const TINT: f64 = 0.6;
/// Height of the legend in its 600-wide design units.
const LEGEND_H: f64 = 74.0;

/// Position of `v` on the scale: 0 at `min`, 1 at `max`, clamped; 0.5 for
/// a degenerate scale.
fn position(v: f64, scale: &Scale) -> f64 {
    let span = scale.max - scale.min;
    if !(span.is_finite() && span > 0.0) {
        return 0.5;
    }
    ((v - scale.min) / span).clamp(0.0, 1.0)
}

/// Colour at position `t` of the scale (darker = better).
fn colour_at(t: f64, higher_is_better: bool) -> [u8; 3] {
    let dark = if higher_is_better { t } else { 1.0 - t };
    let x = (1.0 - dark) * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|k| (f64::from(a[k]) + (f64::from(b[k]) - f64::from(a[k])) * f).round() as u8)
}

fn tint(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| (f64::from(v) + (255.0 - f64::from(v)) * TINT).round() as u8)
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// `v` with at most `decimals` decimals, no trailing zeros, no `-0`.
fn number(v: f64, decimals: usize) -> String {
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.truncate(s.trim_end_matches('0').trim_end_matches('.').len());
    }
    if s == "-0" {
        s.remove(0);
    }
    s
}

/// FNV-1a, for ids that are unique per distinct map on a page.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// The resolved look of one unit.
#[derive(Clone, Copy, PartialEq)]
enum Look {
    Ok(f64),
    Insufficient(Option<f64>),
    NoData,
}

/// Renders an accessible, responsive choropleth of `layer` as one inline
/// `<svg>` element (viewBox, `width="100%"`, no fixed size).
///
/// Colours come from viridis, darker meaning better (so reversed for
/// latency); values are clamped to `scale.min..=scale.max`. Insufficient
/// regions are hatched over a light tint of their value's colour (or light
/// grey without a value); no-data regions, units without a [`Region`] and
/// non-finite values are light grey. Each unit is one
/// `<path class="region" data-code=… data-state="ok|insufficient|nodata"
/// data-value=…>` (value with at most one decimal, absent for no data) with
/// a `<title>` tooltip, wrapped in `<a href=…>` when the region has a link.
/// A legend (title, gradient with five values, insufficient and no-data
/// swatches) is drawn below the map, and far-offshore insets get a frame.
///
/// The output depends only on the inputs, not on the order of `regions`
/// (if a code is given twice, the first region wins). All text is escaped.
pub fn choropleth(layer: &MapLayer, regions: &[Region], scale: &Scale, text: &MapText) -> String {
    let mut by_code: HashMap<&str, &Region> = HashMap::with_capacity(regions.len());
    for r in regions {
        by_code.entry(r.code).or_insert(r);
    }
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let looks: Vec<(Look, Option<&Region>)> = layer
        .units
        .iter()
        .map(|u| {
            let region = by_code.get(u.code.as_str()).copied();
            let look = match region.map(|r| r.fill) {
                Some(Fill::Value(v)) if v.is_finite() => Look::Ok(v),
                Some(Fill::Insufficient(v)) => Look::Insufficient(finite(v)),
                _ => Look::NoData,
            };
            (look, region)
        })
        .collect();

    // Ids: a hash of everything drawn, so two different maps on one page
    // never share an id, and identical ones define identical patterns.
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for ((look, region), unit) in looks.iter().zip(&layer.units) {
        fnv(&mut h, unit.code.as_bytes());
        match look {
            Look::Ok(v) => fnv(&mut h, &[&[1u8][..], &v.to_bits().to_le_bytes()].concat()),
            Look::Insufficient(v) => fnv(
                &mut h,
                &[&[2u8][..], &v.unwrap_or(f64::NAN).to_bits().to_le_bytes()].concat(),
            ),
            Look::NoData => fnv(&mut h, &[3]),
        }
        if let Some(r) = region {
            fnv(&mut h, r.title.as_bytes());
            fnv(&mut h, r.href.as_deref().unwrap_or("").as_bytes());
        }
    }
    for s in [
        &scale.title,
        &scale.unit_label,
        &text.aria_label,
        &text.insufficient,
        &text.no_data,
    ] {
        fnv(&mut h, s.as_bytes());
        fnv(&mut h, &[0]);
    }
    fnv(&mut h, &[u8::from(scale.higher_is_better)]);
    fnv(&mut h, &scale.min.to_bits().to_le_bytes());
    fnv(&mut h, &scale.max.to_bits().to_le_bytes());
    fnv(&mut h, &layer.width.to_bits().to_le_bytes());
    let id = format!("m{:010x}", h >> 24);

    let (w, map_h) = (layer.width, layer.height);
    let u = w / 600.0; // legend design unit
    let total_h = map_h + (LEGEND_H + 10.0) * u;
    let mut out =
        String::with_capacity(layer.units.iter().map(|u| u.d.len() + 160).sum::<usize>() + 4096);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="ispeed-map" viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}" font-family="{FONT}">"#,
        number(w, 1),
        number(total_h, 1),
        escape(&text.aria_label),
    );
    out.push_str(
        "<style>.ispeed-map .region{stroke:#fff;stroke-width:.6px;vector-effect:non-scaling-stroke;stroke-linejoin:round}\
         .ispeed-map .region:hover,.ispeed-map a:focus .region{stroke:#111;stroke-width:1.6px}\
         .ispeed-map a:focus{outline:none}</style>",
    );

    // Patterns: one per distinct tint (plus the grey one the legend uses).
    let hatch_base = |v: Option<f64>| {
        v.map_or(INSUFFICIENT_BASE, |v| {
            tint(colour_at(position(v, scale), scale.higher_is_better))
        })
    };
    let mut tints: BTreeSet<[u8; 3]> = BTreeSet::new();
    tints.insert(INSUFFICIENT_BASE);
    for (look, _) in &looks {
        if let Look::Insufficient(v) = look {
            tints.insert(hatch_base(*v));
        }
    }
    let pattern_id = |c: [u8; 3]| format!("{id}-h{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
    out.push_str("<defs>");
    let _ = write!(out, r#"<linearGradient id="{id}-g">"#);
    for i in 0..=8 {
        let t = f64::from(i) / 8.0;
        let _ = write!(
            out,
            r#"<stop offset="{}" stop-color="{}"/>"#,
            number(t, 3),
            hex(colour_at(t, scale.higher_is_better))
        );
    }
    out.push_str("</linearGradient>");
    for c in &tints {
        let _ = write!(
            out,
            r#"<pattern id="{}" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="5" height="5" fill="{}"/><path d="M1 0v5" stroke="{HATCH}" stroke-width="1.3"/></pattern>"#,
            pattern_id(*c),
            hex(*c),
        );
    }
    out.push_str("</defs>");

    if !layer.insets.is_empty() {
        let _ = write!(
            out,
            r#"<g fill="none" stroke="{FRAME}" stroke-width="{}">"#,
            number(0.8 * u.max(0.5), 2)
        );
        for f in &layer.insets {
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2"/>"#,
                number(f.x, 1),
                number(f.y, 1),
                number(f.width, 1),
                number(f.height, 1)
            );
        }
        out.push_str("</g>");
    }

    let _ = write!(
        out,
        r#"<g stroke="{BORDER}" stroke-width="{}" stroke-linejoin="round">"#,
        number(0.6 * u, 2)
    );
    for ((look, region), unit) in looks.iter().zip(&layer.units) {
        let href = region.and_then(|r| r.href.as_deref());
        if let Some(href) = href {
            let _ = write!(out, r#"<a href="{}">"#, escape(href));
        }
        let (state, value, fill) = match *look {
            Look::Ok(v) => (
                "ok",
                Some(v),
                hex(colour_at(position(v, scale), scale.higher_is_better)),
            ),
            Look::Insufficient(v) => (
                "insufficient",
                v,
                format!("url(#{})", pattern_id(hatch_base(v))),
            ),
            Look::NoData => ("nodata", None, hex(NO_DATA)),
        };
        let _ = write!(
            out,
            r#"<path class="region" data-code="{}" data-state="{state}""#,
            escape(&unit.code)
        );
        if let Some(v) = value {
            let _ = write!(out, r#" data-value="{}""#, number(v, 1));
        }
        let _ = write!(out, r#" fill="{fill}" d="{}">"#, unit.d);
        if let Some(title) = region.map(|r| r.title.as_str()).filter(|t| !t.is_empty()) {
            let _ = write!(out, "<title>{}</title>", escape(title));
        }
        out.push_str("</path>");
        if href.is_some() {
            out.push_str("</a>");
        }
    }
    out.push_str("</g>");

    legend(
        &mut out,
        &id,
        map_h,
        u,
        scale,
        text,
        &pattern_id(INSUFFICIENT_BASE),
    );
    out.push_str("</svg>");
    out
}

/// The legend, drawn in 600-wide design units scaled to the layer width.
fn legend(
    out: &mut String,
    id: &str,
    top: f64,
    u: f64,
    scale: &Scale,
    text: &MapText,
    hatch_id: &str,
) {
    let _ = write!(
        out,
        r#"<g class="legend" transform="translate(0 {}) scale({})" font-size="12" fill="{INK}">"#,
        number(top + 10.0 * u, 1),
        number(u, 4)
    );
    let title = if scale.unit_label.is_empty() {
        escape(&scale.title)
    } else {
        format!("{} ({})", escape(&scale.title), escape(&scale.unit_label))
    };
    let _ = write!(
        out,
        r#"<text x="8" y="13" font-size="13" font-weight="600">{title}</text>"#
    );
    // Gradient bar, min on the left, with five values below it.
    let (x0, bar_w) = (8.0, 352.0);
    let _ = write!(
        out,
        r#"<rect x="{x0}" y="22" width="{bar_w}" height="12" fill="url(#{id}-g)"/>"#
    );
    let span = scale.max - scale.min;
    let decimals = if span.abs() >= 20.0 || !span.is_finite() {
        0
    } else {
        1
    };
    // A scale without finite ends gets no numbers rather than "NaN".
    let ticks = if span.is_finite() { 5 } else { 0 };
    for i in 0..ticks {
        let t = f64::from(i) / 4.0;
        let v = scale.min + span * t;
        let x = x0 + bar_w * t;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            r#"<path d="M{} 34v4" stroke="{MUTED}"/><text x="{}" y="50" text-anchor="{anchor}" fill="{MUTED}">{}</text>"#,
            number(x, 1),
            number(x, 1),
            escape(&number(v, decimals))
        );
    }
    // Swatches for the two states without a colour of their own.
    let _ = write!(
        out,
        r#"<rect x="384" y="22" width="14" height="14" fill="url(#{hatch_id})" stroke="{FRAME}" stroke-width=".6"/><text x="404" y="33">{}</text>"#,
        escape(&text.insufficient)
    );
    let _ = write!(
        out,
        r#"<rect x="384" y="42" width="14" height="14" fill="{}" stroke="{FRAME}" stroke-width=".6"/><text x="404" y="53">{}</text>"#,
        hex(NO_DATA),
        escape(&text.no_data)
    );
    out.push_str("</g>");
}

use crate::escape;

#[cfg(test)]
mod tests {
    use super::*;

    const PROVINCES: [&str; 34] = [
        "01", "04", "08", "11", "12", "14", "15", "19", "20", "22", "24", "25", "31", "33", "37",
        "38", "40", "42", "44", "46", "48", "51", "52", "56", "66", "68", "75", "79", "80", "82",
        "86", "91", "92", "96",
    ];

    fn maps() -> Maps {
        Maps::embedded().expect("embedded maps parse")
    }

    fn scale(higher_is_better: bool) -> Scale {
        Scale {
            min: 0.0,
            max: 200.0,
            higher_is_better,
            unit_label: "Mbit/s".into(),
            title: "Tốc độ tải xuống".into(),
        }
    }

    fn text() -> MapText {
        MapText {
            insufficient: "Chưa đủ mẫu".into(),
            no_data: "Chưa có dữ liệu".into(),
            aria_label: "Bản đồ tốc độ tải xuống theo tỉnh".into(),
        }
    }

    fn region(code: &str, fill: Fill) -> Region<'_> {
        Region {
            code,
            fill,
            title: code.to_string(),
            href: None,
        }
    }

    /// The `<path class="region" …>` start tag of a unit.
    fn tag<'s>(svg: &'s str, code: &str) -> &'s str {
        let start = svg
            .find(&format!(r#"data-code="{code}""#))
            .expect("unit drawn");
        let start = svg[..start].rfind('<').unwrap();
        let end = start + svg[start..].find('>').unwrap();
        &svg[start..=end]
    }

    fn attr<'s>(tag: &'s str, name: &str) -> Option<&'s str> {
        let key = format!(r#" {name}=""#);
        let start = tag.find(&key)? + key.len();
        Some(&tag[start..start + tag[start..].find('"')?])
    }

    #[test]
    fn embedded_data_parses() {
        let maps = maps();
        let p = maps.provinces();
        assert_eq!(p.width, 600.0);
        assert!(p.height > 500.0 && p.height <= 800.0, "{}", p.height);
        assert!(p.insets.is_empty());
        assert!(maps.wards_of("00").is_none());
    }

    #[test]
    fn thirty_four_provinces() {
        let maps = maps();
        let codes: Vec<&str> = maps
            .provinces()
            .units
            .iter()
            .map(|u| u.code.as_str())
            .collect();
        assert_eq!(codes, PROVINCES);
        for u in &maps.provinces().units {
            assert!(u.d.starts_with('m') && u.d.ends_with('z'), "{}", u.code);
        }
    }

    #[test]
    fn every_ward_once_in_its_province() {
        let maps = maps();
        // The enrich crate's copy of the ward table: code,name,kind,province_code,…
        let units = include_str!("../../enrich/data/units.csv");
        let mut expected: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for line in units.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            expected.entry(cols[3]).or_default().insert(cols[0]);
        }
        assert_eq!(expected.values().map(BTreeSet::len).sum::<usize>(), 3321);
        for code in PROVINCES {
            let layer = maps.wards_of(code).expect("ward layer");
            let got: Vec<&str> = layer.units.iter().map(|u| u.code.as_str()).collect();
            let unique: BTreeSet<&str> = got.iter().copied().collect();
            assert_eq!(unique.len(), got.len(), "province {code}: a ward twice");
            assert_eq!(&unique, &expected[code], "province {code}");
            assert_eq!(layer.width, 600.0, "province {code}");
            assert!(
                layer.height > 100.0 && layer.height <= 800.0,
                "province {code}"
            );
        }
        // The far-offshore island zones are drawn in insets inside the layer.
        for code in ["31", "48", "56", "79"] {
            let layer = maps.wards_of(code).unwrap();
            assert_eq!(layer.insets.len(), 1, "province {code}");
            let f = layer.insets[0];
            assert!(
                f.x >= 0.0
                    && f.y >= 0.0
                    && f.x + f.width <= layer.width
                    && f.y + f.height <= layer.height
            );
        }
    }

    #[test]
    fn layers_within_budget() {
        let maps = maps();
        let size = |l: &MapLayer| l.units.iter().map(|u| u.d.len()).sum::<usize>();
        let national = size(maps.provinces());
        assert!(national <= 120_000, "national layer {national} bytes");
        let largest = PROVINCES
            .iter()
            .map(|c| size(maps.wards_of(c).unwrap()))
            .max()
            .unwrap();
        assert!(largest <= 250_000, "largest ward layer {largest} bytes");
        // The whole rendered national map stays far below the page budget.
        let svg = choropleth(maps.provinces(), &[], &scale(true), &text());
        assert!(svg.len() < 150_000, "{}", svg.len());
    }

    #[test]
    fn choropleth_states_values_and_colours() {
        let maps = maps();
        let layer = maps.provinces();
        let regions = vec![
            region("01", Fill::Value(200.0)),
            region("79", Fill::Value(0.0)),
            region("48", Fill::Value(87.349)),
            region("22", Fill::Insufficient(Some(12.0))),
            region("56", Fill::Insufficient(None)),
            region("31", Fill::NoData),
            region("46", Fill::Value(f64::NAN)),
            region("99", Fill::Value(5.0)), // not in the layer: ignored
        ];
        let svg = choropleth(layer, &regions, &scale(true), &text());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains(r#"role="img""#)
                && svg.contains(r#"aria-label="Bản đồ tốc độ tải xuống theo tỉnh""#)
        );
        assert!(svg.contains(r#"width="100%""#) && svg.contains(r#"viewBox="0 0 600 "#));
        assert_eq!(svg.matches("data-code=").count(), 34);
        assert_eq!(svg.matches(r#"class="region""#).count(), 34);
        for code in PROVINCES {
            assert_eq!(svg.matches(&format!(r#"data-code="{code}""#)).count(), 1);
        }
        assert!(!svg.contains(r#"data-code="99""#));
        let state = |c| attr(tag(&svg, c), "data-state").unwrap();
        let value = |c| attr(tag(&svg, c), "data-value");
        let fill = |c| attr(tag(&svg, c), "fill").unwrap();
        assert_eq!((state("01"), value("01")), ("ok", Some("200")));
        assert_eq!((state("79"), value("79")), ("ok", Some("0")));
        assert_eq!((state("48"), value("48")), ("ok", Some("87.3")));
        assert_eq!((state("22"), value("22")), ("insufficient", Some("12")));
        assert_eq!((state("56"), value("56")), ("insufficient", None));
        assert_eq!((state("31"), value("31")), ("nodata", None));
        assert_eq!((state("46"), value("46")), ("nodata", None));
        assert_eq!(
            (state("96"), value("96")),
            ("nodata", None),
            "unit without region"
        );
        assert_ne!(fill("01"), fill("79"), "min and max colours differ");
        assert_eq!(fill("01"), "#440154", "best is darkest");
        assert_eq!(fill("79"), "#fde725");
        assert!(fill("22").starts_with("url(#") && fill("56").starts_with("url(#"));
        assert_ne!(fill("22"), fill("56"), "tint follows the value");
        assert_eq!(fill("31"), fill("96"));
        // Patterns referenced exist.
        for c in ["22", "56"] {
            let id = &fill(c)[5..fill(c).len() - 1];
            assert!(svg.contains(&format!(r#"<pattern id="{id}""#)));
        }
        // Legend: title with unit, both swatch labels.
        assert!(svg.contains("Tốc độ tải xuống (Mbit/s)"));
        assert!(svg.contains(">Chưa đủ mẫu<") && svg.contains(">Chưa có dữ liệu<"));

        // Latency: the scale is reversed, low is dark.
        let svg = choropleth(layer, &regions, &scale(false), &text());
        assert_eq!(attr(tag(&svg, "79"), "fill"), Some("#440154"));
    }

    #[test]
    fn region_order_does_not_matter() {
        let maps = maps();
        let layer = maps.wards_of("79").unwrap();
        let mut regions: Vec<Region> = layer
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| Region {
                code: &u.code,
                fill: match i % 4 {
                    0 => Fill::Value(i as f64),
                    1 => Fill::Insufficient(Some(i as f64)),
                    2 => Fill::Insufficient(None),
                    _ => Fill::NoData,
                },
                title: u.code.clone(),
                href: Some(format!("/wards/{}", u.code)),
            })
            .collect();
        let s = Scale {
            min: 0.0,
            max: 170.0,
            ..scale(true)
        };
        let a = choropleth(layer, &regions, &s, &text());
        regions.reverse();
        assert_eq!(a, choropleth(layer, &regions, &s, &text()));
        assert_eq!(a.matches("<a href=\"/wards/").count(), layer.units.len());
        assert!(a.contains(r#"<rect x=""#), "inset frame drawn");
    }

    #[test]
    fn escapes_text() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("Hà Nội"), "Hà Nội");
        let maps = maps();
        let evil = "<script>alert('x')</script>";
        let regions = [Region {
            code: "01",
            fill: Fill::Value(1.0),
            title: evil.into(),
            href: Some("/p?a=1&b=\"2\"".into()),
        }];
        let s = Scale {
            title: evil.into(),
            unit_label: evil.into(),
            ..scale(true)
        };
        let t = MapText {
            insufficient: evil.into(),
            no_data: evil.into(),
            aria_label: evil.into(),
        };
        let svg = choropleth(maps.provinces(), &regions, &s, &t);
        assert!(!svg.contains("<script"), "unescaped title");
        assert!(svg.contains("<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</title>"));
        assert!(svg.contains(r#"<a href="/p?a=1&amp;b=&quot;2&quot;">"#));
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(number(87.349, 1), "87.3");
        assert_eq!(number(87.96, 1), "88");
        assert_eq!(number(-0.04, 1), "0");
        assert_eq!(number(600.0, 1), "600");
        assert_eq!(
            position(
                5.0,
                &Scale {
                    min: 3.0,
                    max: 3.0,
                    ..scale(true)
                }
            ),
            0.5
        );
        let odd = Scale {
            min: f64::NAN,
            max: f64::INFINITY,
            ..scale(true)
        };
        let regions = [region("01", Fill::Value(3.0))];
        let svg = choropleth(maps().provinces(), &regions, &odd, &text());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(attr(tag(&svg, "01"), "data-value"), Some("3"));
    }

    #[test]
    fn corrupt_data_is_an_error() {
        assert!(matches!(
            Maps::from_gzip(b"not gzip"),
            Err(MapError::Inflate(_))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gz,
            br#"{"provinces":{"width":600,"height":600,"units":[]},"wards":{}}"#,
        )
        .unwrap();
        let err = Maps::from_gzip(&gz.finish().unwrap()).unwrap_err();
        assert!(err.to_string().contains("no units"), "{err}");
    }

    /// Writes sample maps to the temp directory for a visual check:
    /// `cargo test -p ispeed-web map::tests::preview -- --ignored`, then
    /// open `map-national.html` / `map-79.html` (or screenshot them with
    /// headless chromium).
    #[test]
    #[ignore]
    fn preview() {
        let maps = maps();
        let dir = std::env::temp_dir();
        let fake = |code: &str| {
            let n: u32 = code
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            f64::from(n % 1000) / 5.0
        };
        let regions = |layer: &MapLayer| -> Vec<(String, Fill)> {
            layer
                .units
                .iter()
                .map(|u| {
                    let v = fake(&u.code);
                    let fill = match (v * 10.0) as u32 % 10 {
                        0 => Fill::NoData,
                        1 => Fill::Insufficient(None),
                        2 | 3 => Fill::Insufficient(Some(v)),
                        _ => Fill::Value(v),
                    };
                    (u.code.clone(), fill)
                })
                .collect()
        };
        let render = |layer: &MapLayer, name: &str, higher: bool| {
            let fills = regions(layer);
            let regs: Vec<Region> = fills
                .iter()
                .map(|(c, f)| Region {
                    code: c,
                    fill: *f,
                    title: format!("{c}: {f:?}"),
                    href: Some(format!("#{c}")),
                })
                .collect();
            let svg = choropleth(layer, &regs, &scale(higher), &text());
            let html = format!(
                "<!doctype html><meta charset=utf-8><body style=\"margin:8px;font-family:sans-serif\">\
                 <div style=\"max-width:600px\">{svg}</div>\
                 <p style=\"font-size:11px;color:#555\">{} bytes</p></body>",
                svg.len()
            );
            std::fs::write(dir.join(format!("map-{name}.html")), html).unwrap();
        };
        render(maps.provinces(), "national", true);
        for code in ["79", "48", "56", "31", "01", "22"] {
            render(maps.wards_of(code).unwrap(), code, code != "01");
        }
    }
}
