//! A node of the example cluster: it hosts `Counter` and `Visits`, takes
//! every node setting from flags, `GOVERSE_*` variables or `--config
//! node.yaml` (`--help` lists them), logs to stderr (`RUST_LOG`), prints
//! `ready <id> <address>` once it serves, and leaves the cluster
//! gracefully on Ctrl-C or SIGTERM, handing its shards to the other nodes.

use std::io::Write as _;

use example_cluster::{Counter, Visits};
use goverse::prelude::*;

// ANCHOR: node
/// A node of the example cluster.
#[derive(clap::Parser)]
struct Cli {
    /// Every node flag: --config, --node-id, --listen, --etcd, --postgres, ...
    #[command(flatten)]
    node: goverse::config::NodeArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The node's events on stderr: `info` and above unless RUST_LOG says.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = <Cli as clap::Parser>::parse();
    let node = Node::builder()
        .register::<Counter>()
        .register::<Visits>()
        .node_file(cli.node.into_file()?)?
        .start()
        .await?;
    println!("ready {} {}", node.id(), node.address());
    std::io::stdout().flush()?;

    // Leave gracefully: the node's shards go to the others first.
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: node
