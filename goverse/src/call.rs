//! The caller side of a call: [`Caller`], [`IntoCaller`] and the typed
//! [`ObjectRef`] that every generated proxy wraps.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::chain::{CallChain, CallMeta, valid_traceparent};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::{Codec, Message, decode};
use crate::node::{Node, NodeInner};
use crate::object::{Invoke, InvokeMut, InvokeRef, Object};

/// Where calls made through a proxy come from: a node, or an object's turn.
///
/// Obtained through [`IntoCaller`]; proxies keep one and it is cheap to clone.
#[derive(Clone)]
pub struct Caller {
    pub(crate) target: Target,
    /// The chain of turns waiting on calls made through this caller.
    pub(crate) chain: Option<Arc<CallChain>>,
    /// The deadline inherited from the calling turn.
    pub(crate) deadline: Option<Instant>,
    /// The W3C trace context calls carry.
    pub(crate) trace: Option<Arc<str>>,
    /// Where the calls come from (`None`: code on a node).
    pub(crate) origin: Option<Arc<crate::access::Origin>>,
}

impl Caller {
    /// What calls made through this caller carry.
    pub(crate) fn meta(&self) -> CallMeta {
        CallMeta {
            chain: self.chain.clone(),
            trace: self.trace.clone(),
            origin: self.origin.clone(),
        }
    }

    /// The same caller, with calls carrying the W3C trace context
    /// `traceparent` (`00-<trace id>-<parent id>-<flags>`), as received
    /// from an incoming request. Objects see it as
    /// [`Context::traceparent`], and their nested calls carry it on.
    ///
    /// A value that is not 55 printable ASCII characters in four
    /// `-`-separated fields is ignored.
    pub fn with_traceparent(mut self, traceparent: &str) -> Self {
        self.trace = valid_traceparent(traceparent).then(|| Arc::from(traceparent));
        self
    }
}

/// Where a caller's calls go.
#[derive(Clone)]
pub(crate) enum Target {
    /// Routed by a node of the cluster (or embedded).
    Node(Arc<NodeInner>),
    /// Sent to a gate by a client outside the cluster.
    #[cfg(feature = "client")]
    Gate(Arc<crate::client::ClientInner>),
}

/// What [`ObjectRef::create`] and [`ObjectRef::delete`] ask of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Create,
    Delete,
}

/// When a call must be answered by, and when it arrived (which stamps the
/// object's idle clock).
#[derive(Clone, Copy)]
pub(crate) struct Due {
    pub(crate) deadline: Instant,
    pub(crate) arrived: Instant,
}

/// The request of a call by name: its encoding, its body, and the id that
/// makes it reliable, if any.
pub(crate) struct EncodedRequest {
    pub(crate) codec: Codec,
    pub(crate) body: Vec<u8>,
    pub(crate) reliable: Option<Arc<str>>,
}

/// The request of a typed call: the method's number, its entry point, and
/// the request message.
pub(crate) struct TypedRequest<O, Req, Resp> {
    pub(crate) method: usize,
    pub(crate) invoke: Invoke<O, Req, Resp>,
    pub(crate) request: Req,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field(
                "via",
                &match &self.target {
                    Target::Node(node) => node.id().to_string(),
                    #[cfg(feature = "client")]
                    Target::Gate(_) => "a gate".to_string(),
                },
            )
            .field("chain", &self.chain.as_ref().map(|c| c.render()))
            .finish_non_exhaustive()
    }
}

/// Anything a proxy can call through: `&Node`, an object's `&Context`, or a
/// [`Caller`].
#[diagnostic::on_unimplemented(
    message = "cannot call objects through `{Self}`",
    note = "proxies are created from a `&goverse::Node`, an object's `&goverse::Context`, or a `goverse::Caller`"
)]
pub trait IntoCaller {
    /// Converts into a [`Caller`].
    fn into_caller(self) -> Caller;
}

impl IntoCaller for &Node {
    fn into_caller(self) -> Caller {
        Caller {
            target: Target::Node(self.inner.clone()),
            chain: None,
            deadline: None,
            trace: None,
            origin: None,
        }
    }
}

impl IntoCaller for &Context<'_> {
    fn into_caller(self) -> Caller {
        self.mark_effect();
        Caller {
            target: Target::Node(self.node.clone()),
            chain: Some(self.chain()),
            deadline: Some(self.deadline),
            trace: self.trace.cloned(),
            origin: crate::access::Origin::nested(self.origin),
        }
    }
}

impl IntoCaller for Caller {
    fn into_caller(self) -> Caller {
        self
    }
}

impl IntoCaller for &Caller {
    fn into_caller(self) -> Caller {
        self.clone()
    }
}

