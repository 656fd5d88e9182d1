//! Code generation behind goverse.
//!
//! A plain Rust library, so that it can be tested without a compiler plugin:
//! [`object`] is the expansion of `#[goverse::object]` (parse -> IR ->
//! validate -> expand); `goverse-macros` only forwards to [`object::expand`].
//! With the `build` feature, `build` is the `build.rs` helper that compiles
//! `.proto` files into goverse messages.

#[cfg(feature = "build")]
pub mod build;
pub mod duration;
pub mod object;
