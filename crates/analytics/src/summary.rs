//! Published figures of a cell and sufficiency flags (spec/statistics.md §6–7).

use serde::{Deserialize, Serialize};

use crate::{median_ci_ranks, quantile_rank, Sketch};

/// The published figures of one cell (or merge of cells). Quantiles use the
/// nearest-rank definition of [`crate::quantile_rank`]; all come from the
/// sketch and are within 0.5 % relative of the exact order statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples that count toward statistics.
    pub n: u64,
    /// Distinct devices (from [`crate::DistinctCounter::estimate`]).
    pub devices: u64,
    /// Median (rank ⌈n/2⌉).
    pub median: Option<f64>,
    /// 10th percentile.
    pub p10: Option<f64>,
    /// 25th percentile.
    pub p25: Option<f64>,
    /// 75th percentile.
    pub p75: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// 95 % confidence interval of the median: the sketch's values at the
    /// ranks of [`median_ci_ranks`]`(n, 0.95)`; `None` when n < 6.
    pub median_ci95: Option<[f64; 2]>,
}

impl Summary {
    /// Summarises a sketch; `devices` is the distinct-device estimate.
    pub fn from_sketch(sketch: &Sketch, devices: u64) -> Summary {
        let n = sketch.count();
        let rank = |q| quantile_rank(q, n).unwrap_or(0);
        let (ci_low, ci_high) = median_ci_ranks(n, 0.95).unwrap_or((0, 0));
        let ranks = [
            rank(0.5),
            rank(0.1),
            rank(0.25),
            rank(0.75),
            rank(0.9),
            ci_low,
            ci_high,
        ];
        let values = sketch.values_at_ranks(&ranks);
        let median_ci95 = match (values[5], values[6]) {
            (Some(low), Some(high)) => Some([low, high]),
            _ => None,
        };
        Summary {
            n,
            devices,
            median: values[0],
            p10: values[1],
            p25: values[2],
            p75: values[3],
            p90: values[4],
            mean: sketch.mean(),
            median_ci95,
        }
    }
}

/// Sample-size thresholds from the regulator, per month: a cell with fewer
/// than `province_min` samples cannot be judged; each ward needs at least
/// `ward_quota` samples. Default: 100 and 300.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Minimum samples per month for any cell to be judged (100).
    pub province_min: u64,
    /// Samples per month each ward must collect (300).
    pub ward_quota: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            province_min: 100,
            ward_quota: 300,
        }
    }
}

/// Geographic level of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Whole country.
    Nation,
    /// Province or centrally-run city.
    Province,
    /// Ward / commune.
    Ward,
}

/// A sufficiency flag attached to a published cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// n < province_min × months: the figures are shown but must not be used
    /// to judge the cell.
    Insufficient,
    /// Ward only: n < ward_quota × months: the collection quota was missed.
    BelowQuota,
}

/// Flags for a cell of `n` samples at `level` over `months` months (1 for a
/// month, 3 for a quarter, 12 for a year; 0 is treated as 1). Thresholds
/// scale linearly with `months`.
///
/// At every level, `n < province_min × months` → [`Flag::Insufficient`]
/// (the minimum to judge applies to any cell, so a ward is never judged on
/// fewer samples than a province). For a ward, additionally
/// `n < ward_quota × months` → [`Flag::BelowQuota`]. Flags are returned in
/// that order.
pub fn sufficiency(level: Level, n: u64, months: u32, t: &Thresholds) -> Vec<Flag> {
    let months = u64::from(months.max(1));
    let mut flags = Vec::new();
    if n < t.province_min.saturating_mul(months) {
        flags.push(Flag::Insufficient);
    }
    if level == Level::Ward && n < t.ward_quota.saturating_mul(months) {
        flags.push(Flag::BelowQuota);
    }
    flags
}
