//! The callee's side: the `Node` gRPC service. Every frame of a peer's
//! stream becomes a task; replies go back on the stream as they finish.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// Calls of one inbound batch served before the serving task steps back,
/// so replies leave in small groups while the rest of the batch runs: the
/// two ends of a connection then work side by side instead of in turn.
const SERVED_BEFORE_STEPPING_BACK: usize = 4;

use super::Batches;
use super::proto::{self, node_server::NodeServer};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// What serves the frames: the node.
pub(crate) trait FrameHandler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, frame: proto::CallFrame) -> BoxFuture<'static, proto::ReplyFrame>;
    /// False once the node is gone: its streams are dropped.
    fn accepting(&self) -> bool;
}

/// A running server: its address and its task.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) address: SocketAddr,
    pub(crate) task: JoinHandle<()>,
}

/// Binds `listen` and serves the node protocol for `handler` until the task
/// is aborted.
pub(crate) async fn serve<H: FrameHandler>(listen: SocketAddr, handler: Weak<H>) -> Result<Bound> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("cannot read the listening address: {e}")))?;
    // `serve_with_incoming` ignores the server's nodelay setting; set it on
    // the incoming stream itself.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = NodeServer::new(Service { handler })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let task = tokio::spawn(async move {
        if let Err(error) = Server::builder()
            .initial_stream_window_size(super::client::STREAM_WINDOW)
            .initial_connection_window_size(super::client::STREAM_WINDOW)
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(%error, "node server stopped");
        }
    });
    Ok(Bound { address, task })
}

struct Service<H> {
    handler: Weak<H>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<proto::ReplyBatch, Status>> + Send>>;

#[tonic::async_trait]
impl<H: FrameHandler> proto::node_server::Node for Service<H> {
    type CallsStream = ReplyStream;

    async fn calls(
        &self,
        request: Request<Streaming<proto::CallBatch>>,
    ) -> Result<Response<Self::CallsStream>, Status> {
        let mut inbound = request.into_inner();
        let (replies, stream) = mpsc::channel(4096);
        let handler = self.handler.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let Some(handler) = handler.upgrade() else {
                    break;
                };
                if !handler.accepting() {
                    break;
                }
                for (index, frame) in batch.calls.into_iter().enumerate() {
                    if index > 0 && index % SERVED_BEFORE_STEPPING_BACK == 0 {
                        // The reply stream's task, woken by the first reply,
                        // waits in this worker's next-task slot, which no
                        // other worker takes from: step back so it sends
                        // what is answered while the rest of the batch runs.
                        crate::future::requeue().await;
                    }
                    // A turn that completes at once is answered from this
                    // loop; only one that waits gets a task of its own.
                    let mut reply = handler.clone().handle(frame);
                    let first =
                        std::future::poll_fn(|cx| std::task::Poll::Ready(reply.as_mut().poll(cx)))
                            .await;
                    match first {
                        std::task::Poll::Ready(reply) => {
                            if replies.send(reply).await.is_err() {
                                return;
                            }
                        }
                        std::task::Poll::Pending => {
                            let replies = replies.clone();
                            tokio::spawn(async move {
                                let _ = replies.send(reply.await).await;
                            });
                        }
                    }
                }
            }
        });
        let batches = Batches::new(stream).map(|replies| Ok(proto::ReplyBatch { replies }));
        Ok(Response::new(Box::pin(batches)))
    }
}
