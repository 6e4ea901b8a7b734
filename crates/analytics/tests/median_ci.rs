//! median_ci_ranks against independent exact binomial computations.

use ispeed_analytics::{median_ci_ranks, EXACT_BINOMIAL_MAX_N};

/// Binomial coefficients C(n, k) for k = 0..=n, exact in u128 (n ≤ 126).
fn binomial_row(n: u32) -> Vec<u128> {
    let mut row = vec![1u128];
    for _ in 0..n {
        let mut next = vec![1u128; row.len() + 1];
        for k in 1..row.len() {
            next[k] = row[k - 1] + row[k];
        }
        row = next;
    }
    row
}

/// Exact integer check for n ≤ 126 at 95 %: the tail S(l) = Σ_{k<l} C(n,k)
/// must satisfy 2·S/2^n ≤ 0.05 ⇔ 40·S ≤ 2^n.
#[test]
fn exact_integer_coverage_and_narrowest_small_n() {
    for n in 1..=126u32 {
        let row = binomial_row(n);
        let total: u128 = 1u128 << n;
        let ok = |l: u64| -> bool {
            // coverage of (l, n+1-l) ≥ 0.95
            let s: u128 = row[..l as usize].iter().sum();
            s.checked_mul(40).is_some_and(|x| x <= total)
        };
        match median_ci_ranks(u64::from(n), 0.95) {
            None => {
                assert!(n < 6, "n={n} has an interval");
                assert!(!ok(1), "n={n}: (1, n) would cover");
            }
            Some((lo, hi)) => {
                assert!(n >= 6);
                assert_eq!(hi, u64::from(n) + 1 - lo);
                assert!(lo >= 1 && lo <= hi);
                assert!(ok(lo), "n={n} ({lo},{hi}) covers < 95 %");
                // narrowest symmetric: moving both ends inward fails
                assert!(
                    lo + 1 > hi - 1 || !ok(lo + 1),
                    "n={n}: ({lo},{hi}) not narrowest"
                );
            }
        }
    }
}

/// Rows of Binomial(n, ½) probabilities by Pascal's rule in f64.
fn pascal_probabilities(max_n: usize) -> Vec<Vec<f64>> {
    let mut rows = vec![vec![1.0f64]];
    for n in 1..=max_n {
        let prev = &rows[n - 1];
        let mut row = vec![0.0; n + 1];
        for k in 0..=n {
            let a = if k > 0 { prev[k - 1] } else { 0.0 };
            let b = if k < n { prev[k] } else { 0.0 };
            row[k] = 0.5 * (a + b);
        }
        rows.push(row);
    }
    rows
}

/// n = 6..=1000 (the exact range) at several levels, against Pascal's rule.
#[test]
fn exact_range_against_pascal_triangle() {
    let rows = pascal_probabilities(EXACT_BINOMIAL_MAX_N as usize);
    for level in [0.95, 0.9, 0.99] {
        let tail = (1.0 - level) / 2.0;
        for (n, row) in rows.iter().enumerate().skip(1) {
            let cdf = |l: usize| row[..l].iter().sum::<f64>(); // P(B ≤ l-1)
            let got = median_ci_ranks(n as u64, level);
            match got {
                None => assert!(cdf(1) > tail, "level {level} n={n}"),
                Some((lo, hi)) => {
                    let lo = lo as usize;
                    assert_eq!(hi as usize, n + 1 - lo);
                    let coverage = 1.0 - 2.0 * cdf(lo);
                    assert!(
                        coverage >= level - 1e-12,
                        "level {level} n={n} lo={lo} cov={coverage}"
                    );
                    let inner = 1.0 - 2.0 * cdf(lo + 1);
                    assert!(
                        lo + 1 > n - lo || inner < level + 1e-12,
                        "level {level} n={n}: lo={lo} not narrowest ({inner})"
                    );
                }
            }
        }
    }
    assert_eq!(median_ci_ranks(5, 0.95), None);
    assert_eq!(median_ci_ranks(6, 0.95), Some((1, 6)));
}

/// Exact lower rank for any n, summing the binomial pmf in log space.
fn exact_lower_rank_log(n: u64, level: f64) -> u64 {
    let tail = (1.0 - level) / 2.0;
    let nf = n as f64;
    let mut ln_pmf = -nf * std::f64::consts::LN_2;
    let mut cdf = 0.0f64;
    let mut l = 0u64;
    for k in 0..n {
        cdf += ln_pmf.exp();
        if cdf > tail {
            break;
        }
        l = k + 1;
        ln_pmf += ((nf - k as f64) / (k as f64 + 1.0)).ln();
    }
    l
}

#[test]
fn normal_approximation_within_one_rank_of_exact() {
    let mut ns: Vec<u64> = (1001..=3000).step_by(7).collect();
    ns.extend([5_000, 10_000, 12_345, 50_000, 100_000, 333_333, 1_000_000]);
    let mut max_diff = 0i64;
    let mut differing = 0;
    for &n in &ns {
        for level in [0.95, 0.9, 0.99] {
            let (lo, hi) = median_ci_ranks(n, level).unwrap();
            assert_eq!(hi, n + 1 - lo);
            let exact = exact_lower_rank_log(n, level);
            let d = lo as i64 - exact as i64;
            assert!(
                d.abs() <= 1,
                "n={n} level={level}: normal {lo} vs exact {exact}"
            );
            // Where they differ, the approximation is the wider (conservative) one.
            assert!(
                d <= 0,
                "n={n} level={level}: normal {lo} narrower than exact {exact}"
            );
            max_diff = max_diff.max(d.abs());
            if d != 0 {
                differing += 1;
                println!("  n={n} level={level}: normal lo={lo}, exact lo={exact}");
            }
        }
    }
    // The log-space reference agrees with the crate's exact path too.
    for n in [6u64, 100, 999, 1000] {
        assert_eq!(
            median_ci_ranks(n, 0.95).unwrap().0,
            exact_lower_rank_log(n, 0.95)
        );
    }
    println!(
        "normal approximation: {} (n, level) cases, {differing} differ from exact by {max_diff} rank",
        ns.len() * 3
    );
}
