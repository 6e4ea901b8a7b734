//! The error every collector handler returns: a stable code as typed JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ispeed_proto::{ErrorBody, ErrorCode};

use crate::store::StoreError;
use crate::verify::Refusal;

#[derive(Debug)]
pub struct ApiFailure {
    pub code: ErrorCode,
    pub message: String,
    /// Sent as `Retry-After` (seconds).
    pub retry_after_s: Option<u32>,
}

impl ApiFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiFailure {
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiFailure::new(ErrorCode::BadRequest, message)
    }
}

impl From<Refusal> for ApiFailure {
    fn from(refusal: Refusal) -> Self {
        ApiFailure::new(refusal.code, refusal.message)
    }
}

impl From<ispeed_proto::registry::Rejection> for ApiFailure {
    fn from(rejection: ispeed_proto::registry::Rejection) -> Self {
        ApiFailure::new(rejection.code, rejection.message)
    }
}

impl From<StoreError> for ApiFailure {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failure");
        match error {
            StoreError::Corrupt(_) => {
                ApiFailure::new(ErrorCode::Internal, "stored data is unreadable")
            }
            _ => ApiFailure::new(
                ErrorCode::StoreUnavailable,
                "the store cannot take this request now; retry later",
            ),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ErrorBody::new(self.code, self.message))).into_response();
        let retry_after = self
            .retry_after_s
            .or((self.code == ErrorCode::StoreUnavailable).then_some(5));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
