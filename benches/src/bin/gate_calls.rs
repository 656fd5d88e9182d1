//! Calls from outside the cluster, end to end through the gate to an
//! object and back, 64 callers at once, against bare servers doing nothing
//! but answer on the same machine in the same run:
//!
//! - HTTP: `POST /api/v1/objects/call/Counter/c<n>/Add` with a JSON body,
//!   over 64 keep-alive connections, against a bare axum route that
//!   answers the same JSON;
//! - gRPC: `CallObject` with an `Any`, 64 callers on one HTTP/2 channel,
//!   against a bare tonic unary echo.
//!
//! Run with: cargo run --release -p goverse-benches --bin gate_calls

use std::time::Duration;

use example_counter::Counter;
use goverse::gate::grpc::proto::{CallObjectRequest, gate_client::GateClient};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse_benches::{Measurement, measure, print_row, timed_loop};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::{Endpoint, Server};

use goverse_benches::Echoer;
use goverse_benches::echo::Payload;
use goverse_benches::echo::echo_client::EchoClient;
use goverse_benches::echo::echo_server::EchoServer;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const CALLERS: usize = 64;

/// One keep-alive HTTP/1.1 connection that posts `body` to `path` and
/// reads each response whole.
struct HttpConnection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl HttpConnection {
    async fn open(address: &str, path: &str, body: &str) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Self {
            stream: BufReader::new(stream),
            request,
        }
    }

    async fn call(&mut self) {
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .expect("write");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
    }
}

async fn http_rate(address: &str, paths: impl Fn(usize) -> String, calls: usize) -> Measurement {
    let mut connections = Vec::new();
    for caller in 0..CALLERS {
        connections.push(HttpConnection::open(address, &paths(caller), r#"{"value": 1}"#).await);
    }
    let connections = std::sync::Mutex::new(connections);
    measure(CALLERS, calls, |_| {
        let connection = connections
            .lock()
            .expect("connections")
            .pop()
            .expect("one each");
        let connection = std::sync::Arc::new(tokio::sync::Mutex::new(connection));
        timed_loop(calls, move || {
            let connection = connection.clone();
            async move { connection.lock().await.call().await }
        })
    })
    .await
}

async fn bare_http(calls: usize) -> Result<Measurement, Failure> {
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let _ = body;
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"response":1}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let measured = http_rate(&address, |_| "/echo".to_string(), calls).await;
    server.abort();
    Ok(measured)
}

async fn goverse_http(address: &str, calls: usize) -> Measurement {
    http_rate(
        address,
        |caller| format!("/api/v1/objects/call/Counter/http-{caller}/Add"),
        calls,
    )
    .await
}

async fn bare_grpc(calls: usize) -> Result<Measurement, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(Echoer::default()))
            .serve_with_incoming(incoming),
    );
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let measured = measure(CALLERS, calls, |_| {
        let client = EchoClient::new(channel.clone());
        timed_loop(calls, move || {
            let mut client = client.clone();
            async move {
                client.unary(Payload { value: 1 }).await.expect("echo");
            }
        })
    })
    .await;
    server.abort();
    Ok(measured)
}

async fn goverse_grpc(address: &str, calls: usize) -> Result<Measurement, Failure> {
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let request = goverse::types::Any {
        type_url: "type.googleapis.com/google.protobuf.Int32Value".into(),
        value: Int32Value { value: 1 }.encode_to_vec().into(),
    };
    Ok(measure(CALLERS, calls, |caller| {
        let client = GateClient::new(channel.clone());
        let request = CallObjectRequest {
            r#type: "Counter".into(),
            id: format!("grpc-{caller}"),
            method: "Add".into(),
            request: Some(request.clone()),
            client_id: String::new(),
        };
        timed_loop(calls, move || {
            let (mut client, request) = (client.clone(), request.clone());
            async move {
                client.call_object(request).await.expect("call");
            }
        })
    })
    .await)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let node = Node::builder()
        .register::<Counter>()
        .call_timeout(Duration::from_secs(60))
        .start()
        .await?;
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse()?)
        .grpc("127.0.0.1:0".parse()?);
    let gate = Gate::start(&node, options).await?;
    let http = gate.http_address().ok_or("http")?.to_string();
    let grpc = gate.grpc_address().ok_or("grpc")?.to_string();
    // Warm up: activate the counters, open the connections.
    goverse_http(&http, 5).await;
    goverse_grpc(&grpc, 5).await?;
    bare_http(5).await?;
    bare_grpc(5).await?;

    println!("calls through the gate, {CALLERS} callers, {calls} calls each (best of 3 runs)");
    let mut best: [Option<Measurement>; 4] = [None; 4];
    for _ in 0..3 {
        let runs = [
            bare_http(calls).await?,
            goverse_http(&http, calls).await,
            bare_grpc(calls).await?,
            goverse_grpc(&grpc, calls).await?,
        ];
        for (best, run) in best.iter_mut().zip(runs) {
            if best.is_none_or(|b| run.per_second > b.per_second) {
                *best = Some(run);
            }
        }
    }
    let [
        Some(bare_http),
        Some(our_http),
        Some(bare_grpc),
        Some(our_grpc),
    ] = best
    else {
        unreachable!("three runs ran")
    };
    print_row("axum route (bare)", &bare_http);
    print_row("goverse HTTP gate -> object", &our_http);
    println!(
        "  ratio goverse/axum = {:.2}x",
        our_http.per_second / bare_http.per_second
    );
    print_row("tonic unary echo (bare)", &bare_grpc);
    print_row("goverse gRPC gate -> object", &our_grpc);
    println!(
        "  ratio goverse/tonic = {:.2}x",
        our_grpc.per_second / bare_grpc.per_second
    );
    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}
