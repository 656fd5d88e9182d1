//! The gate's gRPC service through a real socket, with tonic's generated
//! client: calls with `Any` requests, errors with goverse's code in the
//! status metadata, reliable calls, create and delete, and a `Register`
//! stream receiving pushes and resuming its session.

use std::time::Duration;

use goverse::gate::grpc::proto::{
    self, CallObjectRequest, CreateObjectRequest, DeleteObjectRequest, RegisterRequest,
    ReliableCallObjectRequest, client_event::Event, gate_client::GateClient,
};
use goverse::gate::{Gate, GateOptions};
use goverse::prelude::*;
use goverse_tests::gate_objects::Purse;
use prost::Message as _;
use tokio_stream_ext::next;

mod tokio_stream_ext {
    /// The next item of a tonic stream, within the test's patience.
    pub(crate) async fn next(
        stream: &mut tonic::Streaming<goverse::gate::grpc::proto::ClientEvent>,
    ) -> goverse::gate::grpc::proto::client_event::Event {
        tokio::time::timeout(goverse_tests::PATIENCE, stream.message())
            .await
            .expect("an event in time")
            .expect("a healthy stream")
            .expect("an event")
            .event
            .expect("set")
    }
}

fn any(value: i32) -> Option<goverse::types::Any> {
    Some(goverse::types::Any {
        type_url: "type.googleapis.com/google.protobuf.Int32Value".into(),
        value: Int32Value { value }.encode_to_vec().into(),
    })
}

fn value(response: proto::CallObjectResponse) -> i32 {
    let any = response.response.expect("a response");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/google.protobuf.Int32Value"
    );
    Int32Value::decode(&any.value[..])
        .expect("Int32Value")
        .value
}

fn call(id: &str, method: &str, amount: i32) -> CallObjectRequest {
    CallObjectRequest {
        r#type: "Purse".into(),
        id: id.into(),
        method: method.into(),
        request: any(amount),
        client_id: String::new(),
    }
}

