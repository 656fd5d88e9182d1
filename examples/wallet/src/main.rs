//! The wallet audit on an embedded node: wallets in an SQLite file, a gate
//! serving gRPC on loopback, and a `goverse::Client` making the transfers
//! through it with timeouts injected and retried with the same call ids.
//! Prints what happened and whether the money balances (exit status 1 if
//! not).
//!
//! Run with: cargo run -p example-wallet
//! (`-- --serve` keeps the gate on 127.0.0.1:9090 afterwards, for
//! `client.py`, until Ctrl-C; `WALLET_GRPC` serves elsewhere.)

use std::process::ExitCode;

use example_wallet::{AuditPlan, Wallet, audit};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let database = std::env::temp_dir().join("goverse-wallet.db");
    let node = Node::builder()
        .register::<Wallet>()
        .storage(goverse::storage::SqliteStorage::open(&database).await?)
        .start()
        .await?;
    let serve = std::env::args().any(|arg| arg == "--serve");
    let grpc = match (serve, std::env::var("WALLET_GRPC")) {
        (_, Ok(address)) => address,
        (true, Err(_)) => "127.0.0.1:9090".to_string(),
        (false, Err(_)) => "127.0.0.1:0".to_string(),
    };
    let grpc = grpc
        .parse()
        .map_err(|_| goverse::Error::Config(format!("WALLET_GRPC: `{grpc}` is not an address")))?;
    let gate = Gate::start(&node, GateOptions::default().grpc(grpc)).await?;
    let address = gate.grpc_address().expect("gRPC is served");
    let client = Client::connect([format!("http://{address}")], ClientOptions::default()).await?;

    // A fresh run name each time: the wallets of earlier runs stay in
    // the file, untouched.
    let run = format!(
        "run{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let plan = AuditPlan::new(run);
    println!(
        "{} wallets of {} coins, {} transfers ({} at a time) through the gate at {address}; one call in {} cut short by a timeout",
        plan.wallets, plan.opening, plan.transfers, plan.concurrency, plan.timeout_one_in
    );
    let audit = audit(client.caller(), &plan).await?;
    println!("{audit}");
    if serve {
        println!(
            "serving the wallets at {address} for other clients (python3 examples/wallet/client.py {address}); Ctrl-C stops"
        );
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| goverse::Error::Internal(e.to_string()))?;
    }
    gate.shutdown().await;
    node.shutdown().await;
    Ok(if audit.balanced() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
