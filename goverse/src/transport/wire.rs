//! Conversions between goverse's calls and the wire protocol's frames:
//! call frames, origins, call chains, encodings and errors.

use std::sync::Arc;

use tokio::time::Instant;

use super::proto::{self, CallFrame, call_frame::Encoding, call_frame::Kind};
use crate::Code;
use crate::access::{Identity, Origin};
use crate::chain::CallChain;
use crate::chain::CallMeta;
use crate::error::{Error, Result};
use crate::message::Codec;

/// A call about to be sent to its owner.
pub(crate) struct OutgoingCall<'a> {
    pub(crate) kind: Kind,
    pub(crate) object_type: &'a str,
    pub(crate) id: &'a str,
    /// The rpc name; empty for a create or a delete.
    pub(crate) method: &'a str,
    pub(crate) body: Vec<u8>,
    pub(crate) codec: Codec,
    pub(crate) reliable: Option<&'a Arc<str>>,
    pub(crate) deadline: Instant,
    pub(crate) meta: &'a CallMeta,
}

/// The frame of a call: what it asks, the time it has left, and what it
/// carries.
pub(crate) fn call_frame(call: OutgoingCall<'_>) -> CallFrame {
    let left = call.deadline.saturating_duration_since(Instant::now());
    let trace = call
        .meta
        .trace
        .as_ref()
        .map(|t| {
            [("traceparent".to_string(), t.to_string())]
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    CallFrame {
        call_id: 0,
        kind: call.kind as i32,
        object_type: call.object_type.to_string(),
        object_id: call.id.to_string(),
        method: call.method.to_string(),
        body: call.body,
        encoding: encoding_of(call.codec) as i32,
        timeout_micros: u64::try_from(left.as_micros()).unwrap_or(u64::MAX),
        chain: chain_links(call.meta.chain.as_ref()),
        trace,
        reliable_call_id: call.reliable.map(|r| r.to_string()).unwrap_or_default(),
        origin: call.meta.origin.as_deref().map(origin_to_wire),
    }
}

/// What a received frame carries besides its request: its chain, its
/// (valid) trace context and its origin, which is taken from the frame.
pub(crate) fn meta_of(frame: &mut CallFrame) -> CallMeta {
    CallMeta {
        chain: chain_from_links(&frame.chain),
        trace: traceparent_of(frame),
        origin: frame.origin.take().map(origin_from_wire),
    }
}

/// The frame's W3C `traceparent`, if it carries a valid one.
pub(crate) fn traceparent_of(frame: &CallFrame) -> Option<Arc<str>> {
    if frame.trace.is_empty() {
        return None;
    }
    frame
        .trace
        .get("traceparent")
        .filter(|t| crate::chain::valid_traceparent(t))
        .map(|t| Arc::<str>::from(t.as_str()))
}

/// Makes the frame carry `traceparent` in place of the one it had.
pub(crate) fn set_traceparent(frame: &mut CallFrame, traceparent: Option<&str>) {
    match traceparent {
        Some(traceparent) => {
            frame
                .trace
                .insert("traceparent".to_string(), traceparent.to_string());
        }
        None => {
            frame.trace.remove("traceparent");
        }
    }
}

/// The codec a frame's encoding names.
pub(crate) fn codec_of(encoding: i32) -> Result<Codec> {
    match Encoding::try_from(encoding) {
        Ok(Encoding::Json) => Ok(Codec::Json),
        Ok(Encoding::Any) => Ok(Codec::Any),
        Ok(Encoding::Protobuf) => Ok(Codec::Protobuf),
        Err(_) => Err(Error::Internal(format!(
            "a peer sent unknown encoding {encoding}"
        ))),
    }
}

/// A codec's wire name.
fn encoding_of(codec: Codec) -> Encoding {
    match codec {
        Codec::Json => Encoding::Json,
        Codec::Any => Encoding::Any,
        _ => Encoding::Protobuf,
    }
}

/// A call's origin as it travels.
fn origin_to_wire(origin: &Origin) -> proto::Origin {
    let identity = origin.identity.as_ref();
    proto::Origin {
        external: origin.external,
        user_id: identity.map(|i| i.user_id.clone()).unwrap_or_default(),
        roles: identity.map(|i| i.roles.clone()).unwrap_or_default(),
        authenticated: identity.is_some(),
        client_id: origin.client_id.clone().unwrap_or_default(),
    }
}

/// A call's origin as it arrived.
fn origin_from_wire(origin: proto::Origin) -> Arc<Origin> {
    Arc::new(Origin {
        external: origin.external,
        identity: origin
            .authenticated
            .then(|| Identity::new(origin.user_id, origin.roles)),
        client_id: (!origin.client_id.is_empty()).then_some(origin.client_id),
    })
}

/// Rebuilds a call chain from wire links (outermost first).
fn chain_from_links(links: &[proto::ChainLink]) -> Option<Arc<CallChain>> {
    let mut chain: Option<Arc<CallChain>> = None;
    for link in links {
        chain = Some(Arc::new(CallChain {
            type_name: link.object_type.clone().into(),
            id: link.object_id.as_str().into(),
            parent: chain,
        }));
    }
    chain
}

/// Turns a call chain into wire links, outermost first.
pub(crate) fn chain_links(chain: Option<&Arc<CallChain>>) -> Vec<proto::ChainLink> {
    let mut links = Vec::new();
    let mut next = chain.map(|c| &**c);
    while let Some(link) = next {
        links.push(proto::ChainLink {
            object_type: link.type_name.to_string(),
            object_id: link.id.to_string(),
        });
        next = link.parent.as_deref();
    }
    links.reverse();
    links
}

/// The error a peer sent back, with its stable code.
pub(crate) fn error_from_wire(reply: proto::ErrorReply) -> Error {
    Error::from_wire(Code::parse(&reply.code), reply.message)
}

/// An error as sent to a peer.
pub(crate) fn error_to_wire(error: &Error) -> proto::ErrorReply {
    let (code, message) = error.to_wire();
    proto::ErrorReply {
        code: code.to_string(),
        message,
    }
}
