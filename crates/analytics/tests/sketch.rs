//! Sketch accuracy against exact order statistics, exact merging, encoding.

mod common;

use common::{families, Rng};
use ispeed_analytics::{quantile_rank, DecodeError, Sketch, RELATIVE_ACCURACY};

/// Relative error of `got` against the exact order statistic `want`.
fn rel_err(got: f64, want: f64) -> f64 {
    if want == 0.0 {
        if got == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (got - want).abs() / want
    }
}

const SIZES: [usize; 10] = [1, 2, 3, 7, 10, 100, 999, 1000, 10_000, 100_000];

#[test]
fn quantile_rank_is_nearest_rank() {
    // Exact integer reference: smallest k with k/n >= a/b, i.e. ceil(a*n/b).
    for n in 1..=500u64 {
        for b in [2u64, 4, 10, 20, 100] {
            for a in 0..=b {
                let want = ((a * n).div_ceil(b)).max(1);
                assert_eq!(
                    quantile_rank(a as f64 / b as f64, n),
                    Some(want),
                    "q={a}/{b} n={n}"
                );
            }
        }
    }
    assert_eq!(quantile_rank(0.5, 0), None);
    assert_eq!(quantile_rank(-0.1, 10), None);
    assert_eq!(quantile_rank(1.1, 10), None);
    assert_eq!(quantile_rank(f64::NAN, 10), None);
}

#[test]
fn quantiles_within_alpha_of_exact_order_statistics() {
    let mut rng = Rng::new(1);
    let mut worst = 0.0f64;
    let qs: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
    for (name, gen) in families() {
        let mut worst_family = 0.0f64;
        for &n in &SIZES {
            let data: Vec<f64> = (0..n).map(|_| gen(&mut rng)).collect();
            let mut s = Sketch::new();
            for &v in &data {
                s.add(v);
            }
            let mut sorted = data.clone();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(s.count(), n as u64);
            assert_eq!(s.min(), Some(sorted[0]));
            assert_eq!(s.max(), Some(sorted[n - 1]));
            let exact_mean = data.iter().sum::<f64>() / n as f64;
            let mean = s.mean().unwrap();
            assert!(
                (mean - exact_mean).abs() <= 1e-9 * exact_mean.max(1.0),
                "{name} n={n} mean {mean} vs {exact_mean}"
            );
            // Every quantile on a 1 % grid, and every rank for small n.
            let mut ranks: Vec<u64> = qs
                .iter()
                .map(|&q| quantile_rank(q, n as u64).unwrap())
                .collect();
            if n <= 1000 {
                ranks.extend(1..=n as u64);
            }
            for &q in &qs {
                let k = quantile_rank(q, n as u64).unwrap();
                assert_eq!(s.quantile(q), s.value_at_rank(k));
            }
            for k in ranks {
                let got = s.value_at_rank(k).unwrap();
                let want = sorted[(k - 1) as usize];
                let e = rel_err(got, want);
                assert!(
                    e <= RELATIVE_ACCURACY * (1.0 + 1e-9),
                    "{name} n={n} rank={k}: got {got}, exact {want}, rel err {e}"
                );
                worst_family = worst_family.max(e);
            }
            assert_eq!(s.value_at_rank(0), None);
            assert_eq!(s.value_at_rank(n as u64 + 1), None);
        }
        println!("max relative error {name}: {:.5} %", worst_family * 100.0);
        worst = worst.max(worst_family);
    }
    println!(
        "max relative error over all families and n in {SIZES:?}: {:.5} % (bound {} %)",
        worst * 100.0,
        RELATIVE_ACCURACY * 100.0
    );
    assert!(worst > 0.0, "the test must exercise approximation");
}

/// Sketch of `data` added in order.
fn sketch_of(data: &[f64]) -> Sketch {
    let mut s = Sketch::new();
    for &v in data {
        s.add(v);
    }
    s
}

#[test]
fn merge_of_random_splits_equals_whole_byte_for_byte() {
    let mut rng = Rng::new(2);
    for (name, gen) in families() {
        for &n in &[0usize, 1, 5, 100, 10_000, 100_000] {
            let data: Vec<f64> = (0..n).map(|_| gen(&mut rng)).collect();
            let whole = sketch_of(&data);
            for _ in 0..3 {
                let parts_n = rng.range(2, 12) as usize;
                let mut parts = vec![Vec::new(); parts_n];
                for &v in &data {
                    parts[rng.range(0, parts_n as u64 - 1) as usize].push(v);
                }
                let mut sketches: Vec<Sketch> = parts.iter().map(|p| sketch_of(p)).collect();
                rng.shuffle(&mut sketches);
                // Left fold in a random order.
                let mut merged = Sketch::new();
                for s in &sketches {
                    merged.merge(s);
                }
                assert_eq!(merged, whole, "{name} n={n}");
                assert_eq!(merged.to_bytes(), whole.to_bytes(), "{name} n={n}");
                // Pairwise tree merge, through the encoding.
                let mut level: Vec<Sketch> = sketches
                    .iter()
                    .map(|s| Sketch::from_bytes(&s.to_bytes()).unwrap())
                    .collect();
                while level.len() > 1 {
                    level = level
                        .chunks(2)
                        .map(|c| {
                            let mut a = c[0].clone();
                            if let Some(b) = c.get(1) {
                                a.merge(b);
                            }
                            a
                        })
                        .collect();
                }
                assert_eq!(level[0].to_bytes(), whole.to_bytes(), "{name} n={n} tree");
                assert_eq!(merged.sum().to_bits(), whole.sum().to_bits());
            }
        }
    }
}

