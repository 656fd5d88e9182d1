//! The work of one turn (a typed call, an encoded call, a bare
//! activation) and the access check before it runs.

use super::*;

/// The work of one turn: a typed call, an encoded call, or a bare activation.
pub(crate) trait Work<O>: Send + 'static {
    type Output: Send + 'static;
    fn mutates(&self) -> bool;
    fn method_name(&self) -> &'static str;
    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context<'_>,
    ) -> BoxFuture<'a, Result<Self::Output>>;

    /// The caller's id of a reliable call.
    fn reliable(&self) -> Option<&Arc<str>> {
        None
    }

    /// The number of the method this work calls, if it is a call.
    #[cfg(feature = "ops")]
    fn method_index(&self) -> Option<usize> {
        None
    }

    /// Takes one of the runs again this work may have after its turn's
    /// write was refused as stale; `false` when it has none (a typed call
    /// gave its request to the method).
    fn rerun(&mut self) -> bool {
        false
    }

    /// The lifecycle operation this work is, if it is one (not a call).
    fn lifecycle(&self) -> Option<crate::access::Lifecycle> {
        None
    }

    /// The record of what this turn returned, for a reliable call.
    fn record(&self, result: &Result<Self::Output>) -> Option<CallRecord> {
        let _ = result;
        None
    }

    /// What an earlier run of this reliable call returned, in this call's form.
    fn replay(&self, record: CallRecord) -> Result<Self::Output> {
        let _ = record;
        Err(Error::Internal("only reliable calls replay".into()))
    }
}

/// A call from a typed proxy on this node: no encoding at all.
pub(crate) struct TypedWork<O, Req, Resp> {
    pub(crate) method: usize,
    pub(crate) invoke: Invoke<O, Req, Resp>,
    pub(crate) request: Option<Req>,
}

impl<O: Object, Req: Send + 'static, Resp: Send + 'static> Work<O> for TypedWork<O, Req, Resp> {
    type Output = Resp;

    fn mutates(&self) -> bool {
        matches!(self.invoke, Invoke::Mut(_))
    }

    #[cfg(feature = "ops")]
    fn method_index(&self) -> Option<usize> {
        Some(self.method)
    }

    fn method_name(&self) -> &'static str {
        O::DESCRIPTOR
            .methods
            .get(self.method)
            .map_or("?", |m| m.name)
    }

    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context<'_>,
    ) -> BoxFuture<'a, Result<Resp>> {
        let Some(request) = self.request.take() else {
            return Box::pin(std::future::ready(Err(Error::Internal(
                "a turn ran twice".into(),
            ))));
        };
        match (self.invoke, receiver) {
            (Invoke::Mut(invoke), Receiver::Mut(object)) => invoke(object, ctx, request),
            (Invoke::Ref(invoke), receiver) => invoke(receiver.into_ref(), ctx, request),
            (Invoke::Mut(_), Receiver::Ref(_)) => Box::pin(std::future::ready(Err(
                Error::Internal("a `&mut self` method got a shared turn".into()),
            ))),
        }
    }
}

/// A call by name with an encoded body (gate, remote node, tools).
pub(crate) struct EncodedWork {
    pub(crate) method: usize,
    pub(crate) mutates: bool,
    pub(crate) name: &'static str,
    pub(crate) codec: Codec,
    pub(crate) body: Vec<u8>,
    /// Set for a reliable call: the caller's call id.
    pub(crate) reliable: Option<Arc<str>>,
    /// How many more times the call may run after a write refused as
    /// stale (see [`Work::rerun`]).
    pub(crate) reruns: u8,
}

/// How many times an encoded call runs again, at most, after its write was
/// refused as stale: enough for a shard that moved and moves back.
pub(crate) const STALE_RERUNS: u8 = 2;

impl<O: Object> Work<O> for EncodedWork {
    type Output = Vec<u8>;

    fn mutates(&self) -> bool {
        // A reliable call looks up and records its outcome: that takes the
        // object to itself, whatever the method.
        self.mutates || self.reliable.is_some()
    }

    fn reliable(&self) -> Option<&Arc<str>> {
        self.reliable.as_ref()
    }

    #[cfg(feature = "ops")]
    fn method_index(&self) -> Option<usize> {
        Some(self.method)
    }

