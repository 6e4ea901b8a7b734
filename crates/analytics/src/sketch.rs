//! DDSketch-style quantile sketch (spec/statistics.md §2).

use crate::codec::{put_varint, unzigzag, zigzag, Reader};
use crate::DecodeError;

/// Relative accuracy α of [`Sketch`]: every value the sketch returns for a
/// rank is within α (0.5 %) relative of the true order statistic at that
/// rank (for values ≥ [`MIN_INDEXABLE`]).
pub const RELATIVE_ACCURACY: f64 = 0.005;

/// Values below this (including 0 and clamped negatives) go to the zero
/// bucket; a rank that falls there is answered with the exact minimum, so
/// the absolute error there is below 1e-9.
pub const MIN_INDEXABLE: f64 = 1e-9;

/// γ = (1 + α) / (1 − α).
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
/// ln γ = 2·atanh(α), fixed as a constant so that the bucket mapping is part
/// of the blob format (spec/statistics.md §2.1).
const LN_GAMMA: f64 = 0.010_000_083_334_583_356;

/// Loose bounds on a bucket index: index(1e-9) = −2072 and
/// index(f64::MAX) = 70978. A decoded blob outside them is corrupt.
const MIN_INDEX: i64 = -2100;
const MAX_INDEX: i64 = 71_000;

/// Fixed-point scale of the stored sum: values are summed as integers in
/// units of 2^-32, so merging is exact and order-independent.
const SUM_SCALE: f64 = 4_294_967_296.0;

/// Blob tag: kind "sketch", format version 1.
const TAG_V1: u8 = 0x11;

fn bucket_index(v: f64) -> i64 {
    (v.ln() / LN_GAMMA).ceil() as i64
}

/// The value reported for bucket `i`, which holds (γ^(i−1), γ^i]:
/// 2γ^i / (γ + 1), within α relative of every value in the bucket.
fn bucket_value(i: i64) -> f64 {
    (i as f64 * LN_GAMMA).exp() * (2.0 / (GAMMA + 1.0))
}

fn to_fixed(v: f64) -> u128 {
    // `as` saturates; v is finite and non-negative here.
    (v * SUM_SCALE).round() as u128
}

/// The 1-based rank of quantile `q` among `n` values: ⌈q·n⌉ clamped to
/// [1, n] (the inverse of the empirical CDF, "nearest rank", Hyndman–Fan
/// type 1). So the median of an even count is the lower middle value, and
/// every quantile is (an approximation of) a measured value.
///
/// The product q·n is shrunk by a relative 1e-12 before rounding up so that
/// floating-point noise (0.1 × 30 = 3.0000000000000004) does not move the
/// rank. Returns `None` when `n == 0` or `q` is not in [0, 1].
pub fn quantile_rank(q: f64, n: u64) -> Option<u64> {
    if n == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let k = (q * n as f64 * (1.0 - 1e-12)).ceil();
    Some((k as u64).clamp(1, n))
}

