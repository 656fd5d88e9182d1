//! Procedural macro entry points of goverse.
//!
//! This crate only declares the attributes; all the work happens in
//! [`goverse_codegen`], a plain library that can be unit-tested without a
//! compiler plugin. Users reach these macros through the `goverse` crate
//! (`#[goverse::object]`); see its documentation for the full contract.

use proc_macro::TokenStream;

/// Turns an inherent `impl` block into a goverse object type.
///
/// See `goverse::object` for the documentation; this is its implementation.
#[proc_macro_attribute]
pub fn object(attr: TokenStream, item: TokenStream) -> TokenStream {
    goverse_codegen::object::expand(attr.into(), item.into()).into()
}
