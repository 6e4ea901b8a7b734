//! The compact signed envelope shared by receipts, heartbeats and access
//! tokens: `<tag>.<payload>.<signature>`, both parts unpadded base64url.
//!
//! The payload is the exact JSON bytes that were signed (no canonical JSON).
//! The signature is Ed25519 over a per-kind context string followed by those
//! bytes, so a signature made for one kind (a receipt) can never verify as
//! another (a heartbeat or a token). Decoding is strict: no padding, no stray
//! bits, exactly three parts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// One kind of signed envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The first part of the compact form, e.g. `"v1"` for receipts.
    pub tag: &'static str,
    /// Signed before the payload bytes (domain separation).
    pub context: &'static [u8],
}

/// Why an envelope failed to parse or verify.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("not of the form <tag>.<payload>.<signature>")]
    Format,
    #[error("tag {found:?} where {expected:?} was expected")]
    Tag {
        expected: &'static str,
        found: String,
    },
    #[error("not valid unpadded base64url")]
    Encoding,
    #[error("the signature does not verify with the given key")]
    BadSignature,
}

/// A parsed envelope whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    payload: Vec<u8>,
    signature: [u8; 64],
}

/// Signs `payload` as `kind` and returns the compact form.
pub fn sign(kind: Kind, payload: &[u8], key: &SigningKey) -> String {
    let signature = key.sign(&message(kind, payload));
    format!(
        "{}.{}.{}",
        kind.tag,
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

impl Envelope {
    /// Parses the compact form of `kind` without verifying it.
    pub fn parse(kind: Kind, compact: &str) -> Result<Envelope, EnvelopeError> {
        let mut parts = compact.split('.');
        let (Some(tag), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EnvelopeError::Format);
        };
        if tag != kind.tag {
            return Err(EnvelopeError::Tag {
                expected: kind.tag,
                found: tag.chars().take(16).collect(),
            });
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| EnvelopeError::Encoding)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| EnvelopeError::Encoding)?
            .try_into()
            .map_err(|_| EnvelopeError::Encoding)?;
        Ok(Envelope { payload, signature })
    }

    /// The payload bytes, not yet trusted.
    pub fn payload_unverified(&self) -> &[u8] {
        &self.payload
    }

    /// Checks the signature with a trusted key and returns the payload bytes.
    pub fn verify(&self, kind: Kind, key: &VerifyingKey) -> Result<&[u8], EnvelopeError> {
        key.verify_strict(
            &message(kind, &self.payload),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(&self.payload)
    }
}

fn message(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(kind.context.len() + payload.len());
    message.extend_from_slice(kind.context);
    message.extend_from_slice(payload);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Kind = Kind {
        tag: "a1",
        context: b"kind-a\n",
    };
    const B: Kind = Kind {
        tag: "a1",
        context: b"kind-b\n",
    };

    #[test]
    fn a_signature_of_one_kind_never_verifies_as_another() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let compact = sign(A, b"{}", &key);
        let envelope = Envelope::parse(A, &compact).unwrap();
        assert_eq!(envelope.verify(A, &key.verifying_key()).unwrap(), b"{}");
        // Same tag, other context: the bytes parse but do not verify.
        let as_b = Envelope::parse(B, &compact).unwrap();
        assert_eq!(
            as_b.verify(B, &key.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in ["", "a1", "a1.x", "a1.e30.sig.extra", "a1.e30=.AAAA"] {
            assert!(Envelope::parse(A, bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Envelope::parse(A, "zz.e30.AAAA"),
            Err(EnvelopeError::Tag { .. })
        ));
    }
}
