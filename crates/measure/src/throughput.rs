//! Throughput of one transfer direction: when to add streams, when the rate
//! is stable enough to stop, and which window of the series the result uses.
//!
//! The input is a cumulative byte counter sampled over time. The same
//! [`estimate`] runs in the client (to decide and display) and in the test
//! point (to sign), so both agree on what "the rate" means.

use serde::{Deserialize, Serialize};

use crate::stats::median;

/// Tunables of the adaptive transfer; defaults are the protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferConfig {
    /// Width of the moving average a stability check compares (µs).
    pub ma_window_us: u64,
    /// Spacing of the moving averages that are compared (µs).
    pub check_interval_us: u64,
    /// How many consecutive moving averages must agree to stop early.
    pub stable_checks: usize,
    /// They agree when (max − min) / mean is at most this; and the estimate
    /// must be known to within this (four standard errors of it, judged from
    /// the link's noise), so a noisy link runs longer.
    pub stable_tolerance: f64,
    /// Moving averages within this relative distance of the final rate (or
    /// three standard deviations of the link's noise, if larger) are part of
    /// the measurement window.
    pub window_tolerance: f64,
    /// Never stop before this (µs).
    pub min_duration_us: u64,
    /// Always stop at this (µs).
    pub max_duration_us: u64,
    /// Adaptive mode adds streams; fixed mode keeps `initial_streams`.
    pub adaptive: bool,
    pub initial_streams: u32,
    pub max_streams: u32,
    /// Spacing of growth checks (µs). No streams are added once less than
    /// `min_duration_us` is left before `max_duration_us`.
    pub growth_check_us: u64,
    /// Add streams when the last half-second's rate is at least this many
    /// times the half-second's before it, or (at the first check after an
    /// addition) the half-second's before the addition. On a noisy link the
    /// rise must also exceed four standard deviations of the noise.
    pub growth_threshold: f64,
    /// Stop as stalled when nothing moved for this long (µs).
    pub stall_us: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            ma_window_us: 1_000_000,
            check_interval_us: 250_000,
            stable_checks: 4,
            stable_tolerance: 0.05,
            window_tolerance: 0.03,
            min_duration_us: 2_000_000,
            max_duration_us: 10_000_000,
            adaptive: true,
            initial_streams: 8,
            max_streams: 16,
            growth_check_us: 500_000,
            growth_threshold: 1.10,
            stall_us: 3_000_000,
        }
    }
}

impl TransferConfig {
    /// A fixed number of streams and no growth (`--streams N`).
    pub fn fixed_streams(streams: u32) -> Self {
        TransferConfig {
            adaptive: false,
            initial_streams: streams.max(1),
            max_streams: streams.max(1),
            ..TransferConfig::default()
        }
    }
}

/// One sample of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Microseconds since the phase began.
    pub t_us: u64,
    /// Bytes counted since the phase began.
    pub bytes: u64,
}

/// A monotone series of cumulative byte counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    points: Vec<Point>,
}

impl Series {
    pub fn new() -> Self {
        Series {
            points: vec![Point { t_us: 0, bytes: 0 }],
        }
    }

    /// Adds a sample. Samples out of time order are ignored and a counter
    /// that goes backwards is held at its last value, so a glitch can never
    /// produce a negative rate.
    pub fn push(&mut self, t_us: u64, bytes: u64) {
        let last = *self.points.last().expect("series starts with origin");
        if t_us < last.t_us {
            return;
        }
        let bytes = bytes.max(last.bytes);
        if t_us == last.t_us {
            self.points.last_mut().expect("non-empty").bytes = bytes;
        } else {
            self.points.push(Point { t_us, bytes });
        }
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Time of the last sample.
    pub fn end_us(&self) -> u64 {
        self.points.last().map_or(0, |p| p.t_us)
    }

    /// Total bytes at the last sample.
    pub fn total_bytes(&self) -> u64 {
        self.points.last().map_or(0, |p| p.bytes)
    }

    /// Cumulative bytes at `t_us`, linearly interpolated between samples.
    pub fn bytes_at(&self, t_us: u64) -> f64 {
        let index = self.points.partition_point(|p| p.t_us <= t_us);
        if index == 0 {
            return 0.0;
        }
        let before = self.points[index - 1];
        let Some(after) = self.points.get(index) else {
            return before.bytes as f64;
        };
        let fraction = (t_us - before.t_us) as f64 / (after.t_us - before.t_us) as f64;
        before.bytes as f64 + (after.bytes - before.bytes) as f64 * fraction
    }

    /// Mean rate between two times, in bits per second.
    pub fn rate_bps(&self, from_us: u64, to_us: u64) -> f64 {
        if to_us <= from_us {
            return 0.0;
        }
        (self.bytes_at(to_us) - self.bytes_at(from_us)) * 8.0 * 1e6 / (to_us - from_us) as f64
    }

    /// Keeps only the samples up to `t_us` (the phase's end).
    pub fn truncate_after(&mut self, t_us: u64) {
        let keep = self.points.partition_point(|p| p.t_us <= t_us).max(1);
        self.points.truncate(keep);
    }
}

/// Why a direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The rate stabilised.
    Stable,
    /// The time limit was reached.
    MaxDuration,
    /// Nothing moved for the stall time.
    Stalled,
}

