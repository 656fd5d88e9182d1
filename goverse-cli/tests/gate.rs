//! `goverse-gate` in front of a cluster on a real etcd: it joins as a node
//! that hosts nothing, routes HTTP and gRPC calls to the node that owns
//! each object, and admits only the bearer tokens of its tokens file.

use std::process::Stdio;
use std::time::Duration;

use goverse::Node;
use goverse_tests::etcd::Etcd;
use goverse_tests::processes::Vault;
use goverse_tests::{PATIENCE, curl_post, curl_post_with, unique_prefix};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// An OTLP trace collector on a free loopback port, keeping what it is sent.
struct Collector {
    endpoint: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<Span>>>,
}

#[derive(Clone, Default)]
struct Received(std::sync::Arc<std::sync::Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().expect("spans").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let received = Received::default();
        let spans = received.0.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(received))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self { endpoint, spans }
    }

    /// The names of the spans received in trace `trace` (hex).
    fn names_in(&self, trace: &str) -> Vec<String> {
        self.spans
            .lock()
            .expect("spans")
            .iter()
            .filter(|span| hex(&span.trace_id) == trace)
            .map(|span| span.name.clone())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_process_routes_to_the_owners() {
    let collector = Collector::start().await;
    let dir = std::env::temp_dir().join(unique_prefix("gate-process").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let etcd = Etcd::start(&dir).await;
    let prefix = unique_prefix("gate-process");
    let options = goverse::cluster::ClusterOptions::default()
        .prefix(&prefix)
        .lease_ttl(Duration::from_secs(2));
    let coordinator =
        goverse::cluster::ClusterCoordinator::etcd(&[etcd.endpoint().as_str()], options)
            .await
            .expect("etcd");
    let worker = Node::builder()
        .register::<Vault>()
        .node_id("worker")
        .shard_count(64)
        .listen("127.0.0.1:0".parse().expect("address"))
        .coordinator(coordinator)
        .start()
        .await
        .expect("worker");

    let tokens = dir.join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - { token: alice-0123456789abcdef, user: alice, roles: [player] }\n",
    )
    .expect("tokens file");
    // Settings from all three places: the gate's HTTP listener and tokens
    // from the file's `gate:` section, the cluster from environment
    // variables, the rest from flags.
    let config = dir.join("gate.yaml");
    std::fs::write(
        &config,
        format!(
            "gate:\n  http: 127.0.0.1:0\n  auth_tokens: {}\nshard_count: 64\n",
            tokens.display()
        ),
    )
    .expect("config file");
    let ops = format!("127.0.0.1:{}", goverse_tests::etcd::free_port());
    let mut gate = Command::new(env!("CARGO_BIN_EXE_goverse-gate"))
        .arg("--config")
        .arg(&config)
        .args(["--grpc", "127.0.0.1:0"])
        .env("GOVERSE_OPS_LISTEN", &ops)
        .env("GOVERSE_ETCD", etcd.endpoint())
        .env("GOVERSE_PREFIX", &prefix)
        .args([
            "--node-id",
            "gate-1",
            "--listen",
            "127.0.0.1:0",
            "--lease-ttl",
            "2s",
        ])
        .env("GOVERSE_LOG_FORMAT", "json")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("goverse-gate starts");
    let mut logs = BufReader::new(gate.stderr.take().expect("stderr")).lines();
    let mut lines = BufReader::new(gate.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("ready in time")
        .expect("stdout")
        .expect("a line");
    let listeners: Vec<&str> = ready
        .strip_prefix("ready gate-1 ")
        .unwrap_or_else(|| panic!("unexpected: {ready}"))
        .split(' ')
        .collect();
    let http = listeners[0].to_string();
    let grpc = listeners[1].replace("grpc://", "http://");
    // Its logs are JSON lines, for a log collector.
    let ready_log = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = logs.next_line().await.expect("stderr") {
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
            if event["fields"]["message"] == "gate ready" {
                return event;
            }
        }
        panic!("the gate's logs ended before it said it was ready");
    })
    .await
    .expect("the ready log in time");
    assert_eq!(ready_log["level"], "INFO", "{ready_log}");
    assert_eq!(ready_log["fields"]["node"], "gate-1", "{ready_log}");
    // Keep reading, so the gate never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    // Its node's ops routes, from the environment variable: ready once its
    // node sees itself registered, as a readiness probe would find.
    goverse_tests::wait_until("the gate's node is ready", PATIENCE, || {
        let ops = ops.clone();
        async move { goverse_tests::http_get(&ops, "/ready").await == (200, "ready\n".to_string()) }
    })
    .await;
    let (status, metrics) = goverse_tests::http_get(&ops, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains(r#"goverse_gate_clients{node="gate-1"} 0"#),
        "{metrics}"
    );

    let call = |method: &str| format!("{http}/api/v1/objects/call/Vault/v1/{method}");
    let alice = ["Authorization: Bearer alice-0123456789abcdef"];
    assert_eq!(
        curl_post(&call("Deposit"), r#"{"value": 5}"#).await["code"],
        "UNAUTHENTICATED",
        "no token, no call"
    );
    assert_eq!(
        curl_post_with(
            &call("Deposit"),
            r#"{"value": 5}"#,
            &["Authorization: Bearer mallory-0123456789ab"]
        )
        .await["code"],
        "UNAUTHENTICATED",
        "an unknown token, no call"
    );
    assert_eq!(
        curl_post_with(&call("Deposit"), r#"{"value": 5}"#, &alice).await,
        serde_json::json!({"response": "5"})
    );
    assert_eq!(
        curl_post_with(&call("Deposit"), r#""2""#, &alice).await,
        serde_json::json!({"response": "7"})
    );
    // A traced call: the gate's spans reach the collector in the
    // client's trace.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traced = [
        alice[0],
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ];
    assert_eq!(
        curl_post_with(&call("Total"), "", &traced).await,
        serde_json::json!({"response": "7"})
    );
    assert_eq!(
        curl_post_with(&call("Whoami"), "", &alice).await,
        serde_json::json!({"response": "alice:player"}),
        "the object sees who the token stands for"
    );
    assert_eq!(
        curl_post_with(
            &format!("{http}/api/v1/objects/call/Nobody/x/Go"),
            "",
            &alice
        )
        .await["code"],
        "UNKNOWN_OBJECT_TYPE",
        "the gate knows no types; the owner answers"
    );
    // The same gate over gRPC, through the Rust client and a typed proxy.
    let client = goverse::Client::connect(
        [grpc],
        goverse::ClientOptions::default()
            .metadata("authorization", "Bearer alice-0123456789abcdef"),
    )
    .await
    .expect("client");
    let total = goverse_tests::processes::VaultClient::new(&client, "v1")
        .deposit(goverse::types::Int64Value { value: 3 })
        .await
        .expect("deposit over gRPC");
    assert_eq!(total.value, 10);

    // The gate hosts nothing: the worker ran every call.
    assert_eq!(worker.stats().active, 1);
    assert!(
        worker
            .cluster_view()
            .nodes
            .values()
            .any(|n| &*n.id == "gate-1" && !n.hosts_objects),
        "the gate joined as a node without objects"
    );

    let pid = gate.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, gate.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "{exit}");
    // Sent by the time it exits: the gate's request, the call it routed
    // and the frame that carried it to the worker.
    let mut names = collector.names_in(trace);
    names.sort();
    assert_eq!(
        names,
        [
            "call Vault.Total",
            "gate POST /api/v1/objects/call",
            "remote Total"
        ],
        "{names:?}"
    );
    worker.shutdown().await;
    drop(etcd);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_every_flag_with_its_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_goverse-gate"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "--http <ADDRESS>",
        "GOVERSE_GATE_HTTP",
        "--auth-tokens <YAML>",
        "GOVERSE_GATE_AUTH_TOKENS",
        "--rate-limit-client <RATE/BURST>",
        "--etcd <URL,...>",
        "GOVERSE_ETCD",
        "--prefix <PREFIX>",
        "--postgres <URL>",
        "GOVERSE_DATABASE_URL",
        "--config <FILE>",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
}

#[tokio::test]
async fn a_gate_needs_an_address_and_a_cluster() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_goverse-gate"))
            .args(args)
            .env_clear()
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, text) = run(&["--etcd", "http://127.0.0.1:1"]);
    assert!(
        !ok && text.contains("--http or --grpc is required"),
        "{text}"
    );
    let (ok, text) = run(&["--http", "127.0.0.1:0"]);
    assert!(!ok && text.contains("give --etcd"), "{text}");
    let (ok, text) = run(&["--http", "127.0.0.1:0", "--tls-cert", "gate.crt"]);
    assert!(!ok && text.contains("--tls-key <PEM>"), "{text}");
    let (ok, text) = run(&[
        "--http",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent.crt",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert!(!ok && text.contains("nonexistent"), "{text}");
    let (ok, text) = run(&["--http", "127.0.0.1:0", "--rate-limit-client", "fast"]);
    assert!(!ok && text.contains("<per second>/<burst>"), "{text}");
    let (ok, text) = run(&["--http", "nowhere"]);
    assert!(!ok && text.contains("invalid value 'nowhere'"), "{text}");
    let (ok, text) = run(&["--help"]);
    assert!(ok, "{text}");
    let (ok, text) = run(&[
        "--http",
        "127.0.0.1:0",
        "--auth-tokens",
        "/nonexistent.yaml",
    ]);
    assert!(
        !ok && text.contains("tokens file /nonexistent.yaml"),
        "{text}"
    );
}
