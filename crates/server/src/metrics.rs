//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use ispeed_proto::ErrorCode;

/// Process-wide counters of one test point (owned by its state, not global).
pub struct Metrics {
    pub sessions_created: AtomicU64,
    pub sessions_rejected: AtomicU64,
    pub sessions_finished: AtomicU64,
    pub sessions_expired: AtomicU64,
    pub bytes_download: AtomicU64,
    pub bytes_upload: AtomicU64,
    /// Streams the client ended before the server's deadline: an early
    /// stable stop (normal), or a client that went away.
    pub streams_closed_by_client: AtomicU64,
    /// Streams the server cut off: time limit, byte budget or session end.
    pub streams_cut_off: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sessions_created: AtomicU64::new(0),
            sessions_rejected: AtomicU64::new(0),
            sessions_finished: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            bytes_download: AtomicU64::new(0),
            bytes_upload: AtomicU64::new(0),
            streams_closed_by_client: AtomicU64::new(0),
            streams_cut_off: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Metrics {
    pub fn count_error(&self, code: ErrorCode) {
        if let Some(index) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders all counters; `active_sessions` and `active_streams` are gauges read at call time.
    pub fn render(&self, active_sessions: usize, active_streams: u64) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            "ispeed_active_sessions",
            "gauge",
            "Sessions not yet finished or expired.",
            &[("", active_sessions as u64)],
        );
        metric(
            "ispeed_active_streams",
            "gauge",
            "Download and upload streams in progress.",
            &[("", active_streams)],
        );
        metric(
            "ispeed_sessions_created_total",
            "counter",
            "Sessions created.",
            &[("", get(&self.sessions_created))],
        );
        metric(
            "ispeed_sessions_rejected_total",
            "counter",
            "Sessions refused for capacity.",
            &[("", get(&self.sessions_rejected))],
        );
        metric(
            "ispeed_sessions_finished_total",
            "counter",
            "Sessions that received a receipt.",
            &[("", get(&self.sessions_finished))],
        );
        metric(
            "ispeed_sessions_expired_total",
            "counter",
            "Sessions that ran out of time.",
            &[("", get(&self.sessions_expired))],
        );
        metric(
            "ispeed_payload_bytes_total",
            "counter",
            "Payload bytes written (download) and read (upload).",
            &[
                ("{direction=\"download\"}", get(&self.bytes_download)),
                ("{direction=\"upload\"}", get(&self.bytes_upload)),
            ],
        );
        metric(
            "ispeed_streams_closed_by_client_total",
            "counter",
            "Streams the client ended before the server's deadline (early stop or disconnect).",
            &[("", get(&self.streams_closed_by_client))],
        );
        metric(
            "ispeed_streams_cut_off_total",
            "counter",
            "Upload streams the server stopped reading (time limit, byte budget, session end).",
            &[("", get(&self.streams_cut_off))],
        );
        let labels: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| format!("{{code=\"{}\"}}", c.as_str()))
            .collect();
        let samples: Vec<(&str, u64)> = labels
            .iter()
            .zip(&self.errors)
            .map(|(l, c)| (l.as_str(), get(c)))
            .collect();
        metric(
            "ispeed_errors_total",
            "counter",
            "Error responses by code.",
            &samples,
        );
        out
    }
}