/// What the driver of a transfer should do after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Open this many more streams now.
    AddStreams(u32),
    Stop(StopReason),
}

/// The rate a series supports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub rate_bps: f64,
    pub window_start_us: u64,
    pub window_end_us: u64,
    pub window_bytes: u64,
    /// True when the window is a run of agreeing moving averages; false when
    /// the link never settled and the fallback window was used.
    pub stable: bool,
}

/// Drives one direction: feed it samples, obey its actions.
#[derive(Debug, Clone)]
pub struct TransferController {
    config: TransferConfig,
    series: Series,
    streams: u32,
    last_growth_us: u64,
    next_growth_check_us: u64,
    /// Set by an addition, cleared by the growth check after it, which also
    /// compares with the rate before the addition.
    reviewing_addition: bool,
    stopped: Option<StopReason>,
}

impl TransferController {
    pub fn new(config: TransferConfig) -> Self {
        TransferController {
            config,
            series: Series::new(),
            streams: config.initial_streams,
            last_growth_us: 0,
            next_growth_check_us: config.ma_window_us,
            reviewing_addition: false,
            stopped: None,
        }
    }

    /// Streams that should be open now.
    pub fn streams(&self) -> u32 {
        self.streams
    }

    /// When streams were last added (µs), 0 if never.
    pub fn last_growth_us(&self) -> u64 {
        self.last_growth_us
    }

    pub fn series(&self) -> &Series {
        &self.series
    }

    /// Feeds the cumulative byte count at `t_us` and returns what to do next.
    pub fn on_sample(&mut self, t_us: u64, bytes: u64) -> Action {
        if let Some(reason) = self.stopped {
            return Action::Stop(reason);
        }
        self.series.push(t_us, bytes);
        let c = self.config;
        if t_us >= c.max_duration_us {
            return self.stop(StopReason::MaxDuration);
        }
        if t_us >= c.stall_us
            && self.series.bytes_at(t_us) - self.series.bytes_at(t_us - c.stall_us) < 1.0
        {
            return self.stop(StopReason::Stalled);
        }
        // Streams added with less than `min_duration_us` left could not be
        // measured: the window starts after the last addition.
        let too_late = t_us.saturating_add(c.min_duration_us) > c.max_duration_us;
        if c.adaptive
            && !too_late
            && self.streams < c.max_streams
            && t_us >= self.next_growth_check_us
        {
            let growing = self.is_growing(t_us);
            self.reviewing_addition = false;
            if growing {
                let added = self.streams.max(1).min(c.max_streams - self.streams);
                self.streams += added;
                self.last_growth_us = t_us;
                self.next_growth_check_us = t_us + c.ma_window_us;
                self.reviewing_addition = true;
                return Action::AddStreams(added);
            }
            self.next_growth_check_us = t_us + c.growth_check_us;
        }
        if t_us >= c.min_duration_us && self.is_stable(t_us) {
            return self.stop(StopReason::Stable);
        }
        Action::Continue
    }

    fn stop(&mut self, reason: StopReason) -> Action {
        self.stopped = Some(reason);
        Action::Stop(reason)
    }

