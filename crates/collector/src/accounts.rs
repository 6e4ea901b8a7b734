//! Officials' accounts (`spec/accounts.md`): roles, password hashing,
//! session and API tokens, and who may do what. The rules are pure
//! functions here; `auth.rs` applies them to requests.
//!
//! Secrets never reach the disk or the logs in clear: passwords are stored
//! as argon2id hashes, session cookies and API tokens (256 random bits) as
//! their SHA-256.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Prefix of API tokens, so that a leaked one is recognisable.
pub const API_TOKEN_PREFIX: &str = "isp_";

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// One province: its wards, campaigns, reports and record exports.
    Province,
    /// What the public sees, signed in.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Province => "province",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::Province, Role::Viewer]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub province_code: Option<String>,
    pub created_at_ms: u64,
    pub disabled_at_ms: Option<u64>,
}

/// An account as the API shows it (no hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub username: String,
    pub role: Role,
    pub province_code: Option<String>,
    pub created_at_ms: u64,
    pub disabled_at_ms: Option<u64>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            username: u.username.clone(),
            role: u.role,
            province_code: u.province_code.clone(),
            created_at_ms: u.created_at_ms,
            disabled_at_ms: u.disabled_at_ms,
        }
    }
}

/// A signed-in web session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub user_id: i64,
    /// Must come back with every form post of this session.
    pub csrf: String,
    pub expires_at_ms: u64,
}

/// An API token (the secret is not kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    /// Who: a username, `admin-token`, or `anonymous`.
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    /// JSON with what changed (never a secret).
    pub details: Option<String>,
}

/// Why an account cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("username must be 3-64 characters of a-z, 0-9, '.', '_', '-'")]
    Username,
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters")]
    Password,
    #[error("a province user needs a province code, and only a province user has one")]
    Province,
    #[error("a user {0:?} exists already")]
    Exists(String),
}

/// Who is acting: an account, or the bootstrap admin token.
#[derive(Clone, PartialEq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub province_code: Option<String>,
    pub user_id: Option<i64>,
    /// The session's CSRF token when the request came with a session cookie
    /// (form posts must carry it); `None` for bearer tokens.
    pub csrf: Option<String>,
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The CSRF token is a secret of the session: never in logs.
        f.debug_struct("Actor")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("province_code", &self.province_code)
            .finish_non_exhaustive()
    }
}

impl Actor {
    /// May this actor read a province's non-public data (record exports,
    /// campaign management)?
    pub fn may_manage_province(&self, province_code: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Province => self.province_code.as_deref() == Some(province_code),
            Role::Viewer => false,
        }
    }
}

pub fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Checks a new account's fields.
pub fn check_new_user(
    username: &str,
    password: &str,
    role: Role,
    province_code: Option<&str>,
) -> Result<(), AccountError> {
    if !valid_username(username) {
        return Err(AccountError::Username);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Password);
    }
    if (role == Role::Province) != province_code.is_some() {
        return Err(AccountError::Province);
    }
    Ok(())
}

/// The argon2id hash of a password (default parameters: 19 MiB, t = 2).
/// CPU-bound for tens of milliseconds: call it off the async workers.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("operating system randomness");
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// Whether `password` matches a stored hash (constant time in the hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random secret (session cookie, CSRF token, API token body).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("operating system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a session or API token is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two short strings (CSRF tokens).
pub fn same_secret(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// Constant-time equality of two byte strings (of public lengths): every
/// byte is compared whatever the first difference.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves_and_hashes_hide_them() {
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("x", "not a hash"));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash, hash_password("correct horse battery"));
    }

    #[test]
    fn new_accounts_are_checked() {
        assert!(check_new_user("so-tttt-79", "0123456789", Role::Province, Some("79")).is_ok());
        assert_eq!(
            check_new_user("a", "0123456789", Role::Viewer, None),
            Err(AccountError::Username)
        );
        assert_eq!(
            check_new_user("viewer", "short", Role::Viewer, None),
            Err(AccountError::Password)
        );
        assert_eq!(
            check_new_user("prov", "0123456789", Role::Province, None),
            Err(AccountError::Province)
        );
        assert_eq!(
            check_new_user("adm", "0123456789", Role::Admin, Some("79")),
            Err(AccountError::Province)
        );
    }

    #[test]
    fn a_province_user_manages_only_its_province() {
        let actor = Actor {
            name: "u".into(),
            role: Role::Province,
            province_code: Some("79".into()),
            user_id: Some(1),
            csrf: Some("secret-csrf".into()),
        };
        assert!(actor.may_manage_province("79"));
        assert!(!actor.may_manage_province("01"));
        assert!(!format!("{actor:?}").contains("secret-csrf"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
