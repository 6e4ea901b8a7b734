//! Client IP → ASN → Vietnamese ISP.

use crate::{csv, EnrichError};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

const ASN_CSV: &str = include_str!("../data/vn-asn.csv");
const PREFIXES_V4_CSV: &str = include_str!("../data/vn-prefixes-ipv4.csv");
const PREFIXES_V6_CSV: &str = include_str!("../data/vn-prefixes-ipv6.csv");

/// The `isp_id` of every IP that is not in a known Vietnamese ISP's ASN.
pub const OTHER_ISP: &str = "other";

/// One row of the embedded ASN table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsnInfo {
    /// Autonomous system number.
    pub asn: u32,
    /// Stable ISP id, e.g. `"vnpt"`, `"viettel"`, `"fpt"`.
    pub isp_id: String,
    /// Display name, e.g. `"VNPT"`.
    pub isp_name: String,
}

/// A Vietnamese ISP and the ASNs grouped under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Isp {
    /// Stable id, e.g. `"viettel"`; [`OTHER_ISP`] for the catch-all.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its ASNs, in table order (empty for the catch-all).
    pub asns: Vec<u32>,
}

/// Result of an IP lookup. `isp_id` is "other" when the ASN is not a known
/// Vietnamese ISP (asn kept) or the IP matches nothing (asn None).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IspMatch {
    /// The origin AS of the client's address, if the table knows it.
    pub asn: Option<u32>,
    /// The ISP's id, or [`OTHER_ISP`].
    pub isp_id: String,
}

/// A source of IP → origin ASN answers.
pub trait IpToAsn: Send + Sync {
    /// The ASN announcing `ip`, if known.
    fn asn(&self, ip: IpAddr) -> Option<u32>;
}

/// The embedded IP ranges of the Vietnamese ISPs' ASNs (a June 2026
/// snapshot, see `data/README.md`), searched by binary search.
#[derive(Debug, Clone)]
pub struct PrefixTable {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl PrefixTable {
    /// Parses the embedded `vn-prefixes-ipv4.csv` and `vn-prefixes-ipv6.csv`.
    pub fn embedded() -> Result<Self, EnrichError> {
        Self::from_csv(PREFIXES_V4_CSV, PREFIXES_V6_CSV)
    }

    fn from_csv(v4: &str, v6: &str) -> Result<Self, EnrichError> {
        Ok(PrefixTable {
            v4: ranges("vn-prefixes-ipv4.csv", v4, |a: Ipv4Addr| a.into())?,
            v6: ranges("vn-prefixes-ipv6.csv", v6, |a: Ipv6Addr| a.into())?,
        })
    }

    /// [`asn`](IpToAsn::asn) by a linear scan: only the reference the tests
    /// and `examples/lookup_bench.rs` compare against.
    pub fn asn_linear(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(a) => scan(&self.v4, a.into()),
            IpAddr::V6(a) => scan(&self.v6, a.into()),
        }
    }

    /// The IPv4 ranges as (first, last, asn), sorted.
    pub fn ipv4_ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr, u32)> + '_ {
        self.v4.iter().map(|&(s, e, a)| (s.into(), e.into(), a))
    }

    /// The IPv6 ranges as (first, last, asn), sorted.
    pub fn ipv6_ranges(&self) -> impl Iterator<Item = (Ipv6Addr, Ipv6Addr, u32)> + '_ {
        self.v6.iter().map(|&(s, e, a)| (s.into(), e.into(), a))
    }
}

impl IpToAsn for PrefixTable {
    fn asn(&self, ip: IpAddr) -> Option<u32> {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, a.into()),
            IpAddr::V6(a) => find(&self.v6, a.into()),
        }
    }
}

