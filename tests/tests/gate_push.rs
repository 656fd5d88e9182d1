//! Pushes from objects to clients over the gate's server-sent events:
//! order, broadcast, a client that falls behind, a client that reconnects
//! with its session (and one that tries to take another's id), a gate that
//! restarts, and a push that crosses from one node to another's gate.

use std::time::Duration;

use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse_tests::{Backend, PATIENCE, unique_prefix, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Pushes what it is asked to.
#[derive(Debug, Default)]
pub struct Herald;

#[goverse::object]
impl Herald {
    /// Pushes `count` numbered messages to the client named in `value`
    /// (`<client>|<count>`); returns how many went.
    pub async fn tell(&self, ctx: &Context, request: StringValue) -> goverse::Result<Int32Value> {
        let (client, count) = request
            .value
            .rsplit_once('|')
            .ok_or_else(|| goverse::Error::application("BAD_REQUEST", "client|count"))?;
        let count: i32 = count
            .parse()
            .map_err(|_| goverse::Error::application("BAD_REQUEST", "count"))?;
        for n in 0..count {
            ctx.push(client, &Int32Value { value: n }).await?;
        }
        Ok(Int32Value { value: count })
    }

    pub async fn announce(&self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        ctx.broadcast(&request).await?;
        Ok(Empty {})
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    name: String,
    id: Option<u64>,
    data: serde_json::Value,
}

/// A client's event stream, read through a raw socket (chunked HTTP/1.1).
struct EventStream {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl EventStream {
    async fn open(address: &str, headers: &[(&str, &str)]) -> (u16, Option<EventStream>) {
        let stream = TcpStream::connect(address).await.expect("connect");
        let mut reader = BufReader::new(stream);
        let mut head = "GET /api/v1/events/stream HTTP/1.1\r\nhost: gate\r\n".to_string();
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        reader
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .expect("write");
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.expect("status");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        if status != 200 {
            return (status, None);
        }
        (
            status,
            Some(EventStream {
                reader,
                pending: String::new(),
            }),
        )
    }

    /// The next event, within `PATIENCE`.
    async fn next(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.read_event())
            .await
            .expect("an event in time")
    }

    async fn read_event(&mut self) -> Event {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut event = Event {
                    name: String::new(),
                    id: None,
                    data: serde_json::Value::Null,
                };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.to_string();
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = id.parse().ok();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(data).expect("JSON data");
                    }
                }
                return event;
            }
            // One chunk: its size in hex, then the bytes.
            let mut size = String::new();
            self.reader.read_line(&mut size).await.expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.expect("chunk");
            self.pending
                .push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8"));
        }
    }

    /// Reads events until one that is not a heartbeat.
    async fn next_non_heartbeat(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if event.name != "heartbeat" {
                return event;
            }
        }
    }
}

struct Registered {
    stream: EventStream,
    client: String,
    session: String,
}

async fn register(address: &str, headers: &[(&str, &str)]) -> (Registered, bool) {
    let (status, stream) = EventStream::open(address, headers).await;
    assert_eq!(status, 200);
    let mut stream = stream.expect("a stream");
    let event = stream.next().await;
    assert_eq!(event.name, "register", "{event:?}");
    let client = event.data["client_id"]
        .as_str()
        .expect("client id")
        .to_string();
    let session = event.data["session"].as_str().expect("token").to_string();
    let resumed = event.data["resumed"].as_bool().expect("resumed");
    (
        Registered {
            stream,
            client,
            session,
        },
        resumed,
    )
}

async fn embedded(options: GateOptions) -> (Node, Gate, String) {
    let node = Node::builder()
        .register::<Herald>()
        .start()
        .await
        .expect("node");
    let gate = Gate::start(&node, options.http("127.0.0.1:0".parse().expect("address")))
        .await
        .expect("gate");
    let address = gate.http_address().expect("http").to_string();
    (node, gate, address)
}

fn tell(client: &str, count: i32) -> StringValue {
    StringValue {
        value: format!("{client}|{count}"),
    }
}

