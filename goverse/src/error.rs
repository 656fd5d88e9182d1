//! The one error type of goverse, with a stable machine-readable code per kind.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::code::Code;

/// `Result` with [`Error`] as the error type; the return type of every object method.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call, with a stable [`code`](Error::code).
///
/// The codes are part of the public contract: the gate returns them to
/// clients, metrics label by them, and they never change meaning. Messages
/// are for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object type with this name is registered on the node.
    #[error("unknown object type `{type_name}`")]
    UnknownType {
        /// The type name that was asked for.
        type_name: String,
    },
    /// The object type has no method with this name.
    #[error("object type `{type_name}` has no method `{method}`")]
    UnknownMethod {
        /// The object type.
        type_name: String,
        /// The method name that was asked for.
        method: String,
    },
    /// The object id is empty or malformed.
    #[error("invalid object id `{id}`: {reason}")]
    InvalidObjectId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: Cow<'static, str>,
    },
    /// The call did not finish before its deadline.
    #[error("call to {target} did not finish within {timeout:?}")]
    DeadlineExceeded {
        /// `Type/id.Method` of the call.
        target: String,
        /// The time the call had.
        timeout: Duration,
    },
    /// The call would wait on an object that is already waiting on this call
    /// chain (A -> B -> A); goverse does not allow call-chain reentrancy.
    #[error(
        "call cycle: {chain} -> {target}; an object cannot be re-entered while it waits on its own call chain"
    )]
    CallCycle {
        /// The objects on the current call chain, outermost first.
        chain: String,
        /// The object the cycle would re-enter.
        target: String,
    },
    /// The object's method panicked; the activation was discarded.
    #[error("{target} panicked: {message}")]
    MethodPanicked {
        /// `Type/id.Method` of the call.
        target: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The object could not be activated (its `on_activate` hook or state load failed).
    #[error("activation of {target} failed: {source}")]
    ActivationFailed {
        /// `Type/id` of the object.
        target: String,
        /// The underlying error.
        source: Box<Error>,
    },
    /// A request body could not be decoded.
    #[error("cannot decode {message_type} as {codec}: {reason}")]
    InvalidRequest {
        /// Full protobuf name of the expected message.
        message_type: &'static str,
        /// `protobuf` or `json`.
        codec: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A response could not be encoded.
    #[error("cannot encode {message_type}: {reason}")]
    Encode {
        /// Full protobuf name of the message.
        message_type: &'static str,
        /// What the encoder said.
        reason: String,
    },
    /// The storage backend failed or refused a write.
    #[error("storage: {0}")]
    Storage(String),
    /// A write was refused because a newer owner of the object's shard has
    /// written since: this node lost ownership (fencing).
    #[error(
        "stale owner: write to {target} at epoch {epoch} refused, the object was written at epoch {current}"
    )]
    StaleOwner {
        /// `Type/id` of the object.
        target: String,
        /// The epoch of the refused write.
        epoch: u64,
        /// The epoch of the newest write.
        current: u64,
    },
    /// A persistent object's state cannot be stored as it is: a string
    /// holds U+0000 (which PostgreSQL's `jsonb` refuses), or its serde
    /// form does not load back (a float that is NaN or infinite is written
    /// as `null`). The call that made the state fails; the object keeps its
    /// last stored state, and other objects' writes are not affected.
    #[error("the state of {target} cannot be stored: {reason}")]
    InvalidState {
        /// `Type/id` of the object.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node, or the object, has as many calls waiting as it takes:
    /// try again later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The node is shutting down and takes no new calls.
    #[error("node is shutting down")]
    NodeShuttingDown,
    /// No node can serve this object right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node asked does not serve the object's shard (it is moving, or
    /// the caller's view of the cluster is older); the router retries.
    #[error("shard {shard} is not served by node `{node}`")]
    ShardMoved {
        /// The shard.
        shard: u32,
        /// The node that refused.
        node: String,
    },
    /// The node's configuration disagrees with the cluster's, or is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An error raised on another node (or a gate), carried back with its
    /// code, where no variant of its own holds what the wire carries.
    #[error("{message}")]
    Remote {
        /// The code the other node gave.
        code: Code,
        /// Its message.
        message: String,
    },
    /// An error returned by an object's own code, with the object's own code.
    #[error("{code}: {message}")]
    Application {
        /// A stable code chosen by the object's author, e.g. `INSUFFICIENT_FUNDS`.
        code: Cow<'static, str>,
        /// A message for people.
        message: String,
    },
    /// A reliable call's id is empty or too long.
    #[error("invalid call id: {reason}")]
    InvalidCallId {
        /// Why it was rejected.
        reason: String,
    },
    /// A reliable call id was used again, on the same object, for another
    /// method than the one it first ran.
    #[error("call id `{call_id}` of {target} already ran method `{recorded}`")]
    CallIdReused {
        /// The call id.
        call_id: String,
        /// `Type/id.Method` of the call being made.
        target: String,
        /// The method the call id ran first.
        recorded: String,
    },
    /// Reliable calls record their outcome with the object's state, so they
    /// are only offered on persistent object types.
    #[error("reliable calls need a persistent object type; `{type_name}` is not persistent")]
    NotPersistent {
        /// The object type.
        type_name: String,
    },
    /// The access rules do not let this caller make this call.
    #[error("access denied: {message}")]
    AccessDenied {
        /// What was refused, and which rule refused it.
        message: String,
    },
    /// No connected (or resumable) client has this id.
    #[error("no client `{client}` is connected")]
    ClientNotFound {
        /// The client id.
        client: String,
    },
    /// The client reads its pushes too slowly: its buffer filled, so it was
    /// disconnected and what it had not read was dropped (and counted).
    #[error("client `{client}` fell behind by {buffered} messages and was disconnected")]
    ClientOverflow {
        /// The client id.
        client: String,
        /// The messages it had not read.
        buffered: usize,
    },
    /// A broken invariant inside goverse; please report it.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error from an object's own code that has no application code of
    /// its own, such as an I/O error ([`Error::other`]). Its display and
    /// source are the wrapped error's.
    #[error(transparent)]
    Other(OtherError),
}

