//! Reads the attribute and the impl block into an [`ObjectIr`], collecting
//! every usage error with the span of the exact tokens at fault.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, PathArguments, ReturnType, Type,
    Visibility,
};

use super::args::Args;
use super::errors::Errors;
use super::ir::{Hooks, ObjectIr, RpcMethod};

/// Names the generated proxy defines itself; a method may not take them.
const RESERVED: &[&str] = &["new", "id", "with_timeout", "reliable", "clone", "fmt"];

/// The helper attributes `#[goverse::object]` reads and strips.
const HOOK_ATTRS: &[&str] = &["on_activate", "on_deactivate", "on_timer"];

pub(crate) struct Failure {
    pub(crate) errors: syn::Error,
    /// The impl block with helper attributes stripped, when it parsed.
    pub(crate) item: Option<Box<ItemImpl>>,
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> Result<(ObjectIr, ItemImpl), Failure> {
    let mut errors = Errors::default();
    let args = Args::parse(attr, &mut errors);
    let mut item_impl: ItemImpl = match syn::parse2(item) {
        Ok(item) => item,
        Err(error) => {
            let message = "`#[goverse::object]` goes on an inherent impl block, such as `impl Counter { ... }`";
            let mut combined = syn::Error::new(error.span(), message);
            combined.combine(error);
            return Err(Failure {
                errors: combined,
                item: None,
            });
        }
    };

    let ident = check_impl_header(&item_impl, &mut errors);
    let mut methods = Vec::new();
    let mut hooks = Hooks::default();
    for impl_item in &mut item_impl.items {
        let ImplItem::Fn(function) = impl_item else {
            continue;
        };
        name_context_lifetimes(function);
        match take_hook_attr(function, &mut errors) {
            Some(hook) => check_hook(function, &hook, &mut hooks, &mut errors),
            None => {
                if let Some(method) = rpc_method(function, ident.as_ref(), &mut errors) {
                    methods.push(method);
                }
            }
        }
    }
    check_unique_rpc_names(&methods, &mut errors);

    if let Err(errors) = errors.into_result() {
        return Err(Failure {
            errors,
            item: Some(Box::new(item_impl)),
        });
    }
    let Some(ident) = ident else {
        // check_impl_header reported why; unreachable when errors are empty.
        let error = syn::Error::new(item_impl.self_ty.span(), "expected a type name");
        return Err(Failure {
            errors: error,
            item: Some(Box::new(item_impl)),
        });
    };
    let type_name = args
        .name
        .map_or_else(|| ident.to_string(), |name| name.value());
    let ir = ObjectIr {
        self_ty: (*item_impl.self_ty).clone(),
        client: quote::format_ident!("{}Client", ident),
        ident,
        type_name,
        idle_timeout: args.idle_timeout,
        persistent: args.persistent,
        write_behind: args.write_behind.map(|(interval, _)| interval),
        methods,
        hooks,
    };
    Ok((ir, item_impl))
}

/// Checks `impl Type { .. }` and returns the type's last identifier.
fn check_impl_header(item: &ItemImpl, errors: &mut Errors) -> Option<syn::Ident> {
    if let Some((_, path, _)) = &item.trait_ {
        errors.spanned(
            path,
            "`#[goverse::object]` goes on an inherent impl block, not a trait impl; write `impl Counter { ... }`",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        errors.spanned(
            unsafety,
            "`#[goverse::object]` impl blocks cannot be `unsafe`",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "object types cannot be generic: the runtime registers one concrete type per name",
        );
    }
    match &*item.self_ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().and_then(|last| {
            if last.arguments.is_empty() {
                Some(last.ident.clone())
            } else {
                errors.spanned(
                    &last.arguments,
                    "object types cannot be generic: the runtime registers one concrete type per name",
                );
                None
            }
        }),
        other => {
            errors.spanned(other, "expected a plain type name such as `impl Counter`");
            None
        }
    }
}

/// Removes a lifecycle attribute from the method and returns its name.
fn take_hook_attr(function: &mut ImplItemFn, errors: &mut Errors) -> Option<String> {
    let mut found: Option<String> = None;
    function.attrs.retain(|attr| {
        let Some(name) = HOOK_ATTRS.iter().find(|name| attr.path().is_ident(name)) else {
            return true;
        };
        if let Err(error) = attr.meta.require_path_only() {
            errors.push(error);
        }
        if let Some(previous) = &found {
            errors.spanned(
                attr,
                format!("this method is already marked `#[{previous}]`"),
            );
        } else {
            found = Some((*name).to_string());
        }
        false
    });
    found
}

fn check_hook(function: &ImplItemFn, hook: &str, hooks: &mut Hooks, errors: &mut Errors) {
    let sig = &function.sig;
    let expected = if hook == "on_timer" {
        "`async fn name(&mut self, ctx: &Context, timer: &str) -> goverse::Result<()>`"
    } else {
        "`async fn name(&mut self, ctx: &Context) -> goverse::Result<()>`"
    };
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("`#[{hook}]` methods must be async: {expected}"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!("`#[{hook}]` methods cannot be generic: {expected}"),
        );
    }
    let wanted_args = if hook == "on_timer" { 3 } else { 2 };
    let receiver_ok = matches!(
        sig.inputs.first(),
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some()
    );
    if !receiver_ok || sig.inputs.len() != wanted_args {
        errors.spanned(
            &sig.inputs,
            format!("`#[{hook}]` must have the signature {expected}"),
        );
    }
    if matches!(sig.output, ReturnType::Default) {
        errors.spanned(
            sig,
            format!("`#[{hook}]` must return `goverse::Result<()>`: {expected}"),
        );
    }
    let slot = match hook {
        "on_activate" => &mut hooks.on_activate,
        "on_deactivate" => &mut hooks.on_deactivate,
        _ => &mut hooks.on_timer,
    };
    if let Some(previous) = slot {
        errors.spanned(
            &sig.ident,
            format!("only one `#[{hook}]` method is allowed; `{previous}` is already marked"),
        );
    } else {
        *slot = Some(sig.ident.clone());
    }
}

