//! A chat: each room is a persistent object that keeps its members (the
//! clients connected to a gate) and its latest posts, and pushes every
//! post to every member. Users are named by the gate's token file. The
//! server serves a web client (server-sent events, plain JSON bodies) and
//! the gate's gRPC service, which the terminal client calls through
//! `goverse::Client`.
//!
//! Run with: cargo run -p example-chat

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use goverse::gate::{Gate, GateOptions, TokenFile};
use goverse::prelude::*;

/// The chat's messages, from `proto/chat.proto`.
pub mod chat {
    goverse::include_proto!("chat");
}
pub use chat::{History, Post};

/// Posts a room keeps.
pub const KEPT: usize = 100;

/// The longest post, in characters.
pub const LONGEST: usize = 2_000;

// ANCHOR: room
/// A chat room: its members (client id → user) and its latest posts.
/// Persistent, so the posts outlive the server.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Room {
    members: BTreeMap<String, String>,
    posts: Vec<Post>,
}

#[goverse::object(persistent)]
impl Room {
    /// Joins the room with the client id a gate gave this client (the
    /// one the gate verified for the call, or else the one sent), and
    /// returns the latest posts. Every post from now on is pushed to it.
    pub async fn join(&mut self, ctx: &Context, client: StringValue) -> Result<History> {
        let user = signed_in(ctx)?;
        let client = ctx.client_id().map_or(client.value, str::to_string);
        if client.is_empty() {
            return Err(goverse::Error::application(
                "NO_CLIENT_ID",
                "join with the client id from your event stream's `register` event",
            ));
        }
        self.members.insert(client, user);
        Ok(History {
            posts: self.posts.clone(),
        })
    }

    /// Says `text` in the room: kept, and pushed to every member. A member
    /// whose client has gone is dropped.
    pub async fn say(&mut self, ctx: &Context, text: StringValue) -> Result<Post> {
        let user = signed_in(ctx)?;
        let text = text.value.trim().to_string();
        if text.is_empty() || text.chars().count() > LONGEST {
            return Err(goverse::Error::application(
                "BAD_POST",
                format!("a post has 1 to {LONGEST} characters"),
            ));
        }
        let post = Post {
            user,
            text,
            at_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let mut gone = Vec::new();
        for client in self.members.keys() {
            if let Err(error) = ctx.push(client, &post).await
                && error.code() == "CLIENT_NOT_FOUND"
            {
                gone.push(client.clone());
            }
        }
        for client in gone {
            self.members.remove(&client);
        }
        self.posts.push(post.clone());
        let excess = self.posts.len().saturating_sub(KEPT);
        self.posts.drain(..excess);
        Ok(post)
    }

    /// Leaves the room: no more pushes to `client`.
    pub async fn leave(&mut self, _ctx: &Context, client: StringValue) -> Result<Empty> {
        self.members.remove(&client.value);
        Ok(Empty {})
    }

    /// The latest posts, oldest first.
    pub async fn history(&self, _ctx: &Context, _request: Empty) -> Result<History> {
        Ok(History {
            posts: self.posts.clone(),
        })
    }
}

/// The user the gate signed the call in as.
fn signed_in(ctx: &Context<'_>) -> Result<String> {
    ctx.identity()
        .map(|identity| identity.user_id.clone())
        .ok_or_else(|| {
            goverse::Error::application("NOT_SIGNED_IN", "chat through a gate, with a token")
        })
}
// ANCHOR_END: room

/// Where the chat server serves, and what it keeps.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// The web client and the gate's HTTP API.
    pub http: SocketAddr,
    /// The gate's gRPC service, for the terminal client.
    pub grpc: SocketAddr,
    /// The SQLite file the rooms are kept in.
    pub database: PathBuf,
    /// The users' tokens, in the gate's token file format.
    pub tokens: PathBuf,
}

/// A running chat server.
#[derive(Debug)]
pub struct ChatServer {
    node: Node,
    gate: Gate,
    http: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

/// The web client.
const PAGE: &str = include_str!("page.html");

/// Starts the chat: an embedded node hosting `Room` (rooms kept in
/// `options.database`), a gate taking `options.tokens`' users on gRPC,
/// and on HTTP the web client at `/` beside the gate's API.
///
/// # Errors
///
/// A token file or database that cannot be read, or an address in use.
pub async fn serve(options: &ChatOptions) -> Result<ChatServer> {
    let node = Node::builder()
        .register::<Room>()
        .storage(goverse::storage::SqliteStorage::open(&options.database).await?)
        .start()
        .await?;
    let gate = Gate::start(
        &node,
        GateOptions::default()
            .grpc(options.grpc)
            .authenticator(TokenFile::load(&options.tokens)?),
    )
    .await?;
    // The page needs no token; the gate's routes do.
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Html(PAGE) }),
        )
        .merge(gate.router());
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .map_err(|e| goverse::Error::Config(format!("cannot serve on {}: {e}", options.http)))?;
    let http = listener
        .local_addr()
        .map_err(|e| goverse::Error::Internal(e.to_string()))?;
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("chat: the web server stopped: {error}");
        }
    });
    Ok(ChatServer {
        node,
        gate,
        http,
        server,
    })
}

impl ChatServer {
    /// Where the web client is.
    pub fn http_address(&self) -> SocketAddr {
        self.http
    }

    /// Where the gate's gRPC service is.
    pub fn grpc_address(&self) -> SocketAddr {
        self.gate.grpc_address().expect("the gate serves gRPC")
    }

    /// Stops the server: the clients' streams end, and the rooms are saved.
    pub async fn shutdown(self) {
        self.gate.shutdown().await;
        self.server.abort();
        self.node.shutdown().await;
    }
}
