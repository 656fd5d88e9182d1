//! Listings of "Push messaging" (`book/src/push.md`).

use goverse::Client;
use goverse::gate::{Gate, GateOptions, GateStats};

/// An object that announces lines to clients.
#[derive(Debug, Default)]
pub struct Herald;

#[goverse::object]
impl Herald {
    /// Pushes "hear ye" to the client named in the request, then to every
    /// client of every gate.
    #[rustfmt::skip]
    pub async fn announce(&self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
let client = request.value.as_str();
let message = StringValue { value: "hear ye".into() };
// ANCHOR: push
ctx.push(client, &message).await?;   // to one client, by its id
ctx.broadcast(&message).await?;      // to every client of every gate
// ANCHOR_END: push
Ok(Empty {})
    }
}

// ANCHOR: room
use goverse::prelude::*;

/// A chat room: pushes every line to its members.
#[derive(Debug, Default)]
pub struct Room {
    members: Vec<String>,
}

#[goverse::object]
impl Room {
    /// A client joins with the id its gate gave it.
    pub async fn join(&mut self, _ctx: &Context, client: StringValue) -> goverse::Result<Empty> {
        self.members.push(client.value);
        Ok(Empty {})
    }

    /// Pushes `line` to every member still there.
    pub async fn say(&mut self, ctx: &Context, line: StringValue) -> goverse::Result<Empty> {
        let mut still_here = Vec::new();
        for member in &self.members {
            match ctx.push(member, &line).await {
                Ok(()) => still_here.push(member.clone()),
                // Gone, or cut off for reading too slowly: it comes back
                // with a new id and joins again.
                Err(e) if matches!(e.code(), Code::ClientNotFound | Code::ClientOverflow) => {}
                // Its gate's node cannot be reached now; keep it.
                Err(_) => still_here.push(member.clone()),
            }
        }
        self.members = still_here;
        Ok(Empty {})
    }
}
// ANCHOR_END: room

/// Prints the gate's counters, and returns them.
#[rustfmt::skip]
pub fn print_stats(gate: &Gate) -> GateStats {
// ANCHOR: stats
let stats = gate.stats();
println!(
    "{} clients, {} pushed, {} dropped, {} overflows",
    stats.clients, stats.pushed, stats.dropped, stats.overflows
);
// ANCHOR_END: stats
stats
}

/// A gate's options for pushes: a smaller buffer, a longer grace, more
/// frequent heartbeats.
#[rustfmt::skip]
pub fn push_options() -> Result<GateOptions, std::net::AddrParseError> {
// ANCHOR: options
use std::time::Duration;

let options = GateOptions::default()
    .http("127.0.0.1:8080".parse()?)
    .push_buffer(256)
    .reconnect_grace(Duration::from_secs(60))
    .heartbeat(Duration::from_secs(15));
// ANCHOR_END: options
Ok(options)
}

/// Joins the room `lobby` and prints what it pushes, for as long as the
/// client receives.
#[rustfmt::skip]
pub async fn listen_to_the_lobby(client: Client) -> goverse::Result<()> {
// ANCHOR: client_messages
let mut messages = client.messages().await?; // tokio::sync::mpsc::Receiver<PushedMessage>
let me = client.client_id().expect("registered");
RoomClient::new(&client, "lobby").join(StringValue { value: me }).await?;

while let Some(message) = messages.recv().await {
    let line: StringValue = message.decode()?;
    println!("{} {}", message.sequence, line.value);
}
// ANCHOR_END: client_messages
Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::{PATIENCE, gate_and_client};

    async fn next_line(
        messages: &mut tokio::sync::mpsc::Receiver<goverse::PushedMessage>,
    ) -> (u64, String) {
        let message = tokio::time::timeout(PATIENCE, messages.recv())
            .await
            .expect("a push in time")
            .expect("a push");
        let line: StringValue = message.decode().expect("a StringValue");
        (message.sequence, line.value)
    }

    #[tokio::test]
    async fn a_push_then_a_broadcast_reach_the_client_in_order() {
        let node = Node::builder().register::<Herald>().start().await.expect("a node");
        let (gate, client) = gate_and_client(&node, GateOptions::default()).await;
        let mut messages = client.messages().await.expect("registered");
        let me = client.client_id().expect("an id");
        HeraldClient::new(&node, "h").announce(StringValue { value: me }).await.expect("announce");
        assert_eq!(next_line(&mut messages).await, (1, "hear ye".to_string()));
        assert_eq!(next_line(&mut messages).await, (2, "hear ye".to_string()));
        assert_eq!(print_stats(&gate).pushed, 2);
        gate.shutdown().await;
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_room_pushes_to_its_members_and_forgets_the_gone() {
        let node = Node::builder().register::<Room>().start().await.expect("a node");
        let (gate, client) = gate_and_client(&node, GateOptions::default()).await;
        let mut messages = client.messages().await.expect("registered");
        let me = client.client_id().expect("an id");
        let room = RoomClient::new(&node, "lobby");
        // A member whose session is gone, then the client.
        room.join(StringValue { value: "/c-0000000000000000".into() }).await.expect("join");
        room.join(StringValue { value: me }).await.expect("join");
        room.say(StringValue { value: "hello".into() })
            .await
            .expect("said, the gone member skipped");
        assert_eq!(next_line(&mut messages).await, (1, "hello".to_string()));
        let stats = print_stats(&gate);
        assert_eq!((stats.clients, stats.pushed), (1, 1));
        gate.shutdown().await;
        node.shutdown().await;
    }

    #[test]
    fn the_push_options_are_set() -> Result<(), std::net::AddrParseError> {
        let options = push_options()?;
        assert_eq!(options.push_buffer, 256);
        assert_eq!(options.reconnect_grace, Duration::from_secs(60));
        assert_eq!(options.heartbeat, Duration::from_secs(15));
        Ok(())
    }
}
