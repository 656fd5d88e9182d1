//! Security at the gate and on the nodes: an authentication hook whose
//! identity objects see (and carry into the calls they make, across
//! nodes), access rules at every level from clients and from objects,
//! lifecycle rules, a client id that only its session can use, and rate
//! limits.

use std::time::Duration;

use goverse::access::{AccessRules, Identity};
use goverse::gate::{AuthRequest, Authenticator, Gate, GateOptions, RateLimit};
use goverse::prelude::*;
use goverse_tests::{Backend, PATIENCE, http_post as post, unique_prefix, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Accepts `Bearer <user>:<role>,<role>`; refuses anything else.
struct Tokens;

// ANCHOR: authenticator
impl Authenticator for Tokens {
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, String> {
        let token = request.bearer_token().ok_or("a bearer token is required")?;
        let (user, roles) = token.split_once(':').ok_or("malformed token")?;
        Ok(Identity::new(user, roles.split(',')))
    }
}
// ANCHOR_END: authenticator

/// Reports who called, and calls a `Vault` on the caller's behalf.
#[derive(Debug, Default)]
pub struct Desk;

#[goverse::object]
impl Desk {
    /// `user|roles|external|client` of the caller.
    pub async fn whoami(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue { value: who(ctx) })
    }

    /// Asks the vault named in the request who called it.
    pub async fn relay(&self, ctx: &Context, request: StringValue) -> goverse::Result<StringValue> {
        VaultClient::new(ctx, request.value).audit(Empty {}).await
    }

    /// Calls the vault's client-only method: objects may not.
    pub async fn sneak(&self, ctx: &Context, request: StringValue) -> goverse::Result<StringValue> {
        VaultClient::new(ctx, request.value).peek(Empty {}).await
    }
}

#[derive(Debug, Default)]
pub struct Vault;

