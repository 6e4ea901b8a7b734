//! Load and lookup times of the embedded indexes, against naive linear scans
//! measured in the same run.
//!
//!     cargo run --release -p ispeed-enrich --example lookup_bench [N] [RUNS]
//!
//! N lookups of each kind (default 100,000), RUNS repetitions (default 3,
//! medians reported). Points: half uniform over Vietnam's bounding box
//! (about a third land in a ward), half within ~2 km of a random ward's point
//! (where clients are). IPs: half inside a random embedded range, half
//! uniform; three quarters IPv4.

use ispeed_enrich::{IpToAsn, IspResolver, PrefixTable, Units, WardIndex};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Median over runs of µs per call of `f` applied to every input.
fn time_per_call<T, R>(inputs: &[T], runs: usize, mut f: impl FnMut(&T) -> R) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for x in inputs {
                black_box(f(black_box(x)));
            }
            t.elapsed().as_secs_f64() * 1e6 / inputs.len() as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?.max(1);

    let t = Instant::now();
    let units = Units::embedded()?;
    let units_ms = ms(t);
    let t = Instant::now();
    let index = WardIndex::embedded()?;
    let wards_ms = ms(t);
    let t = Instant::now();
    let resolver = IspResolver::embedded()?;
    let isp_ms = ms(t);
    let table = PrefixTable::embedded()?;

    let mut rng = Rng(0x1bad_5eed);
    let wards = units.wards();
    let points: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (8.0 + 15.6 * rng.unit(), 102.0 + 7.7 * rng.unit())
            } else {
                let w = &wards[rng.below(wards.len())];
                (
                    w.centroid_lat + 0.04 * (rng.unit() - 0.5),
                    w.centroid_lon + 0.04 * (rng.unit() - 0.5),
                )
            }
        })
        .collect();
    let v4: Vec<(u32, u32)> = table
        .ipv4_ranges()
        .map(|(s, e, _)| (s.into(), e.into()))
        .collect();
    let v6: Vec<(u128, u128)> = table
        .ipv6_ranges()
        .map(|(s, e, _)| (s.into(), e.into()))
        .collect();
    let ips: Vec<IpAddr> = (0..n)
        .map(|i| {
            let inside = i % 2 == 0;
            if i % 4 != 3 {
                let a = if inside {
                    let (s, e) = v4[rng.below(v4.len())];
                    s + (rng.next() % (u64::from(e - s) + 1)) as u32
                } else {
                    rng.next() as u32
                };
                IpAddr::V4(Ipv4Addr::from(a))
            } else {
                let a = if inside {
                    let (s, e) = v6[rng.below(v6.len())];
                    s + (u128::from(rng.next()) << 64 | u128::from(rng.next()))
                        % (e - s).saturating_add(1).max(1)
                } else {
                    u128::from(rng.next()) << 64 | u128::from(rng.next())
                };
                IpAddr::V6(Ipv6Addr::from(a))
            }
        })
        .collect();

    // Same answers, or the timing comparison would be meaningless.
    let located = points
        .iter()
        .filter(|&&(la, lo)| index.locate(la, lo).is_some())
        .count();
    let disagree = points
        .iter()
        .filter(|&&(la, lo)| index.locate(la, lo) != index.locate_linear(la, lo))
        .count();
    let matched = ips.iter().filter(|&&ip| table.asn(ip).is_some()).count();
    let ip_disagree = ips
        .iter()
        .filter(|&&ip| table.asn(ip) != table.asn_linear(ip))
        .count();

    let locate_us = time_per_call(&points, runs, |&(la, lo)| index.locate(la, lo).is_some());
    let linear_us = time_per_call(&points, runs, |&(la, lo)| {
        index.locate_linear(la, lo).is_some()
    });
    let asn_us = time_per_call(&ips, runs, |&ip| table.asn(ip));
    let asn_linear_us = time_per_call(&ips, runs, |&ip| table.asn_linear(ip));
    let lookup_us = time_per_call(&ips, runs, |&ip| resolver.lookup(ip));

    println!("load (ms): units {units_ms:.2}, ward index {wards_ms:.1}, isp resolver {isp_ms:.2}");
    println!("{n} points ({located} in a ward, {disagree} disagreements), {n} IPs ({matched} matched, {ip_disagree} disagreements), median of {runs} runs");
    println!(
        "{:<34} {:>10} {:>12} {:>8}",
        "lookup", "µs/lookup", "naive µs", "speed-up"
    );
    println!(
        "{:<34} {:>10.3} {:>12.3} {:>7.0}x",
        "locate (R-tree + PIP / linear)",
        locate_us,
        linear_us,
        linear_us / locate_us
    );
    println!(
        "{:<34} {:>10.3} {:>12.3} {:>7.0}x",
        "IP→ASN (binary search / linear)",
        asn_us,
        asn_linear_us,
        asn_linear_us / asn_us
    );
    println!(
        "{:<34} {:>10.3} {:>12} {:>8}",
        "IspResolver::lookup (with ISP id)", lookup_us, "-", "-"
    );
    println!(
        "RESULT: locate {locate_us:.2} µs ({:.0}x faster than linear), ip {asn_us:.3} µs ({:.0}x faster than linear), ward index load {wards_ms:.0} ms",
        linear_us / locate_us,
        asn_linear_us / asn_us
    );
    if disagree + ip_disagree > 0 {
        return Err("indexed and naive lookups disagree".into());
    }
    Ok(())
}
