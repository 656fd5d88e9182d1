//! The chat server: the web client at http://127.0.0.1:8080, the gate's
//! gRPC service at 127.0.0.1:9090, rooms kept in an SQLite file in the
//! temp directory, users from `tokens.yaml`. Stops on Ctrl-C.
//!
//! Run with: cargo run -p example-chat
//! (`CHAT_HTTP`, `CHAT_GRPC`, `CHAT_DATABASE` and `CHAT_TOKENS` change
//! those.)

use std::io::Write as _;

use example_chat::{ChatOptions, serve};

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn address(name: &str, default: &str) -> goverse::Result<std::net::SocketAddr> {
    let value = setting(name, default);
    value
        .parse()
        .map_err(|_| goverse::Error::Config(format!("{name}: `{value}` is not an address")))
}

#[tokio::main]
async fn main() -> goverse::Result<()> {
    let database = std::env::temp_dir().join("goverse-chat.db");
    let options = ChatOptions {
        http: address("CHAT_HTTP", "127.0.0.1:8080")?,
        grpc: address("CHAT_GRPC", "127.0.0.1:9090")?,
        database: setting("CHAT_DATABASE", &database.display().to_string()).into(),
        tokens: setting(
            "CHAT_TOKENS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tokens.yaml"),
        )
        .into(),
    };
    let server = serve(&options).await?;
    println!(
        "chat at http://{} (users alice, bob and carol; rooms kept in {})",
        server.http_address(),
        options.database.display()
    );
    println!(
        "terminal client: cargo run -p example-chat --bin chat-client -- --gate http://{} --token chat-bob-0123456789ab lobby",
        server.grpc_address()
    );
    println!("Ctrl-C stops it");
    std::io::stdout().flush().ok();
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| goverse::Error::Internal(e.to_string()))?;
    server.shutdown().await;
    Ok(())
}