/// A call by name with an encoded request, for [`Node::call`]: what gates
/// and tools send when they know an object type only by its name.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use goverse::{Codec, EncodedCall};
///
/// let call = EncodedCall::new("Wallet", "alice", "Deposit", Codec::Json, b"5".to_vec())
///     .timeout(Duration::from_secs(2))
///     .reliable("deposit-7f3a");
/// assert_eq!(call.call_id.as_deref(), Some("deposit-7f3a"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EncodedCall {
    /// The object type's name.
    pub type_name: String,
    /// The object id.
    pub id: String,
    /// The method's rpc name (`Add`) or Rust name (`add`).
    pub method: String,
    /// How `body` and the response are encoded.
    pub codec: Codec,
    /// The encoded request.
    pub body: Vec<u8>,
    /// The call's timeout (`None`: the node's default).
    pub timeout: Option<Duration>,
    /// Set for a reliable call: see [`EncodedCall::reliable`].
    pub call_id: Option<String>,
    /// Where the call comes from: set by gates.
    pub(crate) origin: Option<Arc<crate::access::Origin>>,
    /// The W3C trace context the call carries.
    pub(crate) trace: Option<Arc<str>>,
}

impl EncodedCall {
    /// A call of `method` of object `type_name/id` with an encoded request.
    pub fn new(
        type_name: impl Into<String>,
        id: impl Into<String>,
        method: impl Into<String>,
        codec: Codec,
        body: Vec<u8>,
    ) -> Self {
        Self {
            type_name: type_name.into(),
            id: id.into(),
            method: method.into(),
            codec,
            body,
            timeout: None,
            call_id: None,
            origin: None,
            trace: None,
        }
    }

    /// The same call with its own timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same call, carrying the W3C trace context `traceparent` (ignored
    /// unless well-formed): the object sees it as
    /// [`Context::traceparent`], and its nested calls carry it on.
    pub fn traceparent(mut self, traceparent: &str) -> Self {
        self.trace = valid_traceparent(traceparent).then(|| Arc::from(traceparent));
        self
    }

    /// Makes the call reliable under `call_id`, the caller's name for this
    /// one operation (unique per object, up to 256 bytes): its outcome is
    /// recorded in the same transaction as the state change it makes, and
    /// a retry with the same id, on any node, after crashes and moves,
    /// returns the recorded outcome without running the method again.
    pub fn reliable(mut self, call_id: impl Into<String>) -> Self {
        self.call_id = Some(call_id.into());
        self
    }
}

/// The longest reliable call id, in bytes.
const MAX_CALL_ID: usize = 256;

/// Checks a reliable call id.
pub(crate) fn validate_call_id(call_id: &str) -> Result<()> {
    if call_id.is_empty() {
        return Err(Error::InvalidCallId {
            reason: "a reliable call id must not be empty".into(),
        });
    }
    if call_id.len() > MAX_CALL_ID {
        return Err(Error::InvalidCallId {
            reason: format!(
                "a reliable call id is at most {MAX_CALL_ID} bytes, this one has {}",
                call_id.len()
            ),
        });
    }
    Ok(())
}

/// A typed reference to one object: what generated proxies wrap.
#[doc(hidden)]
pub struct ObjectRef<O> {
    caller: Caller,
    id: Arc<str>,
    timeout: Option<Duration>,
    /// Set on a reliable proxy: the id its calls carry.
    call_id: Option<Arc<str>>,
    _object: PhantomData<fn() -> O>,
}

impl<O> Clone for ObjectRef<O> {
    fn clone(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            id: self.id.clone(),
            timeout: self.timeout,
            call_id: self.call_id.clone(),
            _object: PhantomData,
        }
    }
}

impl<O: Object> fmt::Debug for ObjectRef<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectRef")
            .field("type", &O::DESCRIPTOR.type_name)
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("call_id", &self.call_id)
            .field("caller", &self.caller)
            .finish()
    }
}

impl<O: Object> ObjectRef<O> {
    /// A reference to object `id` of type `O`, called through `via`.
    pub fn new(via: impl IntoCaller, id: String) -> Self {
        Self {
            caller: via.into_caller(),
            id: id.into(),
            timeout: None,
            call_id: None,
            _object: PhantomData,
        }
    }

    /// The object id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same reference with a per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same reference, making reliable calls under `call_id`.
    pub fn reliable(&self, call_id: impl Into<String>) -> Self {
        let mut reliable = self.clone();
        reliable.call_id = Some(Arc::from(call_id.into()));
        reliable
    }

    /// Activates the object now, without calling a method, on whichever
    /// node owns it. Creating an object that is already active is not an
    /// error.
    ///
    /// # Errors
    ///
    /// `INVALID_OBJECT_ID`, `ACTIVATION_FAILED`, `DEADLINE_EXCEEDED`,
    /// `NODE_SHUTTING_DOWN`, `UNKNOWN_OBJECT_TYPE` (no node of the cluster
    /// registered the type), `CALL_CYCLE` (from the object itself, or one
    /// waiting on it), and `ACCESS_DENIED` through a gate.
    pub async fn create(&self) -> Result<()> {
        self.lifecycle(Lifecycle::Create).await
    }

