//! Sessions and their server-side counters.
//!
//! Every download and upload stream registers with its session; a sampler
//! task records the session's cumulative counters every
//! [`SAMPLE_INTERVAL_MS`](ispeed_proto::consts::SAMPLE_INTERVAL_MS) and at
//! every stream start and end. The receipt's rates come from these samples
//! only, never from anything the client says.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ispeed_measure::throughput::{
    estimate, Action, Series, StopReason, TransferConfig, TransferController,
};
use ispeed_proto::consts::MAX_STREAMS;
use ispeed_proto::receipt::{Counting, DirectionReceipt, LatencyReceipt};
use ispeed_proto::wire::{Advice, Direction, LiveSample, TcpSummary, Verdict};
use ispeed_proto::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::error::ApiFailure;
use crate::tcpinfo::{self, TcpInfo};

/// Samples kept per session; at 10 per second this covers far more than a session's life.
const MAX_SAMPLES: usize = 4096;
/// Live samples returned by one `live` call at most.
pub const MAX_LIVE_SAMPLES: usize = 256;

/// One test session.
pub struct Session {
    pub id: String,
    pub created: Instant,
    pub created_unix_ms: u64,
    pub client_addr: SocketAddr,
    /// Cancelled when the session finishes, expires or the server shuts down;
    /// every stream of the session ends promptly then.
    pub cancel: CancellationToken,
    pub expires: Instant,
    byte_budget: u64,
    /// Payload bytes moved in both directions, for the byte budget.
    moved: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<u64, StreamState>,
    next_key: u64,
    download: Phase,
    upload: Phase,
    samples: VecDeque<LiveSample>,
    next_seq: u64,
    last_tcp: Option<TcpSummary>,
    /// Kernel RTTs of the control connection: idle, loaded download, loaded upload.
    control_rtts: [Vec<u32>; 3],
    control_min_rtt: Option<u32>,
    /// The reference controller per direction, for clients that ask for
    /// advice (browsers); created at the first `live?advise=`.
    advisors: [Option<Advisor>; 2],
}

/// The client's transfer controller (§11), run here over the same samples a
/// client would feed it: `t` and bytes relative to the first sample in which
/// the direction has an open stream.
struct Advisor {
    controller: TransferController,
    start: Option<(u64, u64)>,
    fed_seq: Option<u64>,
    verdict: Verdict,
}

struct StreamState {
    direction: Direction,
    socket: Option<Arc<OwnedFd>>,
    /// Kernel counter when the stream began (connections are reused).
    kernel_base: Option<u64>,
    app_bytes: Arc<AtomicU64>,
    last_info: Option<TcpInfo>,
}

impl StreamState {
    /// Payload bytes this stream has moved, as the server can prove them:
    /// for downloads what the client's TCP acknowledged, cumulatively or
    /// selectively (never more than was written), for uploads what the
    /// server's TCP received.
    fn counted(&mut self) -> u64 {
        let app = self.app_bytes.load(Ordering::Relaxed);
        self.last_info = self.socket.as_deref().and_then(tcpinfo::read);
        match (self.direction, self.last_info, self.kernel_base) {
            (Direction::Download, Some(info), Some(base)) => {
                info.bytes_delivered().saturating_sub(base).min(app)
            }
            // What reached the server's TCP, in order, since the stream
            // began: the application reads it in bursts whenever its task
            // runs (which would make a smooth link look noisy), and its first
            // read also returns what arrived before the stream was registered.
            (Direction::Upload, Some(info), Some(base)) => info.bytes_received.saturating_sub(base),
            _ => app,
        }
    }

    fn kernel_bytes(&self) -> u64 {
        match (self.last_info, self.kernel_base) {
            (Some(info), Some(base)) => match self.direction {
                Direction::Download => info.bytes_acked.saturating_sub(base),
                Direction::Upload => info.bytes_received.saturating_sub(base),
            },
            _ => 0,
        }
    }
}

#[derive(Default)]
struct Phase {
    start_us: Option<u64>,
    end_us: Option<u64>,
    active: u32,
    max_active: u32,
    /// When the number of concurrent streams last reached a new maximum.
    last_growth_us: u64,
    ended_bytes: u64,
    ended_kernel_bytes: u64,
    ended_retransmits: u64,
    min_rtt_us: Option<u32>,
    last_rtt_us: u32,
    /// Sum of the streams' delivery-rate estimates at the last sample.
    delivery_rate_bps: u64,
    kernel_counted: bool,
    app_counted: bool,
}

