//! The typed JSON error every endpoint returns: `{ "error": { "code", "message" } }`.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. Clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No session with that id exists (never existed or long forgotten).
    UnknownSession,
    /// The session existed but its time budget ran out.
    SessionExpired,
    /// The session was finished; its receipt has been issued.
    SessionFinished,
    /// The test point is at its concurrent-session capacity.
    OverCapacity,
    /// A session's byte budget was exhausted.
    BudgetExceeded,
    /// A stream outlived its direction's time limit; the server stopped reading.
    TimeExceeded,
    /// The session already has the most streams a direction may open at once.
    TooManyStreams,
    /// The request body is not valid JSON of the expected shape.
    MalformedJson,
    /// A query or path parameter is invalid.
    BadRequest,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request headers are larger than allowed.
    HeadersTooLarge,
    /// The path does not exist.
    NotFound,
    /// The method is not allowed on this path.
    MethodNotAllowed,
    /// The test point is shutting down.
    ShuttingDown,
    /// An unexpected server fault.
    Internal,
    /// Collector: the receipt's signing key is not an approved test point.
    UnknownTestPoint,
    /// Collector: the receipt's signature does not verify (forged or tampered).
    BadSignature,
    /// Collector: this receipt already backs a different result.
    ReceiptReused,
    /// Collector: the receipt is older than the collector accepts.
    ReceiptExpired,
    /// Collector: a value is physically impossible (negative, NaN, above line rate).
    ImpossibleValue,
    /// Collector: a result with this id exists with different content.
    ResultConflict,
    /// Collector: a unit, ISP or period named in the request does not exist.
    UnknownUnit,
    /// Collector: the store cannot take writes right now; retry later.
    StoreUnavailable,
    /// Test point: a session needs an access token from the collector's locate.
    TokenMissing,
    /// Test point: the access token is malformed or not signed by the collector.
    TokenInvalid,
    /// Test point: the access token has expired.
    TokenExpired,
    /// Test point: the access token was used before.
    TokenReused,
    /// Test point: the access token is for another test point.
    TokenAudience,
    /// Collector: missing or wrong admin credentials.
    Unauthorized,
    /// Collector: the test point's key was revoked; nothing it signs from then on counts.
    TestPointRevoked,
    /// Collector: a heartbeat names a registered id with another key, or a
    /// registered key under another id.
    KeyMismatch,
    /// Collector: a heartbeat is not newer than the last one, or too far
    /// from the collector's clock (a replay, or a wrong clock).
    StaleHeartbeat,
    /// Collector: an approved test point declared another class, operator
    /// or ASN; an admin must approve the change.
    RegistrationChanged,
    /// Collector: no approved, alive test point with spare capacity now.
    NoTestPointAvailable,
    /// Collector: signed in, but not allowed to do this (role, province, or
    /// a form post without its session's CSRF token).
    Forbidden,
}

impl ErrorCode {
    /// Every code, for exhaustive listings (metrics, documentation, tests).
    pub const ALL: [ErrorCode; 35] = [
        ErrorCode::UnknownSession,
        ErrorCode::SessionExpired,
        ErrorCode::SessionFinished,
        ErrorCode::OverCapacity,
        ErrorCode::BudgetExceeded,
        ErrorCode::TimeExceeded,
        ErrorCode::TooManyStreams,
        ErrorCode::MalformedJson,
        ErrorCode::BadRequest,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::UnknownTestPoint,
        ErrorCode::BadSignature,
        ErrorCode::ReceiptReused,
        ErrorCode::ReceiptExpired,
        ErrorCode::ImpossibleValue,
        ErrorCode::ResultConflict,
        ErrorCode::UnknownUnit,
        ErrorCode::StoreUnavailable,
        ErrorCode::TokenMissing,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::TokenReused,
        ErrorCode::TokenAudience,
        ErrorCode::Unauthorized,
        ErrorCode::TestPointRevoked,
        ErrorCode::KeyMismatch,
        ErrorCode::StaleHeartbeat,
        ErrorCode::RegistrationChanged,
        ErrorCode::NoTestPointAvailable,
        ErrorCode::Forbidden,
    ];

    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::UnknownSession | ErrorCode::NotFound => 404,
            ErrorCode::SessionExpired | ErrorCode::SessionFinished => 410,
            ErrorCode::OverCapacity | ErrorCode::ShuttingDown => 503,
            ErrorCode::BudgetExceeded | ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TimeExceeded => 408,
            ErrorCode::TooManyStreams => 429,
            ErrorCode::MalformedJson | ErrorCode::BadRequest => 400,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Internal => 500,
            ErrorCode::UnknownTestPoint
            | ErrorCode::BadSignature
            | ErrorCode::ReceiptExpired
            | ErrorCode::ImpossibleValue
            | ErrorCode::UnknownUnit => 422,
            ErrorCode::ReceiptReused | ErrorCode::ResultConflict => 409,
            ErrorCode::StoreUnavailable | ErrorCode::NoTestPointAvailable => 503,
            ErrorCode::TokenMissing
            | ErrorCode::TokenInvalid
            | ErrorCode::TokenExpired
            | ErrorCode::TokenReused
            | ErrorCode::TokenAudience
            | ErrorCode::Unauthorized => 401,
            ErrorCode::TestPointRevoked | ErrorCode::Forbidden => 403,
            ErrorCode::KeyMismatch | ErrorCode::StaleHeartbeat | ErrorCode::RegistrationChanged => {
                409
            }
        }
    }

    /// The snake_case string form used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::SessionFinished => "session_finished",
            ErrorCode::OverCapacity => "over_capacity",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::TimeExceeded => "time_exceeded",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownTestPoint => "unknown_test_point",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::ReceiptReused => "receipt_reused",
            ErrorCode::ReceiptExpired => "receipt_expired",
            ErrorCode::ImpossibleValue => "impossible_value",
            ErrorCode::ResultConflict => "result_conflict",
            ErrorCode::UnknownUnit => "unknown_unit",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::TokenMissing => "token_missing",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenReused => "token_reused",
            ErrorCode::TokenAudience => "token_audience",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TestPointRevoked => "test_point_revoked",
            ErrorCode::KeyMismatch => "key_mismatch",
            ErrorCode::StaleHeartbeat => "stale_heartbeat",
            ErrorCode::RegistrationChanged => "registration_changed",
            ErrorCode::NoTestPointAvailable => "no_test_point_available",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// The inner object of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The whole error response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ApiError {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_all_is_complete() {
        let mut names = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!(names.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
