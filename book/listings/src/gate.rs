//! Listings of "Gate and clients" (`book/src/gate.md`).

// ANCHOR: client_uses
use goverse::prelude::*;
use goverse::{Client, ClientOptions};
// ANCHOR_END: client_uses

use example_counter::Counter;
use goverse::gate::{Gate, GateOptions};

use crate::reliable_calls::{Wallet, WalletClient};

/// Starts a node with a gate in front of it on 127.0.0.1:8080, then shuts
/// both down.
#[rustfmt::skip]
pub async fn start_a_gate() -> Result<(), Box<dyn std::error::Error>> {
// ANCHOR: start
use goverse::gate::{Gate, GateOptions};

let node = Node::builder().register::<Counter>().start().await?;
let gate = Gate::start(&node, GateOptions::default().http("127.0.0.1:8080".parse()?)).await?;
println!("gate on http://{}", gate.http_address().expect("serving HTTP"));

// ... serve until told to stop ...
gate.shutdown().await;
node.shutdown().await;
// ANCHOR_END: start
Ok(())
}

/// Starts a gate serving HTTP on 127.0.0.1:8080 and gRPC on
/// 127.0.0.1:9090.
#[rustfmt::skip]
pub async fn start_http_and_grpc(node: Node) -> Result<Gate, Box<dyn std::error::Error>> {
// ANCHOR: grpc
let options = GateOptions::default()
    .http("127.0.0.1:8080".parse()?)
    .grpc("127.0.0.1:9090".parse()?);
let gate = Gate::start(&node, options).await?;
println!("gRPC on {}", gate.grpc_address().expect("serving gRPC"));
// ANCHOR_END: grpc
Ok(gate)
}

/// A gate's options for browsers of one origin only.
#[rustfmt::skip]
pub fn one_origin(address: std::net::SocketAddr) -> GateOptions {
// ANCHOR: cors
GateOptions::default()
    .http(address)
    .cors_origins(["https://app.example"])
// ANCHOR_END: cors
}

/// Starts a gate serving both listeners over TLS, with the certificate
/// and key of `/etc/goverse`.
#[rustfmt::skip]
pub async fn start_over_tls(node: Node) -> Result<Gate, Box<dyn std::error::Error>> {
// ANCHOR: tls
use goverse::gate::{Gate, GateOptions, GateTls};

// gate.crt: the gate's certificate, then any intermediates; gate.key: its key.
let tls = GateTls::from_pem_files("/etc/goverse/gate.crt", "/etc/goverse/gate.key")?;
let options = GateOptions::default()
    .http("0.0.0.0:8443".parse()?)
    .grpc("0.0.0.0:9443".parse()?)
    .tls(tls);
let gate = Gate::start(&node, options).await?;
// ANCHOR_END: tls
Ok(gate)
}

/// Adds 5 to `my-counter` by name, with the request and the response as
/// protobuf `Any`s, and returns the new total.
#[rustfmt::skip]
pub async fn add_with_any(node: &Node) -> goverse::Result<Int32Value> {
// ANCHOR: codec_any
use goverse::{Codec, EncodedCall};

let any = goverse::encode(Codec::Any, &Int32Value { value: 5 })?; // a protobuf Any
let response = node
    .call(EncodedCall::new("Counter", "my-counter", "Add", Codec::Any, any))
    .await?; // a protobuf Any of the response
let total: Int32Value = goverse::decode(Codec::Any, &response)?;
// ANCHOR_END: codec_any
Ok(total)
}

// ANCHOR: purse
/// A purse of coins, called from Python through the gate's gRPC service.
#[derive(Debug, Default)]
pub struct Purse {
    coins: i32,
}

#[goverse::object]
impl Purse {
    /// Adds `request.value` coins and returns the new count.
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        self.coins += request.value;
        Ok(Int32Value { value: self.coins })
    }

    /// Takes `request.value` coins and returns what is left.
    pub async fn spend(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        if request.value > self.coins {
            return Err(goverse::Error::application("INSUFFICIENT_FUNDS", "not enough coins"));
        }
        self.coins -= request.value;
        Ok(Int32Value { value: self.coins })
    }

    /// Pushes the coins to the client named in the request.
    pub async fn show(&self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        ctx.push(&request.value, &Int32Value { value: self.coins }).await?;
        Ok(Empty {})
    }
}
// ANCHOR_END: purse