#[tokio::test]
async fn calls_errors_and_pushes_over_grpc() {
    let node = Node::builder()
        .register::<Purse>()
        .start()
        .await
        .expect("node");
    let options = GateOptions::default()
        .grpc("127.0.0.1:0".parse().expect("address"))
        .heartbeat(Duration::from_secs(60));
    let gate = Gate::start(&node, options).await.expect("gate");
    let url = format!("http://{}", gate.grpc_address().expect("grpc"));
    let mut client = GateClient::connect(url).await.expect("connect");

    assert_eq!(
        value(
            client
                .call_object(call("p1", "Add", 5))
                .await
                .expect("add")
                .into_inner()
        ),
        5
    );
    assert_eq!(
        value(
            client
                .call_object(call("p1", "add", 2))
                .await
                .expect("add")
                .into_inner()
        ),
        7
    );

    // Trace context: `traceparent` metadata reaches the object.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traced = tonic::Request::new(CallObjectRequest {
        request: Some(goverse::types::Any {
            type_url: "type.googleapis.com/google.protobuf.Empty".into(),
            value: Default::default(),
        }),
        ..call("p1", "Trace", 0)
    });
    traced
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    let seen = client
        .call_object(traced)
        .await
        .expect("traced call")
        .into_inner()
        .response
        .expect("a response");
    assert_eq!(
        StringValue::decode(&seen.value[..])
            .expect("StringValue")
            .value,
        traceparent
    );

    // Errors: the gRPC code by kind, goverse's code in metadata.
    let status = client
        .call_object(call("p1", "Spend", 100))
        .await
        .expect_err("too much");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.metadata().get("goverse-code").expect("code"),
        "INSUFFICIENT_FUNDS"
    );
    let status = client
        .call_object(call("p1", "Fly", 1))
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.metadata().get("goverse-code").expect("code"),
        "UNKNOWN_METHOD"
    );
    let mut wrong = call("p1", "Add", 1);
    wrong.request = Some(goverse::types::Any {
        type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
        value: StringValue { value: "x".into() }.encode_to_vec().into(),
    });
    let status = client.call_object(wrong).await.expect_err("wrong type");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.metadata().get("goverse-code").expect("code"),
        "INVALID_PROTOBUF"
    );
    let status = client
        .call_object(call("p1", "bad-name", 1))
        .await
        .expect_err("bad name");
    assert_eq!(
        status.metadata().get("goverse-code").expect("code"),
        "INVALID_PATH"
    );

    // Reliable: the retry gets the recorded response.
    let reliable = || ReliableCallObjectRequest {
        call_id: "r-1".into(),
        r#type: "Purse".into(),
        id: "p1".into(),
        method: "Add".into(),
        request: any(10),
        client_id: String::new(),
    };
    assert_eq!(
        value(
            client
                .reliable_call_object(reliable())
                .await
                .expect("once")
                .into_inner()
        ),
        17
    );
    assert_eq!(
        value(
            client
                .reliable_call_object(reliable())
                .await
                .expect("again")
                .into_inner()
        ),
        17
    );

    // Create and delete.
    let created = client
        .create_object(CreateObjectRequest {
            r#type: "Purse".into(),
            id: "p2".into(),
        })
        .await
        .expect("create");
    assert_eq!(created.into_inner().id, "p2");
    let deleted = client
        .delete_object(DeleteObjectRequest {
            r#type: "Purse".into(),
            id: "p1".into(),
        })
        .await
        .expect("delete");
    assert!(deleted.into_inner().success);

    // Register, get a push, then resume the session on a new stream.
    let mut stream = client
        .register(RegisterRequest::default())
        .await
        .expect("register")
        .into_inner();
    let Event::Registered(registered) = next(&mut stream).await else {
        panic!("registration first")
    };
    assert!(!registered.resumed);
    let show = |client_id: &str| CallObjectRequest {
        r#type: "Purse".into(),
        id: "p2".into(),
        method: "Show".into(),
        request: Some(goverse::types::Any {
            type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
            value: StringValue {
                value: client_id.into(),
            }
            .encode_to_vec()
            .into(),
        }),
        client_id: client_id.into(),
    };
    // On behalf of a client: only with its session token.
    let status = client
        .call_object(show(&registered.client_id))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let mut request = tonic::Request::new(show(&registered.client_id));
    request.metadata_mut().insert(
        "x-session-token",
        registered.session.parse().expect("ASCII token"),
    );
    client.call_object(request).await.expect("show");
    let Event::Message(pushed) = next(&mut stream).await else {
        panic!("a push")
    };
    assert_eq!(pushed.sequence, 1);
    let message = pushed.message.expect("a message");
    assert_eq!(
        Int32Value::decode(&message.value[..])
            .expect("Int32Value")
            .value,
        0
    );
    drop(stream);

    let mut resumed = client
        .register(RegisterRequest {
            client_id: registered.client_id.clone(),
            session: registered.session.clone(),
            last_sequence: 1,
        })
        .await
        .expect("resume")
        .into_inner();
    let Event::Registered(again) = next(&mut resumed).await else {
        panic!("registration first")
    };
    assert!(again.resumed);
    assert_eq!(again.client_id, registered.client_id);
    let status = client
        .register(RegisterRequest {
            client_id: registered.client_id.clone(),
            session: "0".repeat(32),
            last_sequence: 0,
        })
        .await
        .expect_err("not without its token");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    gate.shutdown().await;
    node.shutdown().await;
}

/// A connection to the gRPC listener that sends nothing is closed once the
/// header timeout has passed, instead of being held open.
#[tokio::test]
async fn a_silent_grpc_connection_is_closed() {
    use tokio::io::AsyncReadExt as _;
    let node = Node::builder().start().await.expect("node");
    let options = GateOptions::default()
        .grpc("127.0.0.1:0".parse().expect("address"))
        .header_timeout(Duration::from_millis(300));
    let gate = Gate::start(&node, options).await.expect("gate");
    let address = gate.grpc_address().expect("grpc");
    let mut silent = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buffer))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    gate.shutdown().await;
    node.shutdown().await;
}
