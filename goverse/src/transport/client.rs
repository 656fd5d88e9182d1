//! The caller's side: one long-lived stream per peer, many calls in flight
//! on it, replies matched to calls by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tonic::transport::Endpoint;

use super::proto::{self, node_client::NodeClient};
use super::{Batches, error_from_wire};
use crate::error::Error;

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
}

/// The connection to one address, connected by the first call that needs it.
type PeerSlot = tokio::sync::Mutex<Option<Arc<Peer>>>;

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Peers").field("peers", &count).finish()
    }
}

struct Peer {
    outbound: mpsc::Sender<proto::CallFrame>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<proto::ReplyFrame>>>>,
    next_call: AtomicU64,
    closed: Arc<AtomicBool>,
}

impl Peers {
    /// No connections yet; calls will say they come from node `local`.
    pub(crate) fn new(local: &str) -> Self {
        Self {
            local: local.into(),
            live: std::sync::RwLock::default(),
            peers: Mutex::default(),
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
        let peer = self.peer(address, deadline).await?;
        peer.call(frame, deadline).await
    }

    /// The live stream to `address`, connecting if there is none.
    async fn peer(&self, address: &str, deadline: Instant) -> Result<Arc<Peer>, RemoteFailure> {
        if let Some(peer) = self
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            && !peer.closed.load(Ordering::Acquire)
        {
            return Ok(peer.clone());
        }
        let slot = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(address.into())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(peer) = slot.as_ref()
            && !peer.closed.load(Ordering::Acquire)
        {
            return Ok(peer.clone());
        }
        let connect_within = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(3));
        // Boxed: connecting is rare and its future is large; every call's
        // future would carry it otherwise.
        let connecting = Box::pin(Peer::connect(address, &self.local));
        let peer = tokio::time::timeout(connect_within, connecting)
            .await
            .map_err(|_| {
                RemoteFailure::NotRun(Error::Unavailable(format!(
                    "connecting to node at {address} timed out"
                )))
            })??;
        *slot = Some(peer.clone());
        self.live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.into(), peer.clone());
        Ok(peer)
    }
}

impl Peer {
    async fn connect(address: &str, local: &str) -> Result<Arc<Peer>, RemoteFailure> {
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
        let batches = Batches::new(frames).map(|calls| proto::CallBatch { calls });
        let mut request = tonic::Request::new(batches);
        if let Ok(node) = tonic::metadata::MetadataValue::try_from(local) {
            request.metadata_mut().insert("goverse-caller-node", node);
        }
        let response = client
            .calls(request)
            .await
            .map_err(|status| unreachable(status.message().to_string()))?;
        let mut inbound = response.into_inner();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<proto::ReplyFrame>>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let reader_pending = pending.clone();
        let reader_closed = closed.clone();
        let peer_address = address.to_string();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(batch)) => {
                        let mut pending = reader_pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        let waiters: Vec<_> = batch
                            .replies
                            .into_iter()
                            .filter_map(|reply| Some((pending.remove(&reply.call_id)?, reply)))
                            .collect();
                        drop(pending);
                        for (waiter, reply) in waiters {
                            let _ = waiter.send(reply);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(peer = %peer_address, %status, "stream to peer broke");
                        break;
                    }
                }
            }
            reader_closed.store(true, Ordering::Release);
            // Dropping the waiters tells their callers the stream is gone.
            reader_pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        });
        Ok(Arc::new(Peer {
            outbound,
            pending,
            next_call: AtomicU64::new(1),
            closed,
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
        let (waiter, reply) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(call_id, waiter);
        let forget = || {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&call_id);
        };
        if self.closed.load(Ordering::Acquire) || self.outbound.send(frame).await.is_err() {
            forget();
            return Err(RemoteFailure::NotRun(Error::Unavailable(
                "the stream to the peer is closed".into(),
            )));
        }
        match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(reply)) => match reply.error {
                // Refused before running: send it again where it belongs.
                Some(error)
                    if error.code == "SHARD_MOVED" || error.code == "NODE_SHUTTING_DOWN" =>
                {
                    Err(RemoteFailure::NotRun(error_from_wire(error)))
                }
                Some(error) => Err(RemoteFailure::Failed(error_from_wire(error))),
                None => Ok(reply.body),
            },
            Ok(Err(_)) => Err(RemoteFailure::Lost(Error::Unavailable(
                "the connection to the peer was lost during the call; it may have run".into(),
            ))),
            Err(_) => {
                forget();
                Err(RemoteFailure::Failed(Error::DeadlineExceeded {
                    // The router names the call; the time it had is known here.
                    target: "a remote call".into(),
                    timeout: deadline.saturating_duration_since(sent),
                }))
            }
        }
    }
}
