//! The HTTP gate through real sockets: both request forms, create and
//! delete, reliable calls, CORS, and every error code it answers with,
//! including bodies that are too large or too slow and a connection that
//! never finishes its headers.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A persistent teller with methods that fail in every way a method can.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Teller {
    total: i32,
}

#[goverse::object(persistent)]
impl Teller {
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        self.total += request.value;
        Ok(Int32Value { value: self.total })
    }

    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: self.total })
    }

    /// Fails with the code it is given.
    pub async fn refuse(&self, _ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        Err(goverse::Error::application(
            request.value,
            "refused on request",
        ))
    }

    pub async fn explode(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        panic!("boom");
    }

    pub async fn dawdle(&self, _ctx: &Context, request: Int32Value) -> goverse::Result<Empty> {
        tokio::time::sleep(Duration::from_millis(request.value as u64)).await;
        Ok(Empty {})
    }

    /// The trace context the call came with.
    pub async fn trace(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: ctx.traceparent().unwrap_or_default().to_string(),
        })
    }

    /// Calls itself: a call cycle.
    pub async fn echo(&self, ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        TellerClient::new(ctx, ctx.id()).get(Empty {}).await
    }
}

/// An object that keeps no state.
#[derive(Debug, Default)]
pub struct Scratch;

#[goverse::object]
impl Scratch {
    pub async fn poke(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

struct Fixture {
    node: Node,
    gate: Gate,
    address: String,
}

async fn start() -> Fixture {
    // One stored row that cannot be loaded: its activation fails.
    let storage = std::sync::Arc::new(goverse::storage::MemoryStorage::new());
    goverse::storage::Storage::save(
        &*storage,
        "Teller",
        "corrupt",
        b"not json",
        goverse::storage::Fence { epoch: 1 },
    )
    .await
    .expect("seed");
    let node = Node::builder()
        .register::<Teller>()
        .register::<Scratch>()
        .storage(storage)
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse().expect("address"))
        .max_body_bytes(4096)
        .body_timeout(Duration::from_millis(500))
        .header_timeout(Duration::from_millis(500))
        .call_timeout(Duration::from_millis(1500))
        .cors_origins(["https://app.example"]);
    let gate = Gate::start(&node, options).await.expect("gate");
    let address = gate.http_address().expect("http").to_string();
    Fixture {
        node,
        gate,
        address,
    }
}

impl Fixture {
    async fn stop(self) {
        self.gate.shutdown().await;
        self.node.shutdown().await;
    }

    /// Sends one request; returns the status, the headers (lower-case
    /// names) and the body as JSON (`Null` if it is not JSON).
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, serde_json::Value) {
        let mut stream = TcpStream::connect(&self.address).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        // This gate is open to one origin only: it takes JSON calls only.
        if method == "POST" && !headers.iter().any(|(name, _)| *name == "content-type") {
            head.push_str("content-type: application/json\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(body).await.expect("write body");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
            .await
            .expect("answered in time")
            .expect("read");
        parse(&response)
    }

    async fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, _, json) = self.request("POST", path, &[], body.as_bytes()).await;
        (status, json)
    }
}

fn parse(response: &[u8]) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The seed README's request: `Any{Int32Value{value: 5}}`, base64.
const SEED_REQUEST: &str =
    "Ci50eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5wcm90b2J1Zi5JbnQzMlZhbHVlEgIIBQ==";

fn any_of(message: &Int32Value) -> String {
    let any = goverse::types::Any {
        type_url: "type.googleapis.com/google.protobuf.Int32Value".into(),
        value: message.encode_to_vec().into(),
    };
    STANDARD.encode(any.encode_to_vec())
}

