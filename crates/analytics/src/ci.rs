//! Distribution-free confidence interval of the median (spec/statistics.md §5).

/// Up to this n the ranks come from the exact Binomial(n, ½) distribution;
/// beyond it from the normal approximation with continuity correction
/// (which then agrees with the exact ranks within one rank).
pub const EXACT_BINOMIAL_MAX_N: u64 = 1000;

/// Distribution-free confidence interval of the median by order statistics.
///
/// Returns 1-based ranks `(lo, hi)` with `hi = n + 1 − lo` such that
/// P(X₍lo₎ ≤ true median ≤ X₍hi₎) ≥ `level` for any continuous distribution.
/// The number B of samples below the true median is Binomial(n, ½), and
/// the coverage of `(l, n+1−l)` is 1 − 2·P(B ≤ l−1); `lo` is the largest `l`
/// with P(B ≤ l−1) ≤ (1 − level)/2, i.e. the narrowest symmetric interval.
///
/// For n ≤ [`EXACT_BINOMIAL_MAX_N`] the binomial sum is exact; beyond it,
/// `lo = ⌊n/2 + ½ − z·√n/2⌋` with `z` the (1+level)/2 standard-normal
/// quantile. `None` when n is too small for any interval at that level
/// (n < 6 at 95 %) or `level` is not in (0, 1).
pub fn median_ci_ranks(n: u64, level: f64) -> Option<(u64, u64)> {
    if n == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let tail = (1.0 - level) / 2.0;
    let lo = if n <= EXACT_BINOMIAL_MAX_N {
        exact_lower_rank(n, tail)?
    } else {
        let z = normal_quantile(1.0 - tail);
        let nf = n as f64;
        let l = (nf / 2.0 + 0.5 - z * nf.sqrt() / 2.0).floor();
        if l < 1.0 {
            return None;
        }
        l as u64
    };
    Some((lo, n + 1 - lo))
}

/// Largest l ≥ 1 with P(B ≤ l−1) ≤ tail for B ~ Binomial(n, ½), n ≤ 1000.
fn exact_lower_rank(n: u64, tail: f64) -> Option<u64> {
    debug_assert!(n <= EXACT_BINOMIAL_MAX_N);
    // pmf(0) = 2^-n is exactly representable for n ≤ 1074.
    let mut pmf = 0.5f64.powi(n as i32);
    let mut cdf = pmf; // P(B ≤ k) for k = 0
    if cdf > tail {
        return None;
    }
    let mut k = 0u64;
    loop {
        // Here P(B ≤ k) ≤ tail; try k + 1.
        pmf *= (n - k) as f64 / (k + 1) as f64;
        let next = cdf + pmf;
        if next > tail {
            return Some(k + 1);
        }
        cdf = next;
        k += 1;
    }
}

/// The standard-normal quantile Φ⁻¹(p) for p in (0, 1) (Acklam's rational
/// approximation, relative error < 1.2e-9); ±∞ at 0 and 1, NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_901),
            (0.9, 1.281_551_565_544_601),
            (0.01, -2.326_347_874_040_841),
            (0.999_999, 4.753_424_308_822_899),
        ] {
            let got = normal_quantile(p);
            assert!((got - z).abs() < 1e-8, "p={p} got={got} want={z}");
        }
        assert!(normal_quantile(1.5).is_nan());
    }

    #[test]
    fn small_n() {
        assert_eq!(median_ci_ranks(5, 0.95), None);
        assert_eq!(median_ci_ranks(6, 0.95), Some((1, 6)));
        assert_eq!(median_ci_ranks(0, 0.95), None);
        assert_eq!(median_ci_ranks(100, 1.0), None);
        assert_eq!(median_ci_ranks(100, f64::NAN), None);
        // Textbook value: n = 100 at 95 % gives ranks 40 and 61.
        assert_eq!(median_ci_ranks(100, 0.95), Some((40, 61)));
    }
}
