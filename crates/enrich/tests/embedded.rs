//! Tests against the real embedded data.

use ispeed_enrich::{
    truncate_ip, EnrichError, IpToAsn, IspMatch, IspResolver, PrefixTable, Units, WardIndex,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

fn index() -> &'static WardIndex {
    static I: OnceLock<WardIndex> = OnceLock::new();
    I.get_or_init(|| WardIndex::embedded().unwrap())
}

fn units() -> &'static Units {
    static U: OnceLock<Units> = OnceLock::new();
    U.get_or_init(|| Units::embedded().unwrap())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn every_ward_point_locates_to_its_own_ward() {
    assert_eq!(index().len(), 3321);
    let wrong: Vec<String> = units()
        .wards()
        .iter()
        .filter(|w| index().locate(w.centroid_lat, w.centroid_lon) != Some(w.code.as_str()))
        .map(|w| {
            format!(
                "{} -> {:?}",
                w.code,
                index().locate(w.centroid_lat, w.centroid_lon)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 3321 wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[test]
fn known_places() {
    // The shared README's validation table.
    for (lat, lon, province, ward) in [
        (21.0288, 105.8522, "01", "00070"), // Hoàn Kiếm lake, Hà Nội
        (10.7725, 106.698, "79", "26743"),  // Bến Thành market
        (16.0544, 108.2022, "48", "20257"), // Đà Nẵng
        (10.0452, 105.7469, "92", "31183"), // Cần Thơ
        (16.4698, 107.5796, "46", "19753"), // Huế citadel
        (20.8449, 106.6881, "31", "11383"), // Hải Phòng
        (20.9517, 107.0815, "22", "06685"), // Hạ Long
        (22.3364, 103.8438, "15", "03006"), // Sa Pa
        (11.9404, 108.4583, "68", "24781"), // Đà Lạt
        (12.2388, 109.1967, "56", "22366"), // Nha Trang
        (12.6675, 108.0378, "66", "24133"), // Buôn Ma Thuột
        (18.6796, 105.6813, "40", "16681"), // Vinh
        (10.9574, 106.8427, "75", "26041"), // Biên Hoà
        (10.346, 107.0843, "79", "26506"),  // Vũng Tàu
        (10.9804, 106.6519, "79", "25747"), // Thủ Dầu Một
        (10.36, 106.36, "82", "28249"),     // Mỹ Tho
        (10.219, 103.96, "91", "31078"),    // Phú Quốc
        (8.683, 106.608, "79", "26732"),    // Côn Đảo
        (20.131, 107.726, "31", "11948"),   // Bạch Long Vĩ
        (16.84, 112.31, "48", "20333"),     // Hoàng Sa reef polygon
        (8.6453, 111.9206, "56", "22736"),  // Trường Sa
    ] {
        let code = index().locate(lat, lon);
        assert_eq!(code, Some(ward), "({lat}, {lon})");
        assert_eq!(units().ward(ward).unwrap().province_code, province);
        assert!(units().province(province).is_some());
    }
    assert_eq!(units().ward("00070").unwrap().name, "Hoàn Kiếm");
}

#[test]
fn outside_vietnam_or_bad_input_is_none() {
    for (lat, lon) in [
        (17.9757, 102.6331), // Vientiane, Laos
        (13.7563, 100.5018), // Bangkok
        (11.5564, 104.9282), // Phnom Penh
        (23.1291, 113.2644), // Guangzhou
        (14.0, 110.5),       // open sea east of Quy Nhơn
        (19.0, 107.2),       // Gulf of Tonkin
        (0.0, 0.0),
        (-21.0288, -105.8522),
        (f64::NAN, 105.85),
        (21.03, f64::NAN),
        (f64::INFINITY, 105.85),
        (21.03, f64::NEG_INFINITY),
        (90.0001, 105.85),
        (21.03, 180.0001),
        (105.8522, 21.0288), // lat/lon swapped: out of range
    ] {
        assert_eq!(index().locate(lat, lon), None, "({lat}, {lon})");
    }
}

#[test]
fn rtree_agrees_with_linear_scan() {
    let mut rng = Rng(0x5eed);
    let mut hits = 0;
    for _ in 0..3000 {
        let (lat, lon) = (8.0 + 15.6 * rng.unit(), 102.0 + 7.7 * rng.unit());
        let got = index().locate(lat, lon);
        assert_eq!(got, index().locate_linear(lat, lon), "({lat}, {lon})");
        hits += got.is_some() as usize;
    }
    // Vietnam covers roughly a third of its bounding box.
    assert!((500..2000).contains(&hits), "{hits} hits");
}

/// The prefix files parsed independently of the crate.
fn csv_ranges<A: std::str::FromStr>(text: &str) -> Vec<(A, A, u32)>
where
    A::Err: std::fmt::Debug,
{
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_range_boundary_resolves() {
    let t = PrefixTable::embedded().unwrap();
    let v4: Vec<(Ipv4Addr, Ipv4Addr, u32)> =
        csv_ranges(include_str!("../data/vn-prefixes-ipv4.csv"));
    let v6: Vec<(Ipv6Addr, Ipv6Addr, u32)> =
        csv_ranges(include_str!("../data/vn-prefixes-ipv6.csv"));
    assert_eq!((v4.len(), v6.len()), (658, 103));
    assert!(t.ipv4_ranges().eq(v4.iter().copied()) && t.ipv6_ranges().eq(v6.iter().copied()));
    let scan4 = |a: u32| {
        v4.iter()
            .find(|r| u32::from(r.0) <= a && a <= u32::from(r.1))
            .map(|r| r.2)
    };
    let scan6 = |a: u128| {
        v6.iter()
            .find(|r| u128::from(r.0) <= a && a <= u128::from(r.1))
            .map(|r| r.2)
    };
    for &(s, e, asn) in &v4 {
        let (s, e) = (u32::from(s), u32::from(e));
        for a in [s, e, s + (e - s) / 2] {
            assert_eq!(t.asn(IpAddr::V4(a.into())), Some(asn));
        }
        for a in [s.wrapping_sub(1), e.wrapping_add(1)] {
            assert_eq!(
                t.asn(IpAddr::V4(a.into())),
                scan4(a),
                "{}",
                Ipv4Addr::from(a)
            );
        }
    }
    for &(s, e, asn) in &v6 {
        let (s, e) = (u128::from(s), u128::from(e));
        for a in [s, e, s + (e - s) / 2] {
            assert_eq!(t.asn(IpAddr::V6(a.into())), Some(asn));
        }
        for a in [s.wrapping_sub(1), e.wrapping_add(1)] {
            assert_eq!(
                t.asn(IpAddr::V6(a.into())),
                scan6(a),
                "{}",
                Ipv6Addr::from(a)
            );
        }
    }
}

#[test]
fn isp_lookups() {
    let r = IspResolver::embedded().unwrap();
    let m = |asn: Option<u32>, isp: &str| IspMatch {
        asn,
        isp_id: isp.to_owned(),
    };
    for (addr, want) in [
        // First row of vn-prefixes-ipv4.csv: 1.52.0.0-1.55.255.255, AS18403 FPT.
        ("1.52.0.0", m(Some(18403), "fpt")),
        ("1.55.255.255", m(Some(18403), "fpt")),
        ("1.51.255.255", m(None, "other")),
        ("1.56.0.0", m(None, "other")),
        // 14.160.0.0-14.191.255.255, AS45899 VNPT.
        ("14.160.0.0", m(Some(45899), "vnpt")),
        ("14.191.255.255", m(Some(45899), "vnpt")),
        ("14.192.0.0", m(None, "other")),
        // IPv6: 2001:dc8:c001::/48, AS7552 Viettel.
        ("2001:dc8:c001::", m(Some(7552), "viettel")),
        (
            "2001:dc8:c001:ffff:ffff:ffff:ffff:ffff",
            m(Some(7552), "viettel"),
        ),
        ("2001:dc8:c002::", m(None, "other")),
        ("2001:dc8:c000:ffff:ffff:ffff:ffff:ffff", m(None, "other")),
        // IPv4-mapped IPv6, as a dual-stack listener reports IPv4 clients.
        ("::ffff:14.160.0.1", m(Some(45899), "vnpt")),
        ("::ffff:1.52.3.4", m(Some(18403), "fpt")),
        ("127.0.0.1", m(None, "other")),
        ("::1", m(None, "other")),
        ("8.8.8.8", m(None, "other")),
        ("0.0.0.0", m(None, "other")),
        ("255.255.255.255", m(None, "other")),
    ] {
        assert_eq!(r.lookup(ip(addr)), want, "{addr}");
    }
    let ids: Vec<&str> = r.isps().iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 14);
    assert_eq!(&ids[..3], ["vnpt", "viettel", "fpt"]);
    assert_eq!(ids[13], "other");
    assert_eq!(r.asns().len(), 27);
    assert_eq!(r.isps().iter().map(|i| i.asns.len()).sum::<usize>(), 27);
    assert_eq!(r.isps()[1].asns, [7552, 24086, 38731]);
    assert_eq!(
        serde_json::to_string(&r.lookup(ip("127.0.0.1"))).unwrap(),
        r#"{"asn":null,"isp_id":"other"}"#
    );
}

/// Answers a fixed ASN for everything.
struct Fixed(Option<u32>);
impl IpToAsn for Fixed {
    fn asn(&self, _: IpAddr) -> Option<u32> {
        self.0
    }
}

#[test]
fn foreign_asn_is_other_but_kept() {
    let r = IspResolver::with_table(Box::new(Fixed(Some(15169)))).unwrap();
    assert_eq!(
        r.lookup(ip("8.8.8.8")),
        IspMatch {
            asn: Some(15169),
            isp_id: "other".into()
        }
    );
    let r = IspResolver::with_table(Box::new(Fixed(Some(7552)))).unwrap();
    assert_eq!(r.lookup(ip("8.8.8.8")).isp_id, "viettel");
}

#[test]
fn truncation_of_embedded_range_addresses() {
    assert_eq!(truncate_ip(ip("14.160.200.7")), ip("14.160.200.0"));
    assert_eq!(truncate_ip(ip("::ffff:14.160.200.7")), ip("14.160.200.0"));
    assert_eq!(
        truncate_ip(ip("2001:dc8:c001:1234::9")),
        ip("2001:dc8:c001::")
    );
}

/// A minimal MaxMind DB writer (spec v2.0, 24-bit records, IPv6 tree), so
/// `MmdbTable` is tested against a real file without a writer dependency.
mod mmdb {
    fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
        assert!(size < 29);
        if ty <= 7 {
            out.push(ty << 5 | size as u8);
        } else {
            out.extend([size as u8, ty - 7]); // extended type
        }
    }
    pub fn string(out: &mut Vec<u8>, s: &str) {
        ctrl(out, 2, s.len());
        out.extend(s.as_bytes());
    }
    pub fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
        let b = v.to_be_bytes();
        let skip = b.iter().take_while(|&&x| x == 0).count();
        ctrl(out, ty, 8 - skip);
        out.extend(&b[skip..]);
    }
    pub fn map(out: &mut Vec<u8>, n: usize) {
        ctrl(out, 7, n);
    }

    /// `nets`: (address as u128 in the IPv6 tree, prefix length, asn).
    pub fn write(nets: &[(u128, u32, u32)]) -> Vec<u8> {
        enum Rec {
            Node(usize),
            Empty,
            Data(usize),
        }
        let (mut nodes, mut data) = (vec![[Rec::Empty, Rec::Empty]], Vec::new());
        for &(addr, len, asn) in nets {
            let off = data.len();
            map(&mut data, 1);
            string(&mut data, "autonomous_system_number");
            uint(&mut data, 6, asn.into());
            let mut n = 0;
            for depth in 0..len {
                let bit = (addr >> (127 - depth) & 1) as usize;
                if depth == len - 1 {
                    nodes[n][bit] = Rec::Data(off);
                } else if let Rec::Node(next) = nodes[n][bit] {
                    n = next;
                } else {
                    nodes.push([Rec::Empty, Rec::Empty]);
                    nodes[n][bit] = Rec::Node(nodes.len() - 1);
                    n = nodes.len() - 1;
                }
            }
        }
        let count = nodes.len();
        let mut out = Vec::new();
        for rec in nodes.iter().flatten() {
            let v = match *rec {
                Rec::Node(i) => i,
                Rec::Empty => count,
                Rec::Data(off) => count + 16 + off,
            } as u32;
            out.extend(&v.to_be_bytes()[1..]);
        }
        out.extend([0; 16]);
        out.extend(data);
        out.extend(b"\xab\xcd\xefMaxMind.com");
        map(&mut out, 9);
        for (k, ty, v) in [
            ("node_count", 6, count as u64),
            ("record_size", 5, 24),
            ("ip_version", 5, 6),
            ("binary_format_major_version", 5, 2),
            ("binary_format_minor_version", 5, 0),
            ("build_epoch", 9, 1_750_000_000),
        ] {
            string(&mut out, k);
            uint(&mut out, ty, v);
        }
        string(&mut out, "database_type");
        string(&mut out, "Test-ASN");
        string(&mut out, "languages");
        ctrl(&mut out, 11, 0); // empty array
        string(&mut out, "description");
        map(&mut out, 0);
        out
    }
}

#[test]
fn mmdb_table_reads_a_real_database() {
    use ispeed_enrich::MmdbTable;
    let v4 = |a: &str| u32::from(a.parse::<Ipv4Addr>().unwrap()) as u128; // IPv4 lives at ::/96
    let v6 = |a: &str| u128::from(a.parse::<Ipv6Addr>().unwrap());
    let db = mmdb::write(&[
        (v4("14.160.0.0"), 96 + 11, 45899),
        (v4("8.8.8.0"), 96 + 24, 15169),
        (v6("2402:800::"), 32, 7552),
    ]);
    let dir = std::env::temp_dir().join(format!("ispeed-enrich-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, garbage, missing) = (
        dir.join("asn.mmdb"),
        dir.join("garbage.mmdb"),
        dir.join("missing.mmdb"),
    );
    std::fs::write(&good, &db).unwrap();
    std::fs::write(&garbage, b"not a maxmind database at all").unwrap();

    let t = MmdbTable::open(&good).unwrap();
    assert_eq!(t.asn(ip("14.160.0.0")), Some(45899));
    assert_eq!(t.asn(ip("14.191.255.255")), Some(45899));
    assert_eq!(t.asn(ip("14.192.0.0")), None);
    assert_eq!(t.asn(ip("::ffff:14.170.1.2")), Some(45899));
    assert_eq!(t.asn(ip("8.8.8.8")), Some(15169));
    assert_eq!(t.asn(ip("2402:800:1::1")), Some(7552));
    assert_eq!(t.asn(ip("2402:801::1")), None);
    assert_eq!(t.asn(ip("127.0.0.1")), None);

    let r = IspResolver::with_table(Box::new(t)).unwrap();
    assert_eq!(
        r.lookup(ip("14.161.2.3")),
        IspMatch {
            asn: Some(45899),
            isp_id: "vnpt".into()
        }
    );
    assert_eq!(
        r.lookup(ip("8.8.8.8")),
        IspMatch {
            asn: Some(15169),
            isp_id: "other".into()
        }
    );
    assert_eq!(r.lookup(ip("2402:800::7")).isp_id, "viettel");

    for bad in [&garbage, &missing] {
        match MmdbTable::open(bad) {
            Err(EnrichError::Mmdb { path, .. }) => assert_eq!(&path, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serialises_for_the_collector() {
    let w = serde_json::to_value(units().ward("00070").unwrap()).unwrap();
    assert_eq!(w["province_code"], "01");
    assert_eq!(w["centroid_lat"].as_f64().unwrap().round(), 21.0);
    let p = serde_json::to_value(units().province("79").unwrap()).unwrap();
    assert_eq!(
        p,
        serde_json::json!({"code":"79","name":"Hồ Chí Minh","name_en":"Ho Chi Minh","kind":"thanh_pho"})
    );
}

#[test]
fn shareable_across_request_handlers() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WardIndex>();
    send_sync::<Units>();
    send_sync::<IspResolver>();
}