impl Phase {
    fn summary(&self, streams: &HashMap<u64, StreamState>, direction: Direction) -> TcpSummary {
        let active = streams.values().filter(|s| s.direction == direction);
        let (mut retransmits, mut kernel_bytes) = (self.ended_retransmits, self.ended_kernel_bytes);
        for stream in active {
            if let Some(info) = stream.last_info {
                retransmits += u64::from(info.total_retrans);
            }
            kernel_bytes += stream.kernel_bytes();
        }
        TcpSummary {
            min_rtt_us: self.min_rtt_us.unwrap_or(0),
            rtt_us: self.last_rtt_us,
            retransmits,
            delivery_rate_bps: self.delivery_rate_bps,
            kernel_bytes,
        }
    }
}

/// Proof of a registered stream; dropping it ends the stream and records its final count.
pub struct StreamGuard {
    session: Arc<Session>,
    key: u64,
    pub app_bytes: Arc<AtomicU64>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.session.end_stream(self.key);
    }
}

impl Session {
    pub fn new(
        id: String,
        client_addr: SocketAddr,
        ttl: Duration,
        byte_budget: u64,
        cancel: CancellationToken,
    ) -> Session {
        let created = Instant::now();
        let mut inner = Inner::default();
        inner.push_sample(0, 0, 0);
        Session {
            id,
            created,
            created_unix_ms: unix_ms(),
            client_addr,
            cancel,
            expires: created + ttl,
            byte_budget,
            moved: AtomicU64::new(0),
            inner: Mutex::new(inner),
        }
    }

