//! Errors as the gate answers them: a stable code, an HTTP status, and the
//! JSON body `{"error": "...", "code": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::Code;
use crate::error::Error;

/// A failed gate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GateError {
    pub(crate) status: StatusCode,
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl GateError {
    /// An error of the gate itself (the request never reached an object),
    /// answered with the code's HTTP status.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: status_of(&code),
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_path(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidPath, message)
    }

    pub(crate) fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidBody, message)
    }
}

impl From<Error> for GateError {
    fn from(error: Error) -> Self {
        let (code, own_message) = error.to_wire();
        let message = match safe_message(&code) {
            // What the cluster knows of its insides (database errors,
            // panic payloads, node ids and addresses, other objects on a
            // call chain) stays in the gate's log; the client gets its code
            // and a message that says what to do.
            Some(safe) => {
                if code.http_status() == 500 || code == Code::StorageError {
                    tracing::warn!(code = %code, %error, "a call failed");
                } else {
                    tracing::debug!(code = %code, %error, "a call failed");
                }
                safe.to_string()
            }
            None => own_message,
        };
        Self::new(code, message)
    }
}

/// The message an external client gets for an error whose own message
/// speaks of the cluster's insides; `None` where the message is the
/// client's business (its request, its object, its application).
fn safe_message(code: &Code) -> Option<&'static str> {
    Some(match code {
        Code::StorageError => "the object's state could not be loaded or stored; try again",
        Code::StaleOwner => {
            "the object moved while the call ran, and the call took no effect; try again"
        }
        Code::MethodPanicked => "the object's method failed unexpectedly",
        Code::Other => "the object's method failed",
        Code::ActivationFailed => "the object could not be activated",
        Code::Internal => "an internal error occurred",
        Code::InvalidConfig => "the service is not configured to serve this call",
        Code::Unavailable => "no node can serve the object right now; try again",
        Code::ShardMoved => "the object is moving; try again",
        Code::CallCycle => {
            "the call would re-enter an object that is waiting on its own call chain"
        }
        Code::DeadlineExceeded => "the call did not finish in time",
        _ => return None,
    })
}

/// The HTTP status of a code ([`Code::http_status`]).
pub(crate) fn status_of(code: &Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for GateError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code.as_str() });
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
                Error::from_wire(Code::parse("INSUFFICIENT_FUNDS"), "balance is 3".into()),
                422,
            ),
            (Error::from_wire(Code::DeadlineExceeded, "late".into()), 504),
            (Error::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(
                GateError::from(error.clone()).status.as_u16(),
                status,
                "{error:?}"
            );
        }
        let gate = GateError::from(Error::application("INSUFFICIENT_FUNDS", "balance is 3"));
        assert_eq!(
            (gate.code.as_str(), gate.message.as_str()),
            ("INSUFFICIENT_FUNDS", "balance is 3")
        );
    }
}
