//! Constants mirroring `spec/protocol.md`. Change the spec and this file together.

/// Protocol identifier carried in `/v1/info` and every receipt.
pub const PROTOCOL: &str = "ispeed/1";
/// Receipt format version (the `v1.` prefix of the compact form).
pub const RECEIPT_VERSION: u32 = 1;
/// First part of a compact receipt: `v` and the version.
pub const RECEIPT_TAG: &str = "v1";
/// Domain-separation prefix signed before the receipt payload, so a receipt
/// signature can never be replayed as a signature over anything else.
pub const RECEIPT_SIGNING_CONTEXT: &[u8] = b"ispeed-receipt-v1\n";

/// The server samples its per-session counters at this interval (spec: ≤ 100 ms).
pub const SAMPLE_INTERVAL_MS: u64 = 100;
/// Most parallel streams per direction a session may open.
pub const MAX_STREAMS: u32 = 16;
/// Streams a client starts each direction with in adaptive mode.
pub const INITIAL_STREAMS: u32 = 8;
/// Default longest time a client spends on one direction. Most phases stop
/// as stable after 3-5 s; a link that keeps swinging (a jittery upload, a
/// busy radio) is cut here, measured as well as it can be by then, so that
/// a whole test stays within the time a person on a phone will wait.
pub const DEFAULT_MAX_SECONDS: f64 = 7.5;
/// Idle latency probes a client sends before the transfer phases (spec: ≥ 10).
pub const IDLE_PROBES: usize = 12;
/// Interval between loaded latency probes during a transfer phase.
pub const LOADED_PROBE_INTERVAL_MS: u64 = 100;

/// Size of one chunk of the download body. Large enough that per-chunk
/// overhead is negligible, small enough to stop promptly.
pub const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// Size of the pre-generated random payload that download chunks rotate through.
pub const PAYLOAD_POOL_BYTES: usize = 8 * 1024 * 1024;

/// Largest JSON request body the server accepts.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;
/// Largest total request header size the server accepts (bytes).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// HTTP paths of the test point API.
pub mod paths {
    pub const INFO: &str = "/v1/info";
    pub const SESSIONS: &str = "/v1/sessions";
    pub const HEALTHZ: &str = "/healthz";
    pub const METRICS: &str = "/metrics";

    /// `/v1/sessions/{id}/download?stream=K`
    pub fn download(session: &str, stream: u32) -> String {
        format!("/v1/sessions/{session}/download?stream={stream}")
    }
    /// `/v1/sessions/{id}/upload?stream=K`
    pub fn upload(session: &str, stream: u32) -> String {
        format!("/v1/sessions/{session}/upload?stream={stream}")
    }
    /// `/v1/sessions/{id}/ping`
    pub fn ping(session: &str) -> String {
        format!("/v1/sessions/{session}/ping")
    }
    /// `/v1/sessions/{id}/live?after=SEQ`
    pub fn live(session: &str, after: u64) -> String {
        format!("/v1/sessions/{session}/live?after={after}")
    }
    /// `/v1/sessions/{id}/finish`
    pub fn finish(session: &str) -> String {
        format!("/v1/sessions/{session}/finish")
    }
    /// `/v1/sessions/{id}/checkpoint`
    pub fn checkpoint(session: &str) -> String {
        format!("/v1/sessions/{session}/checkpoint")
    }
}
