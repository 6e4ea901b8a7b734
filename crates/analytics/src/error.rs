//! Decoding errors.

/// Why a stored blob could not be decoded. Decoders never panic: any byte
/// string either decodes to a valid value or yields one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The blob is empty.
    #[error("empty blob")]
    Empty,
    /// The first byte is not a known kind/version tag.
    #[error("unknown blob tag 0x{0:02x}")]
    UnknownTag(u8),
    /// The blob ends in the middle of a field.
    #[error("blob truncated")]
    Truncated,
    /// A varint is longer than its type allows.
    #[error("varint overflow")]
    VarintOverflow,
    /// Bytes remain after the last field.
    #[error("{0} trailing byte(s) after the blob")]
    TrailingBytes(usize),
    /// The fields decode but are inconsistent or out of range.
    #[error("invalid blob: {0}")]
    Invalid(&'static str),
}
