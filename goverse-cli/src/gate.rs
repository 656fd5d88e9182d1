//! `goverse-gate`: a gate process for a cluster. It joins the cluster as a
//! node that hosts no objects (so it gets no shards), and serves the gate
//! over HTTP and/or gRPC, routing every call to the object's owner.
//!
//! ```text
//! goverse-gate --http 0.0.0.0:8080 --etcd http://10.0.0.2:2379 --prefix /goverse [node flags]
//! goverse-gate --http 0.0.0.0:8080 --config gate.yaml
//! ```
//!
//! Gate flags: `--http <address>` and/or `--grpc <address>` (at least
//! one), `--max-body-bytes <n>`, `--cors <origin>[,<origin>...]`,
//! `--tls-cert <pem> --tls-key <pem>` (both listeners over TLS),
//! `--rate-limit-client <per second>/<burst>`,
//! `--rate-limit-object <per second>/<burst>`, `--auth-tokens <yaml>`
//! (bearer tokens and the users they stand for: `goverse::gate::TokenFile`;
//! without it the gate admits every request). Every other flag is a node flag
//! (`goverse::config::NodeFile::from_args`: `--node-id`, `--listen`,
//! `--etcd`, `--prefix`, `--shard-count`, `--lease-ttl`, ...). It prints
//! `ready <node id> http://<address> grpc://<address>` (the listeners
//! it has) once it serves, and leaves the
//! cluster gracefully on SIGTERM or Ctrl-C.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use goverse::Node;
use goverse::config::NodeFile;
use goverse::gate::{Gate, GateOptions, GateTls, RateLimit, TokenFile};

const USAGE: &str = "usage: goverse-gate [--http <address>] [--grpc <address>] [--max-body-bytes <n>] [--cors <origins>] \
                     [--tls-cert <pem> --tls-key <pem>] [--rate-limit-client <rate>/<burst>] [--rate-limit-object <rate>/<burst>] \
                     [--auth-tokens <yaml>] (--etcd <urls> --prefix <prefix> | --config <file>) [node flags]";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("goverse-gate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut options = GateOptions::default();
    let mut node_args = Vec::new();
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--http" => {
                let address: SocketAddr = value("--http")?
                    .parse()
                    .map_err(|_| "--http: not an address".to_string())?;
                options = options.http(address);
            }
            "--grpc" => {
                let address: SocketAddr = value("--grpc")?
                    .parse()
                    .map_err(|_| "--grpc: not an address".to_string())?;
                options = options.grpc(address);
            }
            "--max-body-bytes" => {
                let bytes = value("--max-body-bytes")?
                    .parse()
                    .map_err(|_| "--max-body-bytes: not a number".to_string())?;
                options = options.max_body_bytes(bytes);
            }
            "--cors" => options = options.cors_origins(value("--cors")?.split(',')),
            "--tls-cert" => tls_cert = Some(value("--tls-cert")?),
            "--tls-key" => tls_key = Some(value("--tls-key")?),
            "--rate-limit-client" => {
                options =
                    options.rate_limit_per_client(rate_limit(&value("--rate-limit-client")?)?);
            }
            "--rate-limit-object" => {
                options =
                    options.rate_limit_per_object(rate_limit(&value("--rate-limit-object")?)?);
            }
            "--auth-tokens" => {
                let tokens = TokenFile::load(value("--auth-tokens")?).map_err(|e| e.to_string())?;
                options = options.authenticator(tokens);
            }
            _ => node_args.push(arg),
        }
    }
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            options = options.tls(GateTls::from_pem_files(cert, key).map_err(|e| e.to_string())?);
        }
        (None, None) => {}
        _ => return Err(format!("--tls-cert and --tls-key go together\n{USAGE}")),
    }
    if options.http.is_none() && options.grpc.is_none() {
        return Err(format!("--http or --grpc is required\n{USAGE}"));
    }
    let file = NodeFile::from_args(node_args).map_err(|e| e.to_string())?;
    if file.cluster.is_none() {
        return Err(format!(
            "a gate routes to a cluster: give --etcd (or a config file with `cluster:`)\n{USAGE}"
        ));
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
    println!("ready {} {}", node.id(), listeners.join(" "));
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    gate.shutdown().await;
    node.shutdown().await;
    Ok(())
}

/// A rate limit written `<per second>/<burst>`, e.g. `50/100`.
fn rate_limit(text: &str) -> Result<RateLimit, String> {
    let bad = || format!("rate limit `{text}`: write <per second>/<burst>, e.g. 50/100");
    let (rate, burst) = text.split_once('/').ok_or_else(bad)?;
    let rate: f64 = rate.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    if !(rate.is_finite() && rate >= 0.0) || burst == 0 {
        return Err(bad());
    }
    Ok(RateLimit::new(rate, burst))
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
