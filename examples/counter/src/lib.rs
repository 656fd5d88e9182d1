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

// ANCHOR: serve
/// The quick start's server: an embedded node hosting `Counter` and
/// `Visits` (state in the SQLite file `database`), with the HTTP gate on
/// `http` and the object `my-counter` created, ready for curl.
pub async fn serve(
    http: std::net::SocketAddr,
    database: &std::path::Path,
) -> goverse::Result<(Node, goverse::gate::Gate)> {
    use goverse::gate::{Gate, GateOptions};

    let node = Node::builder()
        .register::<Counter>()
        .register::<Visits>()
        .storage(goverse::storage::SqliteStorage::open(database).await?)
        .start()
        .await?;
    node.create::<Counter>("my-counter").await?;
    let gate = Gate::start(&node, GateOptions::default().http(http)).await?;
    Ok((node, gate))
}

/// The seed README's request body: a base64 protobuf `Any` holding
/// `Int32Value{value: 5}`.
pub const ADD_FIVE_ANY: &str =
    r#"{"request":"Ci50eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5wcm90b2J1Zi5JbnQzMlZhbHVlEgIIBQ=="}"#;
// ANCHOR_END: serve
