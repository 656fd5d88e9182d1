//! The gate mounted in servers of the user's own: its HTTP router nested
//! in an axum app beside the app's routes, and its gRPC service added to a
//! tonic server, with no listener of the gate's own.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use goverse::access::Identity;
use goverse::gate::{AuthRequest, Authenticator, Gate, GateOptions};
use goverse::prelude::*;
use goverse::{Client, ClientOptions};
use goverse_tests::http_post;
use goverse_tests::processes::{Tally, TallyClient};

/// Admits everyone as `guest`, noting where each request came from.
#[derive(Debug, Clone, Default)]
struct Doorman {
    seen: Arc<Mutex<Vec<Option<SocketAddr>>>>,
}

impl Authenticator for Doorman {
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, String> {
        self.seen.lock().expect("lock").push(request.remote);
        Ok(Identity::new("guest", ["visitor"]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_gate_nests_in_an_axum_app() {
    let node = Node::builder()
        .register::<Tally>()
        .start()
        .await
        .expect("node");
    // No `http` address: the gate serves nothing by itself.
    let doorman = Doorman::default();
    let options = GateOptions::default().authenticator(doorman.clone());
    let gate = Gate::start(&node, options).await.expect("gate");
    assert_eq!(gate.http_address(), None);

    // ANCHOR: mount
    let app = axum::Router::new()
        .route("/version", axum::routing::post(|| async { "1.2.3" }))
        .nest("/game", gate.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            // The peer's address, for the gate's rate limits by IP.
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    // ANCHOR_END: mount

    let address = address.to_string();
    let (status, body) = http_post(
        &address,
        "/game/api/v1/objects/call/Tally/t1/Add",
        &[("content-type", "application/json")],
        r#"{"value": 5}"#,
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({"response": "5"})));
    let (status, _) = http_post(&address, "/version", &[], "").await;
    assert_eq!(status, 200, "the app's own route");
    let (status, body) = http_post(&address, "/game/no/such/route", &[], "").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    // The gate's authenticator ran, and saw the peer's address through
    // the app's `ConnectInfo`.
    let seen = doorman.seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|remote| remote.is_some_and(|r| r.ip().is_loopback())),
        "{seen:?}"
    );

    server.abort();
    gate.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_gate_adds_to_a_tonic_server() {
    let node = Node::builder()
        .register::<Tally>()
        .start()
        .await
        .expect("node");
    let gate = Gate::start(&node, GateOptions::default())
        .await
        .expect("gate");
    assert_eq!(gate.grpc_address(), None);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    // ANCHOR: grpc
    let service = gate.grpc_service();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    // ANCHOR_END: grpc

    let client = Client::connect([format!("http://{address}")], ClientOptions::default())
        .await
        .expect("connect");
    let tally = TallyClient::new(&client, "t1");
    assert_eq!(
        tally.add(Int64Value { value: 7 }).await.expect("add").value,
        7
    );
    let error = client.create::<Unserved>("x").await.expect_err("no type");
    assert_eq!(error.code(), Code::UnknownObjectType);

    server.abort();
    gate.shutdown().await;
    node.shutdown().await;
}

/// A type the node does not register.
#[derive(Debug, Default)]
pub struct Unserved;

#[goverse::object]
impl Unserved {
    pub async fn ping(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}