    /// Deactivates the object (running `on_deactivate`) and deletes its
    /// stored state, on whichever node owns it. Deleting an object that does
    /// not exist is not an error; a later call activates it afresh.
    ///
    /// # Errors
    ///
    /// As for [`create`](ObjectRef::create), and storage errors;
    /// `DEADLINE_EXCEEDED` when a turn held the object past the call
    /// timeout (the delete still happens once it ends).
    pub async fn delete(&self) -> Result<()> {
        self.lifecycle(Lifecycle::Delete).await
    }

    /// `CALL_CYCLE` when the object is already waiting on this caller's
    /// call chain: a call (or a create or delete) of it would never start.
    fn refuse_cycle(&self) -> Result<()> {
        match &self.caller.chain {
            Some(chain) if chain.contains(O::DESCRIPTOR.type_name, &self.id) => {
                Err(Error::CallCycle {
                    chain: chain.render(),
                    target: format!("{}/{}", O::DESCRIPTOR.type_name, self.id),
                })
            }
            _ => Ok(()),
        }
    }

    async fn lifecycle(&self, what: Lifecycle) -> Result<()> {
        let type_name = O::DESCRIPTOR.type_name;
        // A turn waiting on its own delete would wait forever.
        self.refuse_cycle()?;
        match &self.caller.target {
            Target::Node(node) => {
                let origin = self.caller.origin.clone();
                match what {
                    Lifecycle::Create => node.create(type_name, &self.id, origin).await,
                    Lifecycle::Delete => node.delete(type_name, &self.id, origin).await,
                }
            }
            #[cfg(feature = "client")]
            Target::Gate(client) => Box::pin(client.lifecycle(what, type_name, &self.id)).await,
        }
    }

    /// Calls a `&mut self` method.
    pub async fn call_mut<Req: Message, Resp: Message>(
        &self,
        method: usize,
        invoke: InvokeMut<O, Req, Resp>,
        request: Req,
    ) -> Result<Resp> {
        self.call(method, Invoke::Mut(invoke), request).await
    }

    /// Calls a `&self` method.
    pub async fn call_ref<Req: Message, Resp: Message>(
        &self,
        method: usize,
        invoke: InvokeRef<O, Req, Resp>,
        request: Req,
    ) -> Result<Resp> {
        self.call(method, Invoke::Ref(invoke), request).await
    }

    async fn call<Req: Message, Resp: Message>(
        &self,
        method: usize,
        invoke: Invoke<O, Req, Resp>,
        request: Req,
    ) -> Result<Resp> {
        #[allow(clippy::infallible_destructuring_match)]
        let node = match &self.caller.target {
            Target::Node(node) => node,
            #[cfg(feature = "client")]
            // Boxed: a call through a gate (reconnects, failover) has a
            // large future, which every node call's future would carry
            // and copy otherwise.
            Target::Gate(client) => {
                return Box::pin(client.call::<O, Req, Resp>(
                    &self.id,
                    method,
                    request,
                    self.timeout,
                    self.call_id.as_deref(),
                ))
                .await;
            }
        };
        let timeout = self.timeout.unwrap_or(node.config.call_timeout);
        let started = Instant::now();
        let deadline = match self.caller.deadline {
            Some(inherited) => inherited.min(deadline_after(started, timeout)),
            None => deadline_after(started, timeout),
        };
        let target = || {
            let name = O::DESCRIPTOR.methods.get(method).map_or("?", |m| m.name);
            format!("{}/{}.{}", O::DESCRIPTOR.type_name, self.id, name)
        };
        if deadline <= started {
            // An inherited deadline that already passed: never start the turn.
            return Err(Error::DeadlineExceeded {
                target: target(),
                timeout: Duration::ZERO,
            });
        }
        self.refuse_cycle()?;
        if let Some(call_id) = &self.call_id {
            // A reliable call is recorded encoded, so it travels encoded
            // even to a local owner.
            let name = O::DESCRIPTOR.methods.get(method).map_or("?", |m| m.name);
            // Boxed: the typed path's future stays small without it.
            let body = Box::pin(node.call_by_name(
                O::DESCRIPTOR.type_name,
                &self.id,
                name,
                EncodedRequest {
                    codec: Codec::Protobuf,
                    body: request.encode_to_vec(),
                    reliable: Some(call_id.clone()),
                },
                Due {
                    deadline,
                    arrived: started,
                },
                self.caller.meta(),
            ))
            .await?;
            return decode::<Resp>(Codec::Protobuf, &body);
        }
        node.call_typed::<O, Req, Resp>(
            &self.id,
            TypedRequest {
                method,
                invoke,
                request,
            },
            Due {
                deadline,
                arrived: started,
            },
            self.caller.meta(),
        )
        .await
    }
}