/// Reads a `pub` method as an rpc method; private methods are left alone.
fn rpc_method(
    function: &ImplItemFn,
    object: Option<&syn::Ident>,
    errors: &mut Errors,
) -> Option<RpcMethod> {
    match &function.vis {
        Visibility::Public(_) => {}
        Visibility::Inherited => return None,
        Visibility::Restricted(restricted) => {
            errors.spanned(
                restricted,
                "the generated proxy is `pub` and cannot call a method with restricted visibility; \
                 make the method `pub` (an rpc method) or private (a helper)",
            );
            return None;
        }
    }
    let sig = &function.sig;
    let mut errors_here = Errors::default();

    if sig.asyncness.is_none() {
        errors_here.spanned(
            sig.fn_token,
            "object methods must be `async`: write `pub async fn name(&mut self, ctx: &Context, request: Request) -> goverse::Result<Response>`",
        );
    }
    if let Some(constness) = &sig.constness {
        errors_here.spanned(constness, "object methods cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors_here.spanned(unsafety, "object methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors_here.spanned(abi, "object methods cannot declare an ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors_here.spanned(variadic, "object methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors_here.spanned(
            &sig.generics,
            "object methods cannot be generic: remote callers must know the exact request and response types",
        );
    }

    let name = sig.ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    if RESERVED.contains(&name) {
        let client = object.map_or_else(|| "the proxy".to_string(), |o| format!("`{o}Client`"));
        errors_here.spanned(
            &sig.ident,
            format!(
                "method name `{name}` conflicts with generated fn `{name}` of {client}; rename the method"
            ),
        );
    }
    if name.starts_with("__goverse") {
        errors_here.spanned(
            &sig.ident,
            "names starting with `__goverse` are reserved for generated code",
        );
    }

    let mut inputs = sig.inputs.iter().peekable();
    let receiver_form = "object methods take `&self` or `&mut self` first: `(&mut self, ctx: &Context, request: Request)`";
    let mutates = match inputs.peek() {
        Some(FnArg::Receiver(receiver)) => {
            if receiver.reference.is_none() || receiver.colon_token.is_some() {
                errors_here.spanned(
                    receiver,
                    "expected `&self` or `&mut self`: the runtime owns the object and lends it to each call",
                );
            }
            inputs.next();
            receiver.mutability.is_some()
        }
        Some(other) => {
            errors_here.spanned(other, receiver_form);
            false
        }
        None => {
            errors_here.spanned(&sig.ident, receiver_form);
            false
        }
    };

    // With the receiver missing, the other arguments cannot be told apart.
    let mut request = None;
    if let Some(FnArg::Receiver(_)) = sig.inputs.first() {
        let remaining = sig.inputs.len() - 1;
        let ctx_missing =
            !matches!(sig.inputs.iter().nth(1), Some(FnArg::Typed(ctx)) if is_context_ref(&ctx.ty));
        match inputs.next() {
            Some(FnArg::Typed(ctx)) if is_context_ref(&ctx.ty) => {}
            Some(other) if remaining == 1 => errors_here.spanned(
                other,
                "missing `ctx: &Context` argument before the request: object methods take `(&self, ctx: &Context, request: Request)`",
            ),
            Some(other) => errors_here.spanned(
                other,
                "the second argument must be the call context: `ctx: &Context`",
            ),
            None => errors_here.spanned(
                &sig.inputs,
                "missing `ctx: &Context` and request arguments: object methods take `(&self, ctx: &Context, request: Request)`",
            ),
        }
        request = match inputs.next() {
            Some(FnArg::Typed(request)) => match &*request.ty {
                Type::Reference(_) | Type::ImplTrait(_) | Type::Infer(_) => {
                    errors_here.spanned(
                        &request.ty,
                        "the request must be an owned protobuf message type, such as `AddRequest` or `goverse::types::Int32Value`",
                    );
                    None
                }
                ty => Some(ty.clone()),
            },
            Some(other) => {
                errors_here.spanned(
                    other,
                    "expected a request argument such as `request: AddRequest`",
                );
                None
            }
            None if remaining == 1 && ctx_missing => None,
            None => {
                errors_here.spanned(
                    &sig.inputs,
                    "missing request argument: object methods take `(&self, ctx: &Context, request: Request)`; \
                     use `goverse::types::Empty` for a method without input",
                );
                None
            }
        };
    }
    let has_receiver = matches!(sig.inputs.first(), Some(FnArg::Receiver(_)));
    for extra in inputs.filter(|_| has_receiver) {
        errors_here.spanned(
            extra,
            "unexpected argument: object methods take exactly `(&self, ctx: &Context, request: Request)`; \
             put several values into one request message",
        );
    }

    let response = match &sig.output {
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => Some(ok.clone()),
            None => {
                errors_here.spanned(
                    ty,
                    "object methods must return `goverse::Result<Response>` where `Response` is a protobuf message",
                );
                None
            }
        },
        ReturnType::Default => {
            errors_here.spanned(
                sig,
                "object methods must return `goverse::Result<Response>`; use `goverse::types::Empty` for no output",
            );
            None
        }
    };

    if let Err(error) = errors_here.into_result() {
        errors.push(error);
        return None;
    }
    Some(RpcMethod {
        ident: sig.ident.clone(),
        rpc_name: rpc_name(name),
        mutates,
        request: request?,
        response: response?,
        docs: function
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("doc"))
            .cloned()
            .collect(),
    })
}

