//! The stable error codes: one type for every code goverse gives, on a
//! node, through a peer, through the gate and in `Client`.

use std::borrow::Cow;
use std::fmt;

/// The stable, machine-readable code of an error.
///
/// Its string form ([`as_str`](Code::as_str)) is what travels: in the
/// `code` field of the gate's JSON errors, in the `goverse-code` gRPC
/// metadata, between nodes, and in metrics labels. It never changes meaning.
/// A code read back from the wire is the same variant as the code of the
/// local error, so a `match` on [`Error::code`](crate::Error::code) behaves
/// the same whether the object ran on this node or another.
///
/// # Examples
///
/// ```
/// use goverse::{Code, Error};
///
/// let error = Error::application("INSUFFICIENT_FUNDS", "balance is 3");
/// match error.code() {
///     Code::Application(code) if code == "INSUFFICIENT_FUNDS" => {}
///     Code::Unavailable | Code::Overloaded => unreachable!("worth a retry"),
///     other => unreachable!("{other}"),
/// }
/// assert_eq!(Code::parse("NODE_SHUTTING_DOWN"), Code::NodeShuttingDown);
/// assert_eq!(Code::NodeShuttingDown, "NODE_SHUTTING_DOWN");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `UNKNOWN_OBJECT_TYPE`: no object type with this name is registered.
    UnknownObjectType,
    /// `UNKNOWN_METHOD`: the object type has no method with this name.
    UnknownMethod,
    /// `INVALID_OBJECT_ID`: the object id is empty or malformed.
    InvalidObjectId,
    /// `DEADLINE_EXCEEDED`: the call did not finish before its deadline.
    DeadlineExceeded,
    /// `CALL_CYCLE`: the call would re-enter an object waiting on its own call chain.
    CallCycle,
    /// `METHOD_PANICKED`: the object's method panicked.
    MethodPanicked,
    /// `ACTIVATION_FAILED`: the object could not be activated.
    ActivationFailed,
    /// `INVALID_JSON`: a request was not valid JSON for its message.
    InvalidJson,
    /// `INVALID_PROTOBUF`: a request was not a valid protobuf message of its type.
    InvalidProtobuf,
    /// `ENCODE_FAILED`: a response could not be encoded.
    EncodeFailed,
    /// `STORAGE_ERROR`: the storage backend failed or refused a write.
    StorageError,
    /// `STALE_OWNER`: a newer owner of the object's shard has written since.
    StaleOwner,
    /// `INVALID_STATE`: an object's state cannot be stored as it is.
    InvalidState,
    /// `OVERLOADED`: the node, the object or the gate takes no more calls now.
    Overloaded,
    /// `NODE_SHUTTING_DOWN`: the node is shutting down.
    NodeShuttingDown,
    /// `UNAVAILABLE`: no node can serve the object right now.
    Unavailable,
    /// `SHARD_MOVED`: the node asked does not serve the object's shard.
    ShardMoved,
    /// `INVALID_CONFIG`: a configuration is invalid or disagrees with the cluster's.
    InvalidConfig,
    /// `INVALID_CALL_ID`: a reliable call's id is empty or too long.
    InvalidCallId,
    /// `CALL_ID_REUSED`: a reliable call id was used for another method.
    CallIdReused,
    /// `NOT_PERSISTENT`: reliable calls need a persistent object type.
    NotPersistent,
    /// `ACCESS_DENIED`: the access rules refuse this call.
    AccessDenied,
    /// `CLIENT_NOT_FOUND`: no connected client has this id.
    ClientNotFound,
    /// `CLIENT_OVERFLOW`: the client read its pushes too slowly and was disconnected.
    ClientOverflow,
    /// `INTERNAL`: a broken invariant inside goverse.
    Internal,
    /// `OTHER`: an error from the object's own code that is not an
    /// application code ([`Error::other`](crate::Error::other)).
    Other,
    /// `UNAUTHENTICATED` (gate): the request's credentials are missing or wrong.
    Unauthenticated,
    /// `RATE_LIMITED` (gate): the caller sends faster than its limit.
    RateLimited,
    /// `REQUEST_TIMEOUT` (gate): the request body did not arrive in time.
    RequestTimeout,
    /// `BODY_TOO_LARGE` (gate): the request body is over the limit.
    BodyTooLarge,
    /// `INVALID_PATH` (gate): the URL path does not name a call.
    InvalidPath,
    /// `INVALID_BODY` (gate): the request body could not be read.
    InvalidBody,
    /// `INVALID_BASE64` (gate): the `request` field is not base64.
    InvalidBase64,
    /// `UNSUPPORTED_MEDIA_TYPE` (gate): a POST's body is not JSON.
    UnsupportedMediaType,
    /// `METHOD_NOT_ALLOWED` (gate): the HTTP method is not allowed on the route.
    MethodNotAllowed,
    /// `NOT_FOUND` (gate): no such route.
    NotFound,
    /// `SESSION_TAKEN_OVER` (gate): another connection resumed this push session.
    SessionTakenOver,
    /// A code chosen by an object's author
    /// ([`Error::application`](crate::Error::application)), such as
    /// `INSUFFICIENT_FUNDS`; also any code this version does not know.
    Application(Cow<'static, str>),
}

