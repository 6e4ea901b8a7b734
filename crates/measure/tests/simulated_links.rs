//! The measurement logic driven by a deterministic link simulator.
//!
//! No clock and no I/O: [`Link`] is a fluid model of N TCP-like streams
//! sharing a bottleneck. Every stream starts with an initial window that
//! doubles per RTT (slow start), optionally up to a per-stream window cap,
//! and the streams together deliver `min(Σ windows / RTT, bottleneck)`. Once
//! the streams' combined window-limited rate reaches the bottleneck, slow
//! start ends and the windows stay at twice that size (the overshoot queues at
//! the bottleneck, so the bottleneck sets the rate); streams opened later start from the
//! initial window again. The bottleneck itself can be a token bucket (an
//! initial burst at a higher peak rate), noisy (a seeded random factor per
//! 100 ms), or stall (stops moving bytes at some time).
//!
//! [`run`] samples the cumulative byte count every 100 ms, feeds it to a
//! [`TransferController`] and obeys its actions, exactly as the client does.

use ispeed_measure::stats::{jain_fairness, mean, median, quantile, trimmed_mean};
use ispeed_measure::throughput::{estimate, Point};
use ispeed_measure::{
    responsiveness, Action, LatencyStats, Series, StopReason, TransferConfig, TransferController,
};
use proptest::prelude::*;

const MBIT: f64 = 1e6;
const SAMPLE_US: u64 = 100_000;
/// Initial congestion window of one stream: 10 segments of 1448 bytes.
const INITIAL_WINDOW: f64 = 10.0 * 1448.0;

// ---------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------

/// splitmix64: a tiny deterministic generator, so the noise is seeded.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the bottleneck behaves over time.
#[derive(Debug, Clone, Copy)]
struct LinkSpec {
    /// Mean bottleneck rate (bit/s).
    rate_bps: f64,
    rtt_us: u64,
    /// Initial window of every stream (bytes).
    initial_window: f64,
    /// Largest window one stream can have (bytes); `None`: unlimited.
    window_cap: Option<f64>,
    /// Token bucket: bytes that may leave at `peak` before the rate applies.
    burst_bytes: f64,
    /// Rate of the burst, as a multiple of the bottleneck rate.
    peak_factor: f64,
    /// Per-100-ms uniform noise amplitude (0.2 = ±20 %), and its seed.
    noise: f64,
    seed: u64,
    /// Nothing moves from this time on.
    stall_at_us: Option<u64>,
}

impl LinkSpec {
    /// A clean TCP-like link: slow start, then the bottleneck rate.
    fn tcp(rate_mbit: f64, rtt_ms: f64) -> Self {
        LinkSpec {
            rate_bps: rate_mbit * MBIT,
            rtt_us: (rtt_ms * 1000.0).round().max(1.0) as u64,
            initial_window: INITIAL_WINDOW,
            window_cap: None,
            burst_bytes: 0.0,
            peak_factor: 1.0,
            noise: 0.0,
            seed: 0,
            stall_at_us: None,
        }
    }

    /// A shaped link that is at its rate from t = 0 (windows never limit),
    /// with a token bucket of `burst_ms` worth of the rate, drained at `peak`
    /// times the rate.
    fn token_bucket(rate_mbit: f64, burst_ms: f64, peak_factor: f64) -> Self {
        LinkSpec {
            initial_window: 1e12,
            burst_bytes: rate_mbit * MBIT / 8.0 * burst_ms / 1000.0,
            peak_factor,
            ..LinkSpec::tcp(rate_mbit, 10.0)
        }
    }

    /// When the token bucket's burst is spent (µs after the start).
    fn burst_drained_us(&self) -> f64 {
        if self.burst_bytes <= 0.0 || self.peak_factor <= 1.0 {
            return 0.0;
        }
        let excess_bps = self.rate_bps * (self.peak_factor - 1.0);
        self.burst_bytes * 8.0 / excess_bps * 1e6
    }

    fn with_cap(mut self, cap: f64) -> Self {
        self.window_cap = Some(cap);
        self
    }

    fn with_noise(mut self, amplitude: f64, seed: u64) -> Self {
        self.noise = amplitude;
        self.seed = seed;
        self
    }

    fn with_stall(mut self, at_us: u64) -> Self {
        self.stall_at_us = Some(at_us);
        self
    }

    /// The rate the given number of streams can reach once out of slow start
    /// (bit/s): the bottleneck, or less if the window cap limits them.
    fn steady_rate(&self, streams: u32) -> f64 {
        match self.window_cap {
            Some(cap) => self
                .rate_bps
                .min(streams as f64 * cap * 8.0 * 1e6 / self.rtt_us as f64),
            None => self.rate_bps,
        }
    }
}

struct Stream {
    opened_us: f64,
    /// Window when slow start ended (frozen), `None` while growing.
    frozen: Option<f64>,
}

/// The fluid simulation of one transfer direction.
struct Link {
    spec: LinkSpec,
    rng: Rng,
    streams: Vec<Stream>,
    now_us: f64,
    bytes: f64,
    tokens: f64,
    /// Noise factor of the current 100 ms slot.
    factor: f64,
    slot: u64,
    /// Set once the combined windows reached the bottleneck.
    saturated: bool,
    /// When that happened, and the bytes the bottleneck could carry since.
    saturated_at_us: f64,
    offered_since_saturated: f64,
}