    /// Whether more streams may help: the last half-second's rate is at
    /// least `growth_threshold` times the half-second's before it (the rate
    /// is still rising), or, at the first check after an addition, times the
    /// half-second's before that addition (the streams added raised the
    /// rate, even if they have already finished ramping up, so more may
    /// raise it further). On a noisy link the rise must also exceed four
    /// standard deviations of the ratio of two half-second rates, so that a
    /// random upswing is not taken for growth; the noise is judged on the
    /// last three moving-average windows, in a way that a steady ramp (slow
    /// start) does not count as noise.
    fn is_growing(&self, t_us: u64) -> bool {
        let c = self.config;
        let half = c.ma_window_us / 2;
        if half == 0 || t_us < 2 * half {
            return false;
        }
        let recent = self.series.rate_bps(t_us - half, t_us);
        let before = self.series.rate_bps(t_us - 2 * half, t_us - half);
        let interval = c.check_interval_us.max(1);
        let recent_seconds = t_us.saturating_sub(3 * c.ma_window_us);
        let noise = segment_noise(&self.series, recent_seconds, t_us, interval);
        let ratio_noise = noise * (2.0 * interval as f64 / half as f64).sqrt();
        let threshold = c
            .growth_threshold
            .max(1.0 + GROWTH_NOISE_DEVIATIONS * ratio_noise);
        let before_addition = if self.reviewing_addition && self.last_growth_us >= half {
            self.series
                .rate_bps(self.last_growth_us - half, self.last_growth_us)
        } else {
            f64::INFINITY
        };
        recent > 0.0 && recent >= threshold * before.min(before_addition)
    }

    /// Stable when the last `stable_checks` moving averages agree within
    /// `stable_tolerance` and the estimate they lead to is settled too: a
    /// stable window (no ramp-up left in it) whose rate is known to
    /// `STOP_STANDARD_ERRORS` standard errors within `stable_tolerance`. A
    /// noisy link therefore runs longer, up to `max_duration_us`.
    fn is_stable(&self, t_us: u64) -> bool {
        let c = self.config;
        let checks = c.stable_checks.max(1) as u64;
        let interval = c.check_interval_us.max(1);
        let span = c.ma_window_us + interval * (checks - 1);
        if t_us < self.last_growth_us + span {
            return false;
        }
        let averages: Vec<f64> = (0..checks)
            .map(|k| {
                let end = t_us - k * interval;
                self.series.rate_bps(end - c.ma_window_us, end)
            })
            .collect();
        // A link whose rate swings by several percent from second to second
        // (a sender's probing cycle, a busy radio) is given more latitude
        // once it has been measured for a while: from `PATIENT_AFTER_US` its
        // averages may spread twice as far and the estimate need be known to
        // two standard errors, a 95 % interval, within the tolerance.
        let patient = t_us >= PATIENT_AFTER_US;
        let spread = if patient { 2.0 } else { 1.0 } * c.stable_tolerance;
        if !agree(&averages, spread) {
            return false;
        }
        let estimate = self.estimate();
        if !estimate.stable {
            return false;
        }
        let (from, to) = (estimate.window_start_us, estimate.window_end_us);
        // The whole window's uncertainty shrinks as it grows, so a noisy link
        // stops once it has been measured long enough. The last span's
        // counts: a loss early in the window (a stall, then a burst when the
        // retransmission fills the hole) looks like huge noise to successive
        // differences, yet it cancels out in the window's byte count, and a
        // link that has run smoothly since should not be held to the time
        // limit for it.
        let recent_from = to.saturating_sub(span).max(from);
        let error = rate_uncertainty(&self.series, from, to, interval)
            .min(rate_uncertainty(&self.series, recent_from, to, interval))
            .min(block_uncertainty(&self.series, from, to));
        let standard_errors = if patient {
            PATIENT_STANDARD_ERRORS
        } else {
            STOP_STANDARD_ERRORS
        };
        standard_errors * error <= c.stable_tolerance
    }

    /// The estimate over the series so far.
    pub fn estimate(&self) -> Estimate {
        estimate(&self.series, self.last_growth_us, &self.config)
    }
}