#[tokio::test]
async fn calls_in_both_forms() {
    let gate = start().await;
    // The original's form: a base64 Any in, a base64 Any out.
    let (status, json) = gate
        .post(
            "/api/v1/objects/call/Teller/t1/Add",
            &format!(r#"{{"request":"{SEED_REQUEST}"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let response = STANDARD
        .decode(json["response"].as_str().expect("base64 response"))
        .expect("base64");
    let any = goverse::types::Any::decode(response.as_slice()).expect("an Any");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/google.protobuf.Int32Value"
    );
    assert_eq!(
        Int32Value::decode(any.value.as_ref())
            .expect("Int32Value")
            .value,
        5
    );

    // Plain JSON, in the object form and the canonical one; the rpc name or
    // the Rust name.
    let (status, json) = gate
        .post("/api/v1/objects/call/Teller/t1/Add", r#"{"value": 5}"#)
        .await;
    assert_eq!((status, &json), (200, &serde_json::json!({"response": 10})));
    let (status, json) = gate.post("/api/v1/objects/call/Teller/t1/add", "2").await;
    assert_eq!((status, &json), (200, &serde_json::json!({"response": 12})));
    // An empty body is the empty message.
    let (status, json) = gate.post("/api/v1/objects/call/Teller/t1/Get", "").await;
    assert_eq!((status, &json), (200, &serde_json::json!({"response": 12})));

    // Create and delete.
    let (status, json) = gate.post("/api/v1/objects/create/Teller/t2", "").await;
    assert_eq!((status, &json), (200, &serde_json::json!({"id": "t2"})));
    let (status, json) = gate.post("/api/v1/objects/delete/Teller/t1", "").await;
    assert_eq!(
        (status, &json),
        (200, &serde_json::json!({"success": true}))
    );
    let (_, json) = gate.post("/api/v1/objects/call/Teller/t1/Get", "{}").await;
    assert_eq!(
        json,
        serde_json::json!({"response": 0}),
        "deleted, then new"
    );
    let (status, _) = gate.post("/api/v1/objects/delete/Teller/never", "").await;
    assert_eq!(status, 200, "deleting what never existed is fine");
    // A W3C trace context header reaches the object.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _, json) = gate
        .request(
            "POST",
            "/api/v1/objects/call/Teller/t1/Trace",
            &[("traceparent", traceparent)],
            b"",
        )
        .await;
    assert_eq!(
        (status, &json["response"]),
        (200, &serde_json::json!(traceparent))
    );
    gate.stop().await;
}

#[tokio::test]
async fn reliable_calls_by_header() {
    let gate = start().await;
    let add = |call_id: &'static str| {
        let gate = &gate;
        async move {
            let (status, _, json) = gate
                .request(
                    "POST",
                    "/api/v1/objects/call/Teller/r1/Add",
                    &[("x-call-id", call_id)],
                    br#"{"value": 7}"#,
                )
                .await;
            (status, json)
        }
    };
    assert_eq!(
        add("deposit-1").await,
        (200, serde_json::json!({"response": 7}))
    );
    assert_eq!(
        add("deposit-1").await,
        (200, serde_json::json!({"response": 7})),
        "recorded"
    );
    assert_eq!(
        add("deposit-2").await,
        (200, serde_json::json!({"response": 14}))
    );
    let (status, _, json) = gate
        .request(
            "POST",
            "/api/v1/objects/call/Teller/r1/Get",
            &[("x-call-id", "deposit-1")],
            b"{}",
        )
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (409, Some("CALL_ID_REUSED"))
    );
    gate.stop().await;
}

#[tokio::test]
async fn every_error_has_its_code_and_status() {
    let gate = start().await;
    let big = format!(r#"{{"value": 1, "pad": "{}"}}"#, "x".repeat(5000));
    let wrong_type = {
        let any = goverse::types::Any {
            type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
            value: StringValue { value: "x".into() }.encode_to_vec().into(),
        };
        format!(
            r#"{{"request":"{}"}}"#,
            STANDARD.encode(any.encode_to_vec())
        )
    };
    let garbage = format!(r#"{{"request":"{}"}}"#, STANDARD.encode([0xff, 0xff, 0xff]));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/api/v1/objects/call/Bad%20Type/x/Add",
            "{}".into(),
            400,
            "INVALID_PATH",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add%2D",
            "{}".into(),
            400,
            "INVALID_PATH",
        ),
        (
            "/api/v1/objects/call/Teller/%FF%FE/Add",
            "{}".into(),
            400,
            "INVALID_PATH",
        ),
        (
            "/api/v1/objects/call/Teller/bad%07id/Add",
            "{}".into(),
            400,
            "INVALID_OBJECT_ID",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            "{not json".into(),
            400,
            "INVALID_JSON",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            r#"{"value": "five"}"#.into(),
            400,
            "INVALID_JSON",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            r#"{"request": 5}"#.into(),
            400,
            "INVALID_BODY",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            r#"{"request": "!!not base64"}"#.into(),
            400,
            "INVALID_BASE64",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            garbage,
            400,
            "INVALID_PROTOBUF",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            wrong_type,
            400,
            "INVALID_PROTOBUF",
        ),
        (
            "/api/v1/objects/call/Nobody/x/Add",
            "{}".into(),
            404,
            "UNKNOWN_OBJECT_TYPE",
        ),
        (
            "/api/v1/objects/call/Teller/x/Fly",
            "{}".into(),
            404,
            "UNKNOWN_METHOD",
        ),
        (
            "/api/v1/objects/create/Nobody/x",
            "".into(),
            404,
            "UNKNOWN_OBJECT_TYPE",
        ),
        (
            "/api/v1/objects/frobnicate/Teller/x",
            "".into(),
            404,
            "NOT_FOUND",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            big,
            413,
            "BODY_TOO_LARGE",
        ),
        (
            "/api/v1/objects/call/Teller/x/Refuse",
            r#""INSUFFICIENT_FUNDS""#.into(),
            422,
            "INSUFFICIENT_FUNDS",
        ),
        (
            "/api/v1/objects/call/Teller/x/Explode",
            "{}".into(),
            500,
            "METHOD_PANICKED",
        ),
        (
            "/api/v1/objects/call/Teller/slow/Dawdle",
            "5000".into(),
            504,
            "DEADLINE_EXCEEDED",
        ),
        (
            "/api/v1/objects/call/Teller/loop/Echo",
            "{}".into(),
            409,
            "CALL_CYCLE",
        ),
        (
            "/api/v1/objects/call/Teller/corrupt/Get",
            "{}".into(),
            500,
            "ACTIVATION_FAILED",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, json) = gate.post(path, &body).await;
        assert_eq!(
            (got, json["code"].as_str()),
            (status, Some(code)),
            "{path} {}: {json}",
            body.chars().take(80).collect::<String>()
        );
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
        // The cluster's insides stay in its logs: no panic payload, no
        // decoder's or database's words about stored state, no node id.
        let message = json["error"].as_str().unwrap_or_default();
        for inside in ["boom", "deserialize", "node-", "Teller/loop"] {
            assert!(!message.contains(inside), "{path}: {message}");
        }
    }
    let (status, _, json) = gate
        .request("GET", "/api/v1/objects/call/Teller/x/Add", &[], b"")
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
    // Reliable calls by header: a bad id, a type without state, a header
    // that is not ASCII text.
    let reliable_cases: [(&str, &[u8], u16, &str); 3] = [
        (
            "/api/v1/objects/call/Teller/x/Add",
            &[b'x'; 300],
            400,
            "INVALID_CALL_ID",
        ),
        (
            "/api/v1/objects/call/Scratch/x/Poke",
            b"c1",
            400,
            "NOT_PERSISTENT",
        ),
        (
            "/api/v1/objects/call/Teller/x/Add",
            b"caf\xe9",
            400,
            "INVALID_BODY",
        ),
    ];
    for (path, call_id, status, code) in reliable_cases {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-call-id: "
        )
        .into_bytes();
        request.extend_from_slice(call_id);
        request.extend_from_slice(b"\r\n\r\n{}");
        let mut stream = TcpStream::connect(&gate.address).await.expect("connect");
        stream.write_all(&request).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let (got, _, json) = parse(&response);
        assert_eq!(
            (got, json["code"].as_str()),
            (status, Some(code)),
            "{path}: {json}"
        );
    }
    // The node still serves after all that.
    let (status, json) = gate.post("/api/v1/objects/call/Teller/x/Add", "1").await;
    assert_eq!((status, json), (200, serde_json::json!({"response": 1})));
    // A node that is shutting down refuses calls: 503.
    gate.node.shutdown().await;
    let (status, json) = gate.post("/api/v1/objects/call/Teller/x/Add", "1").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (503, Some("NODE_SHUTTING_DOWN"))
    );
    gate.gate.shutdown().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let gate = start().await;
    // A body that trickles: 408 once the body timeout passes.
    let mut stream = TcpStream::connect(&gate.address).await.expect("connect");
    stream
        .write_all(
            b"POST /api/v1/objects/call/Teller/s/Add HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"va",
        )
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let (status, _, json) = parse(&response);
    assert_eq!(
        (status, json["code"].as_str()),
        (408, Some("REQUEST_TIMEOUT"))
    );

    // Headers that never end: the connection is closed.
    let mut stream = TcpStream::connect(&gate.address).await.expect("connect");
    stream
        .write_all(b"POST /api/v1/objects/call/Teller/s/Add HTTP/1.1\r\nhost: ga")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the gate closed the connection");
    gate.stop().await;
}

