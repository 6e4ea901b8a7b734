//! Pure, mergeable statistics for ispeed rollups.
//!
//! The collector stores the blobs produced here in rollup cells (one cell per
//! area × ISP × access type × period) and merges them at query time to
//! publish per-nation/province/ward medians that the regulator must be able
//! to defend. Normative description: `spec/statistics.md`.
//!
//! What is here:
//! - [`Sketch`]: a DDSketch-style log-bucketed quantile sketch with relative
//!   accuracy [`RELATIVE_ACCURACY`] (0.5 %), merged exactly and
//!   order-independently (the merge of any split is byte-identical to the
//!   sketch of the whole).
//! - [`DistinctCounter`]: distinct devices, exact up to [`EXACT_LIMIT`]
//!   hashes, then HyperLogLog with 4096 registers (~1.6 % standard error).
//! - [`median_ci_ranks`]: distribution-free confidence interval of the median
//!   by order statistics.
//! - [`Summary`]: the published figures of one cell, and [`sufficiency`]
//!   flags for cells with too few samples.
//!
//! What this crate must never do: perform I/O, read a clock, use randomness,
//! or panic on a corrupt or hostile blob — every decoder returns
//! [`DecodeError`] instead. All results are deterministic functions of
//! their inputs, so a published number can be recomputed from the stored
//! blobs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ci;
mod codec;
mod distinct;
mod error;
mod sketch;
mod summary;

pub use ci::{median_ci_ranks, normal_quantile, EXACT_BINOMIAL_MAX_N};
pub use distinct::{DistinctCounter, EXACT_LIMIT, HLL_PRECISION};
pub use error::DecodeError;
pub use sketch::{quantile_rank, Sketch, MIN_INDEXABLE, RELATIVE_ACCURACY};
pub use summary::{sufficiency, Flag, Level, Summary, Thresholds};
