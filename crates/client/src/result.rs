//! The typed result of one test, serialised as `ispeed test --json` prints it.

use ispeed_measure::Confidence;
use ispeed_proto::receipt::ReceiptPayload;
use serde::{Deserialize, Serialize};

/// A value per transfer direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerDirection<T> {
    pub download: T,
    pub upload: T,
}

/// Which test point ran the test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRef {
    pub id: String,
    pub url: String,
    pub public_key: String,
}

/// Responsiveness details.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RpmDetail {
    pub download: Option<f64>,
    pub upload: Option<f64>,
    pub confidence: Option<Confidence>,
    pub probes: usize,
}

/// What the client itself counted, for comparison with the receipt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMeasured {
    /// Payload bytes received by the client, rate over the client's window.
    pub download_mbps: Option<f64>,
    /// Payload bytes the client handed to its sockets (not a result: queued ≠ delivered).
    pub upload_sent_mbps: Option<f64>,
}

/// One complete test. Mbps are 10^6 bit/s of TCP payload, from the receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    /// Median of the idle probes.
    pub latency_ms: Option<f64>,
    pub latency_min_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loaded_latency_ms: PerDirection<Option<f64>>,
    /// Round-trips per minute under load (both directions' probes).
    pub rpm: Option<f64>,
    pub rpm_detail: RpmDetail,
    pub ip_version: u8,
    /// `null` when the test point has no IPv6 address to try.
    pub ipv6_capable: Option<bool>,
    pub duration_s: PerDirection<Option<f64>>,
    pub streams: PerDirection<Option<u32>>,
    /// Whether each direction's rate had stabilised.
    pub stable: PerDirection<Option<bool>>,
    pub server: ServerRef,
    pub session_id: String,
    pub client_measured: ClientMeasured,
    /// The signed receipt, verbatim.
    pub receipt: String,
    /// The receipt's payload, decoded (verified against `server.public_key`).
    pub receipt_payload: ReceiptPayload,
    /// When `download_server` measured the download and went away during
    /// the upload, which `server` then measured: its checkpoint receipt,
    /// the one that backs `download_mbps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_receipt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_server: Option<ServerRef>,
}
