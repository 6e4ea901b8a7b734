//! Statistics answered from rollup cells: merge the cells a question covers,
//! then summarise the merged sketches.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ispeed_analytics::{sufficiency, Flag, Level, Summary, Thresholds};
use ispeed_proto::results::AccessKind;
use serde::Serialize;

use crate::period::{Month, Period};
use crate::rollup::{Cell, CellKey, Grain};
use crate::store::CellQuery;

/// The ISP name of the row that merges every ISP.
pub const ALL_ISPS: &str = "all";

/// Filters beside the unit and period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Filters {
    pub isp: Option<String>,
    pub access: Option<AccessKind>,
    pub ip: Option<u8>,
}

impl Filters {
    fn admits(&self, key: &CellKey) -> bool {
        self.isp.as_deref().is_none_or(|isp| isp == key.isp)
            && self.access.is_none_or(|a| Some(a) == key.access)
            && self.ip.is_none_or(|ip| ip == key.ip_version)
    }

    /// Whether aggregate cells answer the question (no access or IP filter).
    pub fn aggregate(&self) -> bool {
        self.access.is_none() && self.ip.is_none()
    }
}

/// Figures for one ISP (or all) in one unit and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    pub isp: String,
    /// Results counted (after the heavy-tester cap).
    pub n: u64,
    /// Distinct devices behind them (estimated beyond 128, see spec/statistics.md).
    pub devices: u64,
    pub download_mbps: Summary,
    pub upload_mbps: Summary,
    pub latency_ms: Summary,
    pub flags: Vec<Flag>,
}

/// The cells one unit needs: month cells at its level.
pub fn unit_query(
    level: Level,
    code: &str,
    parent: &str,
    period: Period,
    filters: &Filters,
) -> CellQuery {
    CellQuery {
        grain: Grain::Month,
        periods: period.months().map(|m| m.0).collect(),
        level,
        parent: Some(parent.to_owned()),
        code: Some(code.to_owned()),
        aggregate: filters.aggregate(),
    }
}

/// The cells of a unit's children: all provinces (nation) or a province's wards.
pub fn children_query(
    level: Level,
    code: &str,
    period: Period,
    filters: &Filters,
) -> Option<CellQuery> {
    let (child_level, parent) = match level {
        Level::Nation => (Level::Province, String::new()),
        Level::Province => (Level::Ward, code.to_owned()),
        Level::Ward => return None,
    };
    Some(CellQuery {
        grain: Grain::Month,
        periods: period.months().map(|m| m.0).collect(),
        level: child_level,
        parent: Some(parent),
        code: None,
        aggregate: filters.aggregate(),
    })
}

/// One row per ISP present plus the all-ISP row first (when no ISP filter).
pub fn rows<'a>(
    cells: impl IntoIterator<Item = &'a (CellKey, Cell)>,
    filters: &Filters,
    level: Level,
    months: u32,
    thresholds: &Thresholds,
) -> Vec<StatsRow> {
    let mut groups: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for (key, cell) in cells.into_iter().filter(|(key, _)| filters.admits(key)) {
        groups.entry(&key.isp).or_default().push(cell);
    }
    // An unfiltered question has one aggregate cell per ISP: use it as is.
    let by_isp: BTreeMap<&str, Cow<'_, Cell>> = groups
        .into_iter()
        .map(|(isp, group)| match group.as_slice() {
            [single] => (isp, Cow::Borrowed(*single)),
            _ => {
                let mut merged = Cell::default();
                group.iter().for_each(|cell| merged.merge(cell));
                (isp, Cow::Owned(merged))
            }
        })
        .collect();
    // Merged from the ISP rows: a dozen merges rather than one per cell.
    let mut all = Cell::default();
    for cell in by_isp.values() {
        all.merge(cell);
    }
    let mut out = Vec::with_capacity(by_isp.len() + 1);
    let all_name = filters.isp.as_deref().unwrap_or(ALL_ISPS);
    out.push(row(all_name, &all, level, months, thresholds));
    if filters.isp.is_none() {
        for (isp, cell) in &by_isp {
            out.push(row(isp, cell, level, months, thresholds));
        }
    }
    out
}

/// A unit to summarise: code, name and the indexes of its cells.
pub type UnitCells = (String, String, Vec<usize>);

/// [`rows`] of many units whose cells are in `cells`, on every core
/// (CPU-bound: call it from a blocking task). Output is in input order.
pub fn children_rows(
    cells: &[(CellKey, Cell)],
    units: Vec<UnitCells>,
    filters: &Filters,
    level: Level,
    months: u32,
    thresholds: &Thresholds,
) -> Vec<(String, String, Vec<StatsRow>)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = units.len().div_ceil(threads).max(1);
    let summarise = |part: &[UnitCells]| -> Vec<(String, String, Vec<StatsRow>)> {
        part.iter()
            .map(|(code, name, indexes)| {
                let unit_cells = indexes.iter().map(|&i| &cells[i]);
                let rows = rows(unit_cells, filters, level, months, thresholds);
                (code.clone(), name.clone(), rows)
            })
            .collect()
    };
    if threads == 1 || units.len() < 2 {
        return summarise(&units);
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = units
            .chunks(chunk)
            .map(|part| scope.spawn(move || summarise(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("summaries do not panic"))
            .collect()
    })
}

/// Indexes of the cells of each unit code.
pub fn by_code(cells: &[(CellKey, Cell)]) -> BTreeMap<&str, Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, (key, _)) in cells.iter().enumerate() {
        groups.entry(&key.code).or_default().push(index);
    }
    groups
}

/// The all-ISP (or filtered ISP) row of each month of a series.
pub fn series(
    cells: &[(CellKey, Cell)],
    filters: &Filters,
    level: Level,
    period: Period,
    thresholds: &Thresholds,
) -> Vec<(Month, StatsRow)> {
    period
        .months()
        .map(|month| {
            let mut merged = Cell::default();
            for (key, cell) in cells {
                if key.period == month.0 && filters.admits(key) {
                    merged.merge(cell);
                }
            }
            let name = filters.isp.as_deref().unwrap_or(ALL_ISPS);
            (month, row(name, &merged, level, 1, thresholds))
        })
        .collect()
}

fn row(isp: &str, cell: &Cell, level: Level, months: u32, thresholds: &Thresholds) -> StatsRow {
    let devices = cell.devices.estimate();
    StatsRow {
        isp: isp.to_owned(),
        n: cell.n,
        devices,
        download_mbps: Summary::from_sketch(&cell.download, devices),
        upload_mbps: Summary::from_sketch(&cell.upload, devices),
        latency_ms: Summary::from_sketch(&cell.latency, devices),
        flags: sufficiency(level, cell.n, months, thresholds),
    }
}
