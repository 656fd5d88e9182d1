//! A headless Chromium driven over the DevTools protocol, for tests of
//! web pages (the inspector's, the samples'): navigate, run script, take
//! screenshots.

use std::process::Stdio;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::{PATIENCE, unique_prefix};

/// The DevTools connection.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and the DevTools connection to its page.
#[allow(missing_debug_implementations)]
pub struct Browser {
    _process: Child,
    socket: Socket,
    next_id: u64,
    _profile: std::path::PathBuf,
}

impl Browser {
    /// Starts a headless Chromium (`chromium`, which scripts/test.sh
    /// installs) with a blank page, and connects to the page.
    ///
    /// # Panics
    ///
    /// When Chromium cannot be started or reached.
    pub async fn start() -> Self {
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
    /// # Panics
    ///
    /// When the browser does not answer in time, or answers with an error.
    pub async fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
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
    pub async fn eval(&mut self, script: &str) -> serde_json::Value {
        let result = self
            .command(
                "Runtime.evaluate",
                serde_json::json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Polls `script` in the page every 100 ms until it is `true`.
    ///
    /// # Panics
    ///
    /// When it is not true within [`PATIENCE`]; the message names `what`
    /// and gives the page's text.
    pub async fn wait_for(&mut self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.eval(script).await != serde_json::Value::Bool(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}: {}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` in the page.
    pub async fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", serde_json::json!({ "url": url }))
            .await;
    }

    /// Saves the whole page as `<name>.png` in `dir`.
    pub async fn screenshot(&mut self, dir: &std::path::Path, name: &str) {
        let shot = self
            .command(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("data"))
            .expect("base64");
        std::fs::create_dir_all(dir).expect("dir");
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