impl Link {
    fn new(spec: LinkSpec, streams: u32) -> Self {
        let mut link = Link {
            spec,
            rng: Rng(spec.seed),
            streams: Vec::new(),
            now_us: 0.0,
            bytes: 0.0,
            tokens: spec.burst_bytes,
            factor: 1.0,
            slot: u64::MAX,
            saturated: false,
            saturated_at_us: 0.0,
            offered_since_saturated: 0.0,
        };
        link.add_streams(streams);
        link
    }

    fn add_streams(&mut self, count: u32) {
        let frozen = self.saturated.then_some(self.spec.initial_window);
        for _ in 0..count {
            self.streams.push(Stream {
                opened_us: self.now_us,
                frozen,
            });
        }
    }

    fn window(&self, stream: &Stream, t_us: f64) -> f64 {
        let cap = self.spec.window_cap.unwrap_or(f64::INFINITY);
        let w = stream.frozen.unwrap_or_else(|| {
            let rtts = (t_us - stream.opened_us) / self.spec.rtt_us as f64;
            // 2^60 initial windows is far beyond any link here.
            self.spec.initial_window * rtts.min(60.0).exp2()
        });
        w.min(cap)
    }

    /// The bottleneck's current rate (bit/s).
    fn bottleneck_bps(&mut self, t_us: f64) -> f64 {
        if self.spec.stall_at_us.is_some_and(|at| t_us >= at as f64) {
            return 0.0;
        }
        let slot = t_us as u64 / SAMPLE_US;
        if slot != self.slot {
            self.slot = slot;
            self.factor = 1.0 + self.spec.noise * (2.0 * self.rng.unit() - 1.0);
        }
        self.spec.rate_bps * self.factor
    }

    /// Moves the fluid forward to `t_us`.
    fn advance_to(&mut self, t_us: u64) {
        // Fine enough for slow start at the shortest RTT, and aligned with
        // the 100 ms noise slots.
        let dt = (self.spec.rtt_us as f64 / 8.0).clamp(10.0, 1000.0);
        while self.now_us < t_us as f64 {
            let step = dt.min(t_us as f64 - self.now_us);
            let mid = self.now_us + step / 2.0;
            let windows: f64 = self.streams.iter().map(|s| self.window(s, mid)).sum();
            let window_bps = windows * 8.0 * 1e6 / self.spec.rtt_us as f64;
            let bottleneck = self.bottleneck_bps(mid);
            if !self.saturated && window_bps >= self.spec.rate_bps {
                // Slow start ends. It overshoots: the windows stay at twice
                // what filled the pipe, the excess sits in the bottleneck's
                // queue, so the bottleneck (not the windows) sets the rate.
                self.saturated = true;
                self.saturated_at_us = self.now_us;
                let frozen: Vec<f64> = self
                    .streams
                    .iter()
                    .map(|s| 2.0 * self.window(s, mid))
                    .collect();
                for (stream, w) in self.streams.iter_mut().zip(frozen) {
                    stream.frozen = Some(w);
                }
            }
            let demand = window_bps * step / 8e6;
            // Token bucket: refill at the bottleneck rate up to the burst
            // size, spend at most the peak rate.
            let refill = bottleneck * step / 8e6;
            self.tokens = (self.tokens + refill).min(self.spec.burst_bytes.max(refill));
            let peak = bottleneck * self.spec.peak_factor.max(1.0) * step / 8e6;
            let sent = demand.min(self.tokens).min(peak);
            self.tokens -= sent;
            self.bytes += sent;
            if self.saturated {
                self.offered_since_saturated += refill;
            }
            self.now_us += step;
        }
    }
}

/// What happened in one simulated transfer.
struct Outcome {
    stop: StopReason,
    stop_us: u64,
    /// (time, streams added) for every `AddStreams`.
    additions: Vec<(u64, u32)>,
    max_streams: u32,
    streams: u32,
    last_growth_us: u64,
    estimate: ispeed_measure::Estimate,
    series: Series,
    /// The mean rate the bottleneck offered from the end of slow start to
    /// the stop (bit/s); NaN if the windows never filled it.
    true_mean_bps: f64,
}

impl std::fmt::Debug for Outcome {
    /// Everything but the series, which would drown a failure message; the
    /// per-sample rates instead, in Mbit/s.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rates: Vec<String> = self
            .series
            .points()
            .windows(2)
            .map(|w| format!("{:.1}", self.series.rate_bps(w[0].t_us, w[1].t_us) / MBIT))
            .collect();
        f.debug_struct("Outcome")
            .field("stop", &self.stop)
            .field("stop_us", &self.stop_us)
            .field("additions", &self.additions)
            .field("streams", &self.streams)
            .field("estimate", &self.estimate)
            .field("true_mean_bps", &self.true_mean_bps)
            .field("sample_rates_mbit", &rates.join(" "))
            .finish()
    }
}

fn run(spec: LinkSpec, config: TransferConfig) -> Outcome {
    let mut controller = TransferController::new(config);
    let mut link = Link::new(spec, controller.streams());
    let mut additions = Vec::new();
    let mut max_streams = controller.streams();
    let mut t = 0;
    let (stop, stop_us) = loop {
        t += SAMPLE_US;
        assert!(t <= 2 * config.max_duration_us, "controller never stopped");
        link.advance_to(t);
        match controller.on_sample(t, link.bytes as u64) {
            Action::Continue => {}
            Action::AddStreams(n) => {
                assert!(n > 0, "AddStreams(0) at {t}");
                link.add_streams(n);
                additions.push((t, n));
                assert_eq!(link.streams.len() as u32, controller.streams());
                max_streams = max_streams.max(controller.streams());
            }
            Action::Stop(reason) => break (reason, t),
        }
    };
    // A stopped controller stays stopped.
    assert_eq!(
        controller.on_sample(t + SAMPLE_US, link.bytes as u64),
        Action::Stop(stop)
    );
    let estimate = controller.estimate();
    assert_estimate_sane(&estimate, controller.series());
    Outcome {
        stop,
        stop_us,
        additions,
        max_streams,
        streams: controller.streams(),
        last_growth_us: controller.last_growth_us(),
        estimate,
        series: controller.series().clone(),
        true_mean_bps: if link.saturated {
            link.offered_since_saturated * 8e6 / (stop_us as f64 - link.saturated_at_us)
        } else {
            f64::NAN
        },
    }
}

