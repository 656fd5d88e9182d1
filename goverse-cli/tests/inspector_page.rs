//! The inspector's page in a real browser (headless Chromium, driven over
//! the DevTools protocol) against a three-node cluster on the test etcd:
//! it lists the nodes and the shards by owner; a shard moved through the
//! page lands on the chosen node in etcd and the page shows it there; a
//! node that dies turns bad on the page and its shards move. Screenshots
//! go to the test's output directory.

mod common;

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::{OPERATOR_TOKEN, start_inspector, vault_node};
use futures_util::{SinkExt as _, StreamExt as _};
use goverse_tests::{Backend, PATIENCE, unique_prefix, wait_until};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and the DevTools connection to its page.
struct Browser {
    _process: Child,
    socket: Socket,
    next_id: u64,
    _profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let profile = std::env::temp_dir().join(unique_prefix("chromium").replace('/', "_"));
        let mut process = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1400,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs (scripts/test.sh installs it)");
        let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let endpoint = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.to_string();
                }
            }
            panic!("chromium exited before it listened");
        })
        .await
        .expect("DevTools in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = endpoint
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("a port")
            .to_string();
        let targets = devtools_targets(&format!("127.0.0.1:{port}")).await;
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(page)
            .await
            .expect("DevTools");
        Self {
            _process: process,
            socket,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends one DevTools command and waits for its result.
    async fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("send");
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("an answer in time")
                .expect("open")
                .expect("a message");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a script run in the page.
    async fn eval(&mut self, script: &str) -> serde_json::Value {
        let result = self
            .command(
                "Runtime.evaluate",
                serde_json::json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Saves the page as a PNG named `name` in the test's output directory.
    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .command(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png" }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("data"))
            .expect("base64");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("inspector");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot");
    }
}

/// The browser's targets (`GET /json/list`). Its HTTP server keeps the
/// connection open, so the body is read to its length, not to the end.
async fn devtools_targets(address: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("DevTools HTTP");
    // The host given is the one its answer's URLs name.
    let request = format!("GET /json/list HTTP/1.1\r\nhost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    tokio::time::timeout(PATIENCE, async {
        loop {
            let read = stream.read(&mut buffer).await.expect("read");
            assert!(read > 0, "DevTools closed the connection early");
            response.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .expect("a content length");
                if body.len() >= length {
                    return serde_json::from_str(&body[..length]).expect("targets");
                }
            }
        }
    })
    .await
    .expect("targets in time")
}

/// The page's node rows: `(node, state)`.
const NODE_ROWS: &str = r#"[...document.querySelectorAll('#nodes tbody tr')]
    .map(r => [r.dataset.node, r.querySelector('.state').textContent])"#;

/// The page's shard grid: each shard's owner.
const GRID: &str = r#"[...document.querySelectorAll('#grid div')].map(d => d.dataset.owner)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_page_shows_the_cluster_moves_a_shard_and_sees_a_node_die() {
    let backend = Backend::etcd();
    let Backend::Etcd(endpoint) = &backend else {
        unreachable!("an etcd backend")
    };
    let prefix = unique_prefix("inspector-page");
    let nodes = [
        vault_node(&backend, &prefix, "page-a", 64).await,
        vault_node(&backend, &prefix, "page-b", 64).await,
        vault_node(&backend, &prefix, "page-c", 64).await,
    ];
    wait_until("every node owns shards", PATIENCE, || {
        let counts: Vec<u64> = nodes.iter().map(|n| n.stats().shards).collect();
        async move { counts.iter().all(|&c| c > 0) && counts.iter().sum::<u64>() == 64 }
    })
    .await;

    let dir = std::env::temp_dir().join(prefix.replace('/', "_"));
    let (mut inspector, address) = start_inspector(endpoint, &prefix, &dir).await;
    let url = format!("http://{address}");

    let mut browser = Browser::start().await;
    browser
        .command(
            "Page.navigate",
            serde_json::json!({ "url": format!("{url}/") }),
        )
        .await;
    // The three nodes, healthy, and every shard coloured by its owner.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows = browser.eval(NODE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let healthy = rows
            .as_array()
            .is_some_and(|r| r.len() == 3 && r.iter().all(|row| row[1] == "healthy"));
        let owned = grid.as_array().is_some_and(|g| {
            g.len() == 64
                && g.iter()
                    .all(|o| o.as_str().is_some_and(|o| o.starts_with("page-")))
        });
        if healthy && owned {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed the cluster: {rows} {grid}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("1-cluster").await;

    // Move a shard of page-a's to page-c through the page's form.
    let shard = (0..64u32)
        .find(|&s| {
            nodes[0]
                .cluster_view()
                .current_owner(s)
                .is_some_and(|n| &*n.id == "page-a")
        })
        .expect("page-a serves shards");
    let submitted = browser
        .eval(&format!(
            r#"(() => {{
                document.getElementById('token').value = '{OPERATOR_TOKEN}';
                document.getElementById('action-kind').value = 'move';
                document.getElementById('action-shard').value = '{shard}';
                document.getElementById('action-node').value = 'page-c';
                document.getElementById('action-go').click();
                return document.getElementById('action-node').value;
            }})()"#
        ))
        .await;
    assert_eq!(submitted, "page-c");
    wait_until("the shard is on page-c in etcd", PATIENCE, || async {
        let view = nodes[2].cluster_view();
        view.current_owner(shard)
            .is_some_and(|n| &*n.id == "page-c")
            && !view.is_moving(shard)
    })
    .await;
    let landed = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let grid = browser.eval(GRID).await;
        let log = browser
            .eval("document.querySelector('#log tbody').textContent")
            .await;
        // The move also shows in the feed of moves: shard, from, to.
        let moves = browser
            .eval("document.querySelector('#moves tbody').textContent")
            .await;
        let seen_moving = moves
            .as_str()
            .is_some_and(|m| m.contains(&format!("shard {shard}page-apage-c")));
        if grid[shard as usize] == "page-c"
            && seen_moving
            && log
                .as_str()
                .is_some_and(|l| l.contains("alice") && l.contains("OK"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed the move: {grid} {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // How long the page took to show the move once it had landed.
    eprintln!("page update latency: {:?}", landed.elapsed());
    browser.screenshot("2-moved").await;

    // The search box finds an object's shard and node.
    let object_shard = goverse::placement::shard_of("room-42", 64);
    let owner = nodes[0]
        .cluster_view()
        .current_owner(object_shard)
        .map(|n| n.id.to_string())
        .expect("an owner");
    browser
        .eval(
            "document.getElementById('object-id').value = 'room-42'; \
             document.querySelector('#search button').click(); true",
        )
        .await;
    let expected = format!("shard {object_shard}, on {owner}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = browser
            .eval("document.getElementById('search-result').textContent")
            .await;
        if found == expected.as_str() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the search never answered `{expected}`: {found}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // page-b dies: the page marks it, and its shards move to the others.
    nodes[1].crash();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows = browser.eval(NODE_ROWS).await;
        let grid = browser.eval(GRID).await;
        let marked = rows.as_array().is_some_and(|r| {
            r.iter()
                .any(|row| row[0] == "page-b" && (row[1] == "gone" || row[1] == "unhealthy"))
        });
        let moved = grid.as_array().is_some_and(|g| {
            g.iter()
                .all(|o| o.as_str().is_some_and(|o| o == "page-a" || o == "page-c"))
        });
        if marked && moved {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed the failover: {rows} {grid}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("3-failover").await;

    inspector.kill().await.expect("stops");
    for node in [&nodes[0], &nodes[2]] {
        node.shutdown().await;
    }
    std::fs::remove_dir_all(&dir).ok();
}
