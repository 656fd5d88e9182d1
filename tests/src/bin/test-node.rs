//! A node process for the multi-process cluster tests: it hosts `Tally`
//! and persistent `Vault` objects (state where `--postgres` says), logs every activation and deactivation to the file named by
//! `GOVERSE_TEST_ACTIVATION_LOG` (so the test can check that no object was
//! ever active on two nodes at once), prints `ready <id> <address>` once it
//! serves, and leaves the cluster gracefully on SIGTERM.
//!
//! Its flags are a node's (`goverse::config::NodeArgs`): `--help` lists them.

use std::io::Write as _;

use goverse::prelude::*;
use goverse_tests::processes::{Tally, Vault, log_activation};
use tokio::signal::unix::{SignalKind, signal};

// ANCHOR: args
/// A node of the test cluster.
#[derive(clap::Parser)]
struct Cli {
    /// Every node flag: --config, --node-id, --listen, --etcd, --postgres, ...
    #[command(flatten)]
    node: goverse::config::NodeArgs,
}
// ANCHOR_END: args

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: start
    let cli = <Cli as clap::Parser>::parse();
    let node = Node::builder()
        .register::<Tally>()
        .register::<Vault>()
        .node_file(cli.node.into_file()?)?
        .start()
        .await?;
    // ANCHOR_END: start
    println!("ready {} {}", node.id(), node.address());
    std::io::stdout().flush()?;
    // ANCHOR: signals
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    node.shutdown().await;
    // ANCHOR_END: signals
    log_activation("stopped", "-", node.id());
    println!("stopped {}", node.id());
    Ok(())
}
