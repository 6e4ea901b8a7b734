//! Wire types and constants of the ispeed protocol (`spec/protocol.md`), and
//! the signed receipt (`spec/results.md`).
//!
//! This crate is the single Rust mirror of the spec: every path, limit and
//! JSON shape that crosses the wire is defined here once. It must never do
//! I/O, read a clock or depend on an async runtime; callers pass times in.

pub mod consts;
pub mod error;
pub mod receipt;
pub mod registry;
pub mod results;
pub mod signed;
pub mod wire;

pub use error::{ApiError, ErrorBody, ErrorCode};
pub use receipt::{Receipt, ReceiptError, ReceiptPayload, SigningKey, VerifyingKey};