/// The error inside [`Error::Other`], shared so that [`Error`] stays `Clone`.
#[derive(Clone)]
pub struct OtherError(Arc<dyn std::error::Error + Send + Sync>);

impl OtherError {
    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for OtherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for OtherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for OtherError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two wrapped errors are equal when they are the same error.
impl PartialEq for OtherError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OtherError {}

/// An I/O error in an object's method, returned with `?`: [`Error::other`].
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::other(error)
    }
}

impl Error {
    /// The stable machine-readable code of this error; the same for an
    /// error raised on this node and for one carried back from another.
    ///
    /// # Examples
    ///
    /// ```
    /// use goverse::{Code, Error};
    ///
    /// let error = Error::application("INSUFFICIENT_FUNDS", "balance is 3");
    /// assert_eq!(error.code(), "INSUFFICIENT_FUNDS");
    /// assert_eq!(Error::NodeShuttingDown.code(), Code::NodeShuttingDown);
    /// ```
    pub fn code(&self) -> Code {
        match self {
            Error::UnknownType { .. } => Code::UnknownObjectType,
            Error::UnknownMethod { .. } => Code::UnknownMethod,
            Error::InvalidObjectId { .. } => Code::InvalidObjectId,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::CallCycle { .. } => Code::CallCycle,
            Error::MethodPanicked { .. } => Code::MethodPanicked,
            Error::ActivationFailed { .. } => Code::ActivationFailed,
            Error::InvalidRequest { codec: "json", .. } => Code::InvalidJson,
            Error::InvalidRequest { .. } => Code::InvalidProtobuf,
            Error::Encode { .. } => Code::EncodeFailed,
            Error::Storage(_) => Code::StorageError,
            Error::StaleOwner { .. } => Code::StaleOwner,
            Error::InvalidState { .. } => Code::InvalidState,
            Error::Overloaded(_) => Code::Overloaded,
            Error::NodeShuttingDown => Code::NodeShuttingDown,
            Error::Unavailable(_) => Code::Unavailable,
            Error::ShardMoved { .. } => Code::ShardMoved,
            Error::Config(_) => Code::InvalidConfig,
            Error::Remote { code, .. } => code.clone(),
            Error::Application { code, .. } => Code::from_static(code.clone()),
            Error::InvalidCallId { .. } => Code::InvalidCallId,
            Error::CallIdReused { .. } => Code::CallIdReused,
            Error::NotPersistent { .. } => Code::NotPersistent,
            Error::AccessDenied { .. } => Code::AccessDenied,
            Error::ClientNotFound { .. } => Code::ClientNotFound,
            Error::ClientOverflow { .. } => Code::ClientOverflow,
            Error::Internal(_) => Code::Internal,
            Error::Other(_) => Code::Other,
        }
    }

