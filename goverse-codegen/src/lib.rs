//! Code generation behind goverse.
//!
//! Two jobs live here, both plain Rust libraries so that they can be tested
//! without a compiler plugin:
//!
//! - [`object`]: the expansion of `#[goverse::object]` (parse -> IR -> validate
//!   -> expand). `goverse-macros` only forwards to [`object::expand`].
//! - `build` (feature `build`): the `build.rs` helper that compiles `.proto`
//!   files with protox (no system `protoc`), generating prost messages with
//!   proto3 JSON support and their `goverse::Message` impls.

pub mod duration;
pub mod object;
