//! The test point's signed statement of what it measured.
//!
//! Compact form: `v1.<payload>.<signature>`, both parts unpadded base64url.
//! The payload is the exact JSON bytes that were signed, so verifying needs no
//! canonical JSON; the signature is Ed25519 over
//! [`RECEIPT_SIGNING_CONTEXT`] followed
//! by those bytes. Decoding is strict (no padding, no stray bits), so changing
//! any byte of the compact string makes verification fail.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::consts::{RECEIPT_SIGNING_CONTEXT, RECEIPT_TAG};
use crate::signed::{Envelope, EnvelopeError, Kind};
use crate::wire::{ClientReport, TcpSummary};

/// What the server measured for one direction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionReceipt {
    /// Payload bytes the server counted over the whole phase.
    pub bytes: u64,
    /// From the first stream's start to the phase's end (ms).
    pub duration_ms: u64,
    /// Most streams open at once.
    pub streams: u32,
    /// Server-side rate over the measurement window (bit/s of payload).
    pub rate_bps: f64,
    /// Measurement window, ms since the session started, after ramp-up exclusion.
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// Bytes counted inside the window.
    pub window_bytes: u64,
    /// Whether the rate had stabilised (else the window is a fallback).
    pub stable: bool,
    /// How the bytes were counted.
    pub counting: Counting,
    pub tcp: TcpSummary,
}

/// How a direction's bytes were counted by the test point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// Download: acknowledged by the client's TCP (cumulatively or
    /// selectively), never more than was written. Every stream had `TCP_INFO`.
    #[default]
    TcpAcked,
    /// Download: written by the test point (no `TCP_INFO` for some stream),
    /// an upper bound of what arrived.
    AppWritten,
    /// Upload: received by the test point's TCP (in order), every stream had `TCP_INFO`.
    TcpReceived,
    /// Upload: body bytes read by the test point (no `TCP_INFO` for some stream).
    AppReceived,
}

/// Server-side latency view: the kernel's RTT estimates on the client's
/// control connection while idle and during each transfer phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReceipt {
    pub idle_rtt_us: Option<u32>,
    pub min_rtt_us: Option<u32>,
    pub loaded_download_rtt_us: Option<u32>,
    pub loaded_upload_rtt_us: Option<u32>,
}

/// The signed content of a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptPayload {
    pub v: u32,
    pub protocol: String,
    pub session_id: String,
    pub test_point_id: String,
    /// The signing key (unpadded base64url), so a verifier can pick the
    /// matching trusted key; it is never itself a reason to trust.
    pub key: String,
    /// Client address and port as the test point saw it.
    pub client_addr: String,
    pub ip_version: u8,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub download: Option<DirectionReceipt>,
    pub upload: Option<DirectionReceipt>,
    pub latency: LatencyReceipt,
    /// What the client said it measured, signed as client-reported.
    pub client_report: ClientReport,
    /// Signed at a checkpoint (`POST …/checkpoint`), not at the end: the
    /// session went on. Its directions are final; it may back the download
    /// of a result whose upload another test point measured after this one
    /// went away (spec/registry.md §6). Absent (false) in a final receipt,
    /// so older receipts keep their bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpoint: bool,
}

impl ReceiptPayload {
    /// Server-side download rate in Mbit/s (10^6 bit/s), if measured.
    pub fn download_mbps(&self) -> Option<f64> {
        self.download.as_ref().map(|d| d.rate_bps / 1e6)
    }
    /// Server-side upload rate in Mbit/s, if measured.
    pub fn upload_mbps(&self) -> Option<f64> {
        self.upload.as_ref().map(|d| d.rate_bps / 1e6)
    }
}

/// Why a receipt failed to parse or verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt is not of the form v1.<payload>.<signature>")]
    Format,
    #[error("receipt version {0} is not supported")]
    Version(String),
    #[error("receipt is not valid base64url")]
    Encoding,
    #[error("receipt payload is not valid JSON: {0}")]
    Payload(String),
    #[error("receipt signature does not verify with the given key")]
    BadSignature,
    #[error("public key is invalid")]
    BadKey,
}