/// A call's turn, polled in the caller's task for speed. If the caller stops
/// waiting (deadline, cancellation) the turn is moved to a task of its own
/// and finishes there: a turn that has started is never cut off half-way,
/// and one that has not started yet is skipped once its deadline has passed.
pub(crate) struct Detached<'h, T: Send + 'static> {
    turn: Option<BoxFuture<'static, T>>,
    /// Borrowed: a cloned handle is a shared count every call would touch.
    runtime: &'h Handle,
}

impl<'h, T: Send + 'static> Detached<'h, T> {
    pub(crate) fn new(runtime: &'h Handle, turn: BoxFuture<'static, T>) -> Self {
        Self {
            turn: Some(turn),
            runtime,
        }
    }
}

impl<T: Send + 'static> Detached<'_, T> {
    /// Waits for the turn until `deadline`; `None` if it passed first. The
    /// timer is armed only if the turn does not finish at its first poll,
    /// which an uncontended local turn usually does.
    pub(crate) async fn within(mut self, deadline: Instant) -> Option<T> {
        let first = std::future::poll_fn(|cx| {
            // Only a step back during this very poll counts: a turn polled
            // elsewhere on this thread (a rerouted one in a task of its
            // own) may have left the mark.
            STEPPING_BACK.set(false);
            Poll::Ready(Pin::new(&mut self).poll(cx))
        })
        .await;
        match first {
            Poll::Ready(output) => Some(output),
            // The turn is done and its caller steps back: no timer. Its
            // task is already woken; it must go back to the scheduler
            // once before the turn's future is polled again, or the step
            // back would end within this very poll.
            Poll::Pending if STEPPING_BACK.take() => {
                crate::future::pending_once().await;
                Some(self.await)
            }
            Poll::Pending => tokio::time::timeout_at(deadline, self).await.ok(),
        }
    }
}

impl<T: Send + 'static> Future for Detached<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        let Some(turn) = self.turn.as_mut() else {
            return Poll::Pending;
        };
        let output = std::task::ready!(turn.as_mut().poll(cx));
        self.turn = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Detached<'_, T> {
    fn drop(&mut self) {
        if let Some(turn) = self.turn.take() {
            drop(self.runtime.spawn(turn));
        }
    }
}

/// Inline turns a thread runs in a row, at most, before their caller
/// steps back even if no caller of the same object waits: as tokio's
/// budget does for a loop over a ready channel, this keeps a loop of
/// calls from starving the worker's other tasks.
const INLINE_TURNS_IN_A_ROW: u32 = 256;

thread_local! {
    /// Set while a finished turn's caller steps back (see [`step_back`]).
    static STEPPING_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Inline turns run on this thread since a caller last stepped back.
    static INLINE_TURNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the caller of the inline turn just run on this thread steps
/// back: at once if other callers of its object wait (`crowded`), else
/// after [`INLINE_TURNS_IN_A_ROW`].
pub(crate) fn should_step_back(crowded: bool) -> bool {
    INLINE_TURNS.with(|turns| {
        let ran = turns.get() + 1;
        let step = crowded || ran >= INLINE_TURNS_IN_A_ROW;
        turns.set(if step { 0 } else { ran });
        step
    })
}

/// Puts a caller that ran a turn inline while others of the same object
/// waited for a worker behind them, as a channel round trip would have
/// put it, instead of letting it come back for turn after turn while they
/// wait (see [`Detached::within`], which sees it step back).
pub(crate) async fn step_back() {
    STEPPING_BACK.set(true);
    crate::future::requeue().await;
}

/// The longest a call may be given: longer timeouts are cut to it, so no
/// timeout a caller passes can overflow a deadline.
pub(crate) const LONGEST_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `start + timeout`, with `timeout` cut to [`LONGEST_TIMEOUT`].
pub(crate) fn deadline_after(
    start: tokio::time::Instant,
    timeout: Duration,
) -> tokio::time::Instant {
    start + timeout.min(LONGEST_TIMEOUT)
}

/// Refuses a duration setting that is zero or past [`LONGEST_TIMEOUT`]
/// (`INVALID_CONFIG`): a zero one spins, a huge one overflows deadlines.
pub(crate) fn check_duration(what: &str, value: Duration) -> crate::Result<()> {
    if value.is_zero() || value > LONGEST_TIMEOUT {
        return Err(crate::Error::Config(format!(
            "the {what} must be above zero and at most a year, not {value:?}"
        )));
    }
    Ok(())
}
