//! Routing: every call goes to the node that owns its object's shard. A
//! local owner runs the turn in the caller's task; a remote one gets the
//! call on its multiplexed stream. While a shard moves (or has no owner
//! yet) the call waits for the cluster view to change and tries again,
//! within its deadline, so callers see no errors during moves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::NodeInner;
use super::host::{ActivateWork, EncodedWork, Turn, TurnCall, TypedWork};
use crate::access::Origin;
use crate::call::{Detached, Due, EncodedCall, EncodedRequest, TypedRequest, validate_call_id};
use crate::chain::CallMeta;
use crate::cluster::{ClusterView, NodeInfo};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::{Codec, Message, decode};
use crate::object::Object;
use crate::placement;
use crate::trace;
use crate::transport::proto::{CallFrame, ReplyFrame, call_frame::Kind};
use crate::transport::wire::{self, OutgoingCall};
use crate::transport::{FrameHandler, RemoteFailure, error_to_wire};

/// Where a call goes now.
enum Route {
    Local,
    Remote(NodeInfo),
    /// Nobody can take it right now (the shard is moving or unowned).
    Wait,
}

/// The retry state of one routed call.
struct Retry {
    view: Option<watch::Receiver<Arc<ClusterView>>>,
    attempt: u32,
}

impl Retry {
    fn new() -> Self {
        Self {
            view: None,
            attempt: 0,
        }
    }
}

