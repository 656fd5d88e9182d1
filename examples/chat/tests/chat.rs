//! The chat as its users use it: terminal clients on `goverse::Client`
//! over the gate's gRPC service, and the web client in two headless
//! Chromium tabs over the gate's HTTP API and event stream.

use std::path::{Path, PathBuf};

use example_chat::{ChatOptions, ChatServer, Post, RoomClient, serve};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};
use goverse_tests::browser::Browser;
use goverse_tests::{PATIENCE, unique_prefix};

const ALICE: &str = "chat-alice-0123456789";
const BOB: &str = "chat-bob-0123456789ab";

/// A chat server on free ports, keeping its rooms in `database`.
async fn server(database: &Path) -> ChatServer {
    let any = "127.0.0.1:0".parse().expect("address");
    serve(&ChatOptions {
        http: any,
        grpc: any,
        database: database.to_path_buf(),
        tokens: Path::new(env!("CARGO_MANIFEST_DIR")).join("tokens.yaml"),
    })
    .await
    .expect("the chat serves")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_prefix(name).replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

async fn client(server: &ChatServer, token: &str) -> Client {
    Client::connect(
        [format!("http://{}", server.grpc_address())],
        ClientOptions::default().metadata("authorization", format!("Bearer {token}")),
    )
    .await
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_reach_every_member_and_the_history_outlives_the_server() {
    let dir = scratch("chat");
    let database = dir.join("chat.db");
    let chat = server(&database).await;
    let (alice, bob) = (client(&chat, ALICE).await, client(&chat, BOB).await);
    let mut alice_hears = alice.messages().await.expect("alice registers");
    let mut bob_hears = bob.messages().await.expect("bob registers");
    for (who, client) in [(&alice, "alice"), (&bob, "bob")] {
        let history = RoomClient::new(who, "lobby")
            .join(StringValue {
                value: who.client_id().expect("an id"),
            })
            .await
            .unwrap_or_else(|e| panic!("{client} joins: {e}"));
        assert!(history.posts.is_empty(), "{history:?}");
    }
    // The user is the token's, whatever the client says.
    let said = RoomClient::new(&bob, "lobby")
        .say(StringValue {
            value: "hi alice".into(),
        })
        .await
        .expect("bob says");
    assert_eq!(said.user, "bob");
    for hears in [&mut alice_hears, &mut bob_hears] {
        let pushed = tokio::time::timeout(PATIENCE, hears.recv())
            .await
            .expect("pushed in time")
            .expect("a push");
        let post: Post = pushed.decode().expect("a post");
        assert_eq!(
            (post.user.as_str(), post.text.as_str()),
            ("bob", "hi alice")
        );
    }
    // Bad posts and unsigned callers are refused with their codes.
    let empty = RoomClient::new(&alice, "lobby")
        .say(StringValue { value: "  ".into() })
        .await
        .expect_err("an empty post");
    assert_eq!(empty.code(), "BAD_POST");
    let stranger = Client::connect(
        [format!("http://{}", chat.grpc_address())],
        ClientOptions::default(),
    )
    .await
    .expect("client");
    let refused = RoomClient::new(&stranger, "lobby")
        .history(Empty {})
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), "UNAUTHENTICATED");

    // The room is persistent: after a restart its posts are still there.
    drop((alice_hears, bob_hears));
    chat.shutdown().await;
    let chat = server(&database).await;
    let carol = client(&chat, "chat-carol-0123456789").await;
    let history = RoomClient::new(&carol, "lobby")
        .history(Empty {})
        .await
        .expect("history");
    let lines: Vec<_> = history
        .posts
        .iter()
        .map(|p| (p.user.as_str(), p.text.as_str()))
        .collect();
    assert_eq!(lines, [("bob", "hi alice")]);
    chat.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// Signs the page in as the user of `option` (its label) and waits until
/// it has joined.
async fn sign_in(tab: &mut Browser, url: &str, user: &str) {
    tab.navigate(url).await;
    tab.wait_for("the sign-in form", "!!document.getElementById('join')")
        .await;
    tab.eval(&format!(
        "(() => {{ const s = document.getElementById('user'); \
         s.value = [...s.options].find(o => o.textContent === '{user}').value; \
         document.getElementById('join').click(); return true; }})()"
    ))
    .await;
    tab.wait_for(
        "the room",
        &format!("document.getElementById('status').textContent === '{user} in lobby'"),
    )
    .await;
}

async fn say(tab: &mut Browser, text: &str) {
    tab.eval(&format!(
        "document.getElementById('text').value = {}; document.getElementById('say').click(); true",
        serde_json::Value::String(text.into())
    ))
    .await;
}

const POSTS: &str =
    "[...document.querySelectorAll('#posts li')].map(li => li.textContent).join('\\n')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_in_one_tab_appears_in_the_other() {
    let dir = scratch("chat-web");
    let chat = server(&dir.join("chat.db")).await;
    let url = format!("http://{}/", chat.http_address());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat");
    let (mut alice, mut bob) = (Browser::start().await, Browser::start().await);
    sign_in(&mut alice, &url, "alice").await;
    sign_in(&mut bob, &url, "bob").await;

    say(&mut alice, "hello from alice's tab").await;
    let seen = format!("({POSTS}).includes('alicehello from alice\\'s tab')");
    bob.wait_for("alice's post in bob's tab", &seen).await;
    say(&mut bob, "hi alice, bob here").await;
    let seen = format!("({POSTS}).includes('bobhi alice, bob here')");
    alice.wait_for("bob's answer in alice's tab", &seen).await;
    // Both tabs show both posts, in the order said.
    for tab in [&mut alice, &mut bob] {
        let posts = tab.eval(POSTS).await;
        let posts = posts.as_str().expect("text");
        let (first, second) = (
            posts.find("hello from alice").expect("alice's"),
            posts.find("hi alice, bob here").expect("bob's"),
        );
        assert!(first < second, "{posts}");
    }
    alice.screenshot(&shots, "alice").await;
    bob.screenshot(&shots, "bob").await;

    // A tab opened later gets the history when it joins.
    let mut carol = Browser::start().await;
    sign_in(&mut carol, &url, "carol").await;
    let seen = format!("({POSTS}).includes('bobhi alice, bob here')");
    carol.wait_for("the history in carol's tab", &seen).await;
    carol.screenshot(&shots, "carol").await;

    chat.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
