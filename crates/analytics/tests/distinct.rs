//! DistinctCounter: exactness, HLL accuracy, merging, encoding.

mod common;

use common::{splitmix64, Rng};
use ispeed_analytics::{DecodeError, DistinctCounter, EXACT_LIMIT};

fn counter_of(range: std::ops::Range<u64>, salt: u64) -> DistinctCounter {
    let mut c = DistinctCounter::new();
    for i in range {
        c.insert(splitmix64(i ^ salt.rotate_left(40)));
    }
    c
}

#[test]
fn exact_up_to_the_limit() {
    let mut c = DistinctCounter::new();
    assert_eq!(c.estimate(), 0);
    for i in 0..EXACT_LIMIT as u64 {
        let h = splitmix64(i);
        c.insert(h);
        c.insert(h); // duplicates never count
        assert_eq!(c.estimate(), i + 1);
        assert!(c.is_exact());
    }
    // Low-entropy hashes are still counted exactly while sparse.
    let mut d = DistinctCounter::new();
    for h in 0..100 {
        d.insert(h);
    }
    assert_eq!(d.estimate(), 100);
    c.insert(splitmix64(1_000_000));
    assert!(!c.is_exact());
    let e = c.estimate();
    assert!((120..=140).contains(&e), "129 distinct estimated as {e}");
}

#[test]
fn hll_within_5_percent_at_10k_and_1m() {
    let mut worst10k = 0.0f64;
    for seed in 0..20u64 {
        let e = counter_of(0..10_000, seed).estimate() as f64;
        worst10k = worst10k.max((e - 10_000.0).abs() / 10_000.0);
    }
    let mut worst_all = worst10k;
    for n in [200u64, 1_000, 3_000, 20_000, 100_000] {
        let e = counter_of(0..n, 99).estimate() as f64;
        let err = (e - n as f64).abs() / n as f64;
        println!("distinct n={n}: estimate {e}, error {:.2} %", err * 100.0);
        assert!(err < 0.05, "n={n} estimate {e}");
        worst_all = worst_all.max(err);
    }
    let e1m = counter_of(0..1_000_000, 7).estimate() as f64;
    let err1m = (e1m - 1e6).abs() / 1e6;
    println!(
        "distinct: worst error at 10k over 20 seeds {:.2} %, 1M estimate {e1m} ({:.2} %)",
        worst10k * 100.0,
        err1m * 100.0
    );
    assert!(worst10k < 0.05);
    assert!(err1m < 0.05);
}

#[test]
fn merge_counts_the_union() {
    // Overlapping dense sets: [0, 600k) ∪ [400k, 1M) = 1M distinct.
    let a = counter_of(0..600_000, 3);
    let b = counter_of(400_000..1_000_000, 3);
    let mut m = a.clone();
    m.merge(&b);
    assert_eq!(
        m,
        counter_of(0..1_000_000, 3),
        "merge equals the union's counter"
    );
    let e = m.estimate() as f64;
    assert!((e - 1e6).abs() / 1e6 < 0.05, "union estimate {e}");
    // Sparse ∪ sparse staying sparse, with overlap.
    let mut s = counter_of(0..60, 5);
    s.merge(&counter_of(30..100, 5));
    assert!(s.is_exact());
    assert_eq!(s.estimate(), 100);
    // Sparse ∪ sparse crossing the limit, sparse into dense, dense into sparse.
    let mut x = counter_of(0..100, 6);
    x.merge(&counter_of(50..200, 6));
    assert_eq!(x, counter_of(0..200, 6));
    let mut y = counter_of(0..10, 6);
    y.merge(&counter_of(5..5000, 6));
    assert_eq!(y, counter_of(0..5000, 6));
    let mut z = counter_of(0..5000, 6);
    z.merge(&counter_of(4990..5010, 6));
    assert_eq!(z, counter_of(0..5010, 6));
    // Random splits into many cells merge to the whole, in any order.
    let mut rng = Rng::new(8);
    let ids: Vec<u64> = (0..30_000).map(|_| rng.range(0, 20_000)).collect();
    let mut whole = DistinctCounter::new();
    let mut cells = vec![DistinctCounter::new(); 50];
    for &id in &ids {
        whole.insert(splitmix64(id));
        cells[rng.range(0, 49) as usize].insert(splitmix64(id));
    }
    rng.shuffle(&mut cells);
    let mut merged = DistinctCounter::new();
    for c in &cells {
        merged.merge(&DistinctCounter::from_bytes(&c.to_bytes()).unwrap());
    }
    assert_eq!(merged.to_bytes(), whole.to_bytes());
}

#[test]
fn encoding_roundtrip_sizes_and_corruption() {
    let mut rng = Rng::new(9);
    let mut blobs = Vec::new();
    for n in [0u64, 1, 2, 128, 129, 300, 2_000, 100_000] {
        let c = counter_of(0..n, 11);
        let b = c.to_bytes();
        println!("distinct blob: {n} devices -> {} bytes", b.len());
        assert_eq!(DistinctCounter::from_bytes(&b).unwrap(), c);
        for cut in 0..b.len() {
            assert!(DistinctCounter::from_bytes(&b[..cut]).is_err());
        }
        blobs.push(b);
    }
    assert_eq!(DistinctCounter::from_bytes(&[]), Err(DecodeError::Empty));
    assert_eq!(
        DistinctCounter::from_bytes(&[0x11, 0]),
        Err(DecodeError::UnknownTag(0x11))
    );
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut b = blobs[i % blobs.len()].clone();
        for _ in 0..rng.range(1, 3) {
            let pos = rng.range(0, b.len() as u64 - 1) as usize;
            if rng.next_u64() & 1 == 0 {
                b[pos] ^= 1 << rng.range(0, 7);
            } else {
                b[pos] = rng.next_u64() as u8;
            }
        }
        if let Ok(c) = DistinctCounter::from_bytes(&b) {
            assert_eq!(c.to_bytes(), b, "non-canonical blob accepted");
            let _ = c.estimate();
            accepted += 1;
        }
    }
    for _ in 0..20_000 {
        let len = rng.range(2, 80) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        b[0] = 0x21;
        b[1] %= 3;
        if let Ok(c) = DistinctCounter::from_bytes(&b) {
            assert_eq!(c.to_bytes(), b);
            accepted += 1;
        }
    }
    println!("distinct fuzz: {accepted} of 40000 mutated/random blobs decoded (canonically)");
}
