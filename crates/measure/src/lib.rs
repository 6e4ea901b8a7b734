//! Sans-I/O measurement logic shared by the client and the test point:
//! throughput series, ramp-up exclusion, stream growth, the stability stop,
//! latency/jitter statistics, RPM and fairness.
//!
//! Like quinn-proto, this crate never does I/O and never reads a clock: it is
//! fed samples with timestamps (`t_us`, microseconds since the phase began)
//! and returns decisions and estimates, so it is tested on simulated links.
//! It must stay dependency-light and deterministic.

pub mod latency;
pub mod stats;
pub mod throughput;
pub mod working;

pub use latency::{responsiveness, Confidence, LatencyStats, Responsiveness};
pub use throughput::{Action, Estimate, Series, StopReason, TransferConfig, TransferController};