/// Parses `start,end,asn` rows and checks what the binary search relies on:
/// sorted, non-overlapping, start ≤ end.
fn ranges<A: std::str::FromStr, T: Ord + Copy>(
    file: &str,
    text: &str,
    to_int: fn(A) -> T,
) -> Result<Vec<(T, T, u32)>, EnrichError> {
    let mut out: Vec<(T, T, u32)> = Vec::new();
    for r in csv::rows(file, text, &["start", "end", "asn"])? {
        let (s, e) = (
            to_int(r.parse(0, "address")?),
            to_int(r.parse(1, "address")?),
        );
        if s > e {
            return Err(r.err("start after end"));
        }
        if out.last().is_some_and(|&(_, prev_end, _)| prev_end >= s) {
            return Err(r.err("ranges unsorted or overlapping"));
        }
        out.push((s, e, r.parse(2, "asn")?));
    }
    Ok(out)
}

fn find<T: Ord + Copy>(ranges: &[(T, T, u32)], ip: T) -> Option<u32> {
    // The last range starting at or before ip is the only one that can hold it.
    let i = ranges.partition_point(|r| r.0 <= ip).checked_sub(1)?;
    let (_, end, asn) = ranges[i];
    (ip <= end).then_some(asn)
}

fn scan<T: Ord + Copy>(ranges: &[(T, T, u32)], ip: T) -> Option<u32> {
    ranges.iter().find(|r| r.0 <= ip && ip <= r.1).map(|r| r.2)
}

/// A MaxMind-format database with an `autonomous_system_number` field
/// (GeoLite2-ASN, DB-IP ASN Lite mmdb, ...), read fully into memory.
pub struct MmdbTable {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for MmdbTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.reader.metadata();
        f.debug_struct("MmdbTable")
            .field("database_type", &m.database_type)
            .field("build_epoch", &m.build_epoch)
            .finish()
    }
}

impl MmdbTable {
    /// Opens and validates the header of the database at `path`. The only
    /// file this crate ever reads, and only when the operator configures it.
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let reader =
            maxminddb::Reader::open_readfile(path).map_err(|source| EnrichError::Mmdb {
                path: path.to_owned(),
                source,
            })?;
        Ok(MmdbTable { reader })
    }
}

impl IpToAsn for MmdbTable {
    fn asn(&self, ip: IpAddr) -> Option<u32> {
        // A corrupt record or an IPv6 query on an IPv4-only database is an
        // error from the reader; for enrichment it just means "unknown".
        let found = self.reader.lookup(ip.to_canonical()).ok()?;
        found
            .decode_path(&maxminddb::path!["autonomous_system_number"])
            .ok()?
    }
}

/// Maps client IPs to Vietnamese ISPs: an [`IpToAsn`] source plus the
/// embedded ASN → ISP grouping (`vn-asn.csv`).
pub struct IspResolver {
    table: Box<dyn IpToAsn>,
    asns: Vec<AsnInfo>,
    isps: Vec<Isp>,
    /// ASN → index into `isps`.
    by_asn: HashMap<u32, usize>,
}

impl std::fmt::Debug for IspResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IspResolver")
            .field("isps", &self.isps)
            .finish_non_exhaustive()
    }
}

impl IspResolver {
    /// The embedded [`PrefixTable`] and ASN table.
    pub fn embedded() -> Result<Self, EnrichError> {
        Self::with_table(Box::new(PrefixTable::embedded()?))
    }

    /// Another IP → ASN source (e.g. an [`MmdbTable`]) with the embedded ASN
    /// table.
    pub fn with_table(table: Box<dyn IpToAsn>) -> Result<Self, EnrichError> {
        Self::from_csv(table, ASN_CSV)
    }

