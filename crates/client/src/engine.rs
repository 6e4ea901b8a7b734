//! Drives one test: session, idle latency, download, upload, receipt.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use ispeed_measure::latency::LatencyStats;
use ispeed_measure::responsiveness;
use ispeed_measure::throughput::{
    estimate, Action, Estimate, Series, StopReason, TransferConfig, TransferController,
};
use ispeed_measure::working::{LatencyTrend, WorkingConditions, WorkingConfig};
use ispeed_proto::consts::{paths, IDLE_PROBES, LOADED_PROBE_INTERVAL_MS, PROTOCOL};
use ispeed_proto::receipt::{decode_public_key, Receipt, ReceiptPayload};
use ispeed_proto::wire::{
    ClientReport, CreateSession, Direction, Finish, Finished, Info, Live, Pong, SessionCreated,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::http::{connect_tcp, decode, Connection, Endpoint};
use crate::result::{ClientMeasured, PerDirection, RpmDetail, ServerRef, TestResult};
use crate::target::{Family, Target};
use crate::ClientError;

/// What to test and how.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Test point base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub family: Option<Family>,
    /// A fixed number of streams per direction; `None` adapts (up to 16).
    pub streams: Option<u32>,
    /// Longest time per direction.
    pub max_seconds: f64,
    pub download: bool,
    pub upload: bool,
    /// `cli`, `web`, `app` or `agent`.
    pub client_kind: String,
    /// Send loaded-latency probes during transfers (a load generator turns them off).
    pub loaded_probes: bool,
    /// Run each direction for exactly `max_seconds` instead of stopping once stable.
    pub fixed_duration: bool,
    /// Awaited before each transfer phase, so many concurrent tests move together.
    pub phase_gate: Option<Arc<tokio::sync::Barrier>>,
    /// Fixed kernel buffer size (bytes) of the payload streams' sockets;
    /// `None` leaves them to the kernel's autotuning, as a real client must.
    /// A load generator emulating many clients on the test point's own host
    /// sets it: their receive queues would otherwise live in, and exhaust,
    /// the one TCP memory pool the test point needs, which separate client
    /// machines never do.
    pub socket_buffer_bytes: Option<u32>,
    /// The collector's access token for this test point (from locate);
    /// a test point in `token-required` mode admits no session without one.
    pub access_token: Option<String>,
}

impl TestOptions {
    pub fn new(server: impl Into<String>) -> TestOptions {
        TestOptions {
            server: server.into(),
            family: None,
            streams: None,
            max_seconds: ispeed_proto::consts::DEFAULT_MAX_SECONDS,
            download: true,
            upload: true,
            client_kind: "cli".to_owned(),
            loaded_probes: true,
            fixed_duration: false,
            phase_gate: None,
            socket_buffer_bytes: None,
            access_token: None,
        }
    }
}

/// Stage of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Latency,
    Download,
    Upload,
    Finishing,
}

/// Progress reported while a test runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Phase(Phase),
    /// Current rate of a transfer phase (Mbit/s over the last second).
    Progress {
        phase: Phase,
        mbps: f64,
        streams: u32,
        elapsed_s: f64,
    },
    /// A latency probe's round-trip time.
    Probe {
        phase: Phase,
        rtt_ms: f64,
    },
    /// The test point chosen among the collector's candidates.
    Selected {
        id: String,
        url: String,
        rtt_ms: Option<f64>,
        on_net: bool,
    },
    /// A candidate could not take the test; the client moves on.
    Failover {
        from: String,
        reason: String,
        to: Option<String>,
    },
}

type Events = Option<mpsc::UnboundedSender<Event>>;

/// Once goodput is stable, how long to wait at most for latency to settle.
const LATENCY_SETTLE_WAIT: Duration = Duration::from_secs(3);
/// Loaded latency is read over the last this-long of a phase.
const WORKING_WINDOW: Duration = Duration::from_millis(1500);

