//! A client from outside Rust: Python with grpcio and stubs generated from
//! `proto/gate.proto` registers, calls an object, receives a push and reads
//! an error's goverse code. `scripts/test.sh` installs grpcio and
//! grpcio-tools from PyPI.

use std::time::Duration;

use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse_tests::PATIENCE;
use goverse_tests::gate_objects::Purse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpc_client_calls_and_receives_pushes() {
    let node = Node::builder()
        .register::<Purse>()
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .grpc("127.0.0.1:0".parse().expect("address"))
        .heartbeat(Duration::from_secs(60));
    let gate = Gate::start(&node, options).await.expect("gate");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/gate_client.py");
    let output = tokio::time::timeout(
        PATIENCE * 3,
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(gate.grpc_address().expect("grpc").to_string())
            .arg("py-purse")
            .output(),
    )
    .await
    .expect("the Python client finishes in time")
    .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed (scripts/test.sh installs grpcio and grpcio-tools):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with("registered "), "{stdout}");
    assert_eq!(
        &lines[1..],
        [
            "add 5",
            "add 10",
            "pushed 1 10",
            "error FAILED_PRECONDITION INSUFFICIENT_FUNDS"
        ]
    );
    gate.shutdown().await;
    node.shutdown().await;
}
