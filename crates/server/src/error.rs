//! The error type of every handler: a stable code rendered as typed JSON.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ispeed_proto::{ErrorBody, ErrorCode};

/// A failed request: rendered as `{ "error": { "code", "message" } }`.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: ErrorCode,
    pub message: String,
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

    /// The test point is stopping; a client should try again elsewhere or later.
    pub fn shutting_down() -> Self {
        ApiFailure {
            retry_after_s: Some(SHUTDOWN_RETRY_AFTER_S),
            ..ApiFailure::new(ErrorCode::ShuttingDown, "test point is shutting down")
        }
    }
}

/// `Retry-After` of a shutting-down test point: a restart takes seconds.
const SHUTDOWN_RETRY_AFTER_S: u32 = 10;

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // Lets the metrics middleware count errors by code.
        response.extensions_mut().insert(self.code);
        response
    }
}
