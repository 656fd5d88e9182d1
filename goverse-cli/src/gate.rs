//! `goverse-gate`: a gate process for a cluster. It joins the cluster as a
//! node that hosts no objects (so it gets no shards), and serves the gate
//! over HTTP and/or gRPC, routing every call to the object's owner.
//!
//! ```text
//! goverse-gate --http 0.0.0.0:8080 --etcd http://10.0.0.2:2379 [flags]
//! goverse-gate --config gate.yaml
//! ```
//!
//! The gate's flags are `goverse::config::GateArgs` (`--http`, `--grpc`,
//! `--cors`, `--tls-cert`/`--tls-key`, `--rate-limit-client`,
//! `--auth-tokens`, ...), the node's `goverse::config::NodeArgs`
//! (`--node-id`, `--listen`, `--etcd`, `--prefix`, ...); each is also read
//! from a `GOVERSE_*` variable, and each overrides the `--config` file's
//! key (the gate's under `gate:`). `goverse-gate --help` lists them. It
//! prints `ready <node id> http://<address> grpc://<address>` (the
//! listeners it has) once it serves, logs to stderr (`RUST_LOG`, default
//! `info`), and leaves the cluster gracefully on SIGTERM or Ctrl-C.

mod logging;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use goverse::Node;
use goverse::config::{GateArgs, NodeArgs};
use goverse::gate::{Gate, GateOptions};

/// A gate process for a goverse cluster: objects called over HTTP and
/// gRPC, pushes to connected clients.
#[derive(Debug, Parser)]
#[command(name = "goverse-gate", version)]
struct Cli {
    #[command(flatten, next_help_heading = "Gate")]
    gate: GateArgs,
    #[command(flatten, next_help_heading = "Node")]
    node: NodeArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = match logging::init("goverse-gate") {
        Ok(telemetry) => telemetry,
        Err(message) => {
            eprintln!("goverse-gate: {message}");
            return ExitCode::FAILURE;
        }
    };
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("goverse-gate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut file = cli.node.into_file().map_err(|e| e.to_string())?;
    cli.gate.apply(&mut file.gate).map_err(|e| e.to_string())?;
    let options =
        GateOptions::from_file(&file.gate.take().unwrap_or_default()).map_err(|e| e.to_string())?;
    if options.http.is_none() && options.grpc.is_none() {
        return Err(
            "--http or --grpc is required (or `gate: {http: ...}` in the --config file)".into(),
        );
    }
    if file.cluster.as_ref().is_none_or(|c| c.etcd.is_empty()) {
        return Err(
            "a gate routes to a cluster: give --etcd (or a --config file with `cluster: {etcd: [...]}`)"
                .into(),
        );
    }
    let node = Node::builder()
        .node_file(file)
        .map_err(|e| e.to_string())?
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let gate = Gate::start(&node, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut listeners = Vec::new();
    if let Some(http) = gate.http_address() {
        listeners.push(format!("http://{http}"));
    }
    if let Some(grpc) = gate.grpc_address() {
        listeners.push(format!("grpc://{grpc}"));
    }
    tracing::info!(node = node.id(), listeners = %listeners.join(" "), "gate ready");
    println!("ready {} {}", node.id(), listeners.join(" "));
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
