//! Summary (incl. CI coverage through the sketch) and sufficiency flags.

mod common;

use common::Rng;
use ispeed_analytics::{
    median_ci_ranks, sufficiency, Flag, Level, Sketch, Summary, Thresholds, RELATIVE_ACCURACY,
};

/// 1,000 simulated wards with a known true median; the 95 % CI computed
/// through the sketch must cover it in ≥ 93 % of wards.
#[test]
fn median_ci_coverage_through_the_sketch() {
    type Family = (&'static str, f64, fn(&mut Rng) -> f64);
    let fams: [Family; 4] = [
        // log-normal speeds, median 50, sigma 1
        ("lognormal(50,1)", 50.0, |r| r.lognormal(50.0, 1.0)),
        // bimodal, symmetric in log space: median sqrt(1000)
        ("bimodal 10|100", 1000f64.sqrt(), |r| r.bimodal()),
        // skewed: Weibull(scale 30, shape 0.7), median 30·ln2^(1/0.7)
        (
            "weibull(30,0.7)",
            30.0 * std::f64::consts::LN_2.powf(1.0 / 0.7),
            |r| r.weibull(30.0, 0.7),
        ),
        // heavy tail: Pareto(5, 1.2), median 5·2^(1/1.2)
        ("pareto(5,1.2)", 5.0 * 2f64.powf(1.0 / 1.2), |r| {
            r.pareto(5.0, 1.2)
        }),
    ];
    let mut rng = Rng::new(2024);
    let mut per = [(0u32, 0u32); 4];
    let (mut covered, mut covered_exact, mut total) = (0u32, 0u32, 0u32);
    for ward in 0..1000usize {
        // 60 % log-normal, the rest spread over the skewed/bimodal families.
        let f = if ward % 10 < 6 { 0 } else { 1 + ward % 3 };
        let (_, true_median, gen) = fams[f];
        // n log-uniform in [20, 2000]
        let n = (20.0 * 100f64.powf(rng.uniform())).round() as usize;
        let data: Vec<f64> = (0..n).map(|_| gen(&mut rng)).collect();
        let mut s = Sketch::new();
        for &v in &data {
            s.add(v);
        }
        let summary = Summary::from_sketch(&s, 0);
        let [lo, hi] = summary.median_ci95.expect("n >= 20 has a CI");
        let hit = lo <= true_median && true_median <= hi;
        covered += u32::from(hit);
        per[f].0 += u32::from(hit);
        per[f].1 += 1;
        total += 1;
        // the same interval from the exact order statistics, for comparison
        let mut sorted = data;
        sorted.sort_by(f64::total_cmp);
        let (rl, rh) = median_ci_ranks(n as u64, 0.95).unwrap();
        let (el, eh) = (sorted[rl as usize - 1], sorted[rh as usize - 1]);
        covered_exact += u32::from(el <= true_median && true_median <= eh);
        assert!((lo - el).abs() <= RELATIVE_ACCURACY * el * (1.0 + 1e-9));
        assert!((hi - eh).abs() <= RELATIVE_ACCURACY * eh * (1.0 + 1e-9));
    }
    let frac = f64::from(covered) / f64::from(total);
    for (i, (name, _, _)) in fams.iter().enumerate() {
        println!(
            "  {name}: {}/{} covered ({:.1} %)",
            per[i].0,
            per[i].1,
            100.0 * f64::from(per[i].0) / f64::from(per[i].1)
        );
    }
    println!(
        "median CI95 coverage through the sketch: {covered}/{total} = {:.1} % (exact order statistics: {:.1} %)",
        100.0 * frac,
        100.0 * f64::from(covered_exact) / f64::from(total)
    );
    assert!(frac >= 0.93, "coverage {frac}");
}

#[test]
fn summary_fields() {
    let empty = Summary::from_sketch(&Sketch::new(), 0);
    assert_eq!(
        empty,
        Summary {
            n: 0,
            devices: 0,
            median: None,
            p10: None,
            p25: None,
            p75: None,
            p90: None,
            mean: None,
            median_ci95: None
        }
    );
    let mut s = Sketch::new();
    for v in 1..=5 {
        s.add(f64::from(v));
    }
    let five = Summary::from_sketch(&s, 3);
    assert_eq!(five.median_ci95, None, "n = 5 is too small at 95 %");
    assert_eq!(five.devices, 3);
    assert_eq!(five.mean, Some(3.0));
    // nearest rank: median of 1..=5 is 3, p10 is rank 1 (exact min)
    assert!((five.median.unwrap() - 3.0).abs() <= 3.0 * RELATIVE_ACCURACY);
    assert_eq!(five.p10, Some(1.0));
    // n = 100 of 1..=100: CI ranks (40, 61) -> values 40 and 61 (within α)
    let mut s = Sketch::new();
    for v in 1..=100 {
        s.add(f64::from(v));
    }
    let sum = Summary::from_sketch(&s, 100);
    let [lo, hi] = sum.median_ci95.unwrap();
    assert!((lo - 40.0).abs() <= 40.0 * RELATIVE_ACCURACY, "{lo}");
    assert!((hi - 61.0).abs() <= 61.0 * RELATIVE_ACCURACY, "{hi}");
    assert!((sum.median.unwrap() - 50.0).abs() <= 50.0 * RELATIVE_ACCURACY);
    assert!((sum.p90.unwrap() - 90.0).abs() <= 90.0 * RELATIVE_ACCURACY);
    assert_eq!(sum.mean, Some(50.5));
    let json = serde_json::to_value(&sum).unwrap();
    for key in [
        "n",
        "devices",
        "median",
        "p10",
        "p25",
        "p75",
        "p90",
        "mean",
        "median_ci95",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let back: Summary = serde_json::from_value(json).unwrap();
    assert_eq!(back, sum);
}

#[test]
fn sufficiency_at_the_thresholds() {
    let t = Thresholds::default();
    assert_eq!((t.province_min, t.ward_quota), (100, 300));
    use Flag::*;
    use Level::*;
    // province: 99 insufficient, 100 fine
    assert_eq!(sufficiency(Province, 99, 1, &t), vec![Insufficient]);
    assert_eq!(sufficiency(Province, 100, 1, &t), vec![]);
    assert_eq!(sufficiency(Province, 299, 1, &t), vec![]);
    // ward: 299 below quota, 300 fine; under 100 also insufficient
    assert_eq!(sufficiency(Ward, 299, 1, &t), vec![BelowQuota]);
    assert_eq!(sufficiency(Ward, 300, 1, &t), vec![]);
    assert_eq!(sufficiency(Ward, 99, 1, &t), vec![Insufficient, BelowQuota]);
    assert_eq!(sufficiency(Ward, 100, 1, &t), vec![BelowQuota]);
    // nation
    assert_eq!(sufficiency(Nation, 99, 1, &t), vec![Insufficient]);
    assert_eq!(sufficiency(Nation, 100, 1, &t), vec![]);
    assert_eq!(sufficiency(Nation, 0, 1, &t), vec![Insufficient]);
    // a quarter: thresholds × 3
    assert_eq!(sufficiency(Province, 299, 3, &t), vec![Insufficient]);
    assert_eq!(sufficiency(Province, 300, 3, &t), vec![]);
    assert_eq!(sufficiency(Ward, 899, 3, &t), vec![BelowQuota]);
    assert_eq!(sufficiency(Ward, 900, 3, &t), vec![]);
    // 12 months: thresholds × 12
    assert_eq!(sufficiency(Province, 1199, 12, &t), vec![Insufficient]);
    assert_eq!(sufficiency(Province, 1200, 12, &t), vec![]);
    assert_eq!(sufficiency(Ward, 3599, 12, &t), vec![BelowQuota]);
    assert_eq!(sufficiency(Ward, 3600, 12, &t), vec![]);
    assert_eq!(
        sufficiency(Ward, 1199, 12, &t),
        vec![Insufficient, BelowQuota]
    );
    // months = 0 is treated as 1
    assert_eq!(sufficiency(Province, 99, 0, &t), vec![Insufficient]);
    assert_eq!(sufficiency(Province, 100, 0, &t), vec![]);
    // configurable
    let custom = Thresholds {
        province_min: 50,
        ward_quota: 120,
    };
    assert_eq!(sufficiency(Ward, 119, 1, &custom), vec![BelowQuota]);
    assert_eq!(
        sufficiency(Ward, 49, 1, &custom),
        vec![Insufficient, BelowQuota]
    );
    assert_eq!(
        serde_json::to_string(&vec![Insufficient, BelowQuota]).unwrap(),
        r#"["insufficient","below_quota"]"#
    );
    assert_eq!(serde_json::to_string(&Level::Ward).unwrap(), r#""ward""#);
}
