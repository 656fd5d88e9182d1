//! The quick-start object: a counter. The runnable program is
//! `examples/counter.rs` in this crate.
//!
//! Run with: cargo run --example counter

use goverse::prelude::*;

// ANCHOR: object
/// A counter object. Its state is plain Rust data; goverse keeps one live
/// instance per id and runs its calls as turns.
#[derive(Debug, Default)]
pub struct Counter {
    value: i32,
}

#[goverse::object]
impl Counter {
    /// Adds `request.value` and returns the new total.
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        self.value += request.value;
        Ok(Int32Value { value: self.value })
    }

    /// Returns the current total. `&self`: reads may run side by side.
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: self.value })
    }
}
// ANCHOR_END: object

// ANCHOR: visits
/// How many times the quick start has run. A persistent object: its state
/// (its serde form) is stored in SQLite after every `&mut self` call, so it
/// survives restarts of the program.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Visits {
    count: i64,
}

#[goverse::object(persistent)]
impl Visits {
    /// Counts one more visit and returns the total.
    pub async fn visit(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        self.count += 1;
        Ok(Int64Value { value: self.count })
    }
}
// ANCHOR_END: visits
