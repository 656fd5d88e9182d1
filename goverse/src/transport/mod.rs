//! Node-to-node calls over gRPC (tonic): the protocol of `proto/node.proto`,
//! a pool of long-lived multiplexed streams to peers ([`Peers`]), and the
//! node's side of the service ([`serve`]).

mod client;
mod pending;
mod server;
pub(crate) mod wire;

pub(crate) use client::{Peers, RemoteFailure};
pub(crate) use server::{FrameHandler, serve};
pub(crate) use wire::{error_from_wire, error_to_wire};

/// The generated protocol types and service stubs.
#[allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]
pub(crate) mod proto {
    tonic::include_proto!("goverse.node.v1");
}

/// Frames in one batch message at most.
const BATCH: usize = 256;

/// A stream of batches: each item is every frame ready in the channel at
/// that moment (up to [`BATCH`]), so frames that are ready together cost one
/// message and, usually, one write.
pub(crate) struct Batches<T> {
    frames: tokio::sync::mpsc::Receiver<T>,
    /// Frames taken, waiting for the tasks that are ready to run and add
    /// theirs before the batch leaves.
    gathering: Vec<T>,
}

// Frames are never pinned in place: they only move through the queue.
impl<T> Unpin for Batches<T> {}

impl<T> Batches<T> {
    pub(crate) fn new(frames: tokio::sync::mpsc::Receiver<T>) -> Self {
        Self {
            frames,
            gathering: Vec::new(),
        }
    }

    fn drain_ready(&mut self) {
        while self.gathering.len() < BATCH {
            match self.frames.try_recv() {
                Ok(frame) => self.gathering.push(frame),
                Err(_) => break,
            }
        }
    }
}

impl<T> tokio_stream::Stream for Batches<T> {
    type Item = Vec<T>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Vec<T>>> {
        let this = &mut *self;
        if !this.gathering.is_empty() {
            // Second poll after a yield: whatever the other tasks queued
            // meanwhile joins the batch.
            this.drain_ready();
            return std::task::Poll::Ready(Some(std::mem::take(&mut this.gathering)));
        }
        let first = std::task::ready!(this.frames.poll_recv(cx));
        let Some(first) = first else {
            return std::task::Poll::Ready(None);
        };
        this.gathering.push(first);
        this.drain_ready();
        if this.gathering.len() >= BATCH {
            return std::task::Poll::Ready(Some(std::mem::take(&mut this.gathering)));
        }
        // Yield once: the callers that are ready to run add their frames
        // before this one leaves, so a burst costs one write, not one each.
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
