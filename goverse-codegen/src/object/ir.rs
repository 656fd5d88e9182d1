//! The intermediate representation of one object type.

use std::time::Duration;

/// Everything the expansion needs to know about one `#[goverse::object]` impl.
#[derive(Debug, Clone)]
pub struct ObjectIr {
    /// The user's type as written in `impl <self_ty>`.
    pub self_ty: syn::Type,
    /// The last identifier of the type, e.g. `Counter`.
    pub ident: syn::Ident,
    /// The type name objects are registered and addressed by.
    pub type_name: String,
    /// The generated proxy type, e.g. `CounterClient`.
    pub client: syn::Ident,
    /// Deactivate after this long without calls (`None`: the node default).
    pub idle_timeout: Option<Duration>,
    /// Whether the state is loaded from and saved to storage.
    pub persistent: bool,
    /// Save at most this long after a change instead of before the reply.
    pub write_behind: Option<Duration>,
    /// Methods callable through the proxy, in declaration order.
    pub methods: Vec<RpcMethod>,
    /// Lifecycle hooks found in the impl block.
    pub hooks: Hooks,
}

/// One method callable through the proxy and over the wire.
#[derive(Debug, Clone)]
pub struct RpcMethod {
    /// The Rust method name, e.g. `add`.
    pub ident: syn::Ident,
    /// The protobuf rpc name, e.g. `Add`.
    pub rpc_name: String,
    /// `&mut self` (a write turn) or `&self` (a read turn).
    pub mutates: bool,
    /// The request message type.
    pub request: syn::Type,
    /// The response message type.
    pub response: syn::Type,
    /// The method's doc attributes, copied onto the proxy method.
    pub docs: Vec<syn::Attribute>,
}

/// Methods marked as lifecycle hooks.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// `#[on_activate] async fn _(&mut self, ctx: &Context) -> Result<()>`.
    pub on_activate: Option<syn::Ident>,
    /// `#[on_deactivate] async fn _(&mut self, ctx: &Context) -> Result<()>`.
    pub on_deactivate: Option<syn::Ident>,
    /// `#[on_timer] async fn _(&mut self, ctx: &Context, timer: &str) -> Result<()>`.
    pub on_timer: Option<syn::Ident>,
}
