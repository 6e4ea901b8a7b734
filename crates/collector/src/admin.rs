//! Admin authentication for the collector's admin API: one bearer token,
//! 32 random bytes kept as 64 hex digits in a file with mode 0600 (default
//! `<data>/admin-token`), created on first start. `ispeed admin` reads the
//! same file. Only its SHA-256 is held in memory, and comparisons take the
//! same time whatever the input.
//!
//! Admin accounts (`accounts.rs`) work beside it; `auth::authenticate`
//! takes this token as an admin actor, and every admin action is audited.

use std::path::Path;

use crate::accounts::{same_bytes, token_hash};

/// The admin token, as its SHA-256.
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
            token_hash: token_hash(token),
        }
    }

    /// Whether `token` is the admin token (constant time).
    pub fn matches(&self, token: &str) -> bool {
        same_bytes(&token_hash(token.trim()), &self.token_hash)
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
        assert!(auth.matches("s3cret"));
        assert!(auth.matches(" s3cret "));
        assert!(!auth.matches("s3cre"));
        assert!(!auth.matches(""));
    }
}
