//! Push fan-out: 1,000 clients registered with a gate over gRPC, and a
//! node broadcasting messages to all of them; messages delivered per
//! second, until every client has every message. The baseline in the same
//! run is a bare tonic server stream fed by a tokio broadcast channel to
//! the same 1,000 subscribers over the same channels.
//!
//! Run with: cargo run --release -p goverse-benches --bin push_fanout

use std::time::{Duration, Instant};

use goverse::gate::grpc::proto::{RegisterRequest, client_event::Event, gate_client::GateClient};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse_benches::Echoer;
use goverse_benches::echo::Payload;
use goverse_benches::echo::echo_client::EchoClient;
use goverse_benches::echo::echo_server::EchoServer;
use tonic::transport::{Channel, Endpoint, Server};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Clients per HTTP/2 connection.
const PER_CHANNEL: usize = 100;

async fn channels(address: &str, clients: usize) -> Result<Vec<Channel>, Failure> {
    let mut channels = Vec::new();
    for _ in 0..clients.div_ceil(PER_CHANNEL) {
        channels.push(
            Endpoint::from_shared(format!("http://{address}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

/// Waits for `expected` messages on each stream; returns when all have them.
async fn all_received(mut counters: Vec<tokio::task::JoinHandle<usize>>, expected: usize) {
    for counter in counters.drain(..) {
        let received = counter.await.expect("reader");
        assert_eq!(received, expected, "every client gets every message");
    }
}

async fn bare(clients: usize, messages: usize) -> Result<f64, Failure> {
    let echoer = Echoer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(echoer.clone()))
            .serve_with_incoming(incoming),
    );
    let channels = channels(&address, clients).await?;
    let mut readers = Vec::new();
    for client in 0..clients {
        let mut echo = EchoClient::new(channels[client / PER_CHANNEL].clone());
        let mut stream = echo.subscribe(Payload { value: 0 }).await?.into_inner();
        readers.push(tokio::spawn(async move {
            let mut received = 0;
            while received < messages {
                match stream.message().await {
                    Ok(Some(_)) => received += 1,
                    _ => break,
                }
            }
            received
        }));
    }
    while echoer.published.receiver_count() < clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for n in 0..messages {
        echoer.published.send(Payload { value: n as i64 })?;
    }
    all_received(readers, messages).await;
    let rate = (clients * messages) as f64 / started.elapsed().as_secs_f64();
    server.abort();
    Ok(rate)
}

async fn goverse(
    node: &Node,
    address: &str,
    clients: usize,
    messages: usize,
) -> Result<f64, Failure> {
    let channels = channels(address, clients).await?;
    let mut readers = Vec::new();
    let (registered, mut count) = tokio::sync::mpsc::channel(clients);
    for client in 0..clients {
        let mut gate = GateClient::new(channels[client / PER_CHANNEL].clone());
        let mut stream = gate
            .register(RegisterRequest::default())
            .await?
            .into_inner();
        let registered = registered.clone();
        readers.push(tokio::spawn(async move {
            let mut received = 0;
            while received < messages {
                match stream.message().await {
                    Ok(Some(event)) => match event.event {
                        Some(Event::Registered(_)) => {
                            let _ = registered.send(()).await;
                        }
                        Some(Event::Message(_)) => received += 1,
                        _ => {}
                    },
                    _ => break,
                }
            }
            received
        }));
    }
    for _ in 0..clients {
        count.recv().await.ok_or("a client never registered")?;
    }
    let started = Instant::now();
    for n in 0..messages {
        node.broadcast(&Int64Value { value: n as i64 }).await?;
    }
    all_received(readers, messages).await;
    Ok((clients * messages) as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let messages: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let node = Node::builder().start().await?;
    let options = GateOptions::default()
        .grpc("127.0.0.1:0".parse()?)
        .push_buffer(messages * 2);
    let gate = Gate::start(&node, options).await?;
    let address = gate.grpc_address().ok_or("grpc")?.to_string();
    println!("push fan-out to {clients} clients, {messages} messages each (best of 3 runs)");
    let (mut best_bare, mut best_ours) = (0f64, 0f64);
    for _ in 0..3 {
        best_bare = best_bare.max(bare(clients, messages).await?);
        best_ours = best_ours.max(goverse(&node, &address, clients, messages).await?);
    }
    println!("  tonic stream + broadcast channel (bare) {best_bare:>12.0} messages/s");
    println!("  goverse broadcast -> gate -> clients    {best_ours:>12.0} messages/s");
    println!("  ratio goverse/bare = {:.2}x", best_ours / best_bare);
    let stats = gate.stats();
    println!(
        "  gate: {} pushed, {} dropped, {} overflows",
        stats.pushed, stats.dropped, stats.overflows
    );
    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}