fn emit(events: &Events, event: Event) {
    if let Some(sender) = events {
        let _ = sender.send(event);
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Runs a whole test against `options.server`.
pub async fn run_test(options: &TestOptions, events: Events) -> Result<TestResult, ClientError> {
    run_test_resuming(options, events, None)
        .await
        .map_err(|interrupted| interrupted.error)
}

/// What a test point that went away after the download had measured and
/// signed: the download, backed by its checkpoint receipt, which another
/// test point's upload can complete (spec/registry.md §6).
#[derive(Debug, Clone)]
pub struct Partial {
    pub server: ServerRef,
    /// The compact checkpoint receipt.
    pub checkpoint: String,
    /// Its payload, verified with `server.public_key`.
    pub payload: ReceiptPayload,
    download: DirectionOutcome,
}

/// A test that did not finish; `partial` holds the signed download when the
/// test point went away after it.
#[derive(Debug)]
pub struct Interrupted {
    pub error: ClientError,
    pub partial: Option<Box<Partial>>,
    /// The test point had admitted the test (created its session).
    pub admitted: bool,
}

impl From<ClientError> for Interrupted {
    fn from(error: ClientError) -> Interrupted {
        Interrupted {
            error,
            partial: None,
            admitted: false,
        }
    }
}

/// Runs a test against `options.server`; with `resume`, the download is
/// the one another test point measured and signed before it went away, and
/// only latency and upload are measured here.
pub async fn run_test_resuming(
    options: &TestOptions,
    events: Events,
    resume: Option<&Partial>,
) -> Result<TestResult, Interrupted> {
    let target = Target::parse(&options.server)?;
    let endpoint = target.resolve(options.family).await?;
    emit(&events, Event::Phase(Phase::Connecting));
    let mut control: Connection = Connection::open(&endpoint).await?;
    let info: Info = control.json(Method::GET, paths::INFO, None::<&()>).await?;
    if info.protocol != PROTOCOL {
        return Err(ClientError::Protocol(format!(
            "test point speaks {}, this client {PROTOCOL}",
            info.protocol
        ))
        .into());
    }
    let key = decode_public_key(&info.public_key)
        .map_err(|e| ClientError::Protocol(format!("test point key: {e}")))?;
    let created: SessionCreated = control
        .json(
            Method::POST,
            paths::SESSIONS,
            Some(&CreateSession {
                client_kind: Some(options.client_kind.clone()),
                client_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                access_token: options.access_token.clone(),
            }),
        )
        .await?;
    let session = created.session_id.clone();
    // From here on the test point has admitted the test: a failure is a
    // test point lost mid-test, not one that would not take it.
    let measured = async {
        let ipv6_check = tokio::spawn(check_ipv6(info.ipv6_url.clone(), endpoint.addr.is_ipv6()));

        emit(&events, Event::Phase(Phase::Latency));
        let mut idle = Vec::with_capacity(IDLE_PROBES);
        for _ in 0..IDLE_PROBES {
            let started = Instant::now();
            let _: Pong = control
                .json(Method::GET, &paths::ping(&session), None::<&()>)
                .await?;
            let rtt = ms(started.elapsed());
            idle.push(rtt);
            emit(
                &events,
                Event::Probe {
                    phase: Phase::Latency,
                    rtt_ms: rtt,
                },
            );
        }
        let idle = LatencyStats::from_rtts(&idle);

        let max_seconds = options
            .max_seconds
            .min(info.limits.max_seconds_per_direction);
        let mut runner = DirectionRunner {
            endpoint: &endpoint,
            session: &session,
            options,
            max_seconds,
            events: &events,
        };
        let download = match resume {
            Some(partial) => Some(partial.download.clone()),
            None if options.download => {
                let (outcome, returned) = runner.run(Direction::Download, control).await?;
                control = returned;
                Some(outcome)
            }
            None => None,
        };
        // Between the directions, a signed checkpoint: should this test point go
        // away during the upload, the download stays proven.
        let partial = match (&download, resume) {
            (Some(outcome), None) if options.upload => {
                let report = ClientReport {
                    download_mbps: outcome.client_estimate.map(|e| e.rate_bps / 1e6),
                    latency_ms: idle.map(|s| s.median_ms),
                    jitter_ms: idle.map(|s| s.jitter_ms),
                    ..ClientReport::default()
                };
                checkpoint(&mut control, &session, report, &key).await?.map(
                    |(checkpoint, payload)| {
                        Box::new(Partial {
                            server: ServerRef {
                                id: info.test_point_id.clone(),
                                url: target.url.clone(),
                                public_key: info.public_key.clone(),
                            },
                            checkpoint,
                            payload,
                            download: outcome.clone(),
                        })
                    },
                )
            }
            _ => None,
        };
        let upload = if options.upload {
            match runner.run(Direction::Upload, control).await {
                Ok((outcome, returned)) => {
                    control = returned;
                    Some(outcome)
                }
                Err(error) => {
                    return Err(Interrupted {
                        error,
                        partial,
                        admitted: true,
                    })
                }
            }
        } else {
            None
        };

        emit(&events, Event::Phase(Phase::Finishing));
        let ipv6_capable = ipv6_check.await.unwrap_or(None);
        // Loaded latency: median of every probe (request/response on the
        // control connection and handshakes of new connections) taken under
        // working conditions.
        let loaded = |o: &Option<DirectionOutcome>| {
            o.as_ref()
                .and_then(|o| {
                    let all: Vec<f64> =
                        o.http_rtts.iter().chain(&o.connect_rtts).copied().collect();
                    LatencyStats::from_rtts(&all)
                })
                .map(|s| s.median_ms)
        };
        let rpm_of = |o: &Option<DirectionOutcome>| {
            o.as_ref()
                .and_then(|o| responsiveness(&o.connect_rtts, &o.http_rtts))
        };
        let (mut all_connect, mut all_http) = (Vec::new(), Vec::new());
        for outcome in download.iter().chain(upload.iter()) {
            all_connect.extend_from_slice(&outcome.connect_rtts);
            all_http.extend_from_slice(&outcome.http_rtts);
        }
        let overall_rpm = responsiveness(&all_connect, &all_http);
        let report = ClientReport {
            download_mbps: download
                .as_ref()
                .and_then(|o| o.client_estimate)
                .map(|e| e.rate_bps / 1e6),
            upload_mbps: None,
            latency_ms: idle.map(|s| s.median_ms),
            jitter_ms: idle.map(|s| s.jitter_ms),
            loaded_latency_download_ms: loaded(&download),
            loaded_latency_upload_ms: loaded(&upload),
            rpm: overall_rpm.map(|r| r.rpm),
            ipv6_capable,
        };
        let finished: Finished = match control
            .json(
                Method::POST,
                &paths::finish(&session),
                Some(&Finish {
                    client_report: report,
                }),
            )
            .await
        {
            Ok(finished) => finished,
            Err(error) => {
                return Err(Interrupted {
                    error,
                    partial,
                    admitted: true,
                })
            }
        };
        let payload = Receipt::parse(&finished.receipt)
            .and_then(|r| r.verify(&key))
            .map_err(|e| ClientError::Receipt(e.to_string()))?;
        if payload.session_id != session {
            return Err(ClientError::Receipt("receipt names another session".into()).into());
        }
        // The download's receipt: this one's, or the checkpoint it resumes.
        let download_payload = resume.map_or(&payload, |p| &p.payload);
        Ok(TestResult {
            download_mbps: download_payload
                .download_mbps()
                .filter(|_| options.download || resume.is_some()),
            upload_mbps: payload.upload_mbps().filter(|_| options.upload),
            latency_ms: idle.map(|s| s.median_ms),
            latency_min_ms: idle.map(|s| s.min_ms),
            jitter_ms: idle.map(|s| s.jitter_ms),
            loaded_latency_ms: PerDirection {
                download: loaded(&download),
                upload: loaded(&upload),
            },
            rpm: overall_rpm.map(|r| r.rpm),
            rpm_detail: RpmDetail {
                download: rpm_of(&download).map(|r| r.rpm),
                upload: rpm_of(&upload).map(|r| r.rpm),
                confidence: overall_rpm.map(|r| r.confidence),
                probes: overall_rpm.map_or(0, |r| r.probes),
            },
            ip_version: payload.ip_version,
            ipv6_capable,
            duration_s: PerDirection {
                download: download.as_ref().map(|o| o.duration.as_secs_f64()),
                upload: upload.as_ref().map(|o| o.duration.as_secs_f64()),
            },
            streams: PerDirection {
                download: download_payload.download.as_ref().map(|d| d.streams),
                upload: payload.upload.as_ref().map(|d| d.streams),
            },
            stable: PerDirection {
                download: download_payload.download.as_ref().map(|d| d.stable),
                upload: payload.upload.as_ref().map(|d| d.stable),
            },
            server: ServerRef {
                id: info.test_point_id,
                url: target.url,
                public_key: info.public_key,
            },
            session_id: session,
            client_measured: ClientMeasured {
                download_mbps: download
                    .as_ref()
                    .and_then(|o| o.client_estimate)
                    .map(|e| e.rate_bps / 1e6),
                upload_sent_mbps: upload
                    .as_ref()
                    .and_then(|o| o.client_estimate)
                    .map(|e| e.rate_bps / 1e6),
            },
            receipt: finished.receipt,
            receipt_payload: payload,
            download_receipt: resume.map(|p| p.checkpoint.clone()),
            download_server: resume.map(|p| p.server.clone()),
        })
    };
    measured.await.map_err(|mut interrupted: Interrupted| {
        interrupted.admitted = true;
        interrupted
    })
}

/// Asks for a checkpoint receipt and verifies it. `None` from a test point
/// that predates checkpoints (404): the test goes on without one.
async fn checkpoint(
    control: &mut Connection,
    session: &str,
    report: ClientReport,
    key: &ispeed_proto::VerifyingKey,
) -> Result<Option<(String, ReceiptPayload)>, ClientError> {
    let signed: Finished = match control
        .json(
            Method::POST,
            &paths::checkpoint(session),
            Some(&Finish {
                client_report: report,
            }),
        )
        .await
    {
        Ok(signed) => signed,
        Err(ClientError::Server {
            code: ispeed_proto::ErrorCode::NotFound,
            ..
        }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let payload = Receipt::parse(&signed.receipt)
        .and_then(|r| r.verify(key))
        .map_err(|e| ClientError::Receipt(format!("checkpoint: {e}")))?;
    if payload.session_id != session || !payload.checkpoint || payload.download.is_none() {
        return Err(ClientError::Receipt(
            "the checkpoint receipt does not back this session's download".into(),
        ));
    }
    Ok(Some((signed.receipt, payload)))
}

/// Whether the test point answers over IPv6: `None` when it has no IPv6 URL.
async fn check_ipv6(ipv6_url: Option<String>, already_v6: bool) -> Option<bool> {
    if already_v6 {
        return Some(true);
    }
    let target = Target::parse(&ipv6_url?).ok()?;
    let attempt = async {
        let endpoint = target.resolve(Some(Family::V6)).await?;
        let mut connection: Connection = Connection::open(&endpoint).await?;
        connection
            .json::<Info>(Method::GET, paths::INFO, None::<&()>)
            .await
    };
    Some(matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(_))
    ))
}

#[derive(Debug, Clone)]
struct DirectionOutcome {
    /// The client's own estimate (download: bytes received; upload: bytes sent).
    client_estimate: Option<Estimate>,
    duration: Duration,
    http_rtts: Vec<f64>,
    connect_rtts: Vec<f64>,
    #[allow(dead_code)]
    stop: StopReason,
}

struct DirectionRunner<'a> {
    endpoint: &'a Endpoint,
    session: &'a str,
    options: &'a TestOptions,
    max_seconds: f64,
    events: &'a Events,
}

enum StreamEnd {
    /// The server closed the stream normally (its deadline or budget).
    Ended,
    Failed(ClientError),
}

impl DirectionRunner<'_> {
    async fn run(
        &mut self,
        direction: Direction,
        control: Connection,
    ) -> Result<(DirectionOutcome, Connection), ClientError> {
        let phase = match direction {
            Direction::Download => Phase::Download,
            Direction::Upload => Phase::Upload,
        };
        if let Some(gate) = &self.options.phase_gate {
            let _ = tokio::time::timeout(Duration::from_secs(60), gate.wait()).await;
        }
        emit(self.events, Event::Phase(phase));
        let mut config = self
            .options
            .streams
            .map(TransferConfig::fixed_streams)
            .unwrap_or_default();
        config.max_duration_us = (self.max_seconds * 1e6) as u64;
        if self.options.fixed_duration {
            config.min_duration_us = config.max_duration_us;
        }
        let mut controller = TransferController::new(config);
        let client_bytes = Arc::new(AtomicU64::new(0));
        let streams_cancel = CancellationToken::new();
        let probes_cancel = CancellationToken::new();
        let (end_tx, mut end_rx) = mpsc::unbounded_channel::<StreamEnd>();
        let started = Instant::now();
        let mut open_streams = 0u32;
        let spawn_streams = |count: u32, open: &mut u32| {
            for _ in 0..count {
                let stream = *open;
                *open += 1;
                tokio::spawn(run_stream(
                    direction,
                    StreamTarget {
                        endpoint: self.endpoint.clone(),
                        socket_buffer: self.options.socket_buffer_bytes,
                        session: self.session.to_owned(),
                    },
                    stream,
                    client_bytes.clone(),
                    streams_cancel.clone(),
                    end_tx.clone(),
                ));
            }
        };
        spawn_streams(controller.streams(), &mut open_streams);

        let (live_tx, mut live_rx) = mpsc::unbounded_channel::<(f64, Live)>();
        // Decisions need the server's counts whether or not latency is
        // probed; without probes (a load generator) they may come slower.
        let poll_interval = if self.options.loaded_probes {
            Duration::from_millis(LOADED_PROBE_INTERVAL_MS)
        } else {
            Duration::from_millis(5 * LOADED_PROBE_INTERVAL_MS)
        };
        let (probe_failure_tx, mut probe_failure_rx) = mpsc::unbounded_channel::<ClientError>();
        let probe_task = tokio::spawn({
            let cancel = probes_cancel.clone();
            let session = self.session.to_owned();
            async move {
                let outcome = live_probes(control, session, cancel, live_tx, poll_interval).await;
                match outcome {
                    Ok(control) => Some(control),
                    Err(error) => {
                        let _ = probe_failure_tx.send(error);
                        None
                    }
                }
            }
        });
        let (connect_tx, mut connect_rx) = mpsc::unbounded_channel::<f64>();
        if self.options.loaded_probes {
            tokio::spawn(connect_probes(
                self.endpoint.addr,
                probes_cancel.clone(),
                connect_tx,
            ));
        }

        // Probes with the client time (µs since the phase began) they completed at.
        let mut http_probes: Vec<(u64, f64)> = Vec::new();
        let mut connect_probes_done: Vec<(u64, f64)> = Vec::new();
        let mut working = WorkingConditions::new(WorkingConfig::default());
        let mut throughput_stable_at: Option<Duration> = None;
        let mut server_start: Option<(u64, u64)> = None;
        let mut client_series = Series::new();
        let mut last_add_client_us = 0u64;
        let mut ended_streams = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        // Wall-clock backstop in case server samples stop arriving.
        let hard_limit = Duration::from_secs_f64(self.max_seconds + 2.0);
        let mut failure: Option<ClientError> = None;
        let mut last_stream_error: Option<ClientError> = None;
        let stop = loop {
            tokio::select! {
                _ = tick.tick() => {
                    let elapsed = started.elapsed();
                    let now_us = elapsed.as_micros() as u64;
                    client_series.push(now_us, client_bytes.load(Ordering::Relaxed));
                    if elapsed >= hard_limit {
                        break StopReason::MaxDuration;
                    }
                    if !self.options.loaded_probes {
                        if throughput_stable_at.is_some() {
                            break StopReason::Stable;
                        }
                        continue;
                    }
                    // Working conditions: stop only once both goodput and
                    // loaded latency have settled (the queue has filled).
                    // Streams are not added for latency: eight opened
                    // together fill a deep queue, and a stream added once it
                    // has built starts behind it and barely grows, while the
                    // addition would restart the measurement window.
                    let trend = working.trend(now_us);
                    tracing::debug!(t_us = now_us, ?trend, recent_ms = working.loaded_latency_us(now_us.saturating_sub(1_000_000)).map(|us| us / 1e3), streams = controller.streams(), stable = throughput_stable_at.is_some(), "working conditions");
                    if let Some(stable_at) = throughput_stable_at {
                        let latency_settled = trend == LatencyTrend::Settled;
                        // Noisy latency must not hold a stable rate forever;
                        // latency still rising runs on to the time limit.
                        let waited_enough = elapsed >= stable_at + LATENCY_SETTLE_WAIT
                            && trend != LatencyTrend::Rising;
                        if latency_settled || waited_enough {
                            break StopReason::Stable;
                        }
                    }
                }
                Some((rtt, live)) = live_rx.recv() => {
                    let now_us = started.elapsed().as_micros() as u64;
                    http_probes.push((now_us, rtt));
                    working.push(now_us, rtt * 1e3);
                    emit(self.events, Event::Probe { phase, rtt_ms: rtt });
                    // Decisions run on the server's counts in the server's
                    // clock: the same series the receipt's rate comes from.
                    // (The client's own reads arrive in bursts whenever TCP
                    // holds data back for a retransmission.)
                    let mut decision = None;
                    for sample in live.samples {
                        let (bytes, streams) = match direction {
                            Direction::Download => (sample.down_bytes, sample.down_streams),
                            Direction::Upload => (sample.up_bytes, sample.up_streams),
                        };
                        if server_start.is_none() && streams > 0 {
                            server_start = Some((sample.t_us, bytes));
                        }
                        let Some((start_t, start_bytes)) = server_start else { continue };
                        let t = sample.t_us.saturating_sub(start_t);
                        match controller.on_sample(t, bytes.saturating_sub(start_bytes)) {
                            Action::AddStreams(n) => {
                                spawn_streams(n, &mut open_streams);
                                last_add_client_us = started.elapsed().as_micros() as u64;
                            }
                            Action::Stop(StopReason::Stable) => {
                                throughput_stable_at.get_or_insert_with(|| started.elapsed());
                            }
                            Action::Stop(reason) => { decision = Some(reason); break; }
                            Action::Continue => {}
                        }
                    }
                    let series = controller.series();
                    let t = series.end_us();
                    let mbps = series.rate_bps(t.saturating_sub(1_000_000), t) / 1e6;
                    tracing::debug!(t_us = t, bytes = series.total_bytes(), mbps, ?decision, ?direction, "server sample");
                    emit(self.events, Event::Progress { phase, mbps, streams: controller.streams(), elapsed_s: started.elapsed().as_secs_f64() });
                    if let Some(reason) = decision {
                        break reason;
                    }
                }
                Some(rtt) = connect_rx.recv() => {
                    let now_us = started.elapsed().as_micros() as u64;
                    connect_probes_done.push((now_us, rtt));
                    working.push(now_us, rtt * 1e3);
                }
                Some(end) = end_rx.recv() => {
                    // A stream the server ends (its deadline or budget) or that
                    // breaks is not fatal by itself: the control connection's
                    // probes tell whether the test point is still there.
                    if let StreamEnd::Failed(error) = end {
                        tracing::debug!(%error, "stream ended with an error");
                        last_stream_error = Some(error);
                    }
                    ended_streams += 1;
                    if ended_streams >= open_streams {
                        break StopReason::MaxDuration;
                    }
                }
                Some(error) = probe_failure_rx.recv() => {
                    failure = Some(error);
                    break StopReason::Stalled;
                }
            }
        };
        let duration = started.elapsed();
        tracing::debug!(?stop, ended_streams, open_streams, ?duration, "phase ended");
        // Loaded latency and RPM are read under working conditions: the last
        // stretch of the phase, after any load was added for rising latency.
        let working_from = (duration.as_micros() as u64)
            .saturating_sub(WORKING_WINDOW.as_micros() as u64)
            .max(last_add_client_us);
        let since = |probes: &[(u64, f64)]| -> Vec<f64> {
            probes
                .iter()
                .filter(|(t, _)| *t >= working_from)
                .map(|(_, rtt)| *rtt)
                .collect()
        };
        let http_rtts = since(&http_probes);
        let connect_rtts = since(&connect_probes_done);
        streams_cancel.cancel();
        probes_cancel.cancel();
        let control = probe_task
            .await
            .map_err(|e| ClientError::Lost(format!("probe task failed: {e}")))?;
        if let Some(error) = failure {
            return Err(error);
        }
        let control = control.ok_or_else(|| {
            ClientError::Lost("the control connection to the test point failed".into())
        })?;
        if let (Some(error), 0) = (last_stream_error, controller.series().total_bytes()) {
            return Err(error);
        }
        // The client's own view: bytes it read (download) or handed to its
        // sockets (upload), over the same kind of window.
        let client_estimate = (client_series.total_bytes() > 0)
            .then(|| estimate(&client_series, last_add_client_us, &config));
        Ok((
            DirectionOutcome {
                client_estimate,
                duration,
                http_rtts,
                connect_rtts,
                stop,
            },
            control,
        ))
    }
}