/// Relative standard error of the mean rate over `from..to`, the largest of
/// three views: the successive differences of its segments (sensitive to
/// anything left in the window, but few of them), those of its fine segments
/// (many, and they see noise that happens to cancel out within a segment),
/// and the window's noise judged robustly.
fn rate_uncertainty(series: &Series, from: u64, to: u64, interval: u64) -> f64 {
    let segments = segment_rates(series, from, to, interval);
    let fine = fine_rates(series, from, to);
    let noise = segment_noise(series, from, to, interval);
    relative_standard_error(&segments)
        .max(relative_standard_error(&fine))
        .max(noise / (segments.len().max(1) as f64).sqrt())
}

/// Relative standard error of the mean rate over `from..to` judged on
/// one-second blocks (at least [`MIN_BLOCKS`] of them). A sender's
/// sawtooth or a hole and the burst that fills it makes 100 ms segments
/// swing by tens of percent, and successive differences at that scale take
/// the swings for independent noise; over a second they largely cancel,
/// while real fluctuations of the link's rate remain visible between blocks.
fn block_uncertainty(series: &Series, from: u64, to: u64) -> f64 {
    let blocks = segment_rates(series, from, to, BLOCK_US);
    if blocks.len() < MIN_BLOCKS {
        return f64::INFINITY;
    }
    relative_standard_error(&blocks)
}

/// Block length and the fewest blocks for [`block_uncertainty`].
const BLOCK_US: u64 = 1_000_000;
const MIN_BLOCKS: usize = 5;

fn agree(values: &[f64], tolerance: f64) -> bool {
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    mean > 0.0 && (max - min) / mean <= tolerance
}

/// A stable stop needs the estimate's rate known to this many standard
/// errors within `stable_tolerance`.
const STOP_STANDARD_ERRORS: f64 = 4.0;
/// From this time on a stop needs only `PATIENT_STANDARD_ERRORS`, and the
/// moving averages may spread twice as far (see `is_stable`).
const PATIENT_AFTER_US: u64 = 5_000_000;
const PATIENT_STANDARD_ERRORS: f64 = 2.0;
/// A deviation larger than this many standard deviations of the link's noise
/// is taken as a real change (ramp-up, burst), not as noise.
const NOISE_DEVIATIONS: f64 = 3.0;
/// The same for growth, stricter: streams added by mistake cut the window.
const GROWTH_NOISE_DEVIATIONS: f64 = 4.0;

/// The rate of a finished direction, excluding ramp-up.
///
/// Moving averages are taken backwards from the end every
/// `check_interval_us`, none reaching before `settled_from_us` (the last
/// stream addition). The final rate is the mean rate over the span of the
/// last `stable_checks` of them, which must all be within the tolerance of
/// it. The tolerance is `window_tolerance`, widened on a noisy link to three
/// standard deviations of the difference between a moving average and the
/// final rate (estimated from the link's own fluctuations), so noise does not
/// cut the window short.
///
/// Walking back, averages within the tolerance extend the window. A run of
/// averages outside it ends the window if it lasts as long as the stability
/// span (`ma_window_us` plus `stable_checks − 1` check intervals) or reaches
/// back to the start (ramp-up); a shorter run in the middle is a dip of the
/// link and stays in. The start of the window is then refined to 100 ms:
/// the leading fine segments that still differ from the settled rate by
/// more than `window_tolerance` (or the noise, if larger) are dropped (the end
/// of slow start, the tail of a token-bucket burst).
///
/// If the last `stable_checks` averages do not agree the link never settled,
/// and the window starts where the moving average first reached 80 % of its
/// median (slow start excluded, fluctuations kept), refined the same way.
pub fn estimate(series: &Series, settled_from_us: u64, config: &TransferConfig) -> Estimate {
    let end = series.end_us();
    let c = config;
    let interval = c.check_interval_us.max(1);
    let ma = c.ma_window_us.max(1);
    let checks = c.stable_checks.max(1);
    let settled = settled_from_us.min(end);
    let averages: Vec<(u64, f64)> = (0..)
        .map(|k| end.saturating_sub(k * interval))
        .take_while(|&t| t >= settled_from_us.saturating_add(ma) && t > 0)
        .map(|t| (t, series.rate_bps(t - ma, t)))
        .collect();
    let mut stable = false;
    let mut window_start = settled;
    if averages.len() >= checks {
        let head_start = averages[checks - 1].0 - ma;
        let final_rate = series.rate_bps(head_start, end);
        let span = end - head_start;
        // A moving average and the final rate differ by noise alone with
        // this (relative) standard deviation.
        let noise = segment_noise(series, settled, end, interval);
        let difference_noise =
            noise * (interval as f64 / ma as f64 + interval as f64 / span as f64).sqrt();
        let tolerance = c.window_tolerance.max(NOISE_DEVIATIONS * difference_noise);
        let within = |rate: f64| (rate - final_rate).abs() <= tolerance * final_rate;
        if final_rate > 0.0 && averages[..checks].iter().all(|a| within(a.1)) {
            stable = true;
            let longest_dip = (span / interval).max(1) as usize;
            let mut earliest = checks - 1;
            let mut run = 0;
            for (index, average) in averages.iter().enumerate().skip(checks) {
                if within(average.1) {
                    earliest = index;
                    run = 0;
                } else {
                    run += 1;
                    if run >= longest_dip {
                        break;
                    }
                }
            }
            let coarse_start = averages[earliest].0 - ma;
            window_start = trim_leading(series, coarse_start, end, ma, c.window_tolerance);
            window_start = first_settled_start(series, window_start, head_start, end, c);
        }
    }
    if !stable && !averages.is_empty() {
        let rates: Vec<f64> = averages.iter().map(|a| a.1).collect();
        let typical = median(&rates).unwrap_or(0.0);
        // `averages` runs backwards in time: find the earliest that reached 80 %.
        if let Some(first) = averages
            .iter()
            .rev()
            .find(|(_, rate)| *rate >= 0.8 * typical)
        {
            window_start = trim_leading(series, first.0 - ma, end, ma, c.window_tolerance);
        }
    }
    let window_bytes = (series.bytes_at(end) - series.bytes_at(window_start)).round() as u64;
    Estimate {
        rate_bps: series.rate_bps(window_start, end),
        window_start_us: window_start,
        window_end_us: end,
        window_bytes,
        stable,
    }
}

