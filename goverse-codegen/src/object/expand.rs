//! Turns an [`ObjectIr`] into tokens: the user's impl block, the `Object`
//! impl (dispatch table, descriptor, hooks, state codec) and the typed proxy.
//!
//! Generated code names only `::goverse::__private::...` and absolute std
//! paths through it, so it works under `#![no_implicit_prelude]` and the user
//! needs no direct dependency on prost, serde or tokio.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ItemImpl;
use syn::spanned::Spanned;

use super::ir::{ObjectIr, RpcMethod};

pub(crate) fn expand(ir: &ObjectIr, item: &ItemImpl) -> TokenStream {
    let assertions = assertions(ir);
    let object_impl = object_impl(ir);
    let proxy = proxy(ir);
    quote! {
        #item
        #assertions
        #object_impl
        #proxy
    }
}

/// Trait-bound checks spanned on the user's types, so a type that is not a
/// message (or a state that cannot be stored) is reported where it is written.
fn assertions(ir: &ObjectIr) -> TokenStream {
    let p = quote!(::goverse::__private);
    let self_ty = &ir.self_ty;
    let mut checks = Vec::new();
    for method in &ir.methods {
        for ty in [&method.request, &method.response] {
            checks.push(quote_spanned! {ty.span()=> #p::assert_message::<#ty>(); });
        }
    }
    checks.push(quote_spanned! {self_ty.span()=> #p::assert_object_state::<#self_ty>(); });
    if ir.persistent {
        checks.push(quote_spanned! {self_ty.span()=> #p::assert_persistent_state::<#self_ty>(); });
    }
    quote! {
        const _: () = {
            #[allow(dead_code)]
            fn __goverse_assertions() {
                #(#checks)*
            }
        };
    }
}

fn object_impl(ir: &ObjectIr) -> TokenStream {
    let p = quote!(::goverse::__private);
    let self_ty = &ir.self_ty;
    let type_name = &ir.type_name;
    let persistent = ir.persistent;
    let optional_duration = |duration: Option<std::time::Duration>| match duration {
        Some(duration) => {
            let secs = duration.as_secs();
            let nanos = duration.subsec_nanos();
            quote!(#p::Some(#p::Duration::new(#secs, #nanos)))
        }
        None => quote!(#p::None),
    };
    let idle_timeout = optional_duration(ir.idle_timeout);
    let write_behind = optional_duration(ir.write_behind);
    let method_descriptors = ir.methods.iter().map(|method| {
        let rpc_name = &method.rpc_name;
        let rust_name = method.ident.to_string();
        let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name);
        let mutates = method.mutates;
        let request = &method.request;
        let response = &method.response;
        quote_spanned! {request.span()=>
            #p::MethodDescriptor {
                name: #rpc_name,
                rust_name: #rust_name,
                mutates: #mutates,
                request: <#request as #p::Message>::FULL_NAME,
                request_file: <#request as #p::Message>::PROTO_FILE,
                response: <#response as #p::Message>::FULL_NAME,
                response_file: <#response as #p::Message>::PROTO_FILE,
            }
        }
    });
    let arms = ir
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| dispatch_arm(index, method));
    let transcode_arms = ir.methods.iter().enumerate().map(|(index, method)| {
        let response = &method.response;
        quote_spanned! {response.span()=>
            #index => #p::encode(to, &#p::decode::<#response>(from, body)?),
        }
    });
    let hooks = hook_fns(ir);
    let state = state_fns(ir);
    let create = quote_spanned! {self_ty.span()=> <Self as #p::Default>::default() };
    quote! {
        impl #p::Object for #self_ty {
            const DESCRIPTOR: &'static #p::ObjectDescriptor = &#p::ObjectDescriptor {
                type_name: #type_name,
                methods: &[#(#method_descriptors),*],
                idle_timeout: #idle_timeout,
                persistent: #persistent,
                write_behind: #write_behind,
            };

            fn create() -> Self {
                #create
            }

            fn dispatch<'a>(
                receiver: #p::Receiver<'a, Self>,
                ctx: &'a #p::Context<'_>,
                method: usize,
                codec: #p::Codec,
                body: &'a [u8],
            ) -> #p::BoxFuture<'a, #p::Result<#p::Vec<u8>>> {
                match method {
                    #(#arms)*
                    _ => #p::unknown_method::<Self>(method),
                }
            }

            fn transcode_response(
                method: usize,
                from: #p::Codec,
                to: #p::Codec,
                body: &[u8],
            ) -> #p::Result<#p::Vec<u8>> {
                match method {
                    #(#transcode_arms)*
                    _ => #p::Err(#p::unknown_method_error::<Self>(method)),
                }
            }

            #hooks
            #state
        }
    }
}

fn dispatch_arm(index: usize, method: &RpcMethod) -> TokenStream {
    let p = quote!(::goverse::__private);
    let ident = &method.ident;
    let request = &method.request;
    let this = if method.mutates {
        quote! {
            let this = match receiver.into_mut() {
                #p::Some(this) => this,
                #p::None => return #p::receiver_mismatch::<Self>(method),
            };
        }
    } else {
        quote!(let this = receiver.into_ref();)
    };
    let decode = quote_spanned! {request.span()=> #p::decode::<#request>(codec, body) };
    quote! {
        #index => {
            #this
            #p::Box::pin(async move {
                let request = #decode?;
                let response = Self::#ident(this, ctx, request).await?;
                #p::encode(codec, &response)
            })
        }
    }
}

