//! A node of the sharding demo: `Counter`, `ShardMonitor` (auto-loaded on
//! every shard) and `NodeMonitor` (auto-loaded on the node), with every
//! node setting from flags, `GOVERSE_*` variables or `--config`. Prints
//! `ready <id> <address>` once it serves; leaves gracefully on SIGTERM.

use std::io::Write as _;

/// A node of the demo.
#[derive(clap::Parser)]
struct Cli {
    /// Every node flag: --node-id, --listen, --etcd, --postgres, ...
    #[command(flatten)]
    node: goverse::config::NodeArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = <Cli as clap::Parser>::parse();
    let node = example_sharding_demo::builder()
        .node_file(cli.node.into_file()?)?
        .start()
        .await?;
    println!("ready {} {}", node.id(), node.address());
    std::io::stdout().flush()?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    node.shutdown().await;
    Ok(())
}