#[goverse::object]
impl Vault {
    /// Objects only (INTERNAL).
    pub async fn audit(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue { value: who(ctx) })
    }

    /// Clients only (EXTERNAL).
    pub async fn peek(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: "peeked".into(),
        })
    }

    /// Nobody (REJECT).
    pub async fn drain(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

fn who(ctx: &Context<'_>) -> String {
    let identity = ctx.identity();
    format!(
        "{}|{}|{}|{}",
        identity.map_or("-", |i| i.user_id.as_str()),
        identity.map_or(String::new(), |i| i.roles.join(",")),
        ctx.is_external(),
        ctx.client_id().unwrap_or("-"),
    )
}

const RULES: &str = "
access:
  - { type: Desk, access: ALLOW }
  - { type: Vault, method: Audit, access: INTERNAL }
  - { type: Vault, method: Peek, access: EXTERNAL }
  - { type: Vault, method: Drain, access: REJECT }
lifecycle:
  - { type: Desk, lifecycle: DELETE, access: ALLOW }
";

#[tokio::test]
async fn identities_access_rules_sessions_and_rate_limits() {
    let backend = Backend::memory();
    let prefix = unique_prefix("security");
    let start = |id: &'static str| {
        let (backend, prefix) = (&backend, prefix.clone());
        async move {
            Node::builder()
                .register::<Desk>()
                .register::<Vault>()
                .node_id(id)
                .shard_count(16)
                .listen("127.0.0.1:0".parse().expect("address"))
                .access_rules(AccessRules::from_yaml(RULES).expect("rules"))
                .coordinator(backend.coordinator(&prefix, Duration::from_secs(1)).await)
                .start()
                .await
                .expect("node")
        }
    };
    let (a, b) = (start("a").await, start("b").await);
    wait_until("both nodes own shards", PATIENCE, || {
        let (a, b) = (a.stats().shards, b.stats().shards);
        async move { a > 0 && b > 0 && a + b == 16 }
    })
    .await;
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse().expect("address"))
        .authenticator(Tokens)
        .rate_limit_per_object(RateLimit::new(0.001, 5));
    let gate = Gate::start(&a, options).await.expect("gate");
    let address = gate.http_address().expect("http").to_string();
    let alice = [("authorization", "Bearer alice:player,admin")];

    // Authentication: none or a bad token is 401; the identity reaches
    // the object, marked external.
    let (status, json) = post(&address, "/api/v1/objects/call/Desk/d1/Whoami", &[], "").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, _) = post(
        &address,
        "/api/v1/objects/call/Desk/d1/Whoami",
        &[("authorization", "Bearer nonsense")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, json) = post(&address, "/api/v1/objects/call/Desk/d1/Whoami", &alice, "").await;
    assert_eq!(
        (status, &json["response"]),
        (200, &serde_json::json!("alice|player,admin|true|-"))
    );

    // The identity travels into the calls objects make, on whichever node
    // (vaults v0..v7 spread over both nodes), which are internal.
    for n in 0..8 {
        let (status, json) = post(
            &address,
            &format!("/api/v1/objects/call/Desk/relay{n}/Relay"),
            &alice,
            &format!(r#""v{n}""#),
        )
        .await;
        assert_eq!(
            (status, &json["response"]),
            (200, &serde_json::json!("alice|player,admin|false|-")),
            "v{n}"
        );
    }

    // Each level, from a client and from an object.
    let call = |method: &'static str| format!("/api/v1/objects/call/Vault/v1/{method}");
    let (status, json) = post(&address, &call("Audit"), &alice, "").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "INTERNAL: not clients"
    );
    let (status, json) = post(&address, &call("Peek"), &alice, "").await;
    assert_eq!(
        (status, &json["response"]),
        (200, &serde_json::json!("peeked")),
        "EXTERNAL: clients"
    );
    let (status, json) = post(
        &address,
        "/api/v1/objects/call/Desk/d1/Sneak",
        &alice,
        r#""v1""#,
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "EXTERNAL: not objects"
    );
    let (status, json) = post(&address, &call("Drain"), &alice, "").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "REJECT: nobody"
    );
    let error = VaultClient::new(&a, "v1")
        .drain(Empty {})
        .await
        .expect_err("REJECT: nobody");
    assert_eq!(error.code(), "ACCESS_DENIED");
    assert!(
        VaultClient::new(&b, "v1").audit(Empty {}).await.is_ok(),
        "INTERNAL: code on a node"
    );

    // Lifecycle: clients may create; deleting a vault is for objects, a
    // desk anyone.
    let (status, _) = post(&address, "/api/v1/objects/create/Vault/v9", &alice, "").await;
    assert_eq!(status, 200);
    let (status, json) = post(&address, "/api/v1/objects/delete/Vault/v9", &alice, "").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    let (status, _) = post(&address, "/api/v1/objects/delete/Desk/d9", &alice, "").await;
    assert_eq!(status, 200);
    a.delete::<Vault>("v9").await.expect("code on a node may");

    // A client id is usable only with its session token.
    let (status, json) = post(
        &address,
        "/api/v1/objects/call/Desk/d2/Whoami",
        &[
            ("authorization", "Bearer mallory:"),
            ("x-client-id", "127.0.0.1:1/c-0000000000000000"),
        ],
        "",
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "impersonation"
    );

    // Rate limits: 5 calls to one object at once, then 429.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            post(
                &address,
                "/api/v1/objects/call/Desk/limited/Whoami",
                &alice,
                "",
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let (_, json) = post(
        &address,
        "/api/v1/objects/call/Desk/limited/Whoami",
        &alice,
        "",
    )
    .await;
    assert_eq!(json["code"], "RATE_LIMITED");
    // Every refusal is counted on the gate's node.
    assert!(
        a.metrics_text()
            .contains(r#"goverse_gate_rate_limited_total{node="a"} 3"#),
        "{}",
        a.metrics_text()
    );

    gate.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_client_calls_on_behalf_of_its_own_session_only() {
    let node = Node::builder()
        .register::<Desk>()
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse().expect("address"))
        .rate_limit_per_client(RateLimit::new(0.001, 3));
    let gate = Gate::start(&node, options).await.expect("gate");
    let address = gate.http_address().expect("http").to_string();

    // Register over SSE to get a client id and its token.
    let mut stream = TcpStream::connect(&address).await.expect("connect");
    stream
        .write_all(b"GET /api/v1/events/stream HTTP/1.1\r\nhost: gate\r\n\r\n")
        .await
        .expect("write");
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains("\"session\"") {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("data")
            .expect("read");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let data = seen
        .split("data: ")
        .nth(1)
        .and_then(|d| d.lines().next())
        .expect("register data");
    let data: serde_json::Value = serde_json::from_str(data).expect("JSON");
    let (client, token) = (
        data["client_id"].as_str().expect("id"),
        data["session"].as_str().expect("token"),
    );

    let (status, json) = post(
        &address,
        "/api/v1/objects/call/Desk/d/Whoami",
        &[("x-client-id", client), ("x-session-token", token)],
        "",
    )
    .await;
    assert_eq!(
        (status, &json["response"]),
        (200, &serde_json::json!(format!("-||true|{client}")))
    );
    let (status, json) = post(
        &address,
        "/api/v1/objects/call/Desk/d/Whoami",
        &[
            ("x-client-id", client),
            ("x-session-token", &"0".repeat(32)),
        ],
        "",
    )
    .await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    // Per-client limit: 3 at once for this client (its first call counted).
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let headers = [("x-client-id", client), ("x-session-token", token)];
        statuses.push(
            post(&address, "/api/v1/objects/call/Desk/d/Whoami", &headers, "")
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    drop(stream);
    gate.shutdown().await;
    node.shutdown().await;
}

/// A persistent safe, for reliable calls.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Safe {
    total: i64,
}

#[goverse::object(persistent)]
impl Safe {
    pub async fn deposit(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }
}

/// A reliable call's recorded outcome goes back to the caller that made it
/// only: another user who learns the call id gets `ACCESS_DENIED`, not the
/// outcome, and the method does not run for them.
#[tokio::test]
async fn a_reliable_calls_outcome_goes_only_to_its_caller() {
    let node = Node::builder()
        .register::<Safe>()
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .http("127.0.0.1:0".parse().expect("address"))
        .authenticator(Tokens);
    let gate = Gate::start(&node, options).await.expect("gate");
    let address = gate.http_address().expect("http").to_string();
    let deposit = |user: &'static str| {
        let address = address.clone();
        async move {
            let token = format!("Bearer {user}:player");
            post(
                &address,
                "/api/v1/objects/call/Safe/s1/Deposit",
                &[("authorization", &token), ("x-call-id", "deposit-1")],
                "5",
            )
            .await
        }
    };
    let (status, json) = deposit("alice").await;
    assert_eq!(
        (status, json["response"].as_str()),
        (200, Some("5")),
        "{json}"
    );
    let (status, json) = deposit("alice").await;
    assert_eq!(
        (status, json["response"].as_str()),
        (200, Some("5")),
        "alice's retry gets her outcome: {json}"
    );
    let (status, json) = deposit("mallory").await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("ACCESS_DENIED")),
        "{json}"
    );
    let total = SafeClient::new(&node, "s1")
        .deposit(Int64Value { value: 0 })
        .await
        .expect("read")
        .value;
    assert_eq!(total, 5, "the method ran once");
    gate.shutdown().await;
    node.shutdown().await;
}