/// DDSketch-style log-bucketed quantile sketch over non-negative f64 values.
///
/// Relative accuracy α = 0.005: bucket `i` holds values in
/// (γ^(i−1), γ^i] with γ = (1+α)/(1−α) and reports 2γ^i/(γ+1), so any
/// quantile is within 0.5 % (hence within 1 %) relative of the true order
/// statistic at the same rank. The count, the exact minimum and maximum and
/// a fixed-point sum are kept alongside, and returned values are clamped to
/// [min, max].
///
/// Merging is exact: `merge(a, b)` equals — field for field and byte for
/// byte via [`Sketch::to_bytes`] — the sketch of the union, in any order.
///
/// Input policy: the caller validates values. NaN and ±∞ are ignored;
/// negative values (and −0) are clamped to 0 and counted in the zero bucket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sketch {
    /// Index of `bins[0]`; 0 when `bins` is empty.
    offset: i32,
    /// Dense counts for indexes `offset..offset+bins.len()`; empty, or with
    /// non-zero first and last entries (canonical form for `PartialEq`).
    bins: Vec<u64>,
    /// Values below [`MIN_INDEXABLE`].
    zero: u64,
    count: u64,
    /// Σ round(v · 2^32), saturating.
    sum_fixed: u128,
    /// Exact minimum and maximum; 0 when empty.
    min: f64,
    max: f64,
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value (see the type docs for NaN, ∞ and negatives).
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let v = if value > 0.0 { value } else { 0.0 };
        if v < MIN_INDEXABLE {
            self.zero = self.zero.saturating_add(1);
        } else {
            self.add_to_bin(bucket_index(v), 1);
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count = self.count.saturating_add(1);
        self.sum_fixed = self.sum_fixed.saturating_add(to_fixed(v));
    }

    /// Grows `bins` so that it covers indexes `lo..=hi`.
    fn cover(&mut self, lo: i64, hi: i64) {
        if self.bins.is_empty() {
            self.offset = lo as i32;
            self.bins = vec![0; (hi - lo + 1) as usize];
            return;
        }
        let cur_lo = i64::from(self.offset);
        let cur_hi = cur_lo + self.bins.len() as i64 - 1;
        if lo < cur_lo {
            let extra = (cur_lo - lo) as usize;
            self.bins.splice(0..0, std::iter::repeat_n(0, extra));
            self.offset = lo as i32;
        }
        if hi > cur_hi {
            let new_len = (hi - i64::from(self.offset) + 1) as usize;
            self.bins.resize(new_len, 0);
        }
    }

    fn add_to_bin(&mut self, index: i64, c: u64) {
        self.cover(index, index);
        let slot = &mut self.bins[(index - i64::from(self.offset)) as usize];
        *slot = slot.saturating_add(c);
    }

    /// Merges `other` into `self`; the result is the sketch of the union.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.clone_from(other);
            return;
        }
        if !other.bins.is_empty() {
            let lo = i64::from(other.offset);
            let hi = lo + other.bins.len() as i64 - 1;
            self.cover(lo, hi);
            let start = (lo - i64::from(self.offset)) as usize;
            for (dst, src) in self.bins[start..].iter_mut().zip(&other.bins) {
                *dst = dst.saturating_add(*src);
            }
        }
        self.zero = self.zero.saturating_add(other.zero);
        self.count = self.count.saturating_add(other.count);
        self.sum_fixed = self.sum_fixed.saturating_add(other.sum_fixed);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of values added (NaN/∞ excluded).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values, exact to 2^-32 per value (fixed-point, so merges
    /// are order-independent).
    pub fn sum(&self) -> f64 {
        self.sum_fixed as f64 / SUM_SCALE
    }

    /// Arithmetic mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum() / self.count as f64)
    }

    /// Exact minimum, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact maximum, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `q`-quantile: [`Sketch::value_at_rank`] at
    /// [`quantile_rank`]`(q, count)` = ⌈q·n⌉. `None` when empty or `q` is not
    /// in [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.value_at_rank(quantile_rank(q, self.count)?)
    }

    /// The `rank`-th smallest value (1-based), within α relative of the
    /// true one; rank 1 and rank n return the exact min and max. `None` when
    /// `rank` is 0 or exceeds the count.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        if rank == 0 || rank > self.count {
            return None;
        }
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        if rank <= self.zero {
            return Some(self.min);
        }
        let mut seen = self.zero;
        for (j, &c) in self.bins.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                let v = bucket_value(i64::from(self.offset) + j as i64);
                return Some(v.clamp(self.min, self.max));
            }
        }
        // Only reachable if counts were saturated.
        Some(self.max)
    }

    /// [`Sketch::value_at_rank`] of several ranks in one walk over the
    /// buckets (a summary asks for seven). Output is in input order.
    pub fn values_at_ranks(&self, ranks: &[u64]) -> Vec<Option<f64>> {
        let mut order: Vec<usize> = (0..ranks.len()).collect();
        order.sort_by_key(|&i| ranks[i]);
        let mut out = vec![None; ranks.len()];
        // Ranks answered without the buckets: out of range, the ends, zeros.
        let mut pending = Vec::with_capacity(ranks.len());
        for &i in &order {
            let rank = ranks[i];
            if rank == 0 || rank > self.count {
                continue;
            }
            if rank == 1 || rank <= self.zero {
                out[i] = Some(self.min);
            } else if rank == self.count {
                out[i] = Some(self.max);
            } else {
                pending.push(i);
            }
        }
        let mut pending = pending.into_iter().peekable();
        let mut seen = self.zero;
        for (j, &c) in self.bins.iter().enumerate() {
            if pending.peek().is_none() {
                break;
            }
            seen = seen.saturating_add(c);
            while let Some(&i) = pending.peek() {
                if seen < ranks[i] {
                    break;
                }
                let v = bucket_value(i64::from(self.offset) + j as i64);
                out[i] = Some(v.clamp(self.min, self.max));
                pending.next();
            }
        }
        // Only reachable if counts were saturated.
        for i in pending {
            out[i] = Some(self.max);
        }
        out
    }

    /// Number of non-empty buckets (a size indicator).
    pub fn bucket_count(&self) -> usize {
        self.bins.iter().filter(|&&c| c > 0).count() + usize::from(self.zero > 0)
    }

    /// Compact, canonical encoding (spec/statistics.md §2.4): tag byte
    /// 0x11, varint count; if non-zero: varint zero-bucket count, varint
    /// fixed-point sum, min and max as little-endian f64, varint number of
    /// non-empty buckets, then per bucket a varint index delta (the first
    /// zigzag-encoded absolute index, then gap − 1 to the previous) and a
    /// varint count.
    pub fn to_bytes(&self) -> Vec<u8> {
        let nonzero = self.bins.iter().filter(|&&c| c > 0).count();
        let mut out = Vec::with_capacity(32 + 3 * nonzero);
        out.push(TAG_V1);
        put_varint(&mut out, u128::from(self.count));
        if self.count == 0 {
            return out;
        }
        put_varint(&mut out, u128::from(self.zero));
        put_varint(&mut out, self.sum_fixed);
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        put_varint(&mut out, nonzero as u128);
        let mut prev: Option<i64> = None;
        for (j, &c) in self.bins.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let idx = i64::from(self.offset) + j as i64;
            let delta = match prev {
                None => zigzag(idx),
                Some(p) => (idx - p - 1) as u64,
            };
            put_varint(&mut out, u128::from(delta));
            put_varint(&mut out, u128::from(c));
            prev = Some(idx);
        }
        out
    }

    /// Decodes [`Sketch::to_bytes`] output, validating every field; never
    /// panics on arbitrary input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8().map_err(|_| DecodeError::Empty)?;
        if tag != TAG_V1 {
            return Err(DecodeError::UnknownTag(tag));
        }
        let count = r.varint_u64()?;
        if count == 0 {
            r.finish()?;
            return Ok(Sketch::default());
        }
        let zero = r.varint_u64()?;
        let sum_fixed = r.varint_u128()?;
        let min = r.f64()?;
        let max = r.f64()?;
        if !(min.is_finite() && max.is_finite()) {
            return Err(DecodeError::Invalid("min/max not finite"));
        }
        if min.is_sign_negative() || max.is_sign_negative() || min > max {
            return Err(DecodeError::Invalid("min/max out of order or negative"));
        }
        let nbuckets = r.varint_u64()?;
        // Each bucket takes at least two bytes and one count.
        if nbuckets > count || nbuckets > (r.remaining() / 2) as u64 {
            return Err(DecodeError::Invalid("bucket count too large"));
        }
        let mut entries: Vec<(i64, u64)> = Vec::with_capacity(nbuckets as usize);
        let mut total = zero;
        let mut prev: Option<i64> = None;
        for _ in 0..nbuckets {
            let d = r.varint_u64()?;
            let idx = match prev {
                None => unzigzag(d),
                Some(p) => {
                    if d > (MAX_INDEX - MIN_INDEX) as u64 {
                        return Err(DecodeError::Invalid("bucket index out of range"));
                    }
                    p + d as i64 + 1
                }
            };
            if !(MIN_INDEX..=MAX_INDEX).contains(&idx) {
                return Err(DecodeError::Invalid("bucket index out of range"));
            }
            let c = r.varint_u64()?;
            if c == 0 {
                return Err(DecodeError::Invalid("empty bucket"));
            }
            total = total
                .checked_add(c)
                .ok_or(DecodeError::Invalid("count overflow"))?;
            entries.push((idx, c));
            prev = Some(idx);
        }
        r.finish()?;
        if total != count {
            return Err(DecodeError::Invalid("bucket counts do not add up"));
        }
        // min and max must lie in the extreme buckets (±1 index tolerates a
        // different libm rounding ln() at a bucket boundary).
        if (zero > 0) != (min < MIN_INDEXABLE) {
            return Err(DecodeError::Invalid("min inconsistent with zero bucket"));
        }
        match (entries.first(), entries.last()) {
            (Some(&(first, _)), Some(&(last, _))) => {
                if zero == 0 && (bucket_index(min) - first).abs() > 1 {
                    return Err(DecodeError::Invalid("min not in first bucket"));
                }
                if max < MIN_INDEXABLE || (bucket_index(max) - last).abs() > 1 {
                    return Err(DecodeError::Invalid("max not in last bucket"));
                }
            }
            _ => {
                if max >= MIN_INDEXABLE {
                    return Err(DecodeError::Invalid("max without bucket"));
                }
            }
        }
        let mut s = Sketch {
            zero,
            count,
            sum_fixed,
            min,
            max,
            ..Sketch::default()
        };
        if let (Some(&(first, _)), Some(&(last, _))) = (entries.first(), entries.last()) {
            s.cover(first, last);
            for (idx, c) in entries {
                s.bins[(idx - first) as usize] = c;
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_constant_matches_gamma() {
        // γ itself is rounded, so its ln differs from 2·atanh(α) in the last bits.
        assert!((LN_GAMMA - GAMMA.ln()).abs() < 1e-13 * LN_GAMMA);
        assert!((LN_GAMMA - 2.0 * RELATIVE_ACCURACY.atanh()).abs() < 1e-13 * LN_GAMMA);
        assert_eq!(bucket_index(MIN_INDEXABLE), -2072);
        assert_eq!(bucket_index(f64::MAX), 70978);
    }

    #[test]
    fn bucket_value_is_within_alpha_of_bucket_edges() {
        for i in [-2072i64, -100, -1, 0, 1, 393, 1000, 70_000] {
            let hi = (i as f64 * LN_GAMMA).exp();
            let lo = ((i - 1) as f64 * LN_GAMMA).exp();
            let v = bucket_value(i);
            assert!((v - hi).abs() / hi <= RELATIVE_ACCURACY * (1.0 + 1e-9));
            assert!((v - lo).abs() / lo <= RELATIVE_ACCURACY * (1.0 + 1e-9));
        }
    }

    #[test]
    fn input_policy() {
        let mut s = Sketch::new();
        s.add(f64::NAN);
        s.add(f64::INFINITY);
        s.add(f64::NEG_INFINITY);
        assert_eq!(s, Sketch::new());
        s.add(-5.0);
        s.add(-0.0);
        s.add(0.0);
        assert_eq!(s.count(), 3);
        assert_eq!(s.min(), Some(0.0));
        assert!(s.min().unwrap().is_sign_positive());
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.sum(), 0.0);
        s.add(10.0);
        assert_eq!(s.max(), Some(10.0));
        assert_eq!(s.quantile(1.0), Some(10.0));
        assert_eq!(Sketch::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn empty_sketch() {
        let s = Sketch::new();
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.mean(), None);
        assert_eq!(s.min(), None);
        assert_eq!(s.value_at_rank(1), None);
        assert_eq!(s.to_bytes(), vec![TAG_V1, 0]);
        assert_eq!(Sketch::from_bytes(&[TAG_V1, 0]).unwrap(), s);
    }
}