fn hook_fns(ir: &ObjectIr) -> TokenStream {
    let p = quote!(::goverse::__private);
    let mut tokens = TokenStream::new();
    for (hook, name) in [
        (&ir.hooks.on_activate, "on_activate"),
        (&ir.hooks.on_deactivate, "on_deactivate"),
    ] {
        if let Some(user_fn) = hook {
            let trait_fn = format_ident!("{}", name);
            tokens.extend(quote! {
                fn #trait_fn<'a>(&'a mut self, ctx: &'a #p::Context<'_>) -> #p::BoxFuture<'a, #p::Result<()>> {
                    #p::Box::pin(Self::#user_fn(self, ctx))
                }
            });
        }
    }
    if let Some(user_fn) = &ir.hooks.on_timer {
        tokens.extend(quote! {
            fn on_timer<'a>(&'a mut self, ctx: &'a #p::Context<'_>, timer: &'a str) -> #p::BoxFuture<'a, #p::Result<()>> {
                #p::Box::pin(Self::#user_fn(self, ctx, timer))
            }
        });
    }
    tokens
}

fn state_fns(ir: &ObjectIr) -> TokenStream {
    let p = quote!(::goverse::__private);
    if !ir.persistent {
        return TokenStream::new();
    }
    let span = ir.self_ty.span();
    let save = quote_spanned! {span=> #p::save_state(self) };
    let load = quote_spanned! {span=> #p::load_state(data) };
    quote! {
        fn save_state(&self) -> #p::Option<#p::Result<#p::Vec<u8>>> {
            #p::Some(#save)
        }

        fn load_state(data: &[u8]) -> #p::Result<Self> {
            #load
        }
    }
}

fn proxy(ir: &ObjectIr) -> TokenStream {
    let p = quote!(::goverse::__private);
    let self_ty = &ir.self_ty;
    let client = &ir.client;
    let type_name = &ir.type_name;
    let ident = &ir.ident;
    let doc = format!(
        "Typed proxy for [`{ident}`] objects (type name `{type_name}`), generated by `#[goverse::object]`.\n\n\
         Call through a node (`{client}::new(&node, \"id\")`) or, from inside another object, \
         through its context (`{client}::new(ctx, \"id\")`)."
    );
    let methods = ir.methods.iter().enumerate().map(|(index, method)| {
        let RpcMethod {
            ident,
            request,
            response,
            docs,
            ..
        } = method;
        let call_span = request.span();
        let (call, receiver) = if method.mutates {
            (quote!(call_mut), quote!(&'a mut #self_ty))
        } else {
            (quote!(call_ref), quote!(&'a #self_ty))
        };
        let call_expr =
            quote_spanned! {call_span=> self.inner.#call(#index, invoke, request).await };
        quote! {
            #(#docs)*
            pub async fn #ident(&self, request: #request) -> #p::Result<#response> {
                fn invoke<'a>(
                    this: #receiver,
                    ctx: &'a #p::Context<'_>,
                    request: #request,
                ) -> #p::BoxFuture<'a, #p::Result<#response>> {
                    #p::Box::pin(<#self_ty>::#ident(this, ctx, request))
                }
                #call_expr
            }
        }
    });
    // Only persistent types record outcomes, so only their proxies offer it.
    let reliable = if ir.persistent {
        quote! {
            /// Returns a proxy making a reliable call under `call_id`, the
            /// caller's name for one operation (unique per object): the
            /// outcome is recorded with the state change it makes, and a
            /// retry with the same id returns the recorded outcome without
            /// running the method again.
            ///
            /// `proxy.reliable("deposit-42").deposit(request)`
            pub fn reliable(&self, call_id: impl #p::Into<#p::String>) -> Self {
                Self { inner: self.inner.reliable(call_id) }
            }
        }
    } else {
        TokenStream::new()
    };
    // A type with a method of its own named `create` or `delete` keeps it;
    // its lifecycle calls are then `node.create::<T>(id)` and `delete`.
    let own = |name: &str| ir.methods.iter().any(|m| m.ident == name);
    let create = (!own("create")).then(|| {
        quote! {
            /// Activates the object now, without calling a method, on
            /// whichever node owns it (see `Node::create`).
            pub async fn create(&self) -> #p::Result<()> {
                self.inner.create().await
            }
        }
    });
    let delete = (!own("delete")).then(|| {
        quote! {
            /// Deactivates the object and deletes its stored state, on
            /// whichever node owns it (see `Node::delete`).
            pub async fn delete(&self) -> #p::Result<()> {
                self.inner.delete().await
            }
        }
    });
    quote! {
        #[doc = #doc]
        pub struct #client {
            inner: #p::ObjectRef<#self_ty>,
        }

        impl #p::Clone for #client {
            fn clone(&self) -> Self {
                Self { inner: #p::Clone::clone(&self.inner) }
            }
        }

        impl #p::fmt::Debug for #client {
            fn fmt(&self, f: &mut #p::fmt::Formatter<'_>) -> #p::fmt::Result {
                #p::fmt::Debug::fmt(&self.inner, f)
            }
        }

        impl #client {
            /// Creates a proxy for the object with this id, calling through `via`:
            /// a `&Node`, or an object's `&Context` for calls made inside a turn.
            ///
            /// No call is made and nothing is activated until a method is called.
            pub fn new(via: impl #p::IntoCaller, id: impl #p::Into<#p::String>) -> Self {
                Self { inner: #p::ObjectRef::new(via, #p::Into::into(id)) }
            }

            /// The id of the object this proxy calls.
            pub fn id(&self) -> &str {
                self.inner.id()
            }

            /// Returns a proxy whose calls use this timeout instead of the default.
            pub fn with_timeout(self, timeout: #p::Duration) -> Self {
                Self { inner: self.inner.with_timeout(timeout) }
            }

            #reliable
            #create
            #delete
            #(#methods)*
        }
    }
}
