//! Pushes: messages objects send to clients connected to gates. A client
//! id names the node whose gate holds the client (`<node address>/<rest>`),
//! so a push goes to that node, as a frame on the stream to it, and its
//! gate puts the message in the client's buffer.

use std::sync::Arc;

use tokio::time::Instant;

use super::NodeInner;
use crate::error::{Error, Result};
use crate::message::{Codec, Message, encode, held_type, type_url};
use crate::sync::RwLockExt;
use crate::transport::RemoteFailure;
use crate::transport::proto::{self, CallFrame, call_frame::Kind};

/// A message pushed to clients, in each form a client may read it. Its
/// parts are shared: a broadcast to many clients copies no bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushMessage {
    /// `type.googleapis.com/<full protobuf name>`.
    pub(crate) type_url: Arc<str>,
    /// Protobuf encoding.
    pub(crate) body: Arc<[u8]>,
    /// Proto3 JSON.
    pub(crate) json: Arc<str>,
}

impl PushMessage {
    pub(crate) fn of<M: Message>(message: &M) -> Result<Self> {
        let json = encode(Codec::Json, message)?;
        let json = String::from_utf8(json).map_err(|e| Error::Encode {
            message_type: M::FULL_NAME,
            reason: e.to_string(),
        })?;
        Ok(Self {
            type_url: type_url(M::FULL_NAME).into(),
            body: encode(Codec::Protobuf, message)?.into(),
            json: json.into(),
        })
    }

    /// Full protobuf name of the message.
    pub(crate) fn type_name(&self) -> &str {
        held_type(&self.type_url)
    }

    fn to_wire(&self) -> proto::Push {
        proto::Push {
            r#type: self.type_name().to_string(),
            body: self.body.to_vec(),
            json: self.json.to_string(),
        }
    }

    pub(crate) fn from_wire(push: proto::Push) -> Self {
        Self {
            type_url: type_url(&push.r#type).into(),
            body: push.body.into(),
            json: push.json.into(),
        }
    }
}

/// Where a node hands pushes for the clients of its gate.
pub(crate) trait ClientSink: Send + Sync {
    /// Buffers `message` for `client`.
    fn deliver(&self, client: &str, message: PushMessage) -> Result<()>;
    /// Buffers `message` for every client; returns how many got it.
    fn broadcast(&self, message: &PushMessage) -> usize;
    /// What the gate counts: clients now, and messages pushed, dropped,
    /// and clients cut off for overflowing, since it started.
    fn counts(&self) -> ClientCounts;
}

/// A gate's counts, as [`ClientSink::counts`] gives them.
#[cfg_attr(not(feature = "ops"), allow(dead_code))]
pub(crate) struct ClientCounts {
    pub(crate) clients: u64,
    pub(crate) pushed: u64,
    pub(crate) buffered: u64,
    pub(crate) dropped: u64,
    pub(crate) overflows: u64,
}

impl NodeInner {
    /// Makes `sink` the receiver of this node's clients' pushes (a gate
    /// starting), or none.
    #[cfg_attr(not(feature = "gate"), allow(dead_code))]
    pub(crate) fn set_clients(&self, sink: Option<Arc<dyn ClientSink>>) {
        *self.clients.write_locked() = sink;
    }

    pub(super) fn clients(&self) -> Option<Arc<dyn ClientSink>> {
        self.clients.read_locked().clone()
    }

    /// Delivers to a client of this node's gate.
    pub(crate) fn deliver_local(&self, client: &str, message: PushMessage) -> Result<()> {
        match self.clients() {
            Some(sink) => sink.deliver(client, message),
            None => Err(Error::ClientNotFound {
                client: client.chars().take(256).collect(),
            }),
        }
    }

    /// Delivers to every client of this node's gate.
    pub(crate) fn broadcast_local(&self, message: &PushMessage) -> usize {
        self.clients().map_or(0, |sink| sink.broadcast(message))
    }

    /// Pushes `message` to `client`, wherever its gate is.
    pub(crate) async fn push(self: &Arc<Self>, client: &str, message: PushMessage) -> Result<()> {
        let not_found = || Error::ClientNotFound {
            client: client.chars().take(256).collect(),
        };
        let Some((address, _)) = client.split_once('/') else {
            return Err(not_found());
        };
        if address == &*self.address() {
            return self.deliver_local(client, message);
        }
        let view = self.view();
        let Some(node) = view.node_at(address) else {
            return Err(not_found());
        };
        let frame = push_frame(Kind::Push, client, &message);
        self.send_push(&node.address, frame).await
    }

    /// Pushes `message` to every client of every gate in the cluster.
    pub(crate) async fn broadcast(self: &Arc<Self>, message: PushMessage) -> Result<()> {
        self.broadcast_local(&message);
        let view = self.view();
        let me = self.address();
        let mut failures = Vec::new();
        for node in view.nodes.values().filter(|n| n.address != me) {
            let frame = push_frame(Kind::Broadcast, "", &message);
            if let Err(error) = self.send_push(&node.address, frame).await {
                failures.push(format!("{}: {error}", node.id));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "the broadcast did not reach {}",
                failures.join("; ")
            )))
        }
    }

    async fn send_push(&self, address: &str, frame: CallFrame) -> Result<()> {
        let deadline = Instant::now() + self.config.call_timeout;
        match self.peers.call(address, frame, deadline).await {
            Ok(_) => Ok(()),
            Err(
                RemoteFailure::NotRun(error)
                | RemoteFailure::Lost(error)
                | RemoteFailure::Failed(error),
            ) => Err(error),
        }
    }

    /// Serves a push frame from a peer.
    pub(crate) fn serve_push(&self, frame: CallFrame) -> Result<Vec<u8>> {
        let push = <proto::Push as prost::Message>::decode(frame.body.as_slice()).map_err(|e| {
            Error::InvalidRequest {
                message_type: "goverse.node.v1.Push",
                codec: "protobuf",
                reason: e.to_string(),
            }
        })?;
        let message = PushMessage::from_wire(push);
        if frame.kind == Kind::Broadcast as i32 {
            self.broadcast_local(&message);
            return Ok(Vec::new());
        }
        self.deliver_local(&frame.object_id, message)?;
        Ok(Vec::new())
    }
}

fn push_frame(kind: Kind, client: &str, message: &PushMessage) -> CallFrame {
    CallFrame {
        kind: kind as i32,
        object_id: client.to_string(),
        body: prost::Message::encode_to_vec(&message.to_wire()),
        ..CallFrame::default()
    }
}
