//! Objects whose requests and responses are messages of the crate's own
//! `.proto` file, compiled in `build.rs` by `goverse_codegen::build`: typed
//! calls, and calls by name in protobuf and in proto3 JSON.

use goverse::prelude::*;
use goverse::{Codec, EncodedCall, Message as _};
use goverse_tests::chat::{History, HistoryRequest, Post, post};
use prost::Message as _;

#[derive(Debug, Default)]
pub struct ChatRoom {
    posts: Vec<Post>,
}

#[goverse::object]
impl ChatRoom {
    /// Appends a post, numbering it, and returns the room's history.
    pub async fn post(&mut self, _ctx: &Context, mut request: Post) -> goverse::Result<History> {
        request.sequence = i64::MAX - 1_000 + self.posts.len() as i64;
        self.posts.push(request);
        Ok(self.history_of(u32::MAX))
    }

    /// The last `limit` posts (all when 0).
    pub async fn history(
        &self,
        _ctx: &Context,
        request: HistoryRequest,
    ) -> goverse::Result<History> {
        Ok(self.history_of(request.limit))
    }

    fn history_of(&self, limit: u32) -> History {
        let limit = if limit == 0 {
            usize::MAX
        } else {
            limit as usize
        };
        let skip = self.posts.len().saturating_sub(limit);
        History {
            posts: self.posts[skip..].to_vec(),
            total: self.posts.len() as i64,
        }
    }
}

async fn node() -> Node {
    Node::builder()
        .register::<ChatRoom>()
        .start()
        .await
        .expect("node starts")
}

fn sample_post() -> Post {
    Post {
        author: "ann".into(),
        text: "hello".into(),
        kind: post::Kind::Text as i32,
        sequence: 0,
        attachment: b"hi".to_vec(),
        reactions: [("+1".to_string(), 2)].into_iter().collect(),
        sent_at: Some(goverse::types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 0,
        }),
        target: Some(post::Target::Direct(post::Direct { to: "bob".into() })),
    }
}

#[tokio::test]
async fn typed_calls_carry_every_kind_of_field() {
    let node = node().await;
    let room = ChatRoomClient::new(&node, "lobby");
    room.post(sample_post()).await.expect("post");
    let history = room.post(sample_post()).await.expect("post");
    assert_eq!(history.total, 2);
    let mut expected = sample_post();
    expected.sequence = i64::MAX - 1_000;
    assert_eq!(history.posts[0], expected);
    let last = room
        .history(HistoryRequest { limit: 1 })
        .await
        .expect("history");
    assert_eq!(last.posts.len(), 1);
    assert_eq!(last.posts[0].sequence, i64::MAX - 999);
    node.shutdown().await;
}

#[tokio::test]
async fn calls_by_name_speak_proto3_json() {
    let node = node().await;
    let body = br#"{"author":"ann","text":"hi","kind":"KIND_SYSTEM","attachment":"aGk=",
        "reactions":{"+1":2},"sentAt":"2026-11-26T10:00:00Z","room":"general"}"#;
    let response = node
        .call(EncodedCall::new(
            "ChatRoom",
            "json",
            "Post",
            Codec::Json,
            body.to_vec(),
        ))
        .await
        .expect("call");
    let json: serde_json::Value = serde_json::from_slice(&response).expect("response is JSON");
    // proto3 JSON: 64-bit integers as strings, enums by name, lowerCamelCase
    // field names, Timestamps in RFC 3339, bytes in base64.
    assert_eq!(json["total"], "1");
    let posted = &json["posts"][0];
    assert_eq!(posted["sequence"], (i64::MAX - 1_000).to_string());
    assert_eq!(posted["kind"], "KIND_SYSTEM");
    // RFC 3339 in UTC; pbjson-types writes the offset as `+00:00`, not `Z`.
    assert_eq!(posted["sentAt"], "2026-11-26T10:00:00+00:00");
    assert_eq!(posted["attachment"], "aGk=");
    assert_eq!(posted["room"], "general");
    assert_eq!(posted["reactions"]["+1"], 2);

    let error = node
        .call(EncodedCall::new(
            "ChatRoom",
            "json",
            "Post",
            Codec::Json,
            br#"{"kind":"NO_SUCH_KIND"}"#.to_vec(),
        ))
        .await
        .expect_err("an unknown enum name is refused");
    assert_eq!(error.code(), "INVALID_JSON");
    assert!(
        error.to_string().contains("goverse.tests.chat.Post"),
        "{error}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn calls_by_name_speak_protobuf() {
    let node = node().await;
    let body = sample_post().encode_to_vec();
    let response = node
        .call(EncodedCall::new(
            "ChatRoom",
            "binary",
            "post",
            Codec::Protobuf,
            body,
        ))
        .await
        .expect("call");
    let history = History::decode(response.as_slice()).expect("response is a History");
    assert_eq!(history.total, 1);
    assert_eq!(history.posts[0].author, "ann");
    node.shutdown().await;
}

#[test]
fn generated_messages_know_their_names_and_files() {
    assert_eq!(Post::FULL_NAME, "goverse.tests.chat.Post");
    assert_eq!(post::Direct::FULL_NAME, "goverse.tests.chat.Post.Direct");
    assert_eq!(Post::PROTO_FILE, "chat.proto");
    let proto = goverse::descriptor_of::<ChatRoom>().to_proto("goverse.tests.rooms");
    assert!(proto.contains("import \"chat.proto\";"), "{proto}");
    assert!(
        proto.contains("rpc Post(goverse.tests.chat.Post) returns (goverse.tests.chat.History);"),
        "{proto}"
    );
}
