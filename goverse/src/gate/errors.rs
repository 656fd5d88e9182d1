//! Errors as the gate answers them: a stable code, an HTTP status, and the
//! JSON body `{"error": "...", "code": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// A failed gate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GateError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl GateError {
    /// An error of the gate itself (the request never reached an object).
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid_path(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PATH", message)
    }

    pub(crate) fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_BODY", message)
    }
}

impl From<Error> for GateError {
    fn from(error: Error) -> Self {
        let code = error.code().to_string();
        let message = match &error {
            Error::Application { message, .. } => message.clone(),
            Error::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            status: status_of(&error),
            code,
            message,
        }
    }
}

/// The HTTP status of a call's error, by its code.
///
/// | status | codes |
/// | --- | --- |
/// | 400 | `INVALID_OBJECT_ID`, `INVALID_JSON`, `INVALID_PROTOBUF`, `INVALID_CALL_ID`, `NOT_PERSISTENT` |
/// | 403 | `ACCESS_DENIED` |
/// | 404 | `UNKNOWN_OBJECT_TYPE`, `UNKNOWN_METHOD`, `CLIENT_NOT_FOUND` |
/// | 409 | `CALL_CYCLE`, `CALL_ID_REUSED` |
/// | 422 | `INVALID_STATE`, an application's own code (`Error::application`) |
/// | 500 | `METHOD_PANICKED`, `ACTIVATION_FAILED`, `ENCODE_FAILED`, `INVALID_CONFIG`, `INTERNAL` |
/// | 503 | `UNAVAILABLE`, `NODE_SHUTTING_DOWN`, `SHARD_MOVED`, `STORAGE_ERROR`, `STALE_OWNER`, `CLIENT_OVERFLOW` |
/// | 504 | `DEADLINE_EXCEEDED` |
pub(crate) fn status_of(error: &Error) -> StatusCode {
    if let Error::Application { .. } = error {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    match error.code() {
        "INVALID_OBJECT_ID" | "INVALID_JSON" | "INVALID_PROTOBUF" | "INVALID_CALL_ID"
        | "NOT_PERSISTENT" => StatusCode::BAD_REQUEST,
        "UNKNOWN_OBJECT_TYPE" | "UNKNOWN_METHOD" | "CLIENT_NOT_FOUND" => StatusCode::NOT_FOUND,
        "ACCESS_DENIED" => StatusCode::FORBIDDEN,
        "CALL_CYCLE" | "CALL_ID_REUSED" => StatusCode::CONFLICT,
        "UNAVAILABLE" | "NODE_SHUTTING_DOWN" | "SHARD_MOVED" | "STORAGE_ERROR" | "STALE_OWNER"
        | "CLIENT_OVERFLOW" => StatusCode::SERVICE_UNAVAILABLE,
        "DEADLINE_EXCEEDED" => StatusCode::GATEWAY_TIMEOUT,
        "INVALID_STATE" => StatusCode::UNPROCESSABLE_ENTITY,
        "METHOD_PANICKED" | "ACTIVATION_FAILED" | "ENCODE_FAILED" | "INVALID_CONFIG"
        | "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        // An application's own code, carried back from another node.
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for GateError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        super::http::json_response(self.status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status() {
        let cases = [
            (Error::NodeShuttingDown, 503),
            (
                Error::UnknownType {
                    type_name: "X".into(),
                },
                404,
            ),
            (
                Error::application("INSUFFICIENT_FUNDS", "balance is 3"),
                422,
            ),
            (
                Error::Remote {
                    code: "INSUFFICIENT_FUNDS".into(),
                    message: "balance is 3".into(),
                },
                422,
            ),
            (
                Error::Remote {
                    code: "DEADLINE_EXCEEDED".into(),
                    message: "late".into(),
                },
                504,
            ),
            (Error::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error).as_u16(), status, "{error:?}");
        }
        let gate = GateError::from(Error::application("INSUFFICIENT_FUNDS", "balance is 3"));
        assert_eq!(
            (gate.code.as_str(), gate.message.as_str()),
            ("INSUFFICIENT_FUNDS", "balance is 3")
        );
    }
}
