//! The [`Object`] trait that `#[goverse::object]` implements, and the pieces
//! the generated dispatch code works with.

use crate::context::Context;
use crate::descriptor::ObjectDescriptor;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::Codec;

/// A type whose instances are goverse objects.
///
/// Do not implement this by hand: put `#[goverse::object]` on the type's impl
/// block. The trait is public so that node and storage APIs can name it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a goverse object type",
    note = "put `#[goverse::object]` on an `impl {Self} {{ ... }}` block to make it one"
)]
pub trait Object: Send + Sync + Sized + 'static {
    /// The type's name, methods and options.
    const DESCRIPTOR: &'static ObjectDescriptor;

    /// A fresh instance, used when an object activates with no stored state.
    fn create() -> Self;

    /// Decodes the request for method number `method`, runs it, encodes the response.
    #[doc(hidden)]
    fn dispatch<'a>(
        receiver: Receiver<'a, Self>,
        ctx: &'a Context<'_>,
        method: usize,
        codec: Codec,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>>>;

    /// Re-encodes a response of method number `method` from one codec to
    /// another: reliable calls record responses as protobuf and answer in
    /// the caller's codec.
    #[doc(hidden)]
    fn transcode_response(method: usize, from: Codec, to: Codec, body: &[u8]) -> Result<Vec<u8>> {
        let _ = (method, from, to, body);
        Err(Error::Internal(format!(
            "object type `{}` cannot re-encode responses",
            Self::DESCRIPTOR.type_name
        )))
    }

    /// Runs after the object is created or loaded, before its first call.
    fn on_activate<'a>(&'a mut self, ctx: &'a Context<'_>) -> BoxFuture<'a, Result<()>> {
        let _ = ctx;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Runs before the object is deactivated (idle, deleted or node shutdown).
    fn on_deactivate<'a>(&'a mut self, ctx: &'a Context<'_>) -> BoxFuture<'a, Result<()>> {
        let _ = ctx;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Runs each time a timer started with [`Context::start_timer`] fires.
    fn on_timer<'a>(
        &'a mut self,
        ctx: &'a Context<'_>,
        timer: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (ctx, timer);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The serialized state of a persistent object; `None` for other objects.
    fn save_state(&self) -> Option<Result<Vec<u8>>> {
        None
    }

    /// Rebuilds a persistent object from its serialized state.
    fn load_state(data: &[u8]) -> Result<Self> {
        let _ = data;
        Err(Error::Internal(format!(
            "object type `{}` is not persistent",
            Self::DESCRIPTOR.type_name
        )))
    }
}

/// The object lent to one turn: exclusively for `&mut self` methods, shared
/// for `&self` methods.
#[doc(hidden)]
#[derive(Debug)]
pub enum Receiver<'a, O> {
    /// An exclusive turn.
    Mut(&'a mut O),
    /// A shared (read) turn.
    Ref(&'a O),
}

impl<'a, O> Receiver<'a, O> {
    /// The object for a `&mut self` method; `None` in a shared turn.
    pub fn into_mut(self) -> Option<&'a mut O> {
        match self {
            Receiver::Mut(object) => Some(object),
            Receiver::Ref(_) => None,
        }
    }

    /// The object for a `&self` method (an exclusive turn can lend it too).
    pub fn into_ref(self) -> &'a O {
        match self {
            Receiver::Mut(object) => object,
            Receiver::Ref(object) => object,
        }
    }
}

/// Calls one method of `O` with a typed request: the local fast path, which
/// skips encoding entirely.
pub(crate) enum Invoke<O, Req, Resp> {
    Mut(InvokeMut<O, Req, Resp>),
    Ref(InvokeRef<O, Req, Resp>),
}

impl<O, Req, Resp> Clone for Invoke<O, Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O, Req, Resp> Copy for Invoke<O, Req, Resp> {}

/// A typed `&mut self` method.
#[doc(hidden)]
pub type InvokeMut<O, Req, Resp> =
    for<'a, 'c> fn(&'a mut O, &'a Context<'c>, Req) -> BoxFuture<'a, Result<Resp>>;

/// A typed `&self` method.
#[doc(hidden)]
pub type InvokeRef<O, Req, Resp> =
    for<'a, 'c> fn(&'a O, &'a Context<'c>, Req) -> BoxFuture<'a, Result<Resp>>;

/// The descriptor of an object type, e.g. to export its `.proto` service.
///
/// # Examples
///
/// ```
/// # use goverse::prelude::*;
/// # #[derive(Default)] struct Counter;
/// # #[goverse::object] impl Counter {
/// #     pub async fn get(&self, _ctx: &Context, _r: Empty) -> goverse::Result<Int32Value> { Ok(Int32Value { value: 0 }) }
/// # }
/// let descriptor = goverse::descriptor_of::<Counter>();
/// assert_eq!(descriptor.type_name, "Counter");
/// assert_eq!(descriptor.methods[0].name, "Get");
/// ```
pub fn descriptor_of<O: Object>() -> &'static ObjectDescriptor {
    O::DESCRIPTOR
}
