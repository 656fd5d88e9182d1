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
        let message = match (&error, safe_message(&code)) {
            (Error::Application { message, .. }, _) => message.clone(),
            // What the cluster knows of its insides (database errors,
            // panic payloads, node ids and addresses, other objects on a
            // call chain) stays in the gate's log; the client gets its code
            // and a message that says what to do.
            (_, Some(safe)) => {
                if matches!(
                    code.as_str(),
                    "STORAGE_ERROR"
                        | "METHOD_PANICKED"
                        | "ACTIVATION_FAILED"
                        | "INTERNAL"
                        | "INVALID_CONFIG"
                ) {
                    tracing::warn!(code = %code, %error, "a call failed");
                } else {
                    tracing::debug!(code = %code, %error, "a call failed");
                }
                safe.to_string()
            }
            (Error::Remote { message, .. }, None) => message.clone(),
            (other, None) => other.to_string(),
        };
        Self {
            status: status_of(&error),
            code,
            message,
        }
    }
}

/// The message an external client gets for an error whose own message
/// speaks of the cluster's insides; `None` where the message is the
/// client's business (its request, its object, its application).
fn safe_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "STORAGE_ERROR" => "the object's state could not be loaded or stored; try again",
        "STALE_OWNER" => {
            "the object moved while the call ran, and the call took no effect; try again"
        }
        "METHOD_PANICKED" => "the object's method failed unexpectedly",
        "ACTIVATION_FAILED" => "the object could not be activated",
        "INTERNAL" => "an internal error occurred",
        "INVALID_CONFIG" => "the service is not configured to serve this call",
        "UNAVAILABLE" => "no node can serve the object right now; try again",
        "SHARD_MOVED" => "the object is moving; try again",
        "CALL_CYCLE" => "the call would re-enter an object that is waiting on its own call chain",
        "DEADLINE_EXCEEDED" => "the call did not finish in time",
        _ => return None,
    })
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
/// | 503 | `UNAVAILABLE`, `NODE_SHUTTING_DOWN`, `SHARD_MOVED`, `STORAGE_ERROR`, `STALE_OWNER`, `CLIENT_OVERFLOW`, `OVERLOADED` |
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
        | "CLIENT_OVERFLOW" | "OVERLOADED" => StatusCode::SERVICE_UNAVAILABLE,
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
