//! The expansion of `#[goverse::object]`: parse -> IR -> validate -> expand.
//!
//! [`parse`](self::parse) reads the attribute and the impl block into an
//! [`ObjectIr`], collecting every problem it finds as a spanned error; the
//! expansion then works from the IR alone. On errors the user's impl block is
//! still emitted (minus our helper attributes) so that IDEs keep working.

mod args;
mod errors;
mod expand;
mod ir;
mod parse;

pub use ir::{Hooks, ObjectIr, RpcMethod};

use proc_macro2::TokenStream;

/// Expands `#[goverse::object(<attr>)]` applied to `item`.
///
/// Never panics: bad input becomes `compile_error!` invocations spanned on
/// the offending tokens, next to the user's original impl block.
pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    match parse::parse(attr, item.clone()) {
        Ok((ir, item_impl)) => expand::expand(&ir, &item_impl),
        Err(failure) => {
            let errors = failure.errors.to_compile_error();
            let original = match failure.item {
                Some(item) => quote::quote!(#item),
                None => item,
            };
            quote::quote! {
                #original
                #errors
            }
        }
    }
}

/// Parses the attribute and impl block into the IR without expanding it.
///
/// # Errors
///
/// Returns every problem found, combined into one [`syn::Error`].
pub fn analyze(attr: TokenStream, item: TokenStream) -> syn::Result<ObjectIr> {
    parse::parse(attr, item)
        .map(|(ir, _)| ir)
        .map_err(|failure| failure.errors)
}