fn assert_estimate_sane(e: &ispeed_measure::Estimate, series: &Series) {
    assert!(e.rate_bps.is_finite() && e.rate_bps >= 0.0, "{e:?}");
    assert!(e.window_start_us <= e.window_end_us, "{e:?}");
    assert!(e.window_end_us <= series.end_us(), "{e:?}");
    assert!(e.window_bytes <= series.total_bytes(), "{e:?}");
}

fn relative_error(measured: f64, truth: f64) -> f64 {
    (measured - truth).abs() / truth
}

/// Proptest settings: modest case counts so the suite stays fast
/// (`PROPTEST_CASES` overrides them for a deeper run).
fn cases(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

/// The next sample time at or after `t_us`.
fn sample_at_or_after(t_us: u64) -> u64 {
    t_us.div_ceil(SAMPLE_US) * SAMPLE_US
}

// ---------------------------------------------------------------------------
// Slow start, then a stable link
// ---------------------------------------------------------------------------

/// Checks a clean TCP-like link: stable stop well before the time limit,
/// the estimate within 1 % of the bottleneck, ramp-up excluded.
fn check_clean_link(rate_mbit: f64, rtt_ms: f64) -> Outcome {
    let spec = LinkSpec::tcp(rate_mbit, rtt_ms);
    let o = run(spec, TransferConfig::default());
    let what = format!("{rate_mbit} Mbit/s, RTT {rtt_ms} ms: {o:?}");
    assert_eq!(o.stop, StopReason::Stable, "{what}");
    assert!(o.stop_us <= 8_000_000, "{what}");
    if rtt_ms <= 50.0 {
        assert!(o.stop_us <= 6_000_000, "{what}");
    }
    assert!(o.estimate.stable, "{what}");
    assert!(
        relative_error(o.estimate.rate_bps, spec.rate_bps) <= 0.01,
        "{what}"
    );
    assert!(o.estimate.window_start_us >= o.last_growth_us, "{what}");
    o
}

#[test]
fn slow_start_then_stable_grid() {
    for rate in [5.0, 20.0, 100.0, 300.0, 500.0] {
        for rtt in [1.0, 10.0, 30.0, 50.0, 100.0, 200.0, 300.0] {
            check_clean_link(rate, rtt);
        }
    }
}

#[test]
fn slow_start_is_excluded_from_the_window() {
    // 500 Mbit/s at 300 ms: slow start takes ~2.5 s, longer than the whole
    // stability span, and used to leave a 9 % deficit in the estimate.
    let o = check_clean_link(500.0, 300.0);
    // No sample interval of the window is more than 3 % (the window
    // tolerance) below the bottleneck: slow start is cut out to the sample.
    let e = o.estimate;
    for w in o.series.points().windows(2) {
        if w[0].t_us >= e.window_start_us {
            let rate = o.series.rate_bps(w[0].t_us, w[1].t_us);
            assert!(rate >= 0.97 * 500.0 * MBIT, "{e:?}: {w:?}");
        }
    }
    assert!(relative_error(e.rate_bps, 500.0 * MBIT) < 0.001, "{e:?}");
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn slow_start_then_stable(rate in 5.0f64..500.0, rtt in 1.0f64..300.0) {
        check_clean_link(rate, rtt);
    }
}

// ---------------------------------------------------------------------------
// A shaped link, at its rate from t = 0 after an initial burst
// ---------------------------------------------------------------------------

fn check_token_bucket(rate_mbit: f64, burst_ms: f64, peak_factor: f64) {
    let spec = LinkSpec::token_bucket(rate_mbit, burst_ms, peak_factor);
    let o = run(spec, TransferConfig::default());
    let what = format!("{rate_mbit} Mbit/s, burst {burst_ms} ms at {peak_factor}x: {o:?}");
    assert_eq!(o.stop, StopReason::Stable, "{what}");
    assert!(o.stop_us <= 3_000_000, "{what}");
    assert!(o.additions.is_empty(), "{what}");
    assert!(
        relative_error(o.estimate.rate_bps, spec.rate_bps) <= 0.005,
        "{what}"
    );
    // A burst worth more than 5 % of the first sample is cut out entirely.
    if burst_ms >= 5.0 {
        assert!(
            o.estimate.window_start_us as f64 >= spec.burst_drained_us(),
            "{what}"
        );
    }
}

#[test]
fn token_bucket_burst_is_excluded() {
    for burst_ms in [0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0] {
        for peak in [2.0, 10.0] {
            check_token_bucket(100.0, burst_ms, peak);
        }
    }
    // A slow burst: 300 ms worth drained at 1.5x takes 600 ms.
    check_token_bucket(100.0, 300.0, 1.5);
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn stable_link_with_burst(
        rate in 5.0f64..500.0,
        burst_ms in 0.0f64..200.0,
        peak in 2.0f64..20.0,
    ) {
        check_token_bucket(rate, burst_ms, peak);
    }
}

// ---------------------------------------------------------------------------
// A noisy link: ±20 % per 100 ms
// ---------------------------------------------------------------------------

/// Checks a noisy link: stable or not, the estimate is never badly wrong.
/// "Wrong" is judged against what the link offered during the run (its mean
/// rate from the end of slow start to the stop): that a few seconds of a
/// ±20 % link average a little off its nominal rate is the link's doing, and
/// no estimator could know better. The nominal rate is checked too, loosely.
fn check_noisy(rate_mbit: f64, rtt_ms: f64, seed: u64) -> Outcome {
    let spec = LinkSpec::tcp(rate_mbit, rtt_ms).with_noise(0.2, seed);
    let o = run(spec, TransferConfig::default());
    let what = format!("{rate_mbit} Mbit/s, RTT {rtt_ms} ms, seed {seed}: {o:?}");
    assert!(
        matches!(o.stop, StopReason::Stable | StopReason::MaxDuration),
        "{what}"
    );
    assert!(
        relative_error(o.estimate.rate_bps, o.true_mean_bps) <= 0.05,
        "{what}"
    );
    assert!(
        relative_error(o.estimate.rate_bps, spec.rate_bps) <= 0.08,
        "{what}"
    );
    assert!(o.estimate.window_start_us >= o.last_growth_us, "{what}");
    o
}

#[test]
fn noisy_links_are_never_badly_wrong() {
    let mut errors = Vec::new();
    for seed in 0..150 {
        let rtt = [5.0, 20.0, 80.0][seed as usize % 3];
        let o = check_noisy(100.0, rtt, seed);
        let error = relative_error(o.estimate.rate_bps, 100.0 * MBIT);
        // On these seeds, within 5 % of the nominal rate as well.
        assert!(error <= 0.05, "seed {seed}: {o:?}");
        errors.push(error);
    }
    // The typical error is much smaller than the bound.
    assert!(median(&errors).unwrap() < 0.015, "{errors:?}");
}

proptest! {
    // The error on a noisy link is statistical: a fixed seed keeps the
    // generated cases, and so the suite, deterministic.
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x15EE_D000),
        ..cases(64)
    })]

    #[test]
    fn noisy_link(rate in 5.0f64..500.0, rtt in 1.0f64..300.0, seed in any::<u64>()) {
        check_noisy(rate, rtt, seed);
    }
}

