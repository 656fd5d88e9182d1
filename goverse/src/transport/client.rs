//! The caller's side: one long-lived stream per peer, many calls in flight
//! on it, replies matched to calls by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tonic::transport::Endpoint;

use super::pending::{Outcome, Pending};
use super::proto::{self, node_client::NodeClient};
use super::{Batches, error_from_wire};
use crate::error::Error;
use crate::sync::{MutexExt, RwLockExt};

/// Frames waiting to be written to one peer's stream.
const OUTBOUND_QUEUE: usize = 4096;

/// HTTP/2 flow-control window of the call stream and its connection.
pub(crate) const STREAM_WINDOW: u32 = 8 << 20;

/// How a remote call failed.
#[derive(Debug)]
pub(crate) enum RemoteFailure {
    /// The call did not run on the peer (no connection, or the peer does
    /// not serve the shard): safe to send again, elsewhere or later.
    NotRun(Error),
    /// The connection went down while the call was out: it may or may not
    /// have run. Only a call that is safe to repeat (a reliable one) may
    /// be sent again.
    Lost(Error),
    /// The call failed: do not send it again.
    Failed(Error),
}

/// Connections to the other nodes, one multiplexed stream each.
pub(crate) struct Peers {
    /// This node's id, sent once per stream.
    local: Arc<str>,
    /// Live streams by address: the path of every call, read-locked only.
    live: std::sync::RwLock<HashMap<Arc<str>, Arc<Peer>>>,
    /// Per address, the lock that makes one caller connect while others wait.
    peers: Mutex<HashMap<Arc<str>, Arc<PeerSlot>>>,
    /// Where the frames sent and their batches are counted.
    meters: Arc<crate::meters::Meters>,
}

/// The connection to one address, connected by the first call that needs it.
type PeerSlot = tokio::sync::Mutex<Option<Arc<Peer>>>;

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.peers.locked().len();
        f.debug_struct("Peers").field("peers", &count).finish()
    }
}

struct Peer {
    outbound: mpsc::Sender<proto::CallFrame>,
    pending: Arc<Pending>,
    next_call: AtomicU64,
}

impl Peers {
    /// No connections yet; calls will say they come from node `local`.
    pub(crate) fn new(local: &str, meters: Arc<crate::meters::Meters>) -> Self {
        Self {
            local: local.into(),
            live: std::sync::RwLock::default(),
            peers: Mutex::default(),
            meters,
        }
    }

    /// Sends `frame` to the node at `address` and waits for its reply until
    /// `deadline`. Returns the response body.
    pub(crate) async fn call(
        &self,
        address: &str,
        frame: proto::CallFrame,
        deadline: Instant,
    ) -> Result<Vec<u8>, RemoteFailure> {
        let peer = match self.live(address) {
            Some(peer) => peer,
            // Boxed: connecting is rare and its future is large; every
            // call's future would carry it otherwise.
            None => Box::pin(self.connect(address, deadline)).await?,
        };
        peer.call(frame, deadline).await
    }

    /// The live stream to `address`, if there is one.
    fn live(&self, address: &str) -> Option<Arc<Peer>> {
        self.live
            .read_locked()
            .get(address)
            .filter(|peer| !peer.pending.is_closed())
            .cloned()
    }

    /// Connects to `address`, or waits for the caller that is connecting.
    async fn connect(&self, address: &str, deadline: Instant) -> Result<Arc<Peer>, RemoteFailure> {
        let slot = self
            .peers
            .locked()
            .entry(address.into())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(peer) = slot.as_ref()
            && !peer.pending.is_closed()
        {
            return Ok(peer.clone());
        }
        let connect_within = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(3));
        let peer = tokio::time::timeout(
            connect_within,
            Peer::connect(address, &self.local, self.meters.clone()),
        )
        .await
        .map_err(|_| {
            RemoteFailure::NotRun(Error::Unavailable(format!(
                "connecting to node at {address} timed out"
            )))
        })??;
        *slot = Some(peer.clone());
        self.live
            .write_locked()
            .insert(address.into(), peer.clone());
        Ok(peer)
    }
}

