//! Small order-statistics helpers.

/// Linear-interpolated quantile (`q` in 0..=1) of unsorted values; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some(quantile_sorted(&sorted, q))
}

/// Quantile of already sorted, non-empty values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let q = q.clamp(0.0, 1.0);
    let position = q * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let fraction = position - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// Arithmetic mean; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Mean of the lowest `keep` fraction of the values (the RPM draft's
/// "trimmed mean" drops the top 5 %: `keep = 0.95`).
pub fn trimmed_mean(values: &[f64], keep: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let kept = ((sorted.len() as f64 * keep).ceil() as usize).clamp(1, sorted.len());
    mean(&sorted[..kept])
}

/// Jain's fairness index: 1 when all shares are equal, 1/n when one takes all.
pub fn jain_fairness(shares: &[f64]) -> Option<f64> {
    let sum: f64 = shares.iter().sum();
    let sum_sq: f64 = shares.iter().map(|x| x * x).sum();
    (sum_sq > 0.0).then(|| sum * sum / (shares.len() as f64 * sum_sq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[5.0], 0.9), Some(5.0));
    }

    #[test]
    fn trimmed_mean_drops_the_top() {
        let mut values: Vec<f64> = vec![10.0; 19];
        values.push(1000.0);
        assert_eq!(trimmed_mean(&values, 0.95), Some(10.0));
    }

    #[test]
    fn jain_bounds() {
        assert!((jain_fairness(&[5.0; 10]).unwrap() - 1.0).abs() < 1e-12);
        let mut one = vec![0.0; 9];
        one.push(3.0);
        assert!((jain_fairness(&one).unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(jain_fairness(&[0.0, 0.0]), None);
    }
}
