//! The quick start's program with a `tracing` subscriber installed, as
//! "A program of your own" (`book/src/quick-start.md`) shows it.

use example_counter::Counter;

// ANCHOR: main
use goverse::prelude::*;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Events at `info` and above when RUST_LOG is unset; RUST_LOG decides otherwise.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();

    let node = Node::builder().register::<Counter>().start().await?;
    // ... serve ...
    tokio::signal::ctrl_c().await?;
    node.shutdown().await;
    Ok(())
}
// ANCHOR_END: main
