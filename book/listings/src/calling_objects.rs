//! Listings of "Calling objects" (`book/src/calling-objects.md`).

use example_counter::CounterClient;
use goverse::prelude::*;

/// Adds 5 to `my-counter` through a proxy made from the node, and returns
/// the new total.
#[rustfmt::skip]
pub async fn add_through_the_node(node: Node) -> goverse::Result<Int32Value> {
// ANCHOR: proxy_node
// From outside any object: through the node handle.
let counter = CounterClient::new(&node, "my-counter");
let total = counter.add(Int32Value { value: 5 }).await?;
// ANCHOR_END: proxy_node
Ok(total)
}

/// An object that adds to the counter `shared` from inside its own turns.
#[derive(Debug, Default)]
pub struct Bumper;

#[goverse::object]
#[rustfmt::skip]
impl Bumper {
// ANCHOR: proxy_context
// From inside another object's turn: through its context.
/// Adds `request.value` to the counter `shared`.
pub async fn bump(&mut self, ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
    CounterClient::new(ctx, "shared").add(request).await
}
// ANCHOR_END: proxy_context
}

/// Adds 1 to `my-counter` through a proxy whose calls may take 200 ms at
/// most, and returns the new total.
#[rustfmt::skip]
pub async fn add_with_timeout(node: Node) -> goverse::Result<Int32Value> {
// ANCHOR: with_timeout
use std::time::Duration;

let counter = CounterClient::new(&node, "my-counter").with_timeout(Duration::from_millis(200));
// ANCHOR_END: with_timeout
counter.add(Int32Value { value: 1 }).await
}

#[cfg(test)]
mod tests {
    use example_counter::Counter;

    use super::*;

    #[tokio::test]
    async fn proxies_from_a_node_and_from_a_context_reach_their_objects() {
        let node = Node::builder()
            .register::<Counter>()
            .register::<Bumper>()
            .start()
            .await
            .expect("a node");
        assert_eq!(add_through_the_node(node.clone()).await.expect("add").value, 5);
        assert_eq!(add_through_the_node(node.clone()).await.expect("add").value, 10);

        let bumper = BumperClient::new(&node, "b1");
        assert_eq!(bumper.bump(Int32Value { value: 2 }).await.expect("bump").value, 2);
        assert_eq!(bumper.bump(Int32Value { value: 3 }).await.expect("bump").value, 5);
        let shared = CounterClient::new(&node, "shared").get(Empty {}).await.expect("get");
        assert_eq!(shared.value, 5, "the bumps went to `shared`");

        let total = add_with_timeout(node.clone()).await.expect("in time");
        assert_eq!(total.value, 11);
        node.shutdown().await;
    }
}
