//! The boxed future type: a leaf module every other one may use.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what generated code and hooks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