/// Connects to the first gate of two that answers.
#[rustfmt::skip]
pub async fn connect_to_gates() -> goverse::Result<Client> {
// ANCHOR: client_connect
// The gRPC listeners of the gates, tried in this order.
let client = Client::connect(
    ["http://10.0.0.5:9090", "http://10.0.0.6:9090"],
    ClientOptions::default(),
)
.await?;
// ANCHOR_END: client_connect
Ok(client)
}

/// Calls wallets through `client`, as a program outside the cluster does.
#[rustfmt::skip]
pub async fn call_wallets(client: Client) -> goverse::Result<()> {
// ANCHOR: client_calls
// Wallet: a persistent object type whose `withdraw` fails with
// Error::application("INSUFFICIENT_FUNDS", format!("{} coins", self.coins)).
let wallet = WalletClient::new(&client, "w1"); // a proxy, as from a node
let balance = wallet.deposit(Int64Value { value: 5 }).await?;
println!("{}", balance.value); // 5

match wallet.withdraw(Int64Value { value: 9 }).await {
    Err(e) if e.code() == "INSUFFICIENT_FUNDS" => println!("{e}"), // INSUFFICIENT_FUNDS: 5 coins
    other => println!("{}", other?.value),
}

// A reliable call: resent safely if its gate goes away mid-call.
wallet.reliable("deposit-7f3a").deposit(Int64Value { value: 10 }).await?;

client.create::<Wallet>("w2").await?;
client.delete::<Wallet>("w2").await?;
// ANCHOR_END: client_calls
Ok(())
}

/// Connects to a gate that wants a bearer token, giving it with every
/// request.
#[rustfmt::skip]
pub async fn connect_with_a_token() -> goverse::Result<Client> {
// ANCHOR: client_metadata
let client = Client::connect(
    ["http://10.0.0.5:9090"],
    ClientOptions::default().metadata("authorization", "Bearer <token>"),
)
.await?;
// ANCHOR_END: client_metadata
Ok(client)
}

/// Connects to gates over TLS, trusting the CA in `/etc/goverse/ca.crt`.
#[rustfmt::skip]
pub async fn connect_over_tls() -> Result<Client, Box<dyn std::error::Error>> {
// ANCHOR: client_tls
let ca = std::fs::read("/etc/goverse/ca.crt")?;
let client = Client::connect(
    ["https://gate-1.example:9443", "https://gate-2.example:9443"],
    ClientOptions::default().tls_ca_pem(ca),
)
.await?;
// ANCHOR_END: client_tls
Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{PATIENCE, gate_and_client};

    #[tokio::test]
    async fn a_call_by_name_takes_and_gives_anys() {
        let node = Node::builder().register::<Counter>().start().await.expect("a node");
        assert_eq!(add_with_any(&node).await.expect("add").value, 5);
        assert_eq!(add_with_any(&node).await.expect("add").value, 10);
        node.shutdown().await;
    }

    #[test]
    fn cors_origins_replace_any_origin() {
        let options = one_origin("127.0.0.1:0".parse().expect("an address"));
        assert_eq!(options.cors_origins, ["https://app.example"]);
    }

    #[tokio::test]
    async fn the_purse_answers_errors_and_pushes_through_the_grpc_service() {
        let node = Node::builder().register::<Purse>().start().await.expect("a node");
        let (gate, client) = gate_and_client(&node, GateOptions::default()).await;
        let purse = PurseClient::new(&client, "p1");
        assert_eq!(purse.add(Int32Value { value: 3 }).await.expect("add").value, 3);
        let error = purse.spend(Int32Value { value: 5 }).await.expect_err("too many");
        assert_eq!(error.code(), "INSUFFICIENT_FUNDS");

        let mut messages = client.messages().await.expect("registered");
        let me = client.client_id().expect("an id");
        purse.show(StringValue { value: me }).await.expect("show");
        let pushed = tokio::time::timeout(PATIENCE, messages.recv())
            .await
            .expect("a push in time")
            .expect("a push");
        assert_eq!(pushed.decode::<Int32Value>().expect("an Int32Value").value, 3);
        gate.shutdown().await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_client_calls_wallets_as_a_node_does() {
        let node = Node::builder().register::<Wallet>().start().await.expect("a node");
        let (gate, client) = gate_and_client(&node, GateOptions::default()).await;
        call_wallets(client.clone()).await.expect("the calls");
        let w1 = WalletClient::new(&node, "w1");
        assert_eq!(w1.deposit(Int64Value { value: 0 }).await.expect("read").value, 15);
        assert_eq!(node.stats().active, 1, "w2 was created, then deleted");
        gate.shutdown().await;
        node.shutdown().await;
    }
}