    fn rerun(&mut self) -> bool {
        if self.reruns == 0 {
            return false;
        }
        self.reruns -= 1;
        true
    }

    fn record(&self, result: &Result<Vec<u8>>) -> Option<CallRecord> {
        let call_id = self.reliable.clone()?;
        let outcome = match result {
            Ok(body) if self.codec == Codec::Protobuf => CallOutcome::Response(body.clone()),
            Ok(body) => {
                match O::transcode_response(self.method, self.codec, Codec::Protobuf, body) {
                    Ok(body) => CallOutcome::Response(body),
                    Err(error) => failure(&error),
                }
            }
            Err(error) => failure(error),
        };
        Some(CallRecord {
            call_id,
            method: self.name.to_string(),
            outcome,
            // Filled in by the turn, which knows the call's origin.
            caller: String::new(),
        })
    }

    fn replay(&self, record: CallRecord) -> Result<Vec<u8>> {
        if record.method != self.name {
            return Err(Error::CallIdReused {
                call_id: record.call_id.to_string(),
                target: format!("{}.{}", O::DESCRIPTOR.type_name, self.name),
                recorded: record.method,
            });
        }
        match record.outcome {
            CallOutcome::Response(body) if self.codec == Codec::Protobuf => Ok(body),
            CallOutcome::Response(body) => {
                O::transcode_response(self.method, Codec::Protobuf, self.codec, &body)
            }
            CallOutcome::Error { code, message } => {
                Err(error_from_wire(crate::transport::proto::ErrorReply {
                    code,
                    message,
                }))
            }
        }
    }

    fn method_name(&self) -> &'static str {
        self.name
    }

    fn run<'a>(
        &'a mut self,
        receiver: Receiver<'a, O>,
        ctx: &'a Context<'_>,
    ) -> BoxFuture<'a, Result<Vec<u8>>> {
        O::dispatch(receiver, ctx, self.method, self.codec, &self.body)
    }
}

/// Applies the node's access rules to a call (or a create or delete) of
/// an object of type `O`, by where it came from.
pub(super) fn check_access<O: Object>(
    node: &NodeInner,
    call: &TurnCall,
    lifecycle: Option<crate::access::Lifecycle>,
    method: &str,
) -> Result<()> {
    let Some(rules) = &node.config.access_rules else {
        return Ok(());
    };
    let external = call.meta.origin.as_ref().is_some_and(|o| o.external);
    match lifecycle {
        Some(operation) => {
            rules.check_lifecycle(O::DESCRIPTOR.type_name, &call.id, operation, external)
        }
        None => rules.check_call(O::DESCRIPTOR.type_name, &call.id, method, external),
    }
}

/// Whether a turn's method `method` of `O` ran: a request that did not
/// decode as its request type is refused by the dispatch before it.
pub(super) fn method_ran<O: Object, T>(method: &str, result: &Result<T>) -> bool {
    let Err(Error::InvalidRequest { message_type, .. }) = result else {
        return true;
    };
    O::DESCRIPTOR
        .method(method)
        .is_none_or(|(_, descriptor)| descriptor.request != *message_type)
}

/// A recorded error outcome, as an error travels between nodes.
pub(super) fn failure(error: &Error) -> CallOutcome {
    let wire = error_to_wire(error);
    // Text columns cannot hold U+0000 (PostgreSQL refuses it): one
    // method's error text must not fail the batch its record is in.
    let printable = |text: String| {
        if text.contains('\0') {
            text.replace('\0', "\u{FFFD}")
        } else {
            text
        }
    };
    CallOutcome::Error {
        code: printable(wire.code),
        message: printable(wire.message),
    }
}

/// Activates the object without calling a method (explicit create).
pub(crate) struct ActivateWork;

impl<O: Object> Work<O> for ActivateWork {
    type Output = ();

    fn mutates(&self) -> bool {
        true
    }

    fn method_name(&self) -> &'static str {
        "create"
    }

    fn lifecycle(&self) -> Option<crate::access::Lifecycle> {
        Some(crate::access::Lifecycle::Create)
    }

    fn run<'a>(
        &'a mut self,
        _receiver: Receiver<'a, O>,
        _ctx: &'a Context<'_>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