    /// An error from an object's own code that has no stable code of its
    /// own: an I/O error, a failed task, a library's error. Its code is
    /// [`Code::Other`]; [`source`](std::error::Error::source) and
    /// [`get_ref`](OtherError::get_ref) reach the wrapped error. The gate
    /// does not show its message to external clients.
    ///
    /// # Examples
    ///
    /// ```
    /// use goverse::{Code, Error};
    ///
    /// let error = Error::other(std::io::Error::other("disk full"));
    /// assert_eq!(error.code(), Code::Other);
    /// assert_eq!(error.to_string(), "disk full");
    /// ```
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Other(OtherError(Arc::from(error.into())))
    }

    /// The error as it travels: its code, and a message from which
    /// [`from_wire`](Error::from_wire) rebuilds the variant where the code
    /// names one that holds only a message.
    pub(crate) fn to_wire(&self) -> (Code, String) {
        let message = match self {
            Error::Application { message, .. }
            | Error::Remote { message, .. }
            | Error::Storage(message)
            | Error::Overloaded(message)
            | Error::Unavailable(message)
            | Error::Config(message)
            | Error::Internal(message)
            | Error::AccessDenied { message } => message.clone(),
            other => other.to_string(),
        };
        (self.code(), message)
    }

    /// The error a peer or gate sent: the variant the code names where it
    /// holds only a message (so `matches!(error, Error::Unavailable(_))` or
    /// `Error::Application { .. }` holds for a remote object as for a local
    /// one), [`Error::Remote`] with the code for the others.
    pub(crate) fn from_wire(code: Code, message: String) -> Self {
        match code {
            Code::Application(code) => Error::Application { code, message },
            Code::StorageError => Error::Storage(message),
            Code::Overloaded => Error::Overloaded(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::InvalidConfig => Error::Config(message),
            Code::Internal => Error::Internal(message),
            Code::AccessDenied => Error::AccessDenied { message },
            Code::NodeShuttingDown => Error::NodeShuttingDown,
            code => Error::Remote { code, message },
        }
    }

    /// An error raised by an object's own logic, with its own stable code.
    ///
    /// # Examples
    ///
    /// ```
    /// fn withdraw(balance: i64, amount: i64) -> goverse::Result<i64> {
    ///     if amount > balance {
    ///         return Err(goverse::Error::application("INSUFFICIENT_FUNDS", format!("balance is {balance}")));
    ///     }
    ///     Ok(balance - amount)
    /// }
    /// assert_eq!(withdraw(3, 5).unwrap_err().code(), "INSUFFICIENT_FUNDS");
    /// ```
    pub fn application(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Application {
            code: code.into(),
            message: message.into(),
        }
    }
}
