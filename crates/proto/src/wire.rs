//! JSON bodies exchanged between client and test point.

use serde::{Deserialize, Serialize};

/// `GET /v1/info`: who this test point is and how to verify its receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    pub protocol: String,
    pub server_version: String,
    pub test_point_id: String,
    /// Ed25519 public key, unpadded base64url of the 32 key bytes.
    pub public_key: String,
    /// URL reaching this test point over IPv4, when it has one.
    pub ipv4_url: Option<String>,
    /// URL reaching this test point over IPv6, when it has one. Clients probe
    /// it to decide `ipv6_capable`.
    pub ipv6_url: Option<String>,
    pub limits: Limits,
}

/// Limits a test point enforces on each session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max_sessions: u32,
    pub max_streams: u32,
    /// Longest time the server serves one direction of a session.
    pub max_seconds_per_direction: f64,
    /// A session is forgotten this long after creation.
    pub session_ttl_s: f64,
    /// Bytes a session may move in both directions together.
    pub byte_budget: u64,
    /// The test point's line rate, the physical upper bound of any result.
    pub line_rate_mbps: f64,
}

/// Who is asking, sent with `POST /v1/sessions` (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default)]
    pub client_kind: Option<String>,
    #[serde(default)]
    pub client_version: Option<String>,
    /// The collector's access token for this test point (from locate);
    /// required by a test point in `token-required` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

/// Response to `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub session_id: String,
    /// The client's address as the test point sees it.
    pub client_addr: String,
    pub sample_interval_ms: u64,
    pub limits: Limits,
}

/// Response to `GET /v1/sessions/{id}/ping`: as small as possible.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// Microseconds since the session started, on the server's clock.
    pub t_us: u64,
}

/// Response to an upload stream that ended with its body: the payload bytes
/// the server read (what counts is in the receipt, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceived {
    pub received: u64,
}

/// Which way payload moves. Download is server → client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Download,
    Upload,
}

/// One server-side sample of a session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveSample {
    /// Sequence number, increasing by one per sample.
    pub seq: u64,
    /// Microseconds since the session started.
    pub t_us: u64,
    /// Download payload bytes delivered (acknowledged by the client's TCP
    /// where the platform reports it, else written) since the session began.
    pub down_bytes: u64,
    /// Upload payload bytes received by the server since the session began.
    pub up_bytes: u64,
    pub down_streams: u32,
    pub up_streams: u32,
}

/// Response to `GET /v1/sessions/{id}/live?after=SEQ`: samples newer than SEQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub t_us: u64,
    pub samples: Vec<LiveSample>,
    /// The most recent kernel view of the session's streams, if any.
    pub tcp: Option<TcpSummary>,
    /// The reference transfer controller's advice for the direction named
    /// by `?advise=`; `null` when not asked (§8.1).
    #[serde(default)]
    pub advice: Option<Advice>,
}

/// What the reference transfer controller (§11), run by the test point over
/// its own samples, advises a client that does not run it itself (a browser).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub direction: Direction,
    /// Streams that should be open now (grows 8 → 16 on the growth rule).
    pub streams: u32,
    /// `continue`, or why the direction should stop.
    pub verdict: Verdict,
    /// Rate over the last second of the direction's samples (Mbit/s), for display.
    pub mbps: f64,
    /// Microseconds of the direction's samples so far.
    pub elapsed_us: u64,
}

/// The controller's verdict for a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Keep going.
    Continue,
    /// The rate is stable: stop once loaded latency has settled (§11 step 3).
    Stable,
    /// The direction's time limit was reached.
    MaxDuration,
    /// Nothing moved for the stall time.
    Stalled,
}

/// Figures from Linux `TCP_INFO`, summed or combined over a set of streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpSummary {
    /// Smallest `tcpi_min_rtt` of the streams (µs).
    pub min_rtt_us: u32,
    /// Mean smoothed RTT of the streams at the last sample (µs).
    pub rtt_us: u32,
    /// Segments retransmitted, summed over streams.
    pub retransmits: u64,
    /// Sum of the streams' delivery-rate estimates at the last sample (bit/s).
    pub delivery_rate_bps: u64,
    /// Sum of `tcpi_bytes_acked` (download) or `tcpi_bytes_received` (upload).
    pub kernel_bytes: u64,
}

/// What the client measured itself, sent with `finish` so that it is signed
/// together with (and can be checked against) what the server saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loaded_latency_download_ms: Option<f64>,
    pub loaded_latency_upload_ms: Option<f64>,
    pub rpm: Option<f64>,
    pub ipv6_capable: Option<bool>,
}

/// Body of `POST /v1/sessions/{id}/finish`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    #[serde(default)]
    pub client_report: ClientReport,
}

/// Response to `finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// The compact signed receipt, to be passed on verbatim.
    pub receipt: String,
    /// The receipt's payload, decoded for convenience (unsigned copy).
    pub payload: crate::receipt::ReceiptPayload,
}
