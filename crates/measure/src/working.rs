//! Working conditions: whether loaded latency has settled.
//!
//! A speed test that stops as soon as its goodput is stable can stop before
//! the bottleneck's queue has filled, and then reports a loaded latency far
//! below what users see under a long download. Following the IETF
//! responsiveness draft, a direction's load keeps growing while latency is
//! still rising and its loaded latency is read once latency has settled.

use serde::{Deserialize, Serialize};

use crate::stats::median;

/// Tunables of the latency side of working conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorkingConfig {
    /// Width of each of the two windows compared (µs).
    pub window_us: u64,
    /// Time between the two windows (µs): a slow rise (a loss-based sender
    /// refilling a deep buffer adds a few percent a second) only shows over
    /// a span of seconds.
    pub gap_us: u64,
    /// Latency has settled when the medians of the last two windows differ
    /// by at most this fraction …
    pub tolerance: f64,
    /// … or by at most this many microseconds (for tiny RTTs, where a
    /// fraction means nothing).
    pub tolerance_floor_us: f64,
    /// Latency is rising when the recent median exceeds the previous one by
    /// more than this fraction.
    pub rising: f64,
    /// Probes needed in each window before any judgement.
    pub min_probes: usize,
}

impl Default for WorkingConfig {
    fn default() -> Self {
        WorkingConfig {
            window_us: 1_000_000,
            gap_us: 1_000_000,
            tolerance: 0.05,
            tolerance_floor_us: 2_000.0,
            rising: 0.05,
            min_probes: 5,
        }
    }
}

/// Loaded-latency probes of one direction, with the time each completed.
#[derive(Debug, Clone, Default)]
pub struct WorkingConditions {
    config: WorkingConfig,
    probes: Vec<(u64, f64)>,
}

/// What the probes say at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyTrend {
    /// Too few probes to tell.
    Unknown,
    /// The queue is still filling.
    Rising,
    /// Latency has settled.
    Settled,
    /// Neither settled nor clearly rising (noisy).
    Unsettled,
}

impl WorkingConditions {
    pub fn new(config: WorkingConfig) -> Self {
        WorkingConditions {
            config,
            probes: Vec::new(),
        }
    }

    /// Records a probe's round-trip time (µs) that completed at `t_us`.
    pub fn push(&mut self, t_us: u64, rtt_us: f64) {
        if rtt_us.is_finite() && rtt_us >= 0.0 {
            self.probes.push((t_us, rtt_us));
        }
    }

    fn window(&self, from_us: u64, to_us: u64) -> Vec<f64> {
        self.probes
            .iter()
            .filter(|(t, _)| *t > from_us && *t <= to_us)
            .map(|(_, rtt)| *rtt)
            .collect()
    }

    /// Compares the last window with the one before it.
    pub fn trend(&self, t_us: u64) -> LatencyTrend {
        let c = self.config;
        let span = 2 * c.window_us + c.gap_us;
        if t_us < span {
            return LatencyTrend::Unknown;
        }
        let recent = self.window(t_us - c.window_us, t_us);
        let before = self.window(t_us - span, t_us - span + c.window_us);
        if recent.len() < c.min_probes || before.len() < c.min_probes {
            return LatencyTrend::Unknown;
        }
        let (Some(recent), Some(before)) = (median(&recent), median(&before)) else {
            return LatencyTrend::Unknown;
        };
        let difference = (recent - before).abs();
        if difference <= c.tolerance_floor_us || difference <= c.tolerance * before {
            LatencyTrend::Settled
        } else if recent > before * (1.0 + c.rising) {
            LatencyTrend::Rising
        } else {
            LatencyTrend::Unsettled
        }
    }

    /// Median RTT (µs) of the probes that completed at or after `from_us`;
    /// the loaded latency once working conditions are reached.
    pub fn loaded_latency_us(&self, from_us: u64) -> Option<f64> {
        median(&self.window(from_us.saturating_sub(1), u64::MAX))
    }

    /// All probe RTTs (µs) completed at or after `from_us`, in order.
    pub fn rtts_since(&self, from_us: u64) -> Vec<f64> {
        self.window(from_us.saturating_sub(1), u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(f: impl Fn(u64) -> f64) -> WorkingConditions {
        let mut w = WorkingConditions::new(WorkingConfig::default());
        for i in 0..60u64 {
            let t = i * 100_000;
            w.push(t, f(t));
        }
        w
    }

    #[test]
    fn filling_queue_is_rising_then_settles() {
        // Queue grows 200 ms per second until 3 s, then stays full at 600 ms.
        let w = probes(|t| (t as f64 * 0.2).min(600_000.0) + 100.0);
        assert_eq!(w.trend(2_000_000), LatencyTrend::Unknown);
        assert_eq!(w.trend(3_000_000), LatencyTrend::Rising);
        assert_eq!(w.trend(5_900_000), LatencyTrend::Settled);
        // A slow, steady rise (reno refilling a deep buffer) is still rising.
        let slow = probes(|t| 250_000.0 + t as f64 * 0.02);
        assert_eq!(slow.trend(4_000_000), LatencyTrend::Rising);
        let loaded = w.loaded_latency_us(3_000_000).unwrap();
        assert!((loaded - 600_100.0).abs() < 1.0);
    }

    #[test]
    fn tiny_rtts_settle_by_the_floor() {
        let w = probes(|t| if (t / 100_000) % 2 == 0 { 50.0 } else { 900.0 });
        assert_eq!(w.trend(3_000_000), LatencyTrend::Settled);
    }

    #[test]
    fn too_few_probes_tell_nothing() {
        let mut w = WorkingConditions::new(WorkingConfig::default());
        w.push(2_900_000, 10_000.0);
        assert_eq!(w.trend(3_000_000), LatencyTrend::Unknown);
        assert_eq!(w.loaded_latency_us(0), Some(10_000.0));
    }
}