/// The earliest start from `from` to `head_start` (in check intervals) from
/// which the rate to `end` is known as precisely as a stable stop demands
/// (`STOP_STANDARD_ERRORS` standard errors within `stable_tolerance`);
/// `from` when none is. A loss early in a phase (a stall, then a catch-up
/// burst spread over a second or more) is smoothed into agreement by the
/// moving averages, but a window that starts between the two counts the
/// burst without all of the stall; the windows that hold part of it are the
/// imprecise ones. On a link that is noisy throughout no start qualifies,
/// and the long window stays (a shorter one would be no less noisy).
fn first_settled_start(
    series: &Series,
    from: u64,
    head_start: u64,
    end: u64,
    config: &TransferConfig,
) -> u64 {
    let interval = config.check_interval_us.max(1);
    (0..)
        .map(|k| from + k * interval)
        .take_while(|&start| start <= head_start)
        .find(|&start| {
            STOP_STANDARD_ERRORS * rate_uncertainty(series, start, end, interval)
                <= config.stable_tolerance
        })
        .unwrap_or(from)
}

/// Drops the leading fine segments of the first moving average of a window
/// (`start..start + ma`) whose rate still differs from the settled rate by
/// more than `floor` (or three standard deviations of the fine segments'
/// noise, if larger).
fn trim_leading(series: &Series, start: u64, end: u64, ma: u64, floor: f64) -> u64 {
    let limit = start.saturating_add(ma).min(end);
    // The settled rate: after the first moving average, unless too little
    // follows it.
    let reference_from = if end - limit >= ma / 4 { limit } else { start };
    let bounds = fine_bounds(start, end);
    let rates: Vec<f64> = bounds
        .windows(2)
        .map(|w| series.rate_bps(w[0], w[1]))
        .collect();
    // Level and noise are judged on the settled part, robustly: a stall and
    // the burst that follows it (a loss, then its retransmission filling the
    // hole) are what is being trimmed, not noise, and a reference point that
    // falls inside such a hole would shift a plain byte-count rate. A window
    // that starts inside a hole would count the burst without the stall and
    // overstate the rate.
    let settled_rates = fine_rates(series, reference_from, end);
    let (level, noise_rates) = match median(&settled_rates) {
        Some(level) if settled_rates.len() >= 5 => (level, &settled_rates),
        _ => (series.rate_bps(reference_from, end), &rates),
    };
    let tolerance = floor.max(NOISE_DEVIATIONS * relative_noise(noise_rates));
    let mut trimmed = start;
    for (segment, rate) in bounds.windows(2).zip(&rates) {
        if segment[1] > limit || (rate - level).abs() <= tolerance * level {
            break;
        }
        trimmed = segment[1];
    }
    trimmed
}

