//! The Rust listings of the goverse book (`book/src`), compiled, so that a
//! change of goverse's API that a listing no longer matches breaks the
//! build, and, where they run without etcd or PostgreSQL, run by the tests.
//!
//! Each chapter's listings are in a module of their own, between
//! `// ANCHOR: name` and `// ANCHOR_END: name` lines; the book includes them
//! with `{{#include ../listings/src/<module>.rs:name}}`. A listing that is a
//! fragment (statements of a function, or of a method) sits in a real
//! function, written at the left margin under `#[rustfmt::skip]`: mdBook
//! includes the anchored lines as they are, so the book shows them without
//! the indentation of the function around them.

pub mod architecture;
pub mod calling_objects;
pub mod cluster;
pub mod first_object;
pub mod gate;
pub mod push;
pub mod reliable_calls;
pub mod security;
pub mod state;

/// The messages of `proto/chat.proto`.
// ANCHOR: include_proto
// src/lib.rs, for `package chat;`
pub mod chat {
    goverse::include_proto!("chat");
}
// ANCHOR_END: include_proto

/// The messages of `proto/payments.proto`.
pub mod payments {
    goverse::include_proto!("payments");
}

/// What the tests share: a gate in front of a node, with a
/// `goverse::Client` connected to it, and a wait with a deadline.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use goverse::gate::{Gate, GateOptions};
    use goverse::{Client, ClientOptions, Node};

    /// How long a condition that should hold within milliseconds may take.
    pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

    /// A gate serving gRPC on a free port in front of `node`, and a client
    /// connected to it.
    pub(crate) async fn gate_and_client(node: &Node, options: GateOptions) -> (Gate, Client) {
        gate_and_client_with(node, options, ClientOptions::default()).await
    }

    /// As [`gate_and_client`], with the client's own options.
    pub(crate) async fn gate_and_client_with(
        node: &Node,
        options: GateOptions,
        client: ClientOptions,
    ) -> (Gate, Client) {
        let options = options.grpc("127.0.0.1:0".parse().expect("an address"));
        let gate = Gate::start(node, options).await.expect("a gate");
        let address = gate.grpc_address().expect("serving gRPC");
        let client =
            Client::connect([format!("http://{address}")], client).await.expect("a client");
        (gate, client)
    }

    /// Polls `condition` until it holds.
    ///
    /// # Panics
    ///
    /// When it does not hold within [`PATIENCE`].
    pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
