//! The ispeed client engine: runs a test against one test point (idle
//! latency, adaptive multi-stream download and upload with loaded latency
//! probes, IPv6 capability) and returns a typed result carrying the test
//! point's signed receipt. [`mod@submit`] hands results to a collector, through
//! a durable on-disk spool so none is lost while the collector is away.
//!
//! The published rates are always the test point's server-side figures from
//! the receipt; the client's own counts only drive its decisions and are
//! reported beside them. This crate must never print (callers render
//! [`Event`]s) and must never invent a figure the receipt does not back.

pub mod engine;
pub mod http;
pub mod result;
pub mod select;
pub mod submit;
pub mod target;

pub use engine::{run_test, Event, Phase, TestOptions};
pub use result::TestResult;
pub use select::{locate_and_run, Attempt, AttemptOutcome, SelectOptions, Selection};
pub use submit::{
    build_submission, config_dir, device_id, discover, submit, DeliveryReport, ResolvedTestPoint,
    Settled, Spool, SpoolEntry, SubmitError, Submitted,
};
pub use target::{Family, Target};

use ispeed_proto::ErrorCode;

/// Why a test did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The test point could not be reached at all.
    #[error("test point unreachable: {0}")]
    Unreachable(String),
    /// The connection was lost or the test point stopped answering mid-test.
    #[error("test point went away during the test: {0}")]
    Lost(String),
    /// The test point refused with a typed error.
    #[error("test point refused ({status} {code:?}): {message}")]
    Server {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// The test point answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The URL or options are unusable.
    #[error("invalid target: {0}")]
    Target(String),
    /// The receipt does not verify with the test point's key.
    #[error("the test point's receipt does not verify: {0}")]
    Receipt(String),
    /// No test point had room for the test within the admission budget.
    #[error("no test point available: {0}")]
    NoCapacity(String),
}

impl ClientError {
    /// True when the test point was never reached (exit code 3 in the CLI).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable(_) | ClientError::NoCapacity(_)
        )
    }
}
