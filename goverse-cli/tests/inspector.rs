//! `goverse inspector` against a two-node cluster on the test etcd: its
//! JSON API shows the nodes, their summaries and every shard; an operator
//! with a token moves a shard, which lands where asked, and the log says
//! who did it; requests without a valid token, and actions that cannot be
//! done, are refused with a stable code.

mod common;

use common::{OPERATOR_TOKEN, start_inspector, vault_node};
use goverse_tests::processes::VaultClient;
use goverse_tests::{Backend, PATIENCE, http_get, http_post, unique_prefix, wait_until};

/// `GET path` as JSON.
/// The inspector's `GET /api/stream`, read as a browser's `EventSource`
/// does (over HTTP/1.0, so the body is the events as they come).
struct StateStream {
    stream: tokio::net::TcpStream,
    buffer: String,
}

impl StateStream {
    async fn open(address: &str) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /api/stream HTTP/1.0\r\naccept: text/event-stream\r\n\r\n")
            .await
            .expect("write");
        Self {
            stream,
            buffer: String::new(),
        }
    }

    /// The next `state` event's data for which `wanted` holds.
    async fn next_where(
        &mut self,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if !block.contains("event: state") {
                    continue;
                }
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("data");
                let state: serde_json::Value = serde_json::from_str(data).expect("JSON");
                if wanted(&state) {
                    return state;
                }
            }
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("the wanted state in time")
                .expect("read");
            assert!(read > 0, "the stream ended");
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk[..read]));
        }
    }
}

async fn get_json(address: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(address, path).await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_shows_the_cluster_and_takes_an_operators_actions() {
    let backend = Backend::etcd();
    let Backend::Etcd(endpoint) = &backend else {
        unreachable!("an etcd backend")
    };
    let prefix = unique_prefix("inspector");
    let (a, b) = (
        vault_node(&backend, &prefix, "insp-a", 16).await,
        vault_node(&backend, &prefix, "insp-b", 16).await,
    );
    wait_until("both nodes own shards", PATIENCE, || {
        let (a, b) = (a.stats().shards, b.stats().shards);
        async move { a > 0 && b > 0 && a + b == 16 }
    })
    .await;
    VaultClient::new(&a, "seen")
        .deposit(goverse::types::Int64Value { value: 1 })
        .await
        .expect("deposit");

    let dir = std::env::temp_dir().join(prefix.replace('/', "_"));
    let (mut inspector, address) = start_inspector(endpoint, &prefix, &dir).await;

    // The cluster: both nodes with their summaries, every shard owned.
    wait_until(
        "the vault shows in its node's summary",
        PATIENCE,
        || async {
            let (_, cluster) = get_json(&address, "/api/cluster").await;
            cluster["nodes"].as_array().is_some_and(|nodes| {
                nodes.len() == 2
                    && nodes
                        .iter()
                        .map(|n| n["summary"]["objects"]["Vault"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                        == 1
            })
        },
    )
    .await;
    let (status, cluster) = get_json(&address, "/api/cluster").await;
    assert_eq!(status, 200, "{cluster}");
    assert_eq!(cluster["shard_count"], 16);
    let owners = cluster["shards"]["owner"].as_array().expect("owners");
    assert_eq!(owners.len(), 16);
    assert!(
        owners.iter().all(|o| o == "insp-a" || o == "insp-b"),
        "{cluster}"
    );
    let shards: u64 = cluster["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["shards"].as_u64().expect("shards"))
        .sum();
    assert_eq!(shards, 16);

    // Which shard and node hold an object.
    let (status, found) = get_json(&address, "/api/objects/seen").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["shard"], goverse::placement::shard_of("seen", 16));
    let host = VaultClient::new(&a, "seen")
        .host(goverse::types::Empty {})
        .await
        .expect("host")
        .value;
    assert_eq!(found["node"], host.as_str());
    let (status, bad) = get_json(&address, "/api/objects/%07").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("INVALID_OBJECT_ID"))
    );

    // Actions need an operator's token.
    let shard = (0..16)
        .find(|&s| owners[s] == "insp-a")
        .expect("a serves shards");
    let moving = format!(r#"{{"action": "move", "shard": {shard}, "node": "insp-b"}}"#);
    let (status, refused) = http_post(&address, "/api/actions", &[], &moving).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let mallory = [("authorization", "Bearer mallory-0123456789abcdef")];
    let (status, _) = http_post(&address, "/api/actions", &mallory, &moving).await;
    assert_eq!(status, 401);
    // The stream: the state at once, then again after each change.
    let mut stream = StateStream::open(&address).await;
    let first = stream.next_where(|_| true).await;
    assert_eq!(first["cluster"]["shard_count"], 16, "{first}");
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let alice = [("authorization", bearer.as_str())];
    let (status, answer) = http_post(&address, "/api/actions", &alice, &moving).await;
    assert_eq!(status, 200, "{answer}");
    // The move reaches the stream by itself: its audit entry at once, the
    // shard on b once it has landed.
    let moved = stream
        .next_where(|state| {
            state["cluster"]["shards"]["owner"][shard] == "insp-b"
                && state["actions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["user"] == "alice"))
        })
        .await;
    assert_eq!(moved["actions"][0]["action"]["action"], "move");
    wait_until("the shard lands on b, pinned", PATIENCE, || async {
        let (_, cluster) = get_json(&address, "/api/cluster").await;
        cluster["shards"]["owner"][shard] == "insp-b"
            && cluster["shards"]["pinned"]
                .as_array()
                .is_some_and(|p| p.contains(&shard.into()))
            && cluster["shards"]["moving"]
                .as_array()
                .is_some_and(|m| m.is_empty())
    })
    .await;
    assert_eq!(
        b.cluster_view()
            .current_owner(shard as u32)
            .map(|n| n.id.to_string()),
        Some("insp-b".to_string())
    );
    // What cannot be done is refused, and logged too.
    for (body, code) in [
        (
            r#"{"action": "move", "shard": 0, "node": "nobody"}"#,
            "INVALID_CONFIG",
        ),
        (r#"{"action": "drain", "node": "nobody"}"#, "INVALID_CONFIG"),
        (r#"{"action": "explode"}"#, "INVALID_JSON"),
    ] {
        let (status, refused) = http_post(&address, "/api/actions", &alice, body).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (status, log) = get_json(&address, "/api/actions").await;
    assert_eq!(status, 200);
    let log = log["actions"].as_array().expect("actions").clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0]["user"], "alice");
    assert_eq!(log[0]["action"]["action"], "move");
    assert_eq!(log[0]["outcome"], "OK");
    assert!(
        log[1]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("INVALID_CONFIG"))
    );

    // SIGTERM stops it gracefully (as process 1 of a container too).
    let pid = inspector.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(goverse_tests::PATIENCE, inspector.wait())
        .await
        .expect("it stops on SIGTERM")
        .expect("status");
    assert!(status.success(), "{status}");
    a.shutdown().await;
    b.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