// ---------------------------------------------------------------------------
// Stalls
// ---------------------------------------------------------------------------

#[test]
fn nothing_ever_moves() {
    let spec = LinkSpec::tcp(100.0, 20.0).with_stall(0);
    let o = run(spec, TransferConfig::default());
    assert_eq!(o.stop, StopReason::Stalled);
    assert_eq!(o.stop_us, 3_000_000);
    assert_eq!(o.estimate.rate_bps, 0.0);
    assert!(!o.estimate.stable);
}

#[test]
fn stall_on_a_noisy_link() {
    // Not stable yet when it stalls at 4.5 s (a ±20 % link is given more
    // latitude only from 5 s): stalled 3 s later.
    let spec = LinkSpec::tcp(100.0, 20.0)
        .with_noise(0.2, 7)
        .with_stall(4_500_000);
    let o = run(spec, TransferConfig::default());
    assert_eq!(o.stop, StopReason::Stalled, "{o:?}");
    assert_eq!(o.stop_us, 7_500_000, "{o:?}");
    assert!(!o.estimate.stable, "{o:?}");
    // A stall less than 3 s before the limit is never reported.
    for seed in 0..20 {
        let spec = LinkSpec::tcp(100.0, 20.0)
            .with_noise(0.2, seed)
            .with_stall(7_100_000);
        let o = run(spec, TransferConfig::default());
        assert_ne!(o.stop, StopReason::Stalled, "{o:?}");
        assert!(o.estimate.rate_bps.is_finite());
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn stall_is_detected(
        rate in 5.0f64..500.0,
        rtt in 1.0f64..300.0,
        stall_at in 0u64..1_900_000,
    ) {
        let spec = LinkSpec::tcp(rate, rtt).with_stall(stall_at);
        let o = run(spec, TransferConfig::default());
        prop_assert_eq!(o.stop, StopReason::Stalled, "{:?}", o);
        // The last sample that counted new bytes, plus the stall time. That
        // is the first sample after the stall, unless (at a low rate) less
        // than a byte moved before it.
        let points = o.series.points();
        let last_moved = points
            .windows(2)
            .rfind(|w| w[1].bytes > w[0].bytes)
            .map(|w| w[1].t_us)
            .unwrap_or(0);
        prop_assert!(last_moved <= sample_at_or_after(stall_at));
        prop_assert_eq!(o.stop_us, last_moved + 3_000_000, "{:?}", o);
        prop_assert!(!o.estimate.stable, "{:?}", o);
        prop_assert!(o.estimate.rate_bps <= rate * MBIT, "{:?}", o);
    }
}

// ---------------------------------------------------------------------------
// Stream growth: window-limited streams on a high-BDP link
// ---------------------------------------------------------------------------

/// A link where one stream's window cap allows `1/needed` of the bottleneck
/// and a stream ramps up to the cap in `doublings` RTTs.
fn window_limited(rtt_ms: f64, doublings: f64, needed: f64) -> LinkSpec {
    let cap = INITIAL_WINDOW * doublings.exp2();
    let rate_mbit = needed * cap * 8.0 / (rtt_ms / 1000.0) / MBIT;
    LinkSpec::tcp(rate_mbit, rtt_ms).with_cap(cap)
}

/// The growth mechanism is exercised from four streams, so that links
/// needing 6 to 16 of them all have to grow; the default starts with eight.
fn from_four_streams() -> TransferConfig {
    TransferConfig {
        initial_streams: 4,
        ..TransferConfig::default()
    }
}

fn check_growth(spec: LinkSpec, config: TransferConfig) -> Outcome {
    let o = run(spec, config);
    let what = format!("{spec:?}: {o:?}");
    assert!(!o.additions.is_empty(), "{what}");
    assert!(o.max_streams <= config.max_streams, "{what}");
    assert_eq!(o.streams, o.max_streams, "{what}");
    let &(last_addition, _) = o.additions.last().unwrap();
    assert_eq!(o.last_growth_us, last_addition, "{what}");
    assert!(o.estimate.window_start_us >= last_addition, "{what}");
    assert_eq!(o.stop, StopReason::Stable, "{what}");
    assert!(o.stop_us <= 8_000_000, "{what}");
    // The estimate is the rate the streams finally open reach.
    let truth = spec.steady_rate(o.streams);
    assert!(relative_error(o.estimate.rate_bps, truth) <= 0.01, "{what}");
    // Growth paid off.
    assert!(
        o.estimate.rate_bps > 1.2 * spec.steady_rate(config.initial_streams),
        "{what}"
    );
    o
}

#[test]
fn growth_fills_a_window_limited_link() {
    // 200 ms RTT, 463 KB windows: 4 streams give 74 Mbit/s of 148.
    let spec = window_limited(200.0, 5.0, 8.0);
    let o = check_growth(spec, from_four_streams());
    assert_eq!(o.additions[0], (1_000_000, 4));
    // Needs 16 streams; gets them, and no more.
    let spec = window_limited(100.0, 6.0, 24.0);
    let o = check_growth(spec, from_four_streams());
    assert_eq!(o.streams, 16, "{o:?}");
    assert_eq!(o.additions, [(1_000_000, 4), (2_000_000, 8)]);
    // The default starts with eight and doubles once.
    let o = check_growth(spec, TransferConfig::default());
    assert_eq!(o.additions, [(1_000_000, 8)]);
}

#[test]
fn growth_stops_at_max_streams() {
    let config = TransferConfig {
        max_streams: 10,
        ..from_four_streams()
    };
    let o = check_growth(window_limited(200.0, 5.0, 24.0), config);
    assert_eq!(o.streams, 10, "{o:?}");
    assert_eq!(o.additions, [(1_000_000, 4), (2_000_000, 2)]);
}

#[test]
fn an_early_loss_does_not_hold_a_smooth_link_to_the_time_limit() {
    // 48 Mbit/s counted in order at the receiver: a loss holds 200 ms of data
    // back until the retransmission fills the hole, then the link runs
    // smoothly. The stall and the burst cancel out in the byte count, so the
    // link is measured as soon as it has been smooth for a stability span;
    // and wherever the hole falls, the window neither starts inside it (which
    // would count the burst without the stall) nor misses the rate.
    let rate_bytes_per_sample = 600_000u64;
    for hole_at in 2..=15u64 {
        let mut controller = TransferController::new(TransferConfig::default());
        let mut stopped = None;
        for k in 1..=100u64 {
            let t = k * SAMPLE_US;
            let delivered = if k == hole_at || k == hole_at + 1 {
                (hole_at - 1) * rate_bytes_per_sample
            } else {
                k * rate_bytes_per_sample
            };
            if let Action::Stop(reason) = controller.on_sample(t, delivered) {
                stopped = Some((reason, t));
                break;
            }
        }
        let (reason, t) = stopped.expect("stops");
        assert_eq!(reason, StopReason::Stable, "hole at {hole_at}");
        assert!(t <= 4_500_000, "hole at {hole_at}: stopped at {t}");
        let e = controller.estimate();
        assert!(
            relative_error(e.rate_bps, 48e6) <= 0.003,
            "hole at {hole_at}: {e:?}"
        );
    }
}

/// Feeds a controller (default configuration) the count of a link whose
/// rate (Mbit/s) at each sample time is `mbit_at(t_us)`, until it stops;
/// returns why, when, and its estimate.
fn run_rate_profile(mbit_at: impl Fn(u64) -> f64) -> (StopReason, u64, ispeed_measure::Estimate) {
    let mut controller = TransferController::new(TransferConfig::default());
    let mut bytes = 0.0f64;
    for k in 1..=200u64 {
        let t = k * SAMPLE_US;
        bytes += mbit_at(t) * MBIT / 8.0 * SAMPLE_US as f64 / 1e6;
        if let Action::Stop(reason) = controller.on_sample(t, bytes as u64) {
            return (reason, t, controller.estimate());
        }
    }
    panic!("the controller never stopped");
}

#[test]
fn a_disturbed_start_spread_over_seconds_is_left_out_of_the_window() {
    // 48 Mbit/s once settled. Before that, as a loss-recovering start looks
    // at the receiver: 40 Mbit/s for 0.9 s, then a catch-up burst at
    // 57.3 Mbit/s until 1.5 s. One-second moving averages smooth this into
    // agreement with the settled rate, but a window starting inside the slow
    // part counts the burst without all of the deficit.
    let (reason, t, e) = run_rate_profile(|t| {
        if t <= 900_000 {
            40.0
        } else if t <= 1_500_000 {
            57.3
        } else {
            48.0
        }
    });
    assert_eq!(reason, StopReason::Stable);
    assert!(t <= 5_000_000, "stopped at {t}");
    assert!(relative_error(e.rate_bps, 48e6) <= 0.003, "{e:?}");
    assert!(e.window_start_us >= 1_500_000, "{e:?}");
}

#[test]
fn a_link_swinging_every_second_stops_in_time_and_within_two_percent() {
    // 24 Mbit/s swinging ±7 % over a 2 s cycle (a sender's probing, a busy
    // radio): one-second averages spread by up to 9 %. The test must stop
    // well before its limit (from 5 s a wider spread and a 95 % interval
    // suffice) and still be within the accuracy bound; a window covering
    // part of a cycle is what limits it.
    let (reason, t, e) = run_rate_profile(|t| {
        let phase = 2.0 * std::f64::consts::PI * t as f64 / 2e6;
        24.0 * (1.0 + 0.07 * phase.sin())
    });
    assert_eq!(reason, StopReason::Stable);
    assert!(t <= 7_000_000, "stopped at {t}");
    assert!(relative_error(e.rate_bps, 24e6) <= 0.02, "{e:?}");
}

#[test]
fn no_growth_too_late_to_measure() {
    // The link only starts rising at 8.5 s: the streams are not added, since
    // less than `min_duration_us` would be left to measure them.
    let config = TransferConfig::default();
    let mut controller = TransferController::new(config);
    let mut bytes = 0u64;
    for k in 1..=100u64 {
        let t = k * SAMPLE_US;
        let rate_bytes_per_sample = if t <= 8_500_000 { 100_000 } else { 400_000 };
        bytes += rate_bytes_per_sample;
        // Jitter keeps it from looking stable before the rise.
        bytes += (k % 7) * 12_000;
        let action = controller.on_sample(t, bytes);
        assert!(!matches!(action, Action::AddStreams(_)), "{t}: {action:?}");
        if let Action::Stop(_) = action {
            break;
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn growth_helps_window_limited_streams(
        rtt in 100.0f64..300.0,
        extra_doublings in 0.0f64..3.0,
        needed in 6.0f64..16.0,
    ) {
        // The streams ramp for at least 0.8 s, past the first growth check.
        let doublings = (800.0 / rtt).ceil() + extra_doublings;
        check_growth(window_limited(rtt, doublings, needed), from_four_streams());
    }
}

// ---------------------------------------------------------------------------
// Fixed streams
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn fixed_streams_never_grow(
        streams in 1u32..=8,
        rtt in 20.0f64..300.0,
        doublings in 3.0f64..8.0,
        needed in 1.0f64..16.0,
    ) {
        let spec = window_limited(rtt, doublings, needed);
        let config = TransferConfig::fixed_streams(streams);
        let o = run(spec, config);
        prop_assert!(o.additions.is_empty(), "{:?}", o);
        prop_assert_eq!(o.streams, streams);
        prop_assert_eq!(o.last_growth_us, 0);
        prop_assert_eq!(o.stop, StopReason::Stable, "{:?}", o);
        let truth = spec.steady_rate(streams);
        prop_assert!(relative_error(o.estimate.rate_bps, truth) <= 0.01, "{:?}", o);
    }
}

#[test]
fn fixed_single_stream_on_a_link_where_growth_would_help() {
    let spec = window_limited(200.0, 5.0, 8.0);
    let o = run(spec, TransferConfig::fixed_streams(1));
    assert!(o.additions.is_empty(), "{o:?}");
    assert_eq!(o.streams, 1);
    assert!(relative_error(o.estimate.rate_bps, spec.steady_rate(1)) <= 0.01);
    assert_eq!(TransferConfig::fixed_streams(0).initial_streams, 1);
}

// ---------------------------------------------------------------------------
// Series and estimate robustness
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn series_push_never_yields_negative_rates(
        samples in prop::collection::vec((0u64..20_000_000, 0u64..u64::MAX / 4), 0..60),
        probes in prop::collection::vec((0u64..25_000_000, 0u64..25_000_000), 1..20),
    ) {
        let mut series = Series::new();
        for &(t, bytes) in &samples {
            series.push(t, bytes);
        }
        let points = series.points();
        prop_assert_eq!(points[0], Point { t_us: 0, bytes: 0 });
        for w in points.windows(2) {
            prop_assert!(w[0].t_us < w[1].t_us);
            prop_assert!(w[0].bytes <= w[1].bytes);
        }
        for &(a, b) in &probes {
            let rate = series.rate_bps(a, b);
            prop_assert!(rate.is_finite() && rate >= 0.0, "{} {} {}", a, b, rate);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(series.bytes_at(lo) <= series.bytes_at(hi));
        }
    }

    #[test]
    fn estimate_on_any_monotone_series(
        steps in prop::collection::vec((1u64..400_000, 0u64..50_000_000), 0..120),
        settled_from in 0u64..15_000_000,
    ) {
        let mut series = Series::new();
        let (mut t, mut bytes) = (0u64, 0u64);
        for &(dt, db) in &steps {
            t += dt;
            bytes += db;
            series.push(t, bytes);
        }
        let e = estimate(&series, settled_from, &TransferConfig::default());
        prop_assert!(e.window_start_us <= e.window_end_us, "{:?}", e);
        prop_assert_eq!(e.window_end_us, series.end_us());
        prop_assert!(e.window_start_us >= settled_from.min(series.end_us()), "{:?}", e);
        prop_assert!(e.rate_bps.is_finite() && e.rate_bps >= 0.0, "{:?}", e);
        prop_assert!(e.window_bytes <= series.total_bytes(), "{:?}", e);
    }

    #[test]
    fn estimate_with_any_config_does_not_panic(
        steps in prop::collection::vec((1u64..400_000, 0u64..50_000_000), 0..80),
        ma in 0u64..3_000_000,
        interval in 0u64..1_000_000,
        checks in 0usize..10,
        tolerance in 0.0f64..1.0,
    ) {
        let mut series = Series::new();
        let (mut t, mut bytes) = (0u64, 0u64);
        for &(dt, db) in &steps {
            t += dt;
            bytes += db;
            series.push(t, bytes);
        }
        let config = TransferConfig {
            ma_window_us: ma,
            check_interval_us: interval.max(10_000),
            stable_checks: checks,
            window_tolerance: tolerance,
            ..TransferConfig::default()
        };
        let e = estimate(&series, 0, &config);
        prop_assert!(e.rate_bps.is_finite() && e.rate_bps >= 0.0, "{:?}", e);
        prop_assert!(e.window_start_us <= e.window_end_us, "{:?}", e);
    }

    #[test]
    fn controller_survives_any_samples(
        samples in prop::collection::vec((0u64..400_000, 0u64..80_000_000), 1..150),
        adaptive in any::<bool>(),
    ) {
        let config = TransferConfig { adaptive, ..TransferConfig::default() };
        let mut controller = TransferController::new(config);
        let (mut t, mut bytes) = (0u64, 0u64);
        let mut stopped = None;
        for &(dt, db) in &samples {
            // Some samples repeat a time or go back in time.
            t = if dt < 20_000 { t.saturating_sub(dt) } else { t + dt };
            bytes = if db % 5 == 0 { bytes.saturating_sub(db) } else { bytes + db };
            let action = controller.on_sample(t, bytes);
            if let Some(reason) = stopped {
                prop_assert_eq!(action, Action::Stop(reason));
            }
            match action {
                Action::AddStreams(n) => {
                    prop_assert!(adaptive && n > 0);
                    prop_assert!(controller.streams() <= config.max_streams);
                }
                Action::Stop(reason) => stopped = Some(reason),
                Action::Continue => {}
            }
            let e = controller.estimate();
            prop_assert!(e.rate_bps.is_finite() && e.rate_bps >= 0.0, "{:?}", e);
        }
    }
}

/// The test point samples its counters every 100 ms and also whenever a
/// stream starts or ends; the client only every 100 ms. Both must find the
/// same rate.
fn sample_link(spec: LinkSpec, streams: u32, times: &[u64]) -> Series {
    let mut link = Link::new(spec, streams);
    let mut series = Series::new();
    for &t in times {
        link.advance_to(t);
        series.push(t, link.bytes as u64);
    }
    series
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn extra_samples_do_not_change_the_estimate(
        rate in 5.0f64..500.0,
        rtt in 1.0f64..300.0,
        extra in prop::collection::vec(1u64..4_000_000, 0..40),
        end_ticks in 25u64..60,
    ) {
        let spec = LinkSpec::tcp(rate, rtt);
        let ticks: Vec<u64> = (1..=end_ticks).map(|k| k * SAMPLE_US).collect();
        let end = *ticks.last().unwrap();
        let mut irregular: Vec<u64> = ticks
            .iter()
            .copied()
            .chain(extra.iter().map(|t| t % end))
            .collect();
        irregular.sort_unstable();
        irregular.dedup();
        let config = TransferConfig::fixed_streams(8);
        let regular = estimate(&sample_link(spec, 8, &ticks), 0, &config);
        let irregular = estimate(&sample_link(spec, 8, &irregular), 0, &config);
        prop_assert_eq!(regular.window_end_us, irregular.window_end_us);
        prop_assert!(
            relative_error(irregular.rate_bps, regular.rate_bps) <= 0.002,
            "{:?} {:?}", regular, irregular
        );
        // The start may move within the first moving average (what is
        // trimmed there depends a little on the noise the samples show).
        prop_assert!(
            regular.window_start_us.abs_diff(irregular.window_start_us) <= 1_000_000,
            "{:?} {:?}", regular, irregular
        );
    }
}

// ---------------------------------------------------------------------------
// Latency, responsiveness and fairness
// ---------------------------------------------------------------------------

#[test]
fn latency_of_a_constant_series() {
    let stats = LatencyStats::from_rtts(&[25.0; 10]).unwrap();
    assert_eq!(stats.jitter_ms, 0.0);
    assert_eq!(stats.min_ms, 25.0);
    assert_eq!(stats.median_ms, 25.0);
    assert_eq!(stats.p90_ms, 25.0);
    // One RTT has no jitter to speak of; non-finite RTTs are ignored.
    assert_eq!(LatencyStats::from_rtts(&[7.0]).unwrap().jitter_ms, 0.0);
    let stats = LatencyStats::from_rtts(&[f64::NAN, 5.0, f64::INFINITY, 5.0]).unwrap();
    assert_eq!(stats.count, 2);
    assert_eq!(stats.mean_ms, 5.0);
    assert!(LatencyStats::from_rtts(&[f64::NAN]).is_none());
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn jitter_of_constant_rtts_is_zero(rtt in 0.01f64..10_000.0, n in 1usize..200) {
        let stats = LatencyStats::from_rtts(&vec![rtt; n]).unwrap();
        prop_assert_eq!(stats.jitter_ms, 0.0);
        prop_assert_eq!(stats.count, n);
        prop_assert!((stats.mean_ms - rtt).abs() <= 1e-9 * rtt);
    }

    #[test]
    fn latency_stats_are_ordered(rtts in prop::collection::vec(0.0f64..5_000.0, 1..100)) {
        let s = LatencyStats::from_rtts(&rtts).unwrap();
        let max = rtts.iter().copied().fold(f64::MIN, f64::max);
        prop_assert!(s.min_ms <= s.median_ms && s.median_ms <= s.p90_ms && s.p90_ms <= max);
        prop_assert!(s.min_ms <= s.mean_ms && s.mean_ms <= max + 1e-9);
        prop_assert!(s.jitter_ms >= 0.0 && s.jitter_ms <= max - s.min_ms + 1e-9);
        let trimmed = trimmed_mean(&rtts, 0.95).unwrap();
        prop_assert!(trimmed <= mean(&rtts).unwrap() + 1e-9);
        prop_assert_eq!(quantile(&rtts, 0.0), Some(s.min_ms));
    }

    #[test]
    fn rpm_of_constant_probes(
        latency in 0.1f64..5_000.0,
        connects in 0usize..50,
        requests in 0usize..50,
    ) {
        let r = responsiveness(&vec![latency; connects], &vec![latency; requests]);
        if connects + requests == 0 {
            prop_assert!(r.is_none());
        } else {
            let r = r.unwrap();
            prop_assert!((r.rpm - 60_000.0 / latency).abs() <= 1e-9 * r.rpm);
            prop_assert_eq!(r.probes, connects + requests);
        }
    }

    #[test]
    fn jain_index_is_between_one_over_n_and_one(
        shares in prop::collection::vec(0.0f64..1e9, 1..64),
    ) {
        let n = shares.len() as f64;
        match jain_fairness(&shares) {
            Some(index) => {
                prop_assert!(index >= 1.0 / n - 1e-9 && index <= 1.0 + 1e-9, "{}", index);
            }
            None => prop_assert!(shares.iter().all(|&s| s == 0.0)),
        }
    }
}

#[test]
fn jain_extremes() {
    assert!((jain_fairness(&[3.0; 16]).unwrap() - 1.0).abs() < 1e-12);
    let mut one = vec![0.0; 16];
    one[3] = 5.0;
    assert!((jain_fairness(&one).unwrap() - 1.0 / 16.0).abs() < 1e-12);
}

// ---------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------

/// Prints stop times and accuracy over the scenarios:
/// `cargo test -p ispeed-measure --release --test simulated_links -- --ignored --nocapture`
#[test]
#[ignore = "prints a report"]
fn report() {
    let config = TransferConfig::default();
    println!("clean links: Mbit/s, RTT ms -> stop, error %, window s, additions");
    let mut worst = (0.0f64, 0u64);
    for rate in [5.0, 20.0, 100.0, 300.0, 500.0] {
        for rtt in [1.0, 10.0, 30.0, 50.0, 100.0, 200.0, 300.0] {
            let spec = LinkSpec::tcp(rate, rtt);
            let o = run(spec, config);
            let error = relative_error(o.estimate.rate_bps, spec.rate_bps);
            worst = (worst.0.max(error), worst.1.max(o.stop_us));
            println!(
                "{rate:>5} {rtt:>5} -> {:?} at {:.1} s, {:.3} %, {:.2} s, {}",
                o.stop,
                o.stop_us as f64 / 1e6,
                100.0 * error,
                (o.estimate.window_end_us - o.estimate.window_start_us) as f64 / 1e6,
                o.additions.len()
            );
        }
    }
    println!(
        "clean worst: {:.3} %, stop {:.1} s",
        100.0 * worst.0,
        worst.1 as f64 / 1e6
    );
    for rtt in [1.0, 20.0, 50.0, 100.0, 300.0] {
        let (mut errors, mut times, mut stable) = (Vec::new(), Vec::new(), 0);
        let mut true_errors = Vec::new();
        for seed in 0..4000 {
            let spec = LinkSpec::tcp(100.0, rtt).with_noise(0.2, seed);
            let o = run(spec, config);
            errors.push(100.0 * relative_error(o.estimate.rate_bps, spec.rate_bps));
            true_errors.push(100.0 * relative_error(o.estimate.rate_bps, o.true_mean_bps));
            times.push(o.stop_us as f64 / 1e6);
            stable += usize::from(o.stop == StopReason::Stable);
        }
        println!(
            "noisy ±20 %, RTT {rtt}: stable {stable}/4000, error vs nominal median {:.2} % p99 {:.2} % max {:.2} %, vs the run's true mean p99 {:.2} % max {:.2} %, stop median {:.1} s",
            median(&errors).unwrap(),
            quantile(&errors, 0.99).unwrap(),
            quantile(&errors, 1.0).unwrap(),
            quantile(&true_errors, 0.99).unwrap(),
            quantile(&true_errors, 1.0).unwrap(),
            median(&times).unwrap(),
        );
    }
    for noise in [0.02, 0.05, 0.1] {
        let (mut errors, mut times) = (Vec::new(), Vec::new());
        for seed in 0..200 {
            let spec = LinkSpec::tcp(100.0, 20.0).with_noise(noise, seed);
            let o = run(spec, config);
            errors.push(100.0 * relative_error(o.estimate.rate_bps, spec.rate_bps));
            times.push(o.stop_us as f64 / 1e6);
        }
        println!(
            "noisy ±{:.0} %: error max {:.2} %, stop median {:.1} s max {:.1} s",
            100.0 * noise,
            quantile(&errors, 1.0).unwrap(),
            median(&times).unwrap(),
            quantile(&times, 1.0).unwrap(),
        );
    }
}