/// Every built-in code with its string form, in one table: `as_str` and
/// `parse` are both read from it, so they cannot disagree.
pub(crate) const BUILT_IN: [(Code, &str); 37] = [
    (Code::UnknownObjectType, "UNKNOWN_OBJECT_TYPE"),
    (Code::UnknownMethod, "UNKNOWN_METHOD"),
    (Code::InvalidObjectId, "INVALID_OBJECT_ID"),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (Code::CallCycle, "CALL_CYCLE"),
    (Code::MethodPanicked, "METHOD_PANICKED"),
    (Code::ActivationFailed, "ACTIVATION_FAILED"),
    (Code::InvalidJson, "INVALID_JSON"),
    (Code::InvalidProtobuf, "INVALID_PROTOBUF"),
    (Code::EncodeFailed, "ENCODE_FAILED"),
    (Code::StorageError, "STORAGE_ERROR"),
    (Code::StaleOwner, "STALE_OWNER"),
    (Code::InvalidState, "INVALID_STATE"),
    (Code::Overloaded, "OVERLOADED"),
    (Code::NodeShuttingDown, "NODE_SHUTTING_DOWN"),
    (Code::Unavailable, "UNAVAILABLE"),
    (Code::ShardMoved, "SHARD_MOVED"),
    (Code::InvalidConfig, "INVALID_CONFIG"),
    (Code::InvalidCallId, "INVALID_CALL_ID"),
    (Code::CallIdReused, "CALL_ID_REUSED"),
    (Code::NotPersistent, "NOT_PERSISTENT"),
    (Code::AccessDenied, "ACCESS_DENIED"),
    (Code::ClientNotFound, "CLIENT_NOT_FOUND"),
    (Code::ClientOverflow, "CLIENT_OVERFLOW"),
    (Code::Internal, "INTERNAL"),
    (Code::Other, "OTHER"),
    (Code::Unauthenticated, "UNAUTHENTICATED"),
    (Code::RateLimited, "RATE_LIMITED"),
    (Code::RequestTimeout, "REQUEST_TIMEOUT"),
    (Code::BodyTooLarge, "BODY_TOO_LARGE"),
    (Code::InvalidPath, "INVALID_PATH"),
    (Code::InvalidBody, "INVALID_BODY"),
    (Code::InvalidBase64, "INVALID_BASE64"),
    (Code::UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (Code::MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (Code::NotFound, "NOT_FOUND"),
    (Code::SessionTakenOver, "SESSION_TAKEN_OVER"),
];

impl Code {
    /// The stable string form, as it travels.
    pub fn as_str(&self) -> &str {
        if let Code::Application(code) = self {
            return code;
        }
        BUILT_IN
            .iter()
            .find(|(code, _)| code == self)
            .map_or("INTERNAL", |(_, name)| name)
    }

    /// The code a string stands for: a built-in variant for a built-in
    /// code, [`Code::Application`] for any other.
    pub fn parse(code: &str) -> Code {
        Self::built_in(code).unwrap_or_else(|| Code::Application(Cow::Owned(code.to_string())))
    }

    /// Like [`parse`](Code::parse), keeping a `'static` string unallocated.
    pub(crate) fn from_static(code: Cow<'static, str>) -> Code {
        Self::built_in(&code).unwrap_or(Code::Application(code))
    }

    fn built_in(code: &str) -> Option<Code> {
        BUILT_IN
            .iter()
            .find(|(_, name)| *name == code)
            .map(|(code, _)| code.clone())
    }

    /// The HTTP status the gate answers with.
    ///
    /// | status | codes |
    /// | --- | --- |
    /// | 400 | `INVALID_OBJECT_ID`, `INVALID_JSON`, `INVALID_PROTOBUF`, `INVALID_CALL_ID`, `NOT_PERSISTENT`, `INVALID_PATH`, `INVALID_BODY`, `INVALID_BASE64` |
    /// | 401 | `UNAUTHENTICATED` |
    /// | 403 | `ACCESS_DENIED` |
    /// | 404 | `UNKNOWN_OBJECT_TYPE`, `UNKNOWN_METHOD`, `CLIENT_NOT_FOUND`, `NOT_FOUND` |
    /// | 405 | `METHOD_NOT_ALLOWED` |
    /// | 408 | `REQUEST_TIMEOUT` |
    /// | 409 | `CALL_CYCLE`, `CALL_ID_REUSED`, `SESSION_TAKEN_OVER` |
    /// | 413 | `BODY_TOO_LARGE` |
    /// | 415 | `UNSUPPORTED_MEDIA_TYPE` |
    /// | 422 | `INVALID_STATE`, an application's own code |
    /// | 429 | `RATE_LIMITED` |
    /// | 500 | `METHOD_PANICKED`, `ACTIVATION_FAILED`, `ENCODE_FAILED`, `INVALID_CONFIG`, `INTERNAL`, `OTHER` |
    /// | 503 | `UNAVAILABLE`, `NODE_SHUTTING_DOWN`, `SHARD_MOVED`, `STORAGE_ERROR`, `STALE_OWNER`, `CLIENT_OVERFLOW`, `OVERLOADED` |
    /// | 504 | `DEADLINE_EXCEEDED` |
    pub fn http_status(&self) -> u16 {
        use Code::*;
        match self {
            InvalidObjectId | InvalidJson | InvalidProtobuf | InvalidCallId | NotPersistent
            | InvalidPath | InvalidBody | InvalidBase64 => 400,
            Unauthenticated => 401,
            AccessDenied => 403,
            UnknownObjectType | UnknownMethod | ClientNotFound | NotFound => 404,
            MethodNotAllowed => 405,
            RequestTimeout => 408,
            CallCycle | CallIdReused | SessionTakenOver => 409,
            BodyTooLarge => 413,
            UnsupportedMediaType => 415,
            InvalidState | Application(_) => 422,
            RateLimited => 429,
            MethodPanicked | ActivationFailed | EncodeFailed | InvalidConfig | Internal | Other => {
                500
            }
            Unavailable | NodeShuttingDown | ShardMoved | StorageError | StaleOwner
            | ClientOverflow | Overloaded => 503,
            DeadlineExceeded => 504,
        }
    }

    /// Whether the same call may succeed if sent again later, unchanged:
    /// the cluster was busy, moving or failing over, not the call wrong.
    ///
    /// A call that was not [reliable](crate::EncodedCall::reliable)
    /// may have taken effect before a `STORAGE_ERROR`, `UNAVAILABLE` or
    /// `DEADLINE_EXCEEDED`; send it again only if that is harmless.
    pub fn is_transient(&self) -> bool {
        use Code::*;
        matches!(
            self,
            Unavailable
                | NodeShuttingDown
                | ShardMoved
                | StorageError
                | StaleOwner
                | Overloaded
                | RateLimited
                | DeadlineExceeded
        )
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Code {
    fn from(code: &str) -> Self {
        Code::parse(code)
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_code_reads_back_as_itself() {
        for (code, name) in BUILT_IN {
            assert_eq!(code.as_str(), name);
            assert_eq!(Code::parse(name), code);
            assert!(!matches!(code, Code::Application(_)));
        }
        let names: std::collections::HashSet<_> = BUILT_IN.iter().map(|(_, n)| n).collect();
        assert_eq!(names.len(), BUILT_IN.len(), "a string given twice");
    }

    #[test]
    fn other_codes_are_the_application_s() {
        let code = Code::parse("INSUFFICIENT_FUNDS");
        assert_eq!(code, Code::Application("INSUFFICIENT_FUNDS".into()));
        assert_eq!(code.http_status(), 422);
        assert_eq!(code, "INSUFFICIENT_FUNDS");
    }
}