#[tokio::test]
async fn pushes_arrive_in_order_and_broadcasts_reach_everyone() {
    let (node, gate, address) = embedded(GateOptions::default()).await;
    let (mut alice, _) = register(&address, &[]).await;
    let (mut bob, _) = register(&address, &[]).await;
    assert_ne!(alice.client, bob.client);

    let herald = HeraldClient::new(&node, "herald");
    assert_eq!(
        herald
            .tell(tell(&alice.client, 200))
            .await
            .expect("tell")
            .value,
        200
    );
    for n in 0..200 {
        let event = alice.stream.next_non_heartbeat().await;
        assert_eq!(event.name, "message");
        assert_eq!(event.data["type"], "google.protobuf.Int32Value");
        assert_eq!(event.data["json"], n, "in order");
        assert_eq!(event.id, Some(n as u64 + 1));
        assert!(event.data["any"].as_str().is_some_and(|a| !a.is_empty()));
    }

    herald
        .announce(StringValue {
            value: "hello all".into(),
        })
        .await
        .expect("broadcast");
    for client in [&mut alice, &mut bob] {
        let event = client.stream.next_non_heartbeat().await;
        assert_eq!(
            (event.name.as_str(), &event.data["json"]),
            ("message", &serde_json::json!("hello all"))
        );
    }
    assert_eq!(gate.stats().pushed, 202);
    // The node's metrics carry its gate's counts.
    let metrics = node.metrics_text();
    for (series, value) in [
        ("goverse_gate_clients", 2),
        ("goverse_gate_pushes_total", 202),
        ("goverse_gate_pushes_buffered", 0),
        ("goverse_gate_pushes_dropped_total", 0),
        ("goverse_gate_overflows_total", 0),
    ] {
        let line = format!(r#"{series}{{node="{}"}} {value}"#, node.id());
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    // Nobody has this id.
    let error = herald
        .tell(tell(&format!("{}x", alice.client), 1))
        .await
        .expect_err("unknown client");
    assert_eq!(error.code(), "CLIENT_NOT_FOUND");
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn idle_streams_get_heartbeats() {
    let (node, gate, address) =
        embedded(GateOptions::default().heartbeat(Duration::from_millis(100))).await;
    let (mut client, _) = register(&address, &[]).await;
    assert_eq!(client.stream.next().await.name, "heartbeat");
    assert_eq!(client.stream.next().await.name, "heartbeat");
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_resumes_its_session_and_only_with_its_token() {
    let options = GateOptions::default().reconnect_grace(Duration::from_secs(30));
    let (node, gate, address) = embedded(options).await;
    let (mut first, resumed) = register(&address, &[]).await;
    assert!(!resumed);
    let herald = HeraldClient::new(&node, "herald");
    herald.tell(tell(&first.client, 2)).await.expect("tell");
    let read = first.stream.next_non_heartbeat().await;
    assert_eq!(read.id, Some(1));
    // It read message 1 of 2, then its connection dropped.
    drop(first.stream);
    wait_until("the gate notices the client left", PATIENCE, || {
        let herald = herald.clone();
        let client = first.client.clone();
        async move { herald.tell(tell(&client, 1)).await.is_ok() }
    })
    .await;

    // Someone else tries the id without the token.
    let (status, _) = EventStream::open(
        &address,
        &[
            ("x-client-id", &first.client),
            ("x-session-token", &"f".repeat(32)),
        ],
    )
    .await;
    assert_eq!(status, 403);

    // The client comes back with its token, saying it read message 1:
    // same id, and everything after message 1.
    let (mut again, resumed) = register(
        &address,
        &[
            ("x-client-id", &first.client),
            ("x-session-token", &first.session),
            ("last-event-id", "1"),
        ],
    )
    .await;
    assert!(resumed);
    assert_eq!(again.client, first.client);
    let second = again.stream.next_non_heartbeat().await;
    assert_eq!(
        (second.id, &second.data["json"]),
        (Some(2), &serde_json::json!(1))
    );
    // Then what was pushed while it was away (at least the one push that
    // told the test it had gone).
    let third = again.stream.next_non_heartbeat().await;
    assert_eq!(
        (third.id, &third.data["json"]),
        (Some(3), &serde_json::json!(0))
    );

    // A restarted gate knows no sessions: the client registers afresh.
    gate.shutdown().await;
    let gate = Gate::start(
        &node,
        GateOptions::default().http(address.parse().expect("address")),
    )
    .await
    .expect("gate again");
    let (fresh, resumed) = register(
        &address,
        &[
            ("x-client-id", &first.client),
            ("x-session-token", &first.session),
        ],
    )
    .await;
    assert!(!resumed);
    assert_ne!(fresh.client, first.client);
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_that_falls_behind_is_cut_off_visibly() {
    let options = GateOptions::default()
        .push_buffer(16)
        .reconnect_grace(Duration::from_secs(30));
    let (node, gate, address) = embedded(options).await;
    let (client, _) = register(&address, &[]).await;
    drop(client.stream);
    let herald = HeraldClient::new(&node, "herald");
    // Gone but within its grace: pushes buffer, up to 16.
    wait_until("the gate notices the client left", PATIENCE, || {
        let herald = herald.clone();
        let id = client.client.clone();
        async move { herald.tell(tell(&id, 1)).await.is_ok() }
    })
    .await;
    let error = herald
        .tell(tell(&client.client, 40))
        .await
        .expect_err("the buffer overflows");
    assert_eq!(error.code(), "CLIENT_OVERFLOW");
    let stats = gate.stats();
    assert_eq!(stats.overflows, 1);
    assert_eq!(
        stats.dropped, 17,
        "16 buffered and the one that did not fit: {stats:?}"
    );
    assert_eq!(stats.clients, 0);
    let error = herald
        .tell(tell(&client.client, 1))
        .await
        .expect_err("gone");
    assert_eq!(error.code(), "CLIENT_NOT_FOUND");

    // A connected client that overflows sees why its stream ends.
    let (mut slow, _) = register(&address, &[]).await;
    let result = herald.tell(tell(&slow.client, 100_000)).await;
    if let Err(error) = result {
        assert_eq!(error.code(), "CLIENT_OVERFLOW");
        loop {
            let event = slow.stream.next().await;
            if event.name == "error" {
                assert_eq!(event.data["code"], "CLIENT_OVERFLOW");
                break;
            }
        }
    }
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn pushes_cross_to_the_node_whose_gate_holds_the_client() {
    let backend = Backend::memory();
    let prefix = unique_prefix("push");
    let start = |id: &'static str, hosts: bool| {
        let (backend, prefix) = (&backend, prefix.clone());
        async move {
            let mut builder = Node::builder()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .coordinator(backend.coordinator(&prefix, Duration::from_secs(1)).await);
            if hosts {
                builder = builder.register::<Herald>();
            }
            builder.start().await.expect("node")
        }
    };
    let worker = start("worker", true).await;
    let front = start("front", false).await;
    let gate = Gate::start(
        &front,
        GateOptions::default().http("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("gate");
    let address = gate.http_address().expect("http").to_string();
    let (mut client, _) = register(&address, &[]).await;
    assert!(
        client.client.starts_with(&format!("{}/", front.address())),
        "{}",
        client.client
    );
    wait_until("the front node sees the worker", PATIENCE, || {
        let view = front.cluster_view();
        async move { (0..16).all(|s| view.current_owner(s).is_some()) }
    })
    .await;
    // Called through the front node, run on the worker, pushed back to
    // the front node's gate.
    let herald = HeraldClient::new(&front, "herald");
    herald.tell(tell(&client.client, 3)).await.expect("tell");
    for n in 0..3 {
        assert_eq!(client.stream.next_non_heartbeat().await.data["json"], n);
    }
    herald
        .announce(StringValue {
            value: "everyone".into(),
        })
        .await
        .expect("broadcast");
    assert_eq!(
        client.stream.next_non_heartbeat().await.data["json"],
        "everyone"
    );

    // The worker restarts (a new process would do the same): the herald
    // activates again on its replacement, and its pushes still reach the
    // client, on the same session, in sequence.
    worker.shutdown().await;
    let worker = start("worker-2", true).await;
    wait_until("the new worker owns every shard", PATIENCE, || {
        let shards = worker.stats().shards;
        async move { shards == 16 }
    })
    .await;
    herald
        .tell(tell(&client.client, 2))
        .await
        .expect("tell after the restart");
    for n in 0..2 {
        let event = client.stream.next_non_heartbeat().await;
        assert_eq!(event.data["json"], n);
        assert_eq!(
            event.id,
            Some(5 + n as u64),
            "the session's sequence goes on"
        );
    }
    gate.shutdown().await;
    front.shutdown().await;
    worker.shutdown().await;
}

/// A client that stops reading its push stream cannot hold up the gate's
/// shutdown past its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_in_time_when_a_client_stops_reading() {
    let options = GateOptions::default()
        .push_buffer(10_000)
        .shutdown_timeout(Duration::from_secs(1));
    let (node, gate, address) = embedded(options).await;
    let (stuck, _) = register(&address, &[]).await;
    // Far more than the socket buffers hold, never read.
    let big = goverse::types::BytesValue {
        value: vec![7; 64 * 1024].into(),
    };
    for _ in 0..600 {
        node.push(&stuck.client, &big).await.expect("buffered");
    }
    let started = std::time::Instant::now();
    tokio::time::timeout(PATIENCE, gate.shutdown())
        .await
        .expect("the gate shuts down in time");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(stuck);
    node.shutdown().await;
}

/// Opening push streams counts against the client's rate limit, and a
/// gate keeps at most `max_clients` sessions.
#[tokio::test]
async fn registrations_are_rate_limited_and_capped() {
    let options =
        GateOptions::default().rate_limit_per_client(goverse::gate::RateLimit::new(0.001, 2));
    let (node, gate, address) = embedded(options).await;
    let _first = register(&address, &[]).await;
    let _second = register(&address, &[]).await;
    let (status, _) = EventStream::open(&address, &[]).await;
    assert_eq!(
        status, 429,
        "a third stream from one address within the limit"
    );
    gate.shutdown().await;
    node.shutdown().await;

    let (node, gate, address) = embedded(GateOptions::default().max_clients(2)).await;
    let _first = register(&address, &[]).await;
    let _second = register(&address, &[]).await;
    let (status, _) = EventStream::open(&address, &[]).await;
    assert_eq!(status, 503, "a gate full of clients");
    gate.shutdown().await;
    node.shutdown().await;
}