/// A parsed compact receipt whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt(Envelope);

/// The receipt kind of [`crate::signed`] envelope.
pub const RECEIPT_KIND: Kind = Kind {
    tag: RECEIPT_TAG,
    context: RECEIPT_SIGNING_CONTEXT,
};

impl Receipt {
    /// Signs `payload` and returns the compact string form.
    pub fn sign(payload: &ReceiptPayload, key: &SigningKey) -> String {
        let bytes = serde_json::to_vec(payload).expect("receipt payload serialises");
        crate::signed::sign(RECEIPT_KIND, &bytes, key)
    }

    /// Parses the compact form without verifying it.
    pub fn parse(compact: &str) -> Result<Receipt, ReceiptError> {
        Envelope::parse(RECEIPT_KIND, compact)
            .map(Receipt)
            .map_err(|error| match error {
                EnvelopeError::Tag { found, .. } => ReceiptError::Version(found),
                EnvelopeError::Format => ReceiptError::Format,
                EnvelopeError::Encoding | EnvelopeError::BadSignature => ReceiptError::Encoding,
            })
    }

    /// Decodes the payload without verifying the signature (for display only).
    pub fn payload_unverified(&self) -> Result<ReceiptPayload, ReceiptError> {
        serde_json::from_slice(self.0.payload_unverified())
            .map_err(|e| ReceiptError::Payload(e.to_string()))
    }

    /// Verifies the signature with a trusted key and returns the payload.
    pub fn verify(&self, key: &VerifyingKey) -> Result<ReceiptPayload, ReceiptError> {
        self.0
            .verify(RECEIPT_KIND, key)
            .map_err(|_| ReceiptError::BadSignature)?;
        self.payload_unverified()
    }
}

/// Encodes a public key the way the protocol carries it.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a public key from unpadded base64url (or standard base64, or hex,
/// as operators may paste either).
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, ReceiptError> {
    let text = text.trim();
    // 64 hex digits are also valid base64, so hex is tried first.
    let bytes = decode_hex(text)
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or(ReceiptError::BadKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| ReceiptError::BadKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ReceiptError::BadKey)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> ReceiptPayload {
        ReceiptPayload {
            v: 1,
            protocol: "ispeed/1".into(),
            session_id: "s".into(),
            test_point_id: "tp".into(),
            key: String::new(),
            client_addr: "127.0.0.1:5000".into(),
            ip_version: 4,
            started_at_ms: 1,
            finished_at_ms: 2,
            download: Some(DirectionReceipt {
                bytes: 1000,
                rate_bps: 8000.0,
                ..Default::default()
            }),
            upload: None,
            latency: LatencyReceipt::default(),
            client_report: ClientReport::default(),
            checkpoint: false,
        }
    }

    #[test]
    fn every_changed_byte_breaks_verification() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let compact = Receipt::sign(&payload(), &key);
        let verifying = key.verifying_key();
        assert_eq!(
            Receipt::parse(&compact)
                .unwrap()
                .verify(&verifying)
                .unwrap(),
            payload()
        );
        let bytes = compact.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'b', b'-', b'.', b'0'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[i] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                let outcome = Receipt::parse(&changed).and_then(|r| r.verify(&verifying));
                assert!(outcome.is_err(), "byte {i} -> {replacement} still verified");
            }
        }
    }

    #[test]
    fn other_key_fails() {
        let compact = Receipt::sign(&payload(), &SigningKey::from_bytes(&[7u8; 32]));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(
            Receipt::parse(&compact).unwrap().verify(&other),
            Err(ReceiptError::BadSignature)
        );
    }

    #[test]
    fn public_key_round_trips_in_all_accepted_encodings() {
        let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        assert_eq!(decode_public_key(&encode_public_key(&key)).unwrap(), key);
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode_public_key(&hex).unwrap(), key);
        assert_eq!(decode_public_key("nope"), Err(ReceiptError::BadKey));
    }
}