    fn from_csv(table: Box<dyn IpToAsn>, asn_csv: &str) -> Result<Self, EnrichError> {
        let (mut asns, mut isps, mut by_asn) = (Vec::new(), Vec::<Isp>::new(), HashMap::new());
        for r in csv::rows("vn-asn.csv", asn_csv, &["asn", "isp_id", "isp_name"])? {
            let info = AsnInfo {
                asn: r.parse(0, "asn")?,
                isp_id: r.fields[1].to_owned(),
                isp_name: r.fields[2].to_owned(),
            };
            if info.isp_id == OTHER_ISP || info.isp_id.is_empty() {
                return Err(r.err(format!("reserved isp_id {:?}", info.isp_id)));
            }
            let i = match isps.iter().position(|i| i.id == info.isp_id) {
                Some(i) if isps[i].name != info.isp_name => {
                    return Err(r.err("one isp_id with two names"))
                }
                Some(i) => i,
                None => {
                    isps.push(Isp {
                        id: info.isp_id.clone(),
                        name: info.isp_name.clone(),
                        asns: Vec::new(),
                    });
                    isps.len() - 1
                }
            };
            if by_asn.insert(info.asn, i).is_some() {
                return Err(r.err(format!("AS{} listed twice", info.asn)));
            }
            isps[i].asns.push(info.asn);
            asns.push(info);
        }
        isps.push(Isp {
            id: OTHER_ISP.into(),
            name: "Other".into(),
            asns: Vec::new(),
        });
        Ok(IspResolver {
            table,
            asns,
            isps,
            by_asn,
        })
    }

    /// The ISP of `ip`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 peers) is looked up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> IspMatch {
        let asn = self.table.asn(ip.to_canonical());
        let isp = asn
            .and_then(|a| self.by_asn.get(&a))
            .map_or(OTHER_ISP, |&i| self.isps[i].id.as_str());
        IspMatch {
            asn,
            isp_id: isp.to_owned(),
        }
    }

    /// The ISP id an ASN belongs to, if it is a known Vietnamese ISP's.
    pub fn isp_of_asn(&self, asn: u32) -> Option<&str> {
        self.by_asn.get(&asn).map(|&i| self.isps[i].id.as_str())
    }

    /// The Vietnamese ISPs in table order (VNPT, Viettel, FPT, ...), with the
    /// catch-all `{id: "other", name: "Other"}` last.
    pub fn isps(&self) -> &[Isp] {
        &self.isps
    }

    /// The embedded ASN table, in file order.
    pub fn asns(&self) -> &[AsnInfo] {
        &self.asns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_range_tables_are_errors() {
        let h = "start,end,asn\n";
        let ok = format!("{h}1.0.0.0,1.0.0.255,1\n1.0.1.0,1.0.1.255,2\n");
        assert!(PrefixTable::from_csv(&ok, h).is_ok());
        for bad in [
            format!("{h}1.0.0.0,1.0.0.255,1\n1.0.0.255,1.0.1.255,2\n"), // overlap
            format!("{h}1.0.1.0,1.0.1.255,1\n1.0.0.0,1.0.0.255,2\n"),   // unsorted
            format!("{h}1.0.1.0,1.0.0.255,1\n"),                        // start > end
            format!("{h}1.0.0.0,1.0.0.256,1\n"),                        // bad address
            format!("{h}1.0.0.0,1.0.0.255,AS1\n"),                      // bad asn
            format!("{h}::1,::2,1\n"),                                  // v6 in the v4 file
        ] {
            assert!(PrefixTable::from_csv(&bad, h).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_asn_tables_are_errors() {
        let h = "asn,isp_id,isp_name\n";
        let t = || -> Box<dyn IpToAsn> {
            Box::new(PrefixTable::from_csv("start,end,asn\n", "start,end,asn\n").unwrap())
        };
        assert_eq!(
            IspResolver::from_csv(t(), &format!("{h}1,a,A\n2,a,A\n3,b,B\n"))
                .unwrap()
                .isps()
                .len(),
            3
        );
        for bad in [
            "1,a,A\n1,b,B\n",
            "1,a,A\n2,a,Other A\n",
            "1,other,Other\n",
            "x,a,A\n",
        ] {
            assert!(
                IspResolver::from_csv(t(), &format!("{h}{bad}")).is_err(),
                "{bad}"
            );
        }
    }
}
