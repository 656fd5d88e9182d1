//! A node process for the multi-process cluster tests: it hosts `Tally`
//! and persistent `Vault` objects (state where `--postgres` says), logs every activation and deactivation to the file named by
//! `GOVERSE_TEST_ACTIVATION_LOG` (so the test can check that no object was
//! ever active on two nodes at once), prints `ready <id> <address>` once it
//! serves, and leaves the cluster gracefully on SIGTERM.
//!
//! Flags as for `goverse::config::NodeFile::from_args`.

use std::io::Write as _;

use goverse::config::NodeFile;
use goverse::prelude::*;
use goverse_tests::processes::{Tally, Vault, log_activation};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = NodeFile::from_args(std::env::args().skip(1))?;
    let node = Node::builder()
        .register::<Tally>()
        .register::<Vault>()
        .node_file(file)?
        .start()
        .await?;
    println!("ready {} {}", node.id(), node.address());
    std::io::stdout().flush()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    node.shutdown().await;
    log_activation("stopped", "-", node.id());
    println!("stopped {}", node.id());
    Ok(())
}
