//! The terminal client: joins a room through a gate's gRPC service with
//! `goverse::Client`, prints the room's history and every post pushed to
//! it, and says each line typed. Ends at end of input (Ctrl-D).
//!
//! Run with: cargo run -p example-chat --bin chat-client -- [--gate URL] [--token TOKEN] [ROOM]

use example_chat::{Post, RoomClient};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

fn print(post: &Post) {
    println!("{}: {}", post.user, post.text);
}

#[tokio::main]
async fn main() -> goverse::Result<()> {
    let (mut gate, mut token, mut room) = (
        "http://127.0.0.1:9090".to_string(),
        "chat-alice-0123456789".to_string(),
        "lobby".to_string(),
    );
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gate" => gate = args.next().unwrap_or_default(),
            "--token" => token = args.next().unwrap_or_default(),
            _ => room = arg,
        }
    }
    // ANCHOR: client
    let client = Client::connect(
        [gate],
        ClientOptions::default().metadata("authorization", format!("Bearer {token}")),
    )
    .await?;
    // Register for pushes first: the room pushes to this client's id.
    let mut pushes = client.messages().await?;
    let me = client.client_id().unwrap_or_default();
    let room = RoomClient::new(&client, room);
    for post in room.join(StringValue { value: me }).await?.posts {
        print(&post);
    }
    // ANCHOR_END: client
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            pushed = pushes.recv() => match pushed {
                Some(message) => print(&message.decode::<Post>()?),
                None => break,
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    if let Err(error) = room.say(StringValue { value: line }).await {
                        eprintln!("{error}");
                    }
                }
                _ => break,
            },
        }
    }
    Ok(())
}