#[test]
fn roundtrip_encoding() {
    let mut rng = Rng::new(3);
    for (name, gen) in families() {
        for &n in &SIZES {
            let s = sketch_of(&(0..n).map(|_| gen(&mut rng)).collect::<Vec<_>>());
            let b = s.to_bytes();
            let back = Sketch::from_bytes(&b).unwrap_or_else(|e| panic!("{name} n={n}: {e}"));
            assert_eq!(back, s);
            assert_eq!(back.to_bytes(), b);
        }
    }
    let extremes = sketch_of(&[0.0, 1e-12, 1e-9, 1.0, 1e300, f64::MAX]);
    assert_eq!(Sketch::from_bytes(&extremes.to_bytes()).unwrap(), extremes);
}

/// Decoding must never panic; when it succeeds the value re-encodes to the
/// same bytes (the encoding is canonical).
fn check_decode(b: &[u8]) -> bool {
    match Sketch::from_bytes(b) {
        Ok(s) => {
            assert_eq!(s.to_bytes(), b, "decoded a non-canonical blob");
            // Queries on whatever decoded must not panic either.
            let _ = (s.quantile(0.5), s.mean(), s.value_at_rank(s.count() / 3));
            let mut m = s.clone();
            m.merge(&s);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn corrupt_and_truncated_blobs_are_errors_not_panics() {
    let mut rng = Rng::new(4);
    let samples: Vec<Vec<u8>> = [0usize, 1, 2, 100, 10_000]
        .iter()
        .map(|&n| {
            sketch_of(&(0..n).map(|_| rng.lognormal(50.0, 1.0)).collect::<Vec<_>>()).to_bytes()
        })
        .collect();
    assert_eq!(Sketch::from_bytes(&[]), Err(DecodeError::Empty));
    assert_eq!(
        Sketch::from_bytes(&[0x21, 0]),
        Err(DecodeError::UnknownTag(0x21))
    );
    for b in &samples {
        // Every strict prefix is an error; so is any trailing byte.
        for cut in 0..b.len() {
            assert!(
                Sketch::from_bytes(&b[..cut]).is_err(),
                "prefix {cut} of {}",
                b.len()
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            Sketch::from_bytes(&longer),
            Err(DecodeError::TrailingBytes(1))
        ));
    }
    // Random mutations of valid blobs.
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut b = samples[i % samples.len()].clone();
        for _ in 0..rng.range(1, 4) {
            let pos = rng.range(0, b.len() as u64 - 1) as usize;
            match rng.range(0, 2) {
                0 => b[pos] ^= 1 << rng.range(0, 7),
                1 => b[pos] = rng.next_u64() as u8,
                _ => {
                    b.insert(pos, rng.next_u64() as u8);
                }
            }
        }
        accepted += usize::from(check_decode(&b));
    }
    // Random garbage with a valid tag.
    for _ in 0..20_000 {
        let len = rng.range(1, 64) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        b[0] = 0x11;
        accepted += usize::from(check_decode(&b));
    }
    println!("corrupt-blob fuzz: {accepted} of 40000 mutated/random blobs decoded (canonically)");
}

#[test]
fn specific_invalid_blobs() {
    let s = sketch_of(&[1.0, 2.0, 3.0]);
    let good = s.to_bytes();
    // count says 4 but buckets hold 3
    let mut b = good.clone();
    b[1] = 4;
    assert!(matches!(
        Sketch::from_bytes(&b),
        Err(DecodeError::Invalid(_))
    ));
    // NaN min
    let mut b = good.clone();
    let pos = good
        .windows(8)
        .position(|w| w == 1.0f64.to_le_bytes())
        .unwrap();
    b[pos..pos + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    assert!(matches!(
        Sketch::from_bytes(&b),
        Err(DecodeError::Invalid(_))
    ));
    // min that is not in the first bucket
    let mut b = good.clone();
    b[pos..pos + 8].copy_from_slice(&1.5f64.to_le_bytes());
    assert!(matches!(
        Sketch::from_bytes(&b),
        Err(DecodeError::Invalid(_))
    ));
}

#[test]
fn values_at_ranks_equals_value_at_rank_one_by_one() {
    let mut rng = common::Rng::new(77);
    for n in [0u64, 1, 2, 3, 10, 100, 5000] {
        let mut sketch = Sketch::new();
        for i in 0..n {
            // Some zeros, mostly log-normal speeds.
            sketch.add(if i % 17 == 0 {
                0.0
            } else {
                rng.lognormal(50.0, 1.0)
            });
        }
        let ranks: Vec<u64> = [
            0,
            1,
            2,
            n / 2,
            n.saturating_sub(1),
            n,
            n + 1,
            n / 10,
            9 * n / 10,
            n / 2,
        ]
        .to_vec();
        let together = sketch.values_at_ranks(&ranks);
        let one_by_one: Vec<Option<f64>> = ranks.iter().map(|&r| sketch.value_at_rank(r)).collect();
        assert_eq!(together, one_by_one, "n = {n}");
    }
}