    /// Microseconds since the session was created.
    pub fn now_us(&self) -> u64 {
        self.created.elapsed().as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves up to `want` bytes of the session's byte budget; returns how many were granted.
    pub fn take_budget(&self, want: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .moved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                granted = want.min(self.byte_budget.saturating_sub(used));
                Some(used + granted)
            });
        granted
    }

    /// When the phase of this direction began, if it has.
    pub fn phase_start(&self, direction: Direction) -> Option<Duration> {
        let inner = self.lock();
        inner.phase(direction).start_us.map(Duration::from_micros)
    }

    /// Registers a stream carried by `socket` (a duplicate of the connection's descriptor).
    pub fn start_stream(
        self: &Arc<Session>,
        direction: Direction,
        socket: Option<Arc<OwnedFd>>,
    ) -> Result<StreamGuard, ApiFailure> {
        let t = self.now_us();
        let info = socket.as_deref().and_then(tcpinfo::read);
        let kernel_base = info.map(|i| match direction {
            Direction::Download => i.bytes_delivered(),
            Direction::Upload => i.bytes_received,
        });
        let app_bytes = Arc::new(AtomicU64::new(0));
        let mut inner = self.lock();
        if inner.phase(direction).active >= MAX_STREAMS {
            return Err(ApiFailure::new(
                ErrorCode::TooManyStreams,
                format!("a session may open at most {MAX_STREAMS} streams per direction at once"),
            ));
        }
        let key = inner.next_key;
        inner.next_key += 1;
        inner.streams.insert(
            key,
            StreamState {
                direction,
                socket,
                kernel_base,
                app_bytes: app_bytes.clone(),
                last_info: info,
            },
        );
        let phase = inner.phase_mut(direction);
        phase.start_us.get_or_insert(t);
        phase.end_us = None;
        phase.active += 1;
        if phase.active > phase.max_active {
            phase.max_active = phase.active;
            phase.last_growth_us = t;
        }
        if kernel_base.is_some() {
            phase.kernel_counted = true;
        } else {
            phase.app_counted = true;
        }
        inner.sample(t);
        drop(inner);
        Ok(StreamGuard {
            session: self.clone(),
            key,
            app_bytes,
        })
    }

    fn end_stream(&self, key: u64) {
        let t = self.now_us();
        let mut inner = self.lock();
        let Some(mut stream) = inner.streams.remove(&key) else {
            return;
        };
        let counted = stream.counted();
        let kernel = stream.kernel_bytes();
        let phase = inner.phase_mut(stream.direction);
        phase.ended_bytes += counted;
        phase.ended_kernel_bytes += kernel;
        if let Some(info) = stream.last_info {
            phase.ended_retransmits += u64::from(info.total_retrans);
        }
        phase.active -= 1;
        if phase.active == 0 {
            phase.end_us = Some(t);
        }
        inner.sample(t);
    }

    /// Records a sample now (called by the sampler task).
    pub fn sample_now(&self) {
        let t = self.now_us();
        self.lock().sample(t);
    }

    /// Records the control connection's kernel RTT at a ping or live request.
    pub fn record_control_rtt(&self, info: Option<TcpInfo>) {
        let Some(info) = info else { return };
        let mut inner = self.lock();
        let class = if inner.download.active > 0 {
            1
        } else if inner.upload.active > 0 {
            2
        } else {
            0
        };
        inner.control_rtts[class].push(info.rtt_us);
        if info.min_rtt_us > 0 {
            let min = inner.control_min_rtt.get_or_insert(info.min_rtt_us);
            *min = (*min).min(info.min_rtt_us);
        }
    }

    /// Samples newer than `after` (all without it), oldest first, and the latest TCP summary.
    pub fn live(&self, after: Option<u64>) -> (Vec<LiveSample>, Option<TcpSummary>) {
        let inner = self.lock();
        let samples = inner
            .samples
            .iter()
            .filter(|s| after.is_none_or(|after| s.seq > after))
            .take(MAX_LIVE_SAMPLES)
            .copied()
            .collect();
        (samples, inner.last_tcp)
    }

    /// Feeds the direction's advisor every sample it has not seen and returns
    /// its advice. `max_duration_us` is the client's limit per direction.
    pub fn advise(&self, direction: Direction, max_duration_us: u64) -> Advice {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let advisor = inner.advisors[direction as usize].get_or_insert_with(|| {
            let config = TransferConfig {
                max_duration_us,
                ..TransferConfig::default()
            };
            Advisor {
                controller: TransferController::new(config),
                start: None,
                fed_seq: None,
                verdict: Verdict::Continue,
            }
        });
        for sample in &inner.samples {
            if advisor.fed_seq.is_some_and(|fed| sample.seq <= fed) {
                continue;
            }
            advisor.fed_seq = Some(sample.seq);
            let (bytes, streams) = match direction {
                Direction::Download => (sample.down_bytes, sample.down_streams),
                Direction::Upload => (sample.up_bytes, sample.up_streams),
            };
            if advisor.start.is_none() && streams > 0 {
                advisor.start = Some((sample.t_us, bytes));
            }
            let Some((start_t, start_bytes)) = advisor.start else {
                continue;
            };
            if advisor.verdict != Verdict::Continue {
                continue;
            }
            let t = sample.t_us.saturating_sub(start_t);
            advisor.verdict = match advisor
                .controller
                .on_sample(t, bytes.saturating_sub(start_bytes))
            {
                Action::Continue | Action::AddStreams(_) => Verdict::Continue,
                Action::Stop(StopReason::Stable) => Verdict::Stable,
                Action::Stop(StopReason::MaxDuration) => Verdict::MaxDuration,
                Action::Stop(StopReason::Stalled) => Verdict::Stalled,
            };
        }
        let series = advisor.controller.series();
        let end = series.end_us();
        Advice {
            direction,
            streams: advisor.controller.streams(),
            verdict: advisor.verdict,
            mbps: series.rate_bps(end.saturating_sub(1_000_000), end) / 1e6,
            elapsed_us: end,
        }
    }

    /// Active streams in both directions.
    pub fn active_streams(&self) -> u32 {
        let inner = self.lock();
        inner.download.active + inner.upload.active
    }

    /// The server-side measurement of one direction, if it ran.
    pub fn direction_receipt(&self, direction: Direction) -> Option<DirectionReceipt> {
        let now = self.now_us();
        let inner = self.lock();
        let phase = inner.phase(direction);
        let start = phase.start_us?;
        let end = phase.end_us.unwrap_or(now);
        let pick = |s: &LiveSample| match direction {
            Direction::Download => s.down_bytes,
            Direction::Upload => s.up_bytes,
        };
        let at_start = inner
            .samples
            .iter()
            .rev()
            .find(|s| s.t_us <= start)
            .map_or(0, pick);
        let mut series = Series::new();
        for sample in inner
            .samples
            .iter()
            .filter(|s| s.t_us >= start && s.t_us <= end)
        {
            series.push(sample.t_us - start, pick(sample).saturating_sub(at_start));
        }
        let settled_from = phase.last_growth_us.saturating_sub(start);
        let estimate = estimate(&series, settled_from, &TransferConfig::default());
        let counting = match (direction, phase.kernel_counted && !phase.app_counted) {
            (Direction::Download, true) => Counting::TcpAcked,
            (Direction::Download, false) => Counting::AppWritten,
            (Direction::Upload, true) => Counting::TcpReceived,
            (Direction::Upload, false) => Counting::AppReceived,
        };
        Some(DirectionReceipt {
            bytes: series.total_bytes(),
            duration_ms: (end - start) / 1000,
            streams: phase.max_active,
            rate_bps: estimate.rate_bps,
            window_start_ms: (start + estimate.window_start_us) / 1000,
            window_end_ms: (start + estimate.window_end_us) / 1000,
            window_bytes: estimate.window_bytes,
            stable: estimate.stable,
            counting,
            tcp: phase.summary(&inner.streams, direction),
        })
    }

    /// The kernel's view of latency on the client's control connection.
    pub fn latency_receipt(&self) -> LatencyReceipt {
        let inner = self.lock();
        // The same median as the client's (mean of the middle two).
        let median = |values: &Vec<u32>| {
            let values: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
            ispeed_measure::stats::median(&values).map(|m| m.round() as u32)
        };
        LatencyReceipt {
            idle_rtt_us: median(&inner.control_rtts[0]),
            min_rtt_us: inner.control_min_rtt,
            loaded_download_rtt_us: median(&inner.control_rtts[1]),
            loaded_upload_rtt_us: median(&inner.control_rtts[2]),
        }
    }
}