impl Peer {
    async fn connect(
        address: &str,
        local: &str,
        meters: Arc<crate::meters::Meters>,
    ) -> Result<Arc<Peer>, RemoteFailure> {
        let unreachable = |what: String| {
            RemoteFailure::NotRun(Error::Unavailable(format!(
                "node at {address} is unreachable: {what}"
            )))
        };
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| unreachable(e.to_string()))?
            .tcp_nodelay(true)
            // One stream carries every call to the peer: give it room.
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(STREAM_WINDOW)
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut client = NodeClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (outbound, frames) = mpsc::channel(OUTBOUND_QUEUE);
        let batches = Batches::new(frames).map(move |calls| {
            meters
                .remote_calls
                .fetch_add(calls.len() as u64, std::sync::atomic::Ordering::Relaxed);
            meters.remote_batch.record_count(calls.len());
            proto::CallBatch { calls }
        });
        let mut request = tonic::Request::new(batches);
        if let Ok(node) = tonic::metadata::MetadataValue::try_from(local) {
            request.metadata_mut().insert("goverse-caller-node", node);
        }
        let response = client
            .calls(request)
            .await
            .map_err(|status| unreachable(status.message().to_string()))?;
        let mut inbound = response.into_inner();
        let pending = Pending::new();
        tokio::spawn(pending.clone().sweep());
        let reader_pending = pending.clone();
        let peer_address = address.to_string();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(batch)) => {
                        let answered = batch.replies.len();
                        reader_pending.answer(batch.replies);
                        if answered > 1 {
                            // The last caller answered waits in this
                            // worker's next-task slot, which no other
                            // worker takes from: step back so the callers
                            // run (and send their next calls) before the
                            // next batch is read.
                            crate::future::requeue().await;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(peer = %peer_address, %status, "stream to peer broke");
                        break;
                    }
                }
            }
            reader_pending.close();
        });
        Ok(Arc::new(Peer {
            outbound,
            pending,
            next_call: AtomicU64::new(1),
        }))
    }

    async fn call(
        &self,
        mut frame: proto::CallFrame,
        deadline: Instant,
    ) -> Result<Vec<u8>, RemoteFailure> {
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        frame.call_id = call_id;
        let sent = Instant::now();
        let reply = self.pending.insert(call_id, deadline);
        let closed = || {
            self.pending.forget(call_id);
            RemoteFailure::NotRun(Error::Unavailable(
                "the stream to the peer is closed".into(),
            ))
        };
        if self.pending.is_closed() {
            return Err(closed());
        }
        match self.outbound.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(closed()),
            // The queue is full: wait for room, within the deadline. Boxed,
            // so that the common path's future stays small.
            Err(TrySendError::Full(frame)) => {
                let queued = tokio::time::timeout_at(deadline, self.outbound.send(frame));
                match Box::pin(queued).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(closed()),
                    Err(_) => {
                        self.pending.forget(call_id);
                        return Err(expired(deadline, sent));
                    }
                }
            }
        }
        match reply.await {
            Ok(Outcome::Reply(reply)) => match reply.error {
                // Refused before running: send it again where it belongs.
                Some(error)
                    if error.code == "SHARD_MOVED" || error.code == "NODE_SHUTTING_DOWN" =>
                {
                    Err(RemoteFailure::NotRun(error_from_wire(error)))
                }
                Some(error) => Err(RemoteFailure::Failed(error_from_wire(error))),
                None => Ok(reply.body),
            },
            Ok(Outcome::Expired) => Err(expired(deadline, sent)),
            Err(_) => Err(RemoteFailure::Lost(Error::Unavailable(
                "the connection to the peer was lost during the call; it may have run".into(),
            ))),
        }
    }
}

fn expired(deadline: Instant, sent: Instant) -> RemoteFailure {
    RemoteFailure::Failed(Error::DeadlineExceeded {
        // The router names the call; the time it had is known here.
        target: "a remote call".into(),
        timeout: deadline.saturating_duration_since(sent),
    })
}
