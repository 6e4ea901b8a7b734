//! Registration with a collector: a signed heartbeat every interval saying
//! who this test point is, how to reach it, what it can take and how busy
//! it is. The collector's answer says whether an admin has approved the key
//! and carries the collector's token key (learnt unless one is pinned).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ispeed_proto::receipt::decode_public_key;
use ispeed_proto::registry::{
    paths, Capacity, Heartbeat, HeartbeatAck, HeartbeatRequest, Load, RegistrationStatus,
};
use ispeed_proto::{ErrorBody, ErrorCode};
use tokio_util::sync::CancellationToken;

use crate::config::Registration;
use crate::session::unix_ms;
use crate::state::AppState;

/// A heartbeat that gets no answer within this time counts as failed.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends heartbeats until `shutdown`. Failures are logged and retried at
/// the next interval: a collector that is away must not stop the test point.
pub async fn heartbeat_loop(state: AppState, shutdown: CancellationToken) {
    let Some(registration) = state.config.registration.clone() else {
        return;
    };
    let mut sampler = LoadSampler::new(&state);
    let mut last_sent = 0;
    let mut last_status = None;
    loop {
        let now = unix_ms().max(last_sent + 1);
        last_sent = now;
        let heartbeat = build(&state, &registration, sampler.sample(&state), now);
        match heartbeat {
            None => tracing::error!(
                "cannot register: no URL to advertise; set ipv4_url or ipv6_url, \
                 or listen on a specific address"
            ),
            Some(heartbeat) => {
                match send(&registration.collector_url, &heartbeat.sign(&state.key)).await {
                    Ok(ack) => {
                        if let Ok(key) = decode_public_key(&ack.collector_key) {
                            state.learn_collector_key(key);
                        }
                        state.set_registration(ack.status);
                        if last_status != Some(ack.status) {
                            tracing::info!(status = ack.status.as_str(), collector = %registration.collector_url, "registration");
                            last_status = Some(ack.status);
                        }
                    }
                    Err(HeartbeatError::Refused { code, message, .. })
                        if code == ErrorCode::TestPointRevoked.as_str() =>
                    {
                        state.set_registration(RegistrationStatus::Revoked);
                        if last_status != Some(RegistrationStatus::Revoked) {
                            tracing::error!(collector = %registration.collector_url, %message, "this test point's key was revoked: nothing it measures counts any more");
                            last_status = Some(RegistrationStatus::Revoked);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(collector = %registration.collector_url, %error, "heartbeat failed")
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(registration.interval) => {}
        }
    }
}

/// The heartbeat for now, or `None` if there is no URL to advertise.
pub fn build(
    state: &AppState,
    registration: &Registration,
    load: Load,
    now_ms: u64,
) -> Option<Heartbeat> {
    let config = &state.config;
    let ipv4_url = config
        .ipv4_url
        .clone()
        .or_else(|| specific_url(&state.bound, false));
    let ipv6_url = config
        .ipv6_url
        .clone()
        .or_else(|| specific_url(&state.bound, true));
    if ipv4_url.is_none() && ipv6_url.is_none() {
        return None;
    }
    Some(Heartbeat {
        v: 1,
        test_point_id: config.test_point_id.clone(),
        key: state.public_key.clone(),
        sent_at_ms: now_ms,
        ipv4_url,
        ipv6_url,
        name: registration.name.clone(),
        operator: registration.operator.clone(),
        asn: registration.asn,
        class: registration.class,
        province_code: registration.province_code.clone(),
        ward_code: registration.ward_code.clone(),
        lat: registration.lat,
        lon: registration.lon,
        access: config.access,
        capacity: Capacity {
            max_sessions: config.max_sessions,
            line_rate_mbps: config.line_rate_mbps,
        },
        load,
    })
}

/// A URL for a listener bound to a specific address of the family (a
/// wildcard address says nothing about how others reach us).
fn specific_url(bound: &[SocketAddr], want_v6: bool) -> Option<String> {
    bound
        .iter()
        .find(|a| a.is_ipv6() == want_v6 && !a.ip().is_unspecified())
        .map(|a| format!("http://{a}"))
}

/// Load over the interval since the previous sample.
struct LoadSampler {
    at: Instant,
    bytes: u64,
    cpu_s: Option<f64>,
    cores: u32,
}

impl LoadSampler {
    fn new(state: &AppState) -> LoadSampler {
        LoadSampler {
            at: Instant::now(),
            bytes: payload_bytes(state),
            cpu_s: process_cpu_seconds(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }

    fn sample(&mut self, state: &AppState) -> Load {
        let (now, bytes, cpu_s) = (Instant::now(), payload_bytes(state), process_cpu_seconds());
        let elapsed = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let throughput_mbps = bytes.saturating_sub(self.bytes) as f64 * 8.0 / elapsed / 1e6;
        let cpu_cores = match (cpu_s, self.cpu_s) {
            (Some(now), Some(before)) => ((now - before) / elapsed).max(0.0),
            _ => 0.0,
        };
        (self.at, self.bytes, self.cpu_s) = (now, bytes, cpu_s);
        Load {
            active_sessions: state.activity().0 as u32,
            throughput_mbps,
            cpu_cores,
            cores: self.cores,
        }
    }
}

fn payload_bytes(state: &AppState) -> u64 {
    state.metrics.bytes_download.load(Ordering::Relaxed)
        + state.metrics.bytes_upload.load(Ordering::Relaxed)
}

/// User + system CPU time of this process, from `getrusage`.
fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Why a heartbeat did not get an answer the test point could use.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("bad collector URL: {0}")]
    Url(String),
    #[error("cannot reach the collector: {0}")]
    Unreachable(String),
    #[error("collector refused the heartbeat ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("collector answered something unexpected: {0}")]
    Protocol(String),
}

/// POSTs one heartbeat to the collector.
pub async fn send(collector_url: &str, compact: &str) -> Result<HeartbeatAck, HeartbeatError> {
    let uri: http::Uri = format!("{collector_url}{}", paths::HEARTBEAT)
        .parse()
        .map_err(|e| HeartbeatError::Url(format!("{collector_url}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(HeartbeatError::Url(format!(
            "{collector_url}: only http:// collectors are supported by the heartbeat sender"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| HeartbeatError::Url(format!("{collector_url}: no host")))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let body = serde_json::to_vec(&HeartbeatRequest {
        heartbeat: compact.to_owned(),
    })
    .expect("heartbeat request serialises");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| HeartbeatError::Unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HeartbeatError::Unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.path())
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HeartbeatError::Url(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HeartbeatError::Unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HeartbeatError::Unreachable(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            serde_json::from_slice::<HeartbeatAck>(&bytes)
                .map_err(|e| HeartbeatError::Protocol(e.to_string()))
        } else {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.error.code.as_str().to_owned(), body.error.message),
                Err(_) => (
                    "unknown".to_owned(),
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                ),
            };
            Err(HeartbeatError::Refused {
                status: status.as_u16(),
                code,
                message,
            })
        }
    };
    tokio::time::timeout(HEARTBEAT_TIMEOUT, exchange)
        .await
        .map_err(|_| HeartbeatError::Unreachable("no answer within 5 s".into()))?
}

/// Whether the collector has approved this test point (for `/metrics`).
pub fn status_gauge(status: Option<RegistrationStatus>) -> u64 {
    match status {
        None => 0,
        Some(RegistrationStatus::Pending) => 1,
        Some(RegistrationStatus::Approved) => 2,
        Some(RegistrationStatus::Revoked) => 3,
    }
}