#[tokio::test]
async fn browsers_on_allowed_origins_may_call() {
    let gate = start().await;
    let (status, headers, _) = gate
        .request(
            "OPTIONS",
            "/api/v1/objects/call/Teller/c/Add",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            b"",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    for name in ["x-call-id", "authorization", "traceparent", "last-event-id"] {
        assert!(allowed.contains(name), "{name} is allowed: {allowed}");
    }
    let (status, headers, _) = gate
        .request(
            "POST",
            "/api/v1/objects/call/Teller/c/Add",
            &[("origin", "https://app.example")],
            b"1",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    // What a page of another origin can send without a preflight does not
    // run: a POST from that origin, or one whose type a form can send.
    let (status, headers, json) = gate
        .request(
            "POST",
            "/api/v1/objects/call/Teller/c/Add",
            &[("origin", "https://evil.example")],
            b"1",
        )
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    let (status, _, json) = gate
        .request(
            "POST",
            "/api/v1/objects/call/Teller/c/Add",
            &[("content-type", "text/plain")],
            b"1",
        )
        .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (415, Some("UNSUPPORTED_MEDIA_TYPE"))
    );
    let (status, _, json) = gate
        .request("POST", "/api/v1/objects/call/Teller/c/Get", &[], b"{}")
        .await;
    assert_eq!(
        (status, &json["response"]),
        (200, &serde_json::json!(1)),
        "neither refused call ran"
    );
    gate.stop().await;
}

#[tokio::test]
async fn curl_gets_what_the_seed_readme_promises() {
    let gate = start().await;
    let url = format!(
        "http://{}/api/v1/objects/call/Teller/my-counter/Add",
        gate.address
    );
    let json = goverse_tests::curl_post(&url, &format!(r#"{{"request":"{SEED_REQUEST}"}}"#)).await;
    assert_eq!(
        json["response"].as_str(),
        Some(any_of(&Int32Value { value: 5 }).as_str())
    );
    let json = goverse_tests::curl_post(&url, r#"{"value": 5}"#).await;
    assert_eq!(json, serde_json::json!({"response": 10}));
    gate.stop().await;
}