/// Polls the server's live counters on the control connection; each poll's
/// round trip is a loaded-latency probe. Returns the connection when stopped.
async fn live_probes(
    mut control: Connection,
    session: String,
    cancel: CancellationToken,
    results: mpsc::UnboundedSender<(f64, Live)>,
    interval: Duration,
) -> Result<Connection, ClientError> {
    let mut after: Option<u64> = None;
    while !cancel.is_cancelled() {
        let started = Instant::now();
        let path = match after {
            Some(seq) => paths::live(&session, seq),
            None => format!("/v1/sessions/{session}/live"),
        };
        let live: Live = tokio::select! {
            _ = cancel.cancelled() => {
                // The request was abandoned mid-flight; its connection cannot be reused.
                return Connection::open(control.endpoint()).await;
            }
            live = control.json(Method::GET, &path, None::<&()>) => live?,
        };
        let rtt = ms(started.elapsed());
        if let Some(last) = live.samples.last() {
            after = Some(last.seq);
        }
        if results.send((rtt, live)).is_err() {
            break;
        }
        let next = started + interval;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    Ok(control)
}

/// Times TCP handshakes of fresh connections under load (the RPM draft's
/// foreign-connection probes). A probe starts every interval whether or not
/// earlier ones have finished, so a bloated queue (long RTTs) does not thin
/// the probes out. Failures are skipped: the control connection is what
/// detects a dead test point.
async fn connect_probes(
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
    results: mpsc::UnboundedSender<f64>,
) {
    const MAX_IN_FLIGHT: usize = 32;
    let mut tick = tokio::time::interval(Duration::from_millis(LOADED_PROBE_INTERVAL_MS));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (cancel, results, in_flight) = (cancel.clone(), results.clone(), in_flight.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                connected = connect_tcp(addr) => {
                    if let Ok((_, elapsed)) = connected {
                        let _ = results.send(ms(elapsed));
                    }
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Where a payload stream goes: the test point, the socket buffers, the session.
struct StreamTarget {
    endpoint: Endpoint,
    socket_buffer: Option<u32>,
    session: String,
}

async fn run_stream(
    direction: Direction,
    target: StreamTarget,
    stream: u32,
    counter: Arc<AtomicU64>,
    cancel: CancellationToken,
    ends: mpsc::UnboundedSender<StreamEnd>,
) {
    let outcome = tokio::select! {
        _ = cancel.cancelled() => return,
        outcome = async {
            match direction {
                Direction::Download => download_stream(&target, stream, &counter).await,
                Direction::Upload => upload_stream(&target, stream, &counter).await,
            }
        } => outcome,
    };
    if cancel.is_cancelled() {
        return;
    }
    let _ = ends.send(match outcome {
        Ok(()) => StreamEnd::Ended,
        Err(error) => StreamEnd::Failed(error),
    });
}

async fn error_from(response: http::Response<hyper::body::Incoming>) -> ClientError {
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => match decode::<serde_json::Value>(status, &body.to_bytes()) {
            Err(error) => error,
            Ok(_) => ClientError::Protocol(format!("unexpected status {status}")),
        },
        Err(e) => ClientError::Lost(format!("reading an error failed: {e}")),
    }
}

async fn download_stream(
    target: &StreamTarget,
    stream: u32,
    counter: &AtomicU64,
) -> Result<(), ClientError> {
    let mut connection: Connection =
        Connection::open_with(&target.endpoint, target.socket_buffer).await?;
    let response = connection
        .send(
            Method::GET,
            &paths::download(&target.session, stream),
            Full::new(Bytes::new()),
        )
        .await?;
    if !response.status().is_success() {
        return Err(error_from(response).await);
    }
    let mut body = response.into_body();
    let mut since_yield = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ClientError::Lost(format!("download stream broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            since_yield += data.len();
        }
        if since_yield >= YIELD_EVERY_BYTES {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

async fn upload_stream(
    target: &StreamTarget,
    stream: u32,
    counter: &Arc<AtomicU64>,
) -> Result<(), ClientError> {
    let mut connection: Connection<UploadBody> =
        Connection::open_with(&target.endpoint, target.socket_buffer).await?;
    let body = UploadBody {
        pool: upload_pool(),
        index: u64::from(stream),
        sent: counter.clone(),
        since_yield: 0,
    };
    let response = connection
        .send(Method::POST, &paths::upload(&target.session, stream), body)
        .await?;
    if !response.status().is_success() {
        return Err(error_from(response).await);
    }
    Ok(())
}

const UPLOAD_CHUNK: usize = 128 * 1024;
const UPLOAD_POOL: usize = 4 * 1024 * 1024;

/// Random upload payload, generated once per process.
fn upload_pool() -> Bytes {
    static POOL: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = vec![0u8; UPLOAD_POOL + UPLOAD_CHUNK];
        if getrandom::fill(&mut pool).is_err() {
            // Without an OS random source, a simple generator still avoids
            // compressible zeros.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for byte in pool.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
        }
        Bytes::from(pool)
    })
    .clone()
}

/// An endless upload body of random chunks; the stream ends when the
/// connection is dropped.
struct UploadBody {
    pool: Bytes,
    index: u64,
    sent: Arc<AtomicU64>,
    /// Bytes handed out since the task last yielded.
    since_yield: usize,
}

/// A stream task yields to the client's other tasks after moving this many
/// bytes: the runtime's cooperative budget counts socket operations, not
/// bytes, so otherwise a stream whose peer has opened a large window moves
/// far more per turn than its siblings whenever the client is CPU-bound
/// (many streams, or many sessions in one load generator).
const YIELD_EVERY_BYTES: usize = 1024 * 1024;

impl http_body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.since_yield >= YIELD_EVERY_BYTES {
            self.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.since_yield += UPLOAD_CHUNK;
        const STEP: u64 = 129 * 1024;
        let offset = (self.index.wrapping_mul(STEP) % UPLOAD_POOL as u64) as usize;
        self.index += 1;
        let chunk = self.pool.slice(offset..offset + UPLOAD_CHUNK);
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}
