//! Offline enrichment of speed-test results: which ISP a client IP belongs to
//! (IP → ASN → Vietnamese ISP) and where a measurement was taken (WGS 84
//! coordinates → 2025 ward → province).
//!
//! Everything is answered from data embedded in the binary with
//! `include_bytes!`/`include_str!` (see `data/README.md` for sources and
//! licences), so the product stays a single file. Load once at start-up
//! ([`Units::embedded`], [`WardIndex::embedded`], [`IspResolver::embedded`]);
//! each lookup then takes microseconds and allocates at most the returned
//! strings.
//!
//! What this crate must never do:
//! - **never do network I/O**: lookups happen on the request path of the
//!   collector and must not leak client IPs or coordinates to third parties;
//! - **never read `../shared` (or any data file) at run time**: the only file
//!   access is [`MmdbTable::open`], on a path the operator chooses;
//! - **never panic on bad input**: NaN or out-of-range coordinates, unknown
//!   IPs and malformed data files give `None`, the `"other"` ISP or an
//!   [`EnrichError`].
//!
//! Client IPs are personal data: store only [`truncate_ip`]'s output.

mod csv;
mod geo;
mod isp;
mod legacy;
mod units;
mod unitset;

pub use geo::WardIndex;
pub use isp::{AsnInfo, IpToAsn, Isp, IspMatch, IspResolver, MmdbTable, PrefixTable, OTHER_ISP};
pub use legacy::{LegacyWard, LegacyWards};
pub use units::{Province, Units, Ward};
pub use unitset::{UnitProblems, UnitSet};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Why embedded or operator-supplied data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// A CSV table is malformed (missing column, bad number, unsorted or
    /// overlapping ranges, dangling reference).
    #[error("{file}:{line}: {msg}")]
    Csv {
        /// The table's file name.
        file: String,
        /// 1-based line number (1 is the header).
        line: usize,
        /// What is wrong with it.
        msg: String,
    },
    /// The ward boundaries could not be inflated.
    #[error("ward boundaries: gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// The ward boundaries are not valid JSON of the expected shape.
    #[error("ward boundaries: {0}")]
    GeoJson(#[from] serde_json::Error),
    /// The ward boundaries parse but make no sense (unsupported geometry,
    /// no wards at all).
    #[error("ward boundaries: {0}")]
    Geometry(String),
    /// A MaxMind database could not be opened or is not a valid `.mmdb`.
    #[error("MaxMind database {}: {source}", path.display())]
    Mmdb {
        /// The path given to [`MmdbTable::open`].
        path: PathBuf,
        /// The reader's error (missing file, invalid format, ...).
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// Truncates a client IP for privacy before it is stored: IPv4 to its /24,
/// IPv6 to its /48 (a typical end-site allocation, so one household or
/// company). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is treated as,
/// and returned as, IPv4.
pub fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 48))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ip: &str) -> String {
        truncate_ip(ip.parse().unwrap()).to_string()
    }

    #[test]
    fn truncate_ip_cases() {
        assert_eq!(t("14.160.37.201"), "14.160.37.0");
        assert_eq!(t("14.160.37.0"), "14.160.37.0");
        assert_eq!(t("255.255.255.255"), "255.255.255.0");
        assert_eq!(t("0.0.0.0"), "0.0.0.0");
        assert_eq!(t("2001:ee0:4f1:3a2:1:2:3:4"), "2001:ee0:4f1::");
        assert_eq!(t("2001:ee0:4f1::"), "2001:ee0:4f1::");
        assert_eq!(
            t("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "ffff:ffff:ffff::"
        );
        assert_eq!(t("::1"), "::");
        // IPv4-mapped: a dual-stack socket reports IPv4 clients this way.
        assert_eq!(t("::ffff:14.160.37.201"), "14.160.37.0");
        assert!(truncate_ip("::ffff:1.2.3.4".parse().unwrap()).is_ipv4());
    }
}
