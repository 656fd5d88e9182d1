//! `goverse::Client` through real gates: typed proxies unchanged, errors
//! with their codes, reliable calls, pushes, and failover to another gate
//! (for calls and for the push stream) when one goes away.

use std::time::Duration;

use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};
use goverse_tests::{Backend, PATIENCE, unique_prefix, wait_until};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Wallet {
    coins: i64,
}

#[goverse::object(persistent)]
impl Wallet {
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.coins += request.value;
        Ok(Int64Value { value: self.coins })
    }

    pub async fn withdraw(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        if request.value > self.coins {
            return Err(goverse::Error::application(
                "INSUFFICIENT_FUNDS",
                format!("{} coins", self.coins),
            ));
        }
        self.coins -= request.value;
        Ok(Int64Value { value: self.coins })
    }

    /// Pushes the balance to the client named in the request.
    pub async fn notify(&self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        ctx.push(&request.value, &Int64Value { value: self.coins })
            .await?;
        Ok(Empty {})
    }
}

fn grpc_options() -> GateOptions {
    GateOptions::default().grpc("127.0.0.1:0".parse().expect("address"))
}

#[tokio::test]
async fn typed_proxies_work_through_a_client() {
    let node = Node::builder()
        .register::<Wallet>()
        .start()
        .await
        .expect("node");
    let gate = Gate::start(&node, grpc_options()).await.expect("gate");
    let client = Client::connect(
        [format!("http://{}", gate.grpc_address().expect("grpc"))],
        ClientOptions::default(),
    )
    .await
    .expect("connect");

    let wallet = WalletClient::new(&client, "w1");
    assert_eq!(
        wallet
            .deposit(Int64Value { value: 5 })
            .await
            .expect("deposit")
            .value,
        5
    );
    let error = wallet
        .withdraw(Int64Value { value: 9 })
        .await
        .expect_err("too much");
    assert_eq!(error.code(), "INSUFFICIENT_FUNDS");
    assert_eq!(error.to_string(), "INSUFFICIENT_FUNDS: 5 coins");
    let reliable = || {
        let wallet = wallet.reliable("d-1");
        async move { wallet.deposit(Int64Value { value: 10 }).await }
    };
    assert_eq!(reliable().await.expect("once").value, 15);
    assert_eq!(reliable().await.expect("again").value, 15, "recorded");
    let error = WalletClient::new(&client, "")
        .deposit(Int64Value { value: 1 })
        .await
        .expect_err("empty id");
    assert_eq!(error.code(), "INVALID_OBJECT_ID");

    // Pushes.
    let mut messages = client.messages().await.expect("registered");
    let me = client.client_id().expect("an id");
    wallet
        .notify(StringValue { value: me })
        .await
        .expect("notify");
    let pushed = tokio::time::timeout(PATIENCE, messages.recv())
        .await
        .expect("a push in time")
        .expect("a push");
    assert_eq!(pushed.sequence, 1);
    assert_eq!(pushed.decode::<Int64Value>().expect("Int64Value").value, 15);
    assert_eq!(
        client.messages().await.expect_err("once").code(),
        "INVALID_CONFIG"
    );

    client.delete::<Wallet>("w1").await.expect("delete");
    assert_eq!(
        wallet
            .deposit(Int64Value { value: 1 })
            .await
            .expect("fresh")
            .value,
        1
    );
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_fails_over_to_another_gate() {
    let backend = Backend::memory();
    let prefix = unique_prefix("client");
    let start = |id: &'static str| {
        let (backend, prefix) = (&backend, prefix.clone());
        async move {
            Node::builder()
                .register::<Wallet>()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .coordinator(backend.coordinator(&prefix, Duration::from_secs(1)).await)
                .start()
                .await
                .expect("node")
        }
    };
    let (a, b) = (start("a").await, start("b").await);
    let gate_a = Gate::start(&a, grpc_options()).await.expect("gate a");
    let gate_b = Gate::start(&b, grpc_options()).await.expect("gate b");
    let urls = [gate_a.grpc_address(), gate_b.grpc_address()]
        .map(|address| format!("http://{}", address.expect("grpc")));
    let client = Client::connect(
        urls,
        ClientOptions::default().backoff(Duration::from_millis(20), Duration::from_millis(200)),
    )
    .await
    .expect("connect");
    let wallet = WalletClient::new(&client, "w");
    assert_eq!(
        wallet
            .deposit(Int64Value { value: 1 })
            .await
            .expect("through a")
            .value,
        1
    );
    let mut messages = client.messages().await.expect("registered");
    let first_id = client.client_id().expect("id");
    assert!(
        first_id.starts_with(&format!("{}/", a.address())),
        "{first_id}"
    );

    // Gate a goes away: calls and the push stream move to gate b.
    gate_a.shutdown().await;
    assert_eq!(
        wallet
            .deposit(Int64Value { value: 1 })
            .await
            .expect("through b")
            .value,
        2
    );
    wait_until("the client registers with gate b", PATIENCE, || {
        let client = client.clone();
        let prefix = format!("{}/", b.address());
        async move { client.client_id().is_some_and(|id| id.starts_with(&prefix)) }
    })
    .await;
    let me = client.client_id().expect("id");
    wallet
        .notify(StringValue { value: me })
        .await
        .expect("notify");
    let pushed = tokio::time::timeout(PATIENCE, messages.recv())
        .await
        .expect("a push in time")
        .expect("a push");
    assert_eq!(pushed.decode::<Int64Value>().expect("Int64Value").value, 2);

    gate_b.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Accepts one bearer token.
struct OneToken;

impl goverse::gate::Authenticator for OneToken {
    async fn authenticate(
        &self,
        request: &goverse::gate::AuthRequest,
    ) -> Result<goverse::access::Identity, String> {
        match request.bearer_token() {
            Some("s3cret") => Ok(goverse::access::Identity::new("carol", ["member"])),
            _ => Err("who are you?".to_string()),
        }
    }
}

#[tokio::test]
async fn a_client_authenticates_with_its_metadata() {
    let node = Node::builder()
        .register::<Wallet>()
        .start()
        .await
        .expect("node");
    let gate = Gate::start(&node, grpc_options().authenticator(OneToken))
        .await
        .expect("gate");
    let url = format!("http://{}", gate.grpc_address().expect("grpc"));
    let anonymous = Client::connect([url.clone()], ClientOptions::default())
        .await
        .expect("connect");
    let error = WalletClient::new(&anonymous, "w")
        .deposit(Int64Value { value: 1 })
        .await
        .expect_err("no token");
    assert_eq!(error.code(), "UNAUTHENTICATED");
    let carol = Client::connect(
        [url],
        ClientOptions::default().metadata("Authorization", "Bearer s3cret"),
    )
    .await
    .expect("connect");
    let wallet = WalletClient::new(&carol, "w");
    assert_eq!(
        wallet
            .deposit(Int64Value { value: 1 })
            .await
            .expect("deposit")
            .value,
        1
    );
    let mut messages = carol.messages().await.expect("registered with the token");
    wallet
        .notify(StringValue {
            value: carol.client_id().expect("id"),
        })
        .await
        .expect("notify");
    assert!(
        tokio::time::timeout(PATIENCE, messages.recv())
            .await
            .expect("in time")
            .is_some()
    );
    gate.shutdown().await;
    node.shutdown().await;
}