impl Inner {
    fn phase(&self, direction: Direction) -> &Phase {
        match direction {
            Direction::Download => &self.download,
            Direction::Upload => &self.upload,
        }
    }

    fn phase_mut(&mut self, direction: Direction) -> &mut Phase {
        match direction {
            Direction::Download => &mut self.download,
            Direction::Upload => &mut self.upload,
        }
    }

    fn push_sample(&mut self, t_us: u64, down_bytes: u64, up_bytes: u64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.samples.push_back(LiveSample {
            seq,
            t_us,
            down_bytes,
            up_bytes,
            down_streams: self.download.active,
            up_streams: self.upload.active,
        });
    }

    fn sample(&mut self, t_us: u64) {
        let (mut down, mut up) = (self.download.ended_bytes, self.upload.ended_bytes);
        let mut rtt_sum = [0u64; 2];
        let mut rate_sum = [0u64; 2];
        let mut count = [0u64; 2];
        let mut min_rtt = [None::<u32>; 2];
        for stream in self.streams.values_mut() {
            let counted = stream.counted();
            let index = match stream.direction {
                Direction::Download => {
                    down += counted;
                    0
                }
                Direction::Upload => {
                    up += counted;
                    1
                }
            };
            if let Some(info) = stream.last_info {
                rtt_sum[index] += u64::from(info.rtt_us);
                rate_sum[index] += info.delivery_rate * 8;
                count[index] += 1;
                if info.min_rtt_us > 0 {
                    let m = min_rtt[index].get_or_insert(info.min_rtt_us);
                    *m = (*m).min(info.min_rtt_us);
                }
            }
        }
        for (index, direction) in [Direction::Download, Direction::Upload]
            .into_iter()
            .enumerate()
        {
            if count[index] == 0 {
                continue;
            }
            let phase = self.phase_mut(direction);
            phase.last_rtt_us = (rtt_sum[index] / count[index]) as u32;
            phase.delivery_rate_bps = rate_sum[index];
            if let Some(m) = min_rtt[index] {
                let current = phase.min_rtt_us.get_or_insert(m);
                *current = (*current).min(m);
            }
        }
        let busiest = if self.download.active > 0 {
            Some(Direction::Download)
        } else if self.upload.active > 0 {
            Some(Direction::Upload)
        } else {
            None
        };
        if let Some(direction) = busiest {
            self.last_tcp = Some(self.phase(direction).summary(&self.streams, direction));
        }
        self.push_sample(t_us, down, up);
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
