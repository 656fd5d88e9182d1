#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access;
mod call;
mod chain;
#[cfg(feature = "client")]
mod client;
pub mod cluster;
mod code;
pub mod config;
mod context;
mod descriptor;
mod error;
mod future;
#[cfg(feature = "gate")]
pub mod gate;
/// The gate's gRPC protocol (`proto/gate.proto`): messages, server and
/// client stubs.
#[cfg(any(feature = "gate", feature = "client"))]
#[allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]
pub mod gate_proto {
    tonic::include_proto!("goverse.gate.v1");

    /// The metadata key of goverse's stable error code on a failed call.
    pub const CODE_METADATA: &str = "goverse-code";
}
mod message;
mod meters;
mod node;
mod object;
pub mod placement;
pub mod storage;
mod sync;
mod trace;
mod transport;

#[doc(hidden)]
pub mod __private;

pub use call::{Caller, EncodedCall, IntoCaller};
#[cfg(feature = "client")]
pub use client::{Client, ClientOptions, PushedMessage};
pub use code::Code;
pub use context::Context;
pub use descriptor::{MethodDescriptor, ObjectDescriptor};
pub use error::{Error, OtherError, Result};
pub use future::BoxFuture;
pub use message::{Codec, Message, decode, encode, types};
pub use node::{Node, NodeBuilder, NodeConfig, NodeStats};
pub use object::{Object, descriptor_of};

/// Includes the messages of one protobuf package, generated in `build.rs` by
/// `goverse_codegen::build`.
///
/// ```ignore
/// // build.rs: goverse_codegen::build::compile_protos(&["proto/chat.proto"], &["proto"])?;
/// pub mod chat {
///     goverse::include_proto!("chat");
/// }
/// ```
///
/// The argument is the package name as written in the `.proto` file.
#[macro_export]
macro_rules! include_proto {
    ($package:literal) => {
        ::core::include!(::core::concat!(
            ::core::env!("OUT_DIR"),
            "/",
            $package,
            ".rs"
        ));
    };
}

/// Turns an inherent `impl` block into a goverse object type.
///
/// ```
/// use goverse::prelude::*;
///
/// #[derive(Default)]
/// pub struct Counter {
///     value: i32,
/// }
///
/// #[goverse::object(idle_timeout = "10m")]
/// impl Counter {
///     /// Adds to the counter and returns the new value.
///     pub async fn add(&mut self, _ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
///         self.value += request.value;
///         Ok(Int32Value { value: self.value })
///     }
///
///     /// Reads the value; may run beside other reads, never beside `add`.
///     pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
///         Ok(Int32Value { value: self.value })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> goverse::Result<()> {
/// let node = Node::builder().register::<Counter>().start().await?;
/// let counter = CounterClient::new(&node, "my-counter");
/// assert_eq!(counter.add(Int32Value { value: 5 }).await?.value, 5);
/// assert_eq!(counter.get(Empty {}).await?.value, 5);
/// # node.shutdown().await; Ok(()) }
/// ```
///
/// # The impl block
///
/// Every `pub` method is an rpc method and must have the form
/// `async fn name(&mut self | &self, ctx: &Context, request: Req) -> goverse::Result<Resp>`
/// where `Req` and `Resp` are [`Message`]s. Private methods are left alone as
/// helpers. Up to three private methods may be marked as lifecycle hooks:
///
/// - `#[on_activate] async fn _(&mut self, ctx: &Context) -> goverse::Result<()>`:
///   after the object is created or loaded, before its first call; an error
///   fails the activation (`ACTIVATION_FAILED`).
/// - `#[on_deactivate] async fn _(&mut self, ctx: &Context) -> goverse::Result<()>`:
///   before it is deactivated.
/// - `#[on_timer] async fn _(&mut self, ctx: &Context, timer: &str) -> goverse::Result<()>`:
///   each time a timer started with [`Context::start_timer`] fires.
///
/// The type must implement `Default` (the state of a new object) and be
/// `Send + Sync + 'static`.
///
/// # Options
///
/// - `name = "Counter"`: the type name objects are addressed by (default: the Rust type name).
/// - `idle_timeout = "10m"`: deactivate after this long without calls
///   (`ms`, `s`, `m`, `h`, `d`; default: the node's, 15 minutes).
/// - `persistent`: load the state from storage on activation; save it after
///   every `&mut self` turn (and timer firing), before the call is answered,
///   and again on deactivation. The type must then implement
///   `serde::Serialize` and `serde::Deserialize`.
/// - `write_behind = "1s"` (with `persistent`): answer `&mut self` calls,
///   reliable calls excepted, at once and save within the interval; a crash
///   loses up to an interval of answered changes.
///
/// # What it generates
///
/// - `impl goverse::Object for Counter`: the dispatch table (method number ->
///   decode the request as protobuf or proto3 JSON, call, encode the
///   response), the [`ObjectDescriptor`] (the protobuf service, also as
///   `.proto` text through [`ObjectDescriptor::to_proto`]) and the hooks.
/// - `CounterClient`, a typed proxy with the same async methods minus
///   `ctx`, created with `CounterClient::new(via, id)` where `via` is a
///   `&Node` or an object's `&Context`.
///
/// # Turns
///
/// Calls to one object run as turns: `&mut self` methods one at a time, in
/// arrival order; `&self` methods may run beside each other, never beside a
/// `&mut self` method. A turn holds the object while it awaits nested calls
/// (no reentrancy): a call that would re-enter an object already waiting on
/// the same call chain fails at once with `CALL_CYCLE`.
///
/// # Delivery
///
/// A call runs at most once. Once issued it runs even if the caller stops
/// waiting, unless its deadline passes before the turn starts; a turn that
/// has started always runs to its end, so an object's state is never left
/// half-updated by a timeout. A panic in a method fails that call with
/// `METHOD_PANICKED` and discards the activation; the next call activates
/// the object afresh.
pub use goverse_macros::object;

/// The names most programs need: `use goverse::prelude::*;`.
pub mod prelude {
    pub use crate::types::{
        BoolValue, BytesValue, DoubleValue, Empty, FloatValue, Int32Value, Int64Value, StringValue,
        UInt32Value, UInt64Value,
    };
    pub use crate::{Code, Context, Error, Node, Result};
}
