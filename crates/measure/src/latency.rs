//! Latency, jitter and responsiveness (RPM) from round-trip samples.

use serde::{Deserialize, Serialize};

use crate::stats::{mean, median, quantile, trimmed_mean};

/// Summary of a set of round-trip times (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub p90_ms: f64,
    /// Mean absolute difference of consecutive RTTs, in the order measured.
    pub jitter_ms: f64,
}

impl LatencyStats {
    /// Summarises RTTs given in the order they were measured; `None` when empty.
    pub fn from_rtts(rtts_ms: &[f64]) -> Option<LatencyStats> {
        let rtts: Vec<f64> = rtts_ms.iter().copied().filter(|v| v.is_finite()).collect();
        Some(LatencyStats {
            count: rtts.len(),
            min_ms: rtts.iter().copied().reduce(f64::min)?,
            median_ms: median(&rtts)?,
            mean_ms: mean(&rtts)?,
            p90_ms: quantile(&rtts, 0.9)?,
            jitter_ms: jitter(&rtts).unwrap_or(0.0),
        })
    }
}

/// Mean absolute difference of consecutive values; `None` with fewer than two.
pub fn jitter(rtts_ms: &[f64]) -> Option<f64> {
    let diffs: Vec<f64> = rtts_ms.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    mean(&diffs)
}

/// How much a responsiveness figure can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// Round-trips per minute under working conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Responsiveness {
    pub rpm: f64,
    pub confidence: Confidence,
    pub probes: usize,
}

/// Probes needed for each confidence level, and the largest relative
/// standard error of the trimmed means allowed at that level.
const HIGH: (usize, f64) = (30, 0.05);
const MEDIUM: (usize, f64) = (15, 0.10);

/// RPM after the IETF draft "Responsiveness under Working Conditions":
/// `60000 / mean(TM(connect), TM(http))`, where TM is the 95 % trimmed mean,
/// `connect` are TCP-handshake times of new connections opened under load and
/// `http` are request/response times on a separate connection under load.
/// The draft's TLS component is absent (plain HTTP) and its self-probes on the
/// loaded connections are not used, because HTTP/1.1 streams cannot carry them.
/// Either set may be empty; both empty gives `None`.
pub fn responsiveness(connect_ms: &[f64], http_ms: &[f64]) -> Option<Responsiveness> {
    let parts: Vec<(f64, f64)> = [connect_ms, http_ms]
        .into_iter()
        .filter(|set| !set.is_empty())
        .map(|set| {
            let tm = trimmed_mean(set, 0.95).unwrap_or(0.0);
            (tm, relative_standard_error(set))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let latency = parts.iter().map(|p| p.0).sum::<f64>() / parts.len() as f64;
    if latency <= 0.0 {
        return None;
    }
    let probes = connect_ms.len() + http_ms.len();
    let worst_error = parts.iter().map(|p| p.1).fold(0.0, f64::max);
    let confidence = if probes >= HIGH.0 && worst_error <= HIGH.1 {
        Confidence::High
    } else if probes >= MEDIUM.0 && worst_error <= MEDIUM.1 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    Some(Responsiveness {
        rpm: 60_000.0 / latency,
        confidence,
        probes,
    })
}

fn relative_standard_error(values: &[f64]) -> f64 {
    let Some(m) = mean(values) else {
        return f64::INFINITY;
    };
    if values.len() < 2 || m <= 0.0 {
        return f64::INFINITY;
    }
    let variance = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    variance.sqrt() / (values.len() as f64).sqrt() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_series() {
        let s = LatencyStats::from_rtts(&[10.0, 12.0, 11.0, 15.0]).unwrap();
        assert_eq!(s.min_ms, 10.0);
        assert_eq!(s.median_ms, 11.5);
        // |12-10| + |11-12| + |15-11| = 7 over 3 differences
        assert!((s.jitter_ms - 7.0 / 3.0).abs() < 1e-12);
        assert!(LatencyStats::from_rtts(&[]).is_none());
    }

    #[test]
    fn rpm_of_constant_latency() {
        let r = responsiveness(&[100.0; 20], &[100.0; 20]).unwrap();
        assert!((r.rpm - 600.0).abs() < 1e-9);
        assert_eq!(r.confidence, Confidence::High);
        let few = responsiveness(&[], &[50.0; 5]).unwrap();
        assert_eq!(few.confidence, Confidence::Low);
        assert!((few.rpm - 1200.0).abs() < 1e-9);
        assert!(responsiveness(&[], &[]).is_none());
    }

    #[test]
    fn noisy_probes_lower_confidence() {
        let noisy: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 10.0 } else { 400.0 })
            .collect();
        let r = responsiveness(&noisy, &noisy).unwrap();
        assert_ne!(r.confidence, Confidence::High);
    }
}