impl NodeInner {
    /// Checks that the node takes calls and the id is valid; returns the
    /// id's shard.
    pub(crate) fn admit(&self, id: &str) -> Result<u32> {
        if self
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::NodeShuttingDown);
        }
        placement::validate_id(id, self.config.shard_count)?;
        Ok(placement::shard_for(id, self.config.shard_count))
    }

    fn route(&self, id: &str, shard: u32) -> Result<Route> {
        if shard == placement::NODE_PINNED {
            let Some(address) = placement::pinned_node(id) else {
                return Err(Error::Internal("a node-pinned id without a node".into()));
            };
            if address == &*self.address() {
                return Ok(Route::Local);
            }
            let view = self.view();
            return match view.node_at(address) {
                Some(node) => Ok(Route::Remote(node.clone())),
                None => Err(Error::Unavailable(format!(
                    "object `{id}` is pinned to node {address}, which is not in the cluster"
                ))),
            };
        }
        if self.serves(shard) {
            return Ok(Route::Local);
        }
        let view = self.view();
        Ok(match view.current_owner(shard) {
            Some(owner) if &*owner.id == self.id() => Route::Wait,
            Some(owner) => Route::Remote(owner.clone()),
            None => Route::Wait,
        })
    }

    /// Waits for the cluster view to change, or a short backoff, before the
    /// call is routed again; fails once the deadline has passed.
    async fn wait_to_reroute(
        &self,
        retry: &mut Retry,
        deadline: Instant,
        arrived: Instant,
        target: &(dyn Fn() -> String + Sync),
    ) -> Result<()> {
        if Instant::now() >= deadline {
            return Err(late(target, deadline, arrived));
        }
        let view = retry.view.get_or_insert_with(|| {
            let mut view = self.view_receiver();
            view.mark_unchanged();
            view
        });
        let pause =
            Duration::from_millis(2u64 << retry.attempt.min(7)).min(Duration::from_millis(200));
        retry.attempt += 1;
        let until = (Instant::now() + pause).min(deadline);
        tokio::select! {
            changed = view.changed() => {
                if changed.is_err() {
                    // The view will never change (an embedded node): wait
                    // out the pause rather than spin.
                    tokio::time::sleep_until(until).await;
                }
            }
            () = tokio::time::sleep_until(until) => {}
        }
        if Instant::now() >= deadline {
            return Err(late(target, deadline, arrived));
        }
        Ok(())
    }

    /// Sends `frame` to `owner` and waits for the reply: the response, or
    /// `None` when the call did not run there and must be routed again. A
    /// reliable call is also routed again when the connection dropped
    /// mid-call: whether or not it ran, its call id makes a repeat safe.
    async fn send(
        &self,
        owner: &NodeInfo,
        mut frame: CallFrame,
        deadline: Instant,
        target: &(dyn Fn() -> String + Sync),
    ) -> Result<Option<Vec<u8>>> {
        let repeatable = !frame.reliable_call_id.is_empty();
        let span = wire::traceparent_of(&frame)
            .filter(|parent| trace::wanted(Some(parent), 0.0))
            .and_then(|parent| {
                let hop = trace::Hop::Remote {
                    method: &frame.method,
                    peer: &owner.id,
                };
                hop.open(Some(&parent))
            });
        if let Some(span) = &span {
            wire::set_traceparent(&mut frame, span.child.as_deref());
        }
        let sent = self.peers.call(&owner.address, frame, deadline);
        match trace::within(span.as_ref().map(|s| &s.span), sent).await {
            Ok(body) => Ok(Some(body)),
            Err(RemoteFailure::Lost(error)) if repeatable => {
                tracing::debug!(%error, node = %owner.id, "reliable call lost with its connection; sending again");
                Ok(None)
            }
            Err(RemoteFailure::Failed(error) | RemoteFailure::Lost(error)) => {
                Err(retarget(error, target))
            }
            Err(RemoteFailure::NotRun(error)) => {
                tracing::debug!(%error, node = %owner.id, "call not taken; rerouting");
                Ok(None)
            }
        }
    }

    /// A call from a typed proxy.
    pub(crate) async fn call_typed<O: Object, Req: Message, Resp: Message>(
        self: &Arc<Self>,
        id: &Arc<str>,
        request: TypedRequest<O, Req, Resp>,
        due: Due,
        mut meta: CallMeta,
    ) -> Result<Resp> {
        if trace::wanted(meta.trace.as_ref(), self.config.trace_sampling) {
            let hop = trace::Hop::Call {
                type_name: O::DESCRIPTOR.type_name,
                method: O::DESCRIPTOR
                    .methods
                    .get(request.method)
                    .map_or("?", |m| m.name),
                id,
            };
            if let Some(mut span) = hop.open(meta.trace.as_ref()) {
                meta.trace = span.child.take();
                // Boxed: only traced calls pay for the span's state.
                let routed = Box::pin(self.route_typed(id, request, due, meta));
                return span.outcome(trace::within(Some(&span.span), routed).await);
            }
        }
        self.route_typed(id, request, due, meta).await
    }

    async fn route_typed<O: Object, Req: Message, Resp: Message>(
        self: &Arc<Self>,
        id: &Arc<str>,
        TypedRequest {
            method,
            invoke,
            request,
        }: TypedRequest<O, Req, Resp>,
        due: Due,
        meta: CallMeta,
    ) -> Result<Resp> {
        let Due { deadline, arrived } = due;
        let shard = self.admit(id)?;
        let method_name = O::DESCRIPTOR.methods.get(method).map_or("?", |m| m.name);
        let target = || format!("{}/{}.{}", O::DESCRIPTOR.type_name, id, method_name);
        let mut work = TypedWork {
            method,
            invoke,
            request: Some(request),
        };
        // Moved into each local turn and handed back if the shard moved:
        // a clone per turn would touch counts every caller shares.
        let mut call = TurnCall::new(id.clone(), shard, due, meta);
        let mut retry = Retry::new();
        loop {
            match self.route(id, shard)? {
                Route::Local => {
                    let node = self.clone();
                    let turn: BoxFuture<'static, _> = Box::pin(async move {
                        match node.typed_host::<O>() {
                            Ok(host) => host.run_turn(&node, call, work).await,
                            Err(error) => Turn::Done(Err(error)),
                        }
                    });
                    match Detached::new(&self.runtime, turn).within(deadline).await {
                        None => return Err(late(&target, deadline, arrived)),
                        Some(Turn::Done(result)) => return result,
                        Some(Turn::Moved(returned, back)) => {
                            work = returned;
                            call = back;
                        }
                    }
                }
                Route::Remote(owner) => {
                    let Some(request) = work.request.as_ref() else {
                        return Err(Error::Internal("a typed call lost its request".into()));
                    };
                    let frame = wire::call_frame(OutgoingCall {
                        kind: Kind::Call,
                        object_type: O::DESCRIPTOR.type_name,
                        id,
                        method: method_name,
                        body: request.encode_to_vec(),
                        codec: Codec::Protobuf,
                        reliable: None,
                        deadline,
                        meta: &call.meta,
                    });
                    // Boxed: the send's state would otherwise make every
                    // typed call's future, local ones too, larger to move.
                    let sent = Box::pin(self.send(&owner, frame, deadline, &target));
                    if let Some(body) = sent.await? {
                        return decode::<Resp>(Codec::Protobuf, &body);
                    }
                }
                Route::Wait => {}
            }
            Box::pin(self.wait_to_reroute(&mut retry, deadline, arrived, &target)).await?;
        }
    }

    /// A call by name with an encoded body.
    pub(crate) async fn call_encoded(self: &Arc<Self>, call: EncodedCall) -> Result<Vec<u8>> {
        let arrived = Instant::now();
        let deadline =
            crate::call::deadline_after(arrived, call.timeout.unwrap_or(self.config.call_timeout));
        let reliable = call.call_id.map(Arc::<str>::from);
        self.call_by_name(
            &call.type_name,
            &call.id,
            &call.method,
            EncodedRequest {
                codec: call.codec,
                body: call.body,
                reliable,
            },
            Due { deadline, arrived },
            CallMeta {
                chain: None,
                trace: call.trace,
                origin: call.origin,
            },
        )
        .await
    }

    pub(crate) async fn call_by_name(
        self: &Arc<Self>,
        type_name: &str,
        id: &str,
        method: &str,
        request: EncodedRequest,
        due: Due,
        mut meta: CallMeta,
    ) -> Result<Vec<u8>> {
        if trace::wanted(meta.trace.as_ref(), self.config.trace_sampling) {
            let hop = trace::Hop::Call {
                type_name,
                method,
                id,
            };
            if let Some(mut span) = hop.open(meta.trace.as_ref()) {
                meta.trace = span.child.take();
                let routed = self.route_by_name(type_name, id, method, request, due, meta);
                return span.outcome(trace::within(Some(&span.span), routed).await);
            }
        }
        self.route_by_name(type_name, id, method, request, due, meta)
            .await
    }

    async fn route_by_name(
        self: &Arc<Self>,
        type_name: &str,
        id: &str,
        method: &str,
        EncodedRequest {
            codec,
            body,
            reliable,
        }: EncodedRequest,
        due: Due,
        meta: CallMeta,
    ) -> Result<Vec<u8>> {
        let Due { deadline, arrived } = due;
        let shard = self.admit(id)?;
        let _in_flight = self.enter_call()?;
        if let Some(call_id) = &reliable {
            validate_call_id(call_id)?;
        }
        let local_host = self.host_by_name(type_name);
        // The method is checked where the type is known: here if this node
        // hosts the type, otherwise by the owner.
        let (index, mutates, name) = match &local_host {
            Ok(host) => {
                let Some((index, found)) = host.descriptor().method(method) else {
                    return Err(Error::UnknownMethod {
                        type_name: type_name.to_string(),
                        method: method.chars().take(128).collect(),
                    });
                };
                (index, found.mutates, found.name)
            }
            Err(_) => (0, true, ""),
        };
        let id: Arc<str> = id.into();
        let target = || format!("{type_name}/{id}.{method}");
        let mut work = EncodedWork {
            method: index,
            mutates,
            name,
            codec,
            body,
            reliable,
            reruns: super::host::STALE_RERUNS,
        };
        let call = TurnCall::new(id.clone(), shard, due, meta);
        let mut retry = Retry::new();
        loop {
            match self.route(&id, shard)? {
                Route::Local => {
                    let host = local_host.clone()?;
                    let call = call.clone();
                    let turn = host.call_encoded(self.clone(), call, work);
                    match Detached::new(&self.runtime, turn).within(deadline).await {
                        None => return Err(late(&target, deadline, arrived)),
                        Some(Turn::Done(result)) => return result,
                        Some(Turn::Moved(returned, _)) => work = returned,
                    }
                }
                Route::Remote(owner) => {
                    let method_name = if name.is_empty() { method } else { name };
                    let frame = wire::call_frame(OutgoingCall {
                        kind: Kind::Call,
                        object_type: type_name,
                        id: &id,
                        method: method_name,
                        body: work.body.clone(),
                        codec,
                        reliable: work.reliable.as_ref(),
                        deadline,
                        meta: &call.meta,
                    });
                    if let Some(body) = self.send(&owner, frame, deadline, &target).await? {
                        return Ok(body);
                    }
                }
                Route::Wait => {}
            }
            Box::pin(self.wait_to_reroute(&mut retry, deadline, arrived, &target)).await?;
        }
    }

    /// Activates an object on its owner.
    pub(crate) async fn create(
        self: &Arc<Self>,
        type_name: &str,
        id: &str,
        origin: Option<Arc<Origin>>,
    ) -> Result<()> {
        self.lifecycle(Kind::Create, type_name, id, origin).await
    }

    /// Deactivates an object on its owner and deletes its stored state.
    pub(crate) async fn delete(
        self: &Arc<Self>,
        type_name: &str,
        id: &str,
        origin: Option<Arc<Origin>>,
    ) -> Result<()> {
        self.lifecycle(Kind::Delete, type_name, id, origin).await
    }

    /// Creates or deletes an object (`kind`) wherever it lives.
    async fn lifecycle(
        self: &Arc<Self>,
        kind: Kind,
        type_name: &str,
        id: &str,
        origin: Option<Arc<Origin>>,
    ) -> Result<()> {
        let arrived = Instant::now();
        let deadline = arrived + self.config.call_timeout;
        let shard = self.admit(id)?;
        let local_host = self.host_by_name(type_name);
        let id: Arc<str> = id.into();
        let verb = if kind == Kind::Create {
            "create"
        } else {
            "delete"
        };
        let target = || format!("{type_name}/{id}.{verb}");
        let meta = CallMeta {
            origin,
            ..CallMeta::default()
        };
        let call = TurnCall::new(id.clone(), shard, Due { deadline, arrived }, meta);
        let mut retry = Retry::new();
        loop {
            match self.route(&id, shard)? {
                Route::Local => {
                    let host = local_host.clone()?;
                    let call = call.clone();
                    // `None`: the shard left this node; route again.
                    let done: BoxFuture<'static, Option<Result<()>>> = if kind == Kind::Create {
                        let creating = host.create(self.clone(), call);
                        Box::pin(async move {
                            match creating.await {
                                Turn::Done(result) => Some(result),
                                Turn::Moved(ActivateWork, _) => None,
                            }
                        })
                    } else {
                        let deleting = host.delete(self.clone(), call);
                        Box::pin(async move {
                            match deleting.await {
                                Err(Error::ShardMoved { .. }) => None,
                                result => Some(result),
                            }
                        })
                    };
                    match Detached::new(&self.runtime, done).within(deadline).await {
                        None => return Err(late(&target, deadline, arrived)),
                        Some(Some(result)) => return result,
                        Some(None) => {}
                    }
                }
                Route::Remote(owner) => {
                    let frame = wire::call_frame(OutgoingCall {
                        kind,
                        object_type: type_name,
                        id: &id,
                        method: "",
                        body: Vec::new(),
                        codec: Codec::Protobuf,
                        reliable: None,
                        deadline,
                        meta: &call.meta,
                    });
                    if self.send(&owner, frame, deadline, &target).await?.is_some() {
                        return Ok(());
                    }
                }
                Route::Wait => {}
            }
            Box::pin(self.wait_to_reroute(&mut retry, deadline, arrived, &target)).await?;
        }
    }

    /// Serves one frame from a peer. The call is run here or refused with
    /// `SHARD_MOVED` (the caller routes again); it is never forwarded.
    async fn serve_frame(self: &Arc<Self>, mut frame: CallFrame) -> Result<Vec<u8>> {
        if frame.kind == Kind::Push as i32 || frame.kind == Kind::Broadcast as i32 {
            return self.serve_push(frame);
        }
        let _in_flight = self.enter_call()?;
        let arrived = Instant::now();
        let timeout = Duration::from_micros(frame.timeout_micros).min(Duration::from_secs(3600));
        let deadline = arrived + timeout;
        let shard = self.admit(&frame.object_id)?;
        if shard == placement::NODE_PINNED {
            if placement::pinned_node(&frame.object_id) != Some(&*self.address()) {
                return Err(Error::Unavailable(format!(
                    "object `{}` is pinned to another node",
                    frame.object_id
                )));
            }
        } else if !self.serves(shard) {
            return Err(self.moved(shard));
        }
        let host = self.host_by_name(&frame.object_type)?;
        let meta = wire::meta_of(&mut frame);
        let id: Arc<str> = frame.object_id.as_str().into();
        if let Some(chain) = &meta.chain
            && chain.contains(host.descriptor().type_name, &id)
        {
            return Err(Error::CallCycle {
                chain: chain.render(),
                target: format!("{}/{}", frame.object_type, id),
            });
        }
        let call = TurnCall::new(id, shard, Due { deadline, arrived }, meta);
        let target = || format!("{}/{}.{}", frame.object_type, frame.object_id, frame.method);
        match Kind::try_from(frame.kind).unwrap_or(Kind::Call) {
            Kind::Call => {
                let descriptor = host.descriptor();
                let Some((index, found)) = descriptor.method(&frame.method) else {
                    return Err(Error::UnknownMethod {
                        type_name: frame.object_type.clone(),
                        method: frame.method.chars().take(128).collect(),
                    });
                };
                let reliable = if frame.reliable_call_id.is_empty() {
                    None
                } else {
                    validate_call_id(&frame.reliable_call_id)?;
                    Some(Arc::from(frame.reliable_call_id.as_str()))
                };
                let work = EncodedWork {
                    method: index,
                    mutates: found.mutates,
                    name: found.name,
                    codec: wire::codec_of(frame.encoding)?,
                    body: frame.body,
                    reliable,
                    reruns: super::host::STALE_RERUNS,
                };
                let turn = host.call_encoded(self.clone(), call, work);
                match Detached::new(&self.runtime, turn).within(deadline).await {
                    None => Err(late(&target, deadline, arrived)),
                    Some(Turn::Done(result)) => result,
                    Some(Turn::Moved(..)) => Err(self.moved(shard)),
                }
            }
            Kind::Create => {
                let turn = host.create(self.clone(), call);
                match Detached::new(&self.runtime, turn).within(deadline).await {
                    None => Err(late(&target, deadline, arrived)),
                    Some(Turn::Done(result)) => result.map(|()| Vec::new()),
                    Some(Turn::Moved(..)) => Err(self.moved(shard)),
                }
            }
            Kind::Push | Kind::Broadcast => self.serve_push(frame),
            Kind::Delete => {
                let deleting = host.delete(self.clone(), call);
                match Detached::new(&self.runtime, deleting)
                    .within(deadline)
                    .await
                {
                    None => Err(late(&target, deadline, arrived)),
                    Some(result) => result.map(|()| Vec::new()),
                }
            }
        }
    }
}

impl FrameHandler for NodeInner {
    fn accepting(&self) -> bool {
        !self.crashed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn handle(self: Arc<Self>, frame: CallFrame) -> BoxFuture<'static, ReplyFrame> {
        Box::pin(async move {
            let call_id = frame.call_id;
            match self.serve_frame(frame).await {
                Ok(body) => ReplyFrame {
                    call_id,
                    body,
                    error: None,
                },
                Err(error) => ReplyFrame {
                    call_id,
                    body: Vec::new(),
                    error: Some(error_to_wire(&error)),
                },
            }
        })
    }
}

/// The error of a call whose deadline passed before it was answered.
fn late(target: &(dyn Fn() -> String + Sync), deadline: Instant, arrived: Instant) -> Error {
    Error::DeadlineExceeded {
        target: target(),
        timeout: deadline.saturating_duration_since(arrived),
    }
}

/// A remote failure keeps its code; a deadline gets the call's name.
fn retarget(error: Error, target: &(dyn Fn() -> String + Sync)) -> Error {
    match error {
        Error::DeadlineExceeded { timeout, .. } => Error::DeadlineExceeded {
            target: target(),
            timeout,
        },
        other => other,
    }
}
