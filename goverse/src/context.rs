//! [`Context`]: what a running turn knows about itself and its call chain.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::chain::CallChain;
use crate::node::NodeInner;

/// The context of one turn of an object: who it is, its deadline, and the
/// way to call other objects and to start timers.
///
/// Every object method and hook receives `ctx: &Context`. Pass it to a proxy
/// to call another object from inside a turn; the callee inherits the
/// deadline and the call chain (used to detect call cycles):
///
/// ```
/// # use goverse::prelude::*;
/// # #[derive(Default)] struct Counter { value: i32 }
/// # #[goverse::object] impl Counter {
/// #     pub async fn add(&mut self, _ctx: &Context, r: Int32Value) -> goverse::Result<Int32Value> { self.value += r.value; Ok(Int32Value { value: self.value }) }
/// # }
/// #[derive(Default)]
/// struct Totals;
///
/// #[goverse::object]
/// impl Totals {
///     pub async fn bump(&mut self, ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
///         CounterClient::new(ctx, "shared").add(request).await
///     }
/// }
/// ```
///
/// A context borrows what its turn holds (the node, the activation, the
/// call), so making one per turn costs no shared reference counts: those
/// are what many callers of one object on several cores contend for.
/// Object code names it `&Context`; the lifetime is elided.
pub struct Context<'a> {
    pub(crate) node: &'a Arc<NodeInner>,
    pub(crate) type_name: &'static str,
    pub(crate) id: &'a Arc<str>,
    /// The chain of turns waiting on this one, innermost first.
    pub(crate) parent: Option<&'a Arc<CallChain>>,
    pub(crate) deadline: Instant,
    pub(crate) scope: &'a dyn ActivationScope,
    /// The W3C trace context the call came with, if any.
    pub(crate) trace: Option<&'a Arc<str>>,
    /// The id of the reliable call this turn runs, if it is one.
    pub(crate) call_id: Option<&'a Arc<str>>,
    /// Where the turn's call came from.
    pub(crate) origin: Option<&'a Arc<crate::access::Origin>>,
    /// The turn did something outside its object (it made a caller for
    /// nested calls, or pushed): running it again would repeat that.
    pub(crate) effects: std::sync::atomic::AtomicBool,
}

impl Context<'_> {
    /// The id of the object this turn runs on.
    pub fn id(&self) -> &str {
        self.id
    }

    /// The type name of the object this turn runs on.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The id of the node hosting the object.
    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    /// When this turn's call times out; nested calls made with this context
    /// time out no later.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The W3C `traceparent` of this turn's trace, if its call is in one:
    /// when the turn is traced through OpenTelemetry (feature `otel`), one
    /// naming the turn's own span; otherwise the one its call carried.
    /// Nested calls made with this context carry it on, across nodes, and
    /// a request this turn sends elsewhere can carry it too, so their logs
    /// and spans join the caller's trace.
    pub fn traceparent(&self) -> Option<&str> {
        self.trace.map(|trace| &**trace)
    }

    /// The user this turn's call was made for, when a gate authenticated
    /// one; calls the turn makes carry it on, to any node.
    pub fn identity(&self) -> Option<&crate::access::Identity> {
        self.origin?.identity.as_ref()
    }

    /// The registered client that made this turn's call (or on whose
    /// behalf the calls before it were made), if the gate verified one.
    pub fn client_id(&self) -> Option<&str> {
        self.origin?.client_id.as_deref()
    }

    /// Whether this turn's call came straight from a client through a gate
    /// (rather than from an object or code on a node).
    pub fn is_external(&self) -> bool {
        self.origin.as_ref().is_some_and(|o| o.external)
    }

    /// Pushes `message` to client `client` (an id a gate gave it when it
    /// registered), wherever in the cluster its gate is. Messages from one
    /// object to one client arrive in the order they were pushed.
    ///
    /// # Errors
    ///
    /// `CLIENT_NOT_FOUND` when no gate holds that client (never connected,
    /// or gone past its reconnect grace); `CLIENT_OVERFLOW` when the
    /// client's buffer was full (the client is disconnected, and the drop
    /// counted); `UNAVAILABLE` when its gate's node cannot be reached.
    pub async fn push<M: crate::Message>(&self, client: &str, message: &M) -> crate::Result<()> {
        let message = crate::node::PushMessage::of(message)?;
        self.mark_effect();
        self.node.push(client, message).await
    }

    /// Pushes `message` to every client of every gate in the cluster.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when a node could not be reached (the others still
    /// got the message).
    pub async fn broadcast<M: crate::Message>(&self, message: &M) -> crate::Result<()> {
        let message = crate::node::PushMessage::of(message)?;
        self.mark_effect();
        self.node.broadcast(message).await
    }

    /// The call id of the reliable call this turn runs, if it is one. A
    /// method that makes reliable calls of its own can derive their ids
    /// from it (`format!("{id}/fee")`), so a retry of the outer call that
    /// runs again repeats none of the inner ones.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.map(|id| &**id)
    }

    /// Starts (or restarts) a timer named `name` firing every `period`.
    ///
    /// Each firing runs the object's `#[on_timer]` hook as a turn of its own
    /// (exclusive, like a `&mut self` call), with `timer` set to `name`. A
    /// timer does not keep the object active: it stops when the object
    /// deactivates, is deleted, or panics. Starting a timer with the name of
    /// a running one replaces it.
    pub fn start_timer(&self, name: &str, period: Duration) {
        self.scope.start_timer(name, period);
    }

    /// Stops the timer named `name`, if it runs. Returns whether it did.
    pub fn stop_timer(&self, name: &str) -> bool {
        self.scope.stop_timer(name)
    }

    /// The call chain a nested call from this turn carries.
    /// Notes that the turn reached outside its object.
    pub(crate) fn mark_effect(&self) {
        self.effects
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the turn reached outside its object.
    pub(crate) fn had_effects(&self) -> bool {
        self.effects.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn chain(&self) -> Arc<CallChain> {
        Arc::new(CallChain {
            type_name: self.type_name.into(),
            id: self.id.clone(),
            parent: self.parent.cloned(),
        })
    }
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("type_name", &self.type_name)
            .field("id", &self.id)
            .field("node", &self.node.id())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What a context can do to the activation it runs on.
pub(crate) trait ActivationScope: Send + Sync {
    fn start_timer(&self, name: &str, period: Duration);
    fn stop_timer(&self, name: &str) -> bool;
}
