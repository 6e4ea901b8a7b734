//! Rollup cells: mergeable summaries of counted results, updated on ingest.
//!
//! The base grain is (day, ward, ISP, access, IP version); month cells at
//! ward, province and nation level are kept beside it so that a query
//! merges at most a few thousand cells. Every statistic is answered by
//! merging cells, never by scanning results, and `rebuild-rollups` must
//! reproduce the cells exactly from the stored results.

use ispeed_analytics::{DecodeError, DistinctCounter, Level, Sketch};
use ispeed_proto::results::AccessKind;

use crate::period::Month;

/// Time resolution of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Day,
    Month,
}

impl Grain {
    pub fn as_i64(self) -> i64 {
        match self {
            Grain::Day => 0,
            Grain::Month => 1,
        }
    }
}

pub fn level_to_i64(level: Level) -> i64 {
    match level {
        Level::Nation => 0,
        Level::Province => 1,
        Level::Ward => 2,
    }
}

/// Code of the nation, the only nation-level unit.
pub const NATION_CODE: &str = "VN";

/// Identifies one cell. `parent` is the province of a ward cell and empty
/// otherwise, so a province's wards are one contiguous key range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub grain: Grain,
    /// Day number (ICT) for day cells, [`Month`]`.0` for month cells.
    pub period: i32,
    pub level: Level,
    pub parent: String,
    /// Ward or province code, [`NATION_CODE`]; empty for a day cell of a
    /// result with no known ward.
    pub code: String,
    pub isp: String,
    /// `None`: every access type together (an aggregate month cell).
    pub access: Option<AccessKind>,
    /// 4 or 6; [`ALL_IP_VERSIONS`] in an aggregate month cell.
    pub ip_version: u8,
}

/// `ip_version` of aggregate cells (both IP versions).
pub const ALL_IP_VERSIONS: u8 = 0;
/// How aggregate cells store `access = None`.
pub const ALL_ACCESS: &str = "all";

impl CellKey {
    /// Whether this cell merges every access type and IP version.
    pub fn is_aggregate(&self) -> bool {
        self.access.is_none()
    }
    pub fn access_str(&self) -> &'static str {
        self.access.map_or(ALL_ACCESS, AccessKind::as_str)
    }
}

/// The facts of one counted result that rollups need.
#[derive(Debug, Clone)]
pub struct Contribution<'a> {
    pub day: i32,
    pub province_code: Option<&'a str>,
    pub ward_code: Option<&'a str>,
    pub isp: &'a str,
    pub access: AccessKind,
    pub ip_version: u8,
    pub device_hash: u64,
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl Contribution<'_> {
    /// The cells this result adds to: its day cell, then its ward, province
    /// and nation month cells (those with a known unit), each both by access
    /// type and IP version and in the aggregate over them. Unfiltered
    /// questions — most of them — read only aggregate cells, a sixth as
    /// many as the detailed ones.
    pub fn keys(&self) -> Vec<CellKey> {
        let month = Month::of_day(self.day).0;
        let key = |grain, period, level, parent: &str, code: &str, aggregate: bool| CellKey {
            grain,
            period,
            level,
            parent: parent.to_owned(),
            code: code.to_owned(),
            isp: self.isp.to_owned(),
            access: (!aggregate).then_some(self.access),
            ip_version: if aggregate {
                ALL_IP_VERSIONS
            } else {
                self.ip_version
            },
        };
        let province = self.province_code.unwrap_or("");
        let ward = self.ward_code.unwrap_or("");
        let mut keys = vec![key(
            Grain::Day,
            self.day,
            Level::Ward,
            province,
            ward,
            false,
        )];
        for aggregate in [false, true] {
            if !ward.is_empty() {
                keys.push(key(
                    Grain::Month,
                    month,
                    Level::Ward,
                    province,
                    ward,
                    aggregate,
                ));
            }
            if !province.is_empty() {
                keys.push(key(
                    Grain::Month,
                    month,
                    Level::Province,
                    "",
                    province,
                    aggregate,
                ));
            }
            keys.push(key(
                Grain::Month,
                month,
                Level::Nation,
                "",
                NATION_CODE,
                aggregate,
            ));
        }
        keys
    }
}

/// Mergeable summary of the results in a cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    pub n: u64,
    pub download: Sketch,
    pub upload: Sketch,
    pub latency: Sketch,
    pub devices: DistinctCounter,
}

impl Cell {
    pub fn add(&mut self, c: &Contribution<'_>) {
        self.n += 1;
        if let Some(v) = c.download_mbps {
            self.download.add(v);
        }
        if let Some(v) = c.upload_mbps {
            self.upload.add(v);
        }
        if let Some(v) = c.latency_ms {
            self.latency.add(v);
        }
        self.devices.insert(c.device_hash);
    }

    pub fn merge(&mut self, other: &Cell) {
        self.n += other.n;
        self.download.merge(&other.download);
        self.upload.merge(&other.upload);
        self.latency.merge(&other.latency);
        self.devices.merge(&other.devices);
    }

    /// Stored blobs: download, upload, latency, devices.
    pub fn to_blobs(&self) -> [Vec<u8>; 4] {
        [
            self.download.to_bytes(),
            self.upload.to_bytes(),
            self.latency.to_bytes(),
            self.devices.to_bytes(),
        ]
    }

    pub fn from_blobs(n: u64, blobs: [&[u8]; 4]) -> Result<Cell, DecodeError> {
        Ok(Cell {
            n,
            download: Sketch::from_bytes(blobs[0])?,
            upload: Sketch::from_bytes(blobs[1])?,
            latency: Sketch::from_bytes(blobs[2])?,
            devices: DistinctCounter::from_bytes(blobs[3])?,
        })
    }
}