/// `&Context` or `&goverse::Context` (any path ending in `Context`, with
/// or without its lifetime).
fn is_context_ref(ty: &Type) -> bool {
    let Type::Reference(reference) = ty else {
        return false;
    };
    if reference.mutability.is_some() {
        return false;
    }
    matches!(&*reference.elem, Type::Path(path)
        if path.qself.is_none()
            && path.path.segments.last().is_some_and(|s| s.ident == "Context" && is_lifetime_only(&s.arguments)))
}

/// No generic arguments, or a single lifetime.
fn is_lifetime_only(arguments: &PathArguments) -> bool {
    match arguments {
        PathArguments::None => true,
        PathArguments::AngleBracketed(angle) => {
            angle.args.len() == 1 && matches!(angle.args[0], GenericArgument::Lifetime(_))
        }
        PathArguments::Parenthesized(_) => false,
    }
}

/// Writes `&Context` arguments as `&Context<'_>`. A context borrows from
/// its turn, so the type has a lifetime, which an `async fn` may not leave
/// out; objects' methods keep the short form.
fn name_context_lifetimes(function: &mut ImplItemFn) {
    for input in &mut function.sig.inputs {
        let FnArg::Typed(argument) = input else {
            continue;
        };
        if !is_context_ref(&argument.ty) {
            continue;
        }
        let Type::Reference(reference) = &mut *argument.ty else {
            continue;
        };
        let Type::Path(path) = &mut *reference.elem else {
            continue;
        };
        if let Some(last) = path.path.segments.last_mut()
            && matches!(last.arguments, PathArguments::None)
        {
            let span = last.ident.span();
            last.arguments = PathArguments::AngleBracketed(syn::parse_quote_spanned!(span=> <'_>));
        }
    }
}

/// The `T` of `Result<T>` / `goverse::Result<T>`.
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if args.args.len() != 1 {
        return None;
    }
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}

/// `add_item` -> `AddItem`: the protobuf rpc name of a method.
pub(crate) fn rpc_name(method: &str) -> String {
    method
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn check_unique_rpc_names(methods: &[RpcMethod], errors: &mut Errors) {
    for (index, method) in methods.iter().enumerate() {
        if let Some(first) = methods[..index]
            .iter()
            .find(|m| m.rpc_name == method.rpc_name)
        {
            errors.spanned(
                &method.ident,
                format!(
                    "rpc name `{}` of `{}` is already used by `{}`; rename one of the methods",
                    method.rpc_name, method.ident, first.ident
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_are_pascal_case() {
        assert_eq!(rpc_name("add"), "Add");
        assert_eq!(rpc_name("add_item"), "AddItem");
        assert_eq!(rpc_name("_private_thing"), "PrivateThing");
        assert_eq!(rpc_name("get2"), "Get2");
    }
}
