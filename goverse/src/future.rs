//! The boxed future type, and a step to the back of the run queue: a
//! leaf module every other one may use.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// A boxed, sendable future: what generated code and hooks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Puts the task at the back of its worker's run queue once, so the tasks
/// waiting there run first. Unlike `tokio::task::yield_now`, which waits
/// for the worker's next look at its I/O driver, this costs one more poll.
pub(crate) async fn requeue() {
    std::future::poll_fn(|cx| {
        cx.waker().wake_by_ref();
        Poll::Ready(())
    })
    .await;
    pending_once().await;
}

/// Goes back to the scheduler once without waking the task: for a task
/// already woken (see [`requeue`]), which will be polled again.
pub(crate) async fn pending_once() {
    let mut returned = false;
    std::future::poll_fn(|_| {
        if returned {
            return Poll::Ready(());
        }
        returned = true;
        Poll::Pending
    })
    .await;
}