/// Rates of consecutive `interval`-long segments ending at `to`, none
/// starting before `from`, latest first.
fn segment_rates(series: &Series, from: u64, to: u64, interval: u64) -> Vec<f64> {
    (0..)
        .map(|k| to.saturating_sub(k * interval))
        .take_while(|&t| t >= from.saturating_add(interval) && t > 0)
        .map(|t| series.rate_bps(t - interval, t))
        .collect()
}

/// The resolution at which the start of a window is refined and the noise
/// is judged finely: the protocol's sample interval. The series is
/// interpolated onto a fixed grid, so the result does not depend on how
/// irregularly it was sampled (the test point adds samples whenever a stream
/// starts or ends).
const FINE_US: u64 = 100_000;

/// `from`, then the points every [`FINE_US`] counted back from `to` that are
/// after `from`, in time order.
fn fine_bounds(from: u64, to: u64) -> Vec<u64> {
    let mut bounds: Vec<u64> = (0..)
        .map(|k| to.saturating_sub(k * FINE_US))
        .take_while(|&t| t > from)
        .collect();
    bounds.push(from);
    bounds.reverse();
    bounds
}

/// Rates of the fine segments of `from..to`, in time order (the first may
/// be shorter).
fn fine_rates(series: &Series, from: u64, to: u64) -> Vec<f64> {
    fine_bounds(from, to)
        .windows(2)
        .map(|w| series.rate_bps(w[0], w[1]))
        .collect()
}

/// Relative standard deviation of the rate of one `interval`-long segment
/// within `from..to`, the larger of two views: the segments' own
/// fluctuations, and the fine segments' scaled to the segment length as if
/// independent (they see noise that happens to cancel out within a segment,
/// and there are more of them).
fn segment_noise(series: &Series, from: u64, to: u64, interval: u64) -> f64 {
    let segments = relative_noise(&segment_rates(series, from, to, interval));
    let fine = relative_noise(&fine_rates(series, from, to));
    let scale = (FINE_US as f64 / interval as f64).min(1.0).sqrt();
    segments.max(fine * scale)
}

/// Standard deviation of the noise on a sequence of rates, relative to the
/// rate. It is estimated robustly from the second differences of the
/// logarithms of the rates, so a steady exponential ramp (slow start), a
/// linear one, or a single step barely moves it. Non-positive rates are
/// skipped; 0 when it cannot be told.
fn relative_noise(rates: &[f64]) -> f64 {
    let logs: Vec<f64> = rates.iter().filter(|r| **r > 0.0).map(|r| r.ln()).collect();
    if logs.len() < 5 {
        return 0.0;
    }
    let mut curvature: Vec<f64> = logs
        .windows(3)
        .map(|w| (w[2] - 2.0 * w[1] + w[0]).abs())
        .collect();
    // The mean of the smallest three quarters: robust to the kinks where a
    // ramp ends or streams are added, and steadier than the median. For
    // Gaussian noise σ, |second difference| is half-normal with scale √6·σ,
    // and the mean of its lower three quarters is 0.5147 of that scale.
    curvature.sort_by(f64::total_cmp);
    let kept = (curvature.len() * 3).div_ceil(4);
    let trimmed = curvature[..kept].iter().sum::<f64>() / kept as f64;
    trimmed / (0.514_7 * 6f64.sqrt())
}

/// Relative standard error of the mean of these rates, from their
/// successive differences. Unlike [`relative_noise`] it is deliberately not
/// robust: a trend or a step left in the window counts as uncertainty.
fn relative_standard_error(rates: &[f64]) -> f64 {
    let Some(level) = crate::stats::mean(rates) else {
        return f64::INFINITY;
    };
    if rates.len() < 2 || level <= 0.0 {
        return f64::INFINITY;
    }
    let mean_square =
        rates.windows(2).map(|w| (w[1] - w[0]).powi(2)).sum::<f64>() / (rates.len() - 1) as f64;
    (mean_square / 2.0).sqrt() / level / (rates.len() as f64).sqrt()
}
