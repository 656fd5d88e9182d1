//! TLS on the gate's listeners: HTTPS that curl verifies against the CA,
//! gRPC that `goverse::Client` verifies, and no plain-text answers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use goverse::gate::{Gate, GateOptions, GateTls};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};

#[derive(Debug, Default)]
pub struct Beacon {
    flashes: i32,
}

#[goverse::object]
impl Beacon {
    pub async fn flash(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        self.flashes += 1;
        Ok(Int32Value {
            value: self.flashes,
        })
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed (scripts/test.sh installs it)");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=goverse test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "gate.key",
        "-out",
        "gate.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "gate.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "gate.crt",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_serve_tls_that_clients_verify() {
    let dir = std::env::temp_dir().join(goverse_tests::unique_prefix("tls").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    certificates(&dir);
    assert_eq!(
        GateTls::from_pem(b"not a certificate".to_vec(), b"nor a key".to_vec())
            .unwrap_err()
            .code(),
        "INVALID_CONFIG"
    );
    let tls = GateTls::from_pem_files(dir.join("gate.crt"), dir.join("gate.key")).expect("TLS");
    let node = Node::builder()
        .register::<Beacon>()
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse().expect("address"))
        .grpc("127.0.0.1:0".parse().expect("address"))
        .tls(tls);
    let gate = Gate::start(&node, options).await.expect("gate");
    let http = gate.http_address().expect("http");
    let grpc = gate.grpc_address().expect("grpc");

    // HTTPS, verified against the CA.
    let url = format!(
        "https://127.0.0.1:{}/api/v1/objects/call/Beacon/b/Flash",
        http.port()
    );
    let ca = dir.join("ca.crt");
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca.to_str().expect("path"),
            "-X",
            "POST",
            &url,
        ])
        .output()
        .await
        .expect("curl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json, serde_json::json!({"response": 1}));
    // Without the CA, curl refuses the certificate; in plain text, no answer.
    let unverified = tokio::process::Command::new("curl")
        .args(["-sS", "-X", "POST", &url])
        .output()
        .await
        .expect("curl");
    assert!(!unverified.status.success());
    let plain = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-X",
            "POST",
            &url.replace("https://", "http://"),
        ])
        .output()
        .await
        .expect("curl");
    assert!(
        !plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("response"),
        "no plain-text answer"
    );

    // gRPC over TLS through the Rust client.
    let pem = std::fs::read(&ca).expect("CA");
    let client = Client::connect(
        [format!("https://127.0.0.1:{}", grpc.port())],
        ClientOptions::default().tls_ca_pem(pem),
    )
    .await
    .expect("connect over TLS");
    assert_eq!(
        BeaconClient::new(&client, "b")
            .flash(Empty {})
            .await
            .expect("flash")
            .value,
        2
    );
    let untrusting = Client::connect(
        [format!("https://127.0.0.1:{}", grpc.port())],
        ClientOptions::default().call_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA cannot connect"
    );

    gate.shutdown().await;
    node.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
