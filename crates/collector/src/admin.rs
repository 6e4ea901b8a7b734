//! Admin authentication for the collector's admin API: one bearer token,
//! 32 random bytes kept as 64 hex digits in a file with mode 0600 (default
//! `<data>/admin-token`), created on first start. `ispeed admin` reads the
//! same file. Only its SHA-256 is held in memory, and comparisons take the
//! same time whatever the input.
//!
//! Accounts with roles replace this with the officials' issue; until then
//! the token is the single admin credential, and every admin action is
//! logged with what it changed.

use std::path::Path;

use axum::http::{header, HeaderMap};
use ispeed_proto::ErrorCode;
use sha2::{Digest, Sha256};

use crate::error::ApiFailure;

/// Checks `Authorization: Bearer <token>` against the admin token.
pub struct AdminAuth {
    token_hash: [u8; 32],
}

impl AdminAuth {
    /// Loads the token file, creating it if missing.
    pub fn load_or_create(path: &Path) -> Result<AdminAuth, ispeed_server::key::KeyError> {
        let secret = ispeed_server::key::load_or_create_secret(path)?;
        Ok(AdminAuth::from_token(&hex(&secret)))
    }

    pub fn from_token(token: &str) -> AdminAuth {
        AdminAuth {
            token_hash: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `token` is the admin token (constant time).
    pub fn matches(&self, token: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        hash.iter()
            .zip(self.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Refuses with `401 unauthorized` unless the request carries the token.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiFailure> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiFailure::new(
                    ErrorCode::Unauthorized,
                    "admin endpoints need Authorization: Bearer <admin token>",
                )
            })?;
        let hash: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        // Constant time: every byte is compared whatever the first difference.
        let difference = hash
            .iter()
            .zip(self.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(ApiFailure::new(
                ErrorCode::Unauthorized,
                "the admin token is wrong",
            ))
        }
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_passes() {
        let auth = AdminAuth::from_token("s3cret");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            auth.check(&headers).map_err(|f| f.code)
        };
        assert_eq!(with("Bearer s3cret"), Ok(()));
        assert_eq!(with("Bearer s3cre"), Err(ErrorCode::Unauthorized));
        assert_eq!(with("Basic s3cret"), Err(ErrorCode::Unauthorized));
        assert_eq!(
            auth.check(&HeaderMap::new()).map_err(|f| f.code),
            Err(ErrorCode::Unauthorized)
        );
    }
}
