//! Blob sizes and query-path timing of the analytics sketches.
//!
//! `cargo run -p ispeed-analytics --release --example sketch_bench`
//!
//! Prints the serialized size of sketches holding 1, 100 and 10,000
//! log-normal speeds (median 50 Mbps, sigma 1), and the time to merge 3,000
//! such sketches (in memory, and decoding them from blobs first) and take 5
//! quantiles — the query path of a province × year over thousands of cells.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{splitmix64, Rng};
use ispeed_analytics::{DistinctCounter, Sketch, Summary};

fn sketch_of(rng: &mut Rng, n: usize) -> Sketch {
    let mut s = Sketch::new();
    for _ in 0..n {
        s.add(rng.lognormal(50.0, 1.0));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut rng = Rng::new(42);
    for n in [1usize, 100, 10_000] {
        let s = sketch_of(&mut rng, n);
        println!(
            "sketch blob, {n:>6} log-normal values: {:>5} bytes ({} buckets)",
            s.to_bytes().len(),
            s.bucket_count()
        );
    }
    for n in [1u64, 100, 128, 129, 1_000, 10_000] {
        let mut d = DistinctCounter::new();
        for i in 0..n {
            d.insert(splitmix64(i));
        }
        println!(
            "distinct blob, {n:>6} devices: {:>5} bytes",
            d.to_bytes().len()
        );
    }

    for per_cell in [100usize, 10_000] {
        let cells: Vec<Sketch> = (0..3000).map(|_| sketch_of(&mut rng, per_cell)).collect();
        let blobs: Vec<Vec<u8>> = cells.iter().map(Sketch::to_bytes).collect();
        let total_bytes: usize = blobs.iter().map(Vec::len).sum();
        let qs = [0.1, 0.25, 0.5, 0.75, 0.9];
        let mut in_memory = Vec::new();
        let mut from_blobs = Vec::new();
        let mut summary_t = Vec::new();
        let mut check = 0.0;
        for _ in 0..7 {
            let t = Instant::now();
            let mut m = Sketch::new();
            for c in &cells {
                m.merge(c);
            }
            for q in qs {
                check += m.quantile(q).unwrap();
            }
            in_memory.push(t.elapsed());

            let t = Instant::now();
            let mut m = Sketch::new();
            for b in &blobs {
                m.merge(&Sketch::from_bytes(b).expect("valid blob"));
            }
            for q in qs {
                check += m.quantile(q).unwrap();
            }
            from_blobs.push(t.elapsed());

            let t = Instant::now();
            let s = Summary::from_sketch(&m, 0);
            summary_t.push(t.elapsed());
            check += s.median.unwrap();
        }
        println!(
            "merge 3000 sketches of {per_cell} values + 5 quantiles: in memory {:.2} ms, \
             decoding {:.1} MB of blobs {:.2} ms (median of 7); Summary::from_sketch {:.1} µs",
            median(in_memory).as_secs_f64() * 1e3,
            total_bytes as f64 / 1e6,
            median(from_blobs).as_secs_f64() * 1e3,
            median(summary_t).as_secs_f64() * 1e6,
        );
        std::hint::black_box(check);
    }
}
