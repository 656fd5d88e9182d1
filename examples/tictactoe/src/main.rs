//! The tic-tac-toe server: the page at http://127.0.0.1:8080, games kept
//! in an SQLite file in the temp directory. Stops on Ctrl-C.
//!
//! Run with: cargo run -p example-tictactoe
//! (`TICTACTOE_HTTP` serves elsewhere.)

#[tokio::main]
async fn main() -> goverse::Result<()> {
    let http = std::env::var("TICTACTOE_HTTP").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let http = http.parse().map_err(|_| {
        goverse::Error::Config(format!("TICTACTOE_HTTP: `{http}` is not an address"))
    })?;
    let database = std::env::temp_dir().join("goverse-tictactoe.db");
    let server = example_tictactoe::serve(http, database.clone()).await?;
    println!(
        "tic-tac-toe at http://{} (open it in two windows, or play the computer; games kept in {})",
        server.http_address(),
        database.display()
    );
    println!("Ctrl-C stops it");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| goverse::Error::Internal(e.to_string()))?;
    server.shutdown().await;
    Ok(())
}
