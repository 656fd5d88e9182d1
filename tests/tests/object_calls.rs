//! Deadlines, call cycles, panics, nested calls and calls by name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use goverse::prelude::*;
use goverse::{Codec, EncodedCall, Error};
use goverse_tests::{PATIENCE, wait_until};

/// Counts finished slow turns, so tests can tell whether a turn ran.
static FINISHED_NAPS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default)]
pub struct Sloth {
    naps: i32,
}

#[goverse::object]
impl Sloth {
    /// Sleeps for `request.value` milliseconds, then counts the nap.
    pub async fn nap(
        &mut self,
        _ctx: &Context,
        request: UInt64Value,
    ) -> goverse::Result<Int32Value> {
        tokio::time::sleep(Duration::from_millis(request.value)).await;
        self.naps += 1;
        FINISHED_NAPS.fetch_add(1, Ordering::SeqCst);
        Ok(Int32Value { value: self.naps })
    }

    /// How many naps finished on this object.
    pub async fn naps(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: self.naps })
    }
}

#[derive(Debug, Default)]
pub struct Relay;

#[goverse::object]
impl Relay {
    /// Forwards to the first id of a comma-separated path, passing the rest on.
    pub async fn relay(
        &mut self,
        ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<StringValue> {
        let path = request.value;
        let Some((next, rest)) = path
            .split_once(',')
            .or(Some((path.as_str(), "")))
            .filter(|(n, _)| !n.is_empty())
        else {
            return Ok(StringValue {
                value: ctx.id().to_string(),
            });
        };
        let reply = RelayClient::new(ctx, next)
            .relay(StringValue {
                value: rest.to_string(),
            })
            .await?;
        Ok(StringValue {
            value: format!("{}<{}", ctx.id(), reply.value),
        })
    }

    /// Makes a Sloth nap, with this turn's deadline.
    pub async fn nap_via(
        &mut self,
        ctx: &Context,
        request: UInt64Value,
    ) -> goverse::Result<Int32Value> {
        SlothClient::new(ctx, "nested").nap(request).await
    }
}

#[derive(Debug, Default)]
pub struct Fragile {
    bumps: i32,
}

#[goverse::object]
impl Fragile {
    /// Counts calls on this activation.
    pub async fn bump(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        self.bumps += 1;
        Ok(Int32Value { value: self.bumps })
    }

    /// Panics in an exclusive turn.
    pub async fn boom(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        self.bumps = -1000;
        panic!("boom in an exclusive turn");
    }

    /// Panics in a shared turn.
    pub async fn crack(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        panic!("crack in a shared turn");
    }

    /// Fails with an error of its own.
    pub async fn refuse(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Err(Error::application("REFUSED", "this object refuses"))
    }
}

async fn node(timeout: Duration) -> Node {
    Node::builder()
        .register::<Sloth>()
        .register::<Relay>()
        .register::<Fragile>()
        .call_timeout(timeout)
        .start()
        .await
        .expect("node starts")
}

#[tokio::test]
async fn a_call_past_its_timeout_fails_with_deadline_exceeded() {
    let node = node(Duration::from_secs(30)).await;
    let started = Instant::now();
    let error = SlothClient::new(&node, "t1")
        .with_timeout(Duration::from_millis(50))
        .nap(UInt64Value { value: 5_000 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "DEADLINE_EXCEEDED", "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("Sloth/t1.Nap"), "{error}");
}

#[tokio::test]
async fn the_node_default_timeout_applies_when_the_caller_sets_none() {
    let node = node(Duration::from_millis(100)).await;
    let error = SlothClient::new(&node, "t2")
        .nap(UInt64Value { value: 5_000 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
}

#[tokio::test]
async fn a_started_turn_finishes_even_after_its_caller_gave_up() {
    let node = node(Duration::from_secs(30)).await;
    let sloth = SlothClient::new(&node, "t3");
    let error = sloth
        .clone()
        .with_timeout(Duration::from_millis(20))
        .nap(UInt64Value { value: 300 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
    // The nap was running when the caller gave up: it completes in the background.
    wait_until("the abandoned turn completes", PATIENCE, || async {
        sloth.naps(Empty {}).await.expect("naps").value == 1
    })
    .await;
}

#[tokio::test]
async fn a_queued_call_whose_deadline_passes_before_its_turn_never_runs() {
    let node = node(Duration::from_secs(30)).await;
    let sloth = SlothClient::new(&node, "t4");
    let long = {
        let sloth = sloth.clone();
        tokio::spawn(async move { sloth.nap(UInt64Value { value: 400 }).await })
    };
    wait_until("the long nap holds the object", PATIENCE, || async {
        node.stats().active == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let error = sloth
        .clone()
        .with_timeout(Duration::from_millis(50))
        .nap(UInt64Value { value: 0 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
    assert_eq!(long.await.expect("task").expect("long nap").value, 1);
    // Give the skipped call every chance to run wrongly, then check it did not.
    let _ = sloth
        .nap(UInt64Value { value: 50 })
        .await
        .expect("a later nap");
    assert_eq!(
        sloth.naps(Empty {}).await.expect("naps").value,
        2,
        "the expired call ran"
    );
}

#[tokio::test]
async fn nested_calls_inherit_the_callers_deadline() {
    let node = node(Duration::from_secs(30)).await;
    let started = Instant::now();
    let error = RelayClient::new(&node, "r")
        .with_timeout(Duration::from_millis(100))
        .nap_via(UInt64Value { value: 10_000 })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "DEADLINE_EXCEEDED", "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_chain_without_cycles_works() {
    let node = node(Duration::from_secs(30)).await;
    let reply = RelayClient::new(&node, "a")
        .relay(StringValue {
            value: "b,c".into(),
        })
        .await
        .expect("relay");
    assert_eq!(reply.value, "a<b<c");
}

#[tokio::test]
async fn a_call_cycle_fails_at_once_with_call_cycle() {
    let node = node(Duration::from_secs(30)).await;
    let started = Instant::now();
    let error = RelayClient::new(&node, "a")
        .relay(StringValue {
            value: "b,a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "CALL_CYCLE", "{error}");
    assert!(
        error.to_string().contains("Relay/a -> Relay/b -> Relay/a"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a cycle waited for the deadline"
    );
    // A self-call is the shortest cycle.
    let error = RelayClient::new(&node, "a")
        .relay(StringValue { value: "a".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "CALL_CYCLE");
    // The objects are not stuck afterwards.
    let reply = RelayClient::new(&node, "a")
        .relay(StringValue { value: "b".into() })
        .await
        .expect("relay");
    assert_eq!(reply.value, "a<b");
}

#[tokio::test]
async fn a_panic_fails_the_call_and_discards_the_activation() {
    let node = node(Duration::from_secs(30)).await;
    let fragile = FragileClient::new(&node, "f");
    assert_eq!(fragile.bump(Empty {}).await.expect("bump").value, 1);
    assert_eq!(fragile.bump(Empty {}).await.expect("bump").value, 2);

    let error = fragile.boom(Empty {}).await.unwrap_err();
    assert_eq!(error.code(), "METHOD_PANICKED");
    assert!(
        error.to_string().contains("boom in an exclusive turn"),
        "{error}"
    );
    assert_eq!(node.stats().panics, 1);
    // The torn state (-1000) is gone: the next call activates a fresh object.
    assert_eq!(
        fragile
            .bump(Empty {})
            .await
            .expect("bump after panic")
            .value,
        1
    );

    let error = fragile.crack(Empty {}).await.unwrap_err();
    assert_eq!(error.code(), "METHOD_PANICKED");
    assert_eq!(node.stats().panics, 2);
    assert_eq!(
        fragile
            .bump(Empty {})
            .await
            .expect("bump after panic")
            .value,
        1
    );

    // Other objects and the node carry on.
    assert_eq!(
        SlothClient::new(&node, "fine")
            .naps(Empty {})
            .await
            .expect("naps")
            .value,
        0
    );
}

#[tokio::test]
async fn application_errors_keep_their_code() {
    let node = node(Duration::from_secs(30)).await;
    let error = FragileClient::new(&node, "f")
        .refuse(Empty {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), "REFUSED");
    assert_eq!(node.stats().panics, 0);

    // ANCHOR: match_code
    let outcome = match FragileClient::new(&node, "f").refuse(Empty {}).await {
        Ok(_) => "done",
        Err(e) => match e.code() {
            Code::Application(code) if code == "REFUSED" => "refused by the object",
            Code::DeadlineExceeded => "too slow",
            code if code.is_transient() => "try again later",
            _ => "failed",
        },
    };
    // ANCHOR_END: match_code
    assert_eq!(outcome, "refused by the object");
}

#[tokio::test]
async fn calls_by_name_decode_protobuf_and_json_and_reject_bad_input_with_codes() {
    let node = node(Duration::from_secs(30)).await;
    let json = node
        .call(EncodedCall::new(
            "Fragile",
            "e",
            "Bump",
            Codec::Json,
            b"{}".to_vec(),
        ))
        .await
        .expect("json call");
    assert_eq!(json, b"1");
    let proto = node
        .call(EncodedCall::new(
            "Fragile",
            "e",
            "bump",
            Codec::Protobuf,
            Vec::new(),
        ))
        .await
        .expect("protobuf call");
    assert_eq!(
        goverse::decode::<Int32Value>(Codec::Protobuf, &proto).expect("decode"),
        Int32Value { value: 2 }
    );

    // (type, id, method, codec, body, expected code)
    type Case<'a> = (&'a str, &'a str, &'a str, Codec, &'a [u8], &'a str);
    let cases: [Case<'_>; 7] = [
        (
            "Nope",
            "e",
            "Bump",
            Codec::Json,
            b"{}",
            "UNKNOWN_OBJECT_TYPE",
        ),
        ("Fragile", "e", "Nope", Codec::Json, b"{}", "UNKNOWN_METHOD"),
        (
            "Sloth",
            "e",
            "Nap",
            Codec::Json,
            b"{not json",
            "INVALID_JSON",
        ),
        (
            "Sloth",
            "e",
            "Nap",
            Codec::Json,
            b"\"many\"",
            "INVALID_JSON",
        ),
        (
            "Sloth",
            "e",
            "Nap",
            Codec::Protobuf,
            &[0x08, 0xff],
            "INVALID_PROTOBUF",
        ),
        ("Sloth", "", "Nap", Codec::Json, b"1", "INVALID_OBJECT_ID"),
        (
            "Sloth",
            "shard#99999/x",
            "Nap",
            Codec::Json,
            b"1",
            "INVALID_OBJECT_ID",
        ),
    ];
    for (type_name, id, method, codec, body, code) in cases {
        let error = node
            .call(EncodedCall::new(
                type_name,
                id,
                method,
                codec,
                body.to_vec(),
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{type_name}/{id}.{method}: {error}");
    }
    let error = node
        .call(
            EncodedCall::new("Sloth", "e", "Nap", Codec::Json, b"0".to_vec())
                .timeout(Duration::from_millis(1)),
        )
        .await;
    assert!(error.is_ok() || error.as_ref().unwrap_err().code() == "DEADLINE_EXCEEDED");
    assert_eq!(node.stats().panics, 0);
}

#[tokio::test]
async fn a_node_that_shut_down_refuses_calls() {
    let node = node(Duration::from_secs(30)).await;
    FragileClient::new(&node, "s")
        .bump(Empty {})
        .await
        .expect("bump");
    node.shutdown().await;
    let error = FragileClient::new(&node, "s")
        .bump(Empty {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), "NODE_SHUTTING_DOWN");
    assert_eq!(node.stats().active, 0);
}

/// Durations that would overflow a deadline, or spin, are refused as
/// configuration; a per-call timeout past a year is cut to a year instead
/// of overflowing.
#[tokio::test]
async fn absurd_durations_are_refused_or_cut_not_panics() {
    for timeout in [Duration::ZERO, Duration::MAX] {
        let error = Node::builder()
            .register::<Sloth>()
            .call_timeout(timeout)
            .start()
            .await
            .expect_err("refused");
        assert_eq!(error.code(), "INVALID_CONFIG", "{timeout:?}: {error}");
        let error = Node::builder()
            .register::<Sloth>()
            .storage_timeout(timeout)
            .start()
            .await
            .expect_err("refused");
        assert_eq!(error.code(), "INVALID_CONFIG", "{timeout:?}: {error}");
    }
    let options = goverse::cluster::ClusterOptions::default()
        .prefix(goverse_tests::unique_prefix("zero-lease"))
        .lease_ttl(Duration::ZERO);
    let store = goverse::cluster::MemoryStore::new();
    let error = Node::builder()
        .register::<Sloth>()
        .coordinator(goverse::cluster::ClusterCoordinator::in_memory(
            &store, options,
        ))
        .start()
        .await
        .expect_err("a zero lease is refused");
    assert_eq!(error.code(), "INVALID_CONFIG", "{error}");

    let node = Node::builder()
        .register::<Sloth>()
        .start()
        .await
        .expect("node");
    let gate = goverse::gate::Gate::start(
        &node,
        goverse::gate::GateOptions::default()
            .http("127.0.0.1:0".parse().expect("address"))
            .call_timeout(Duration::MAX),
    )
    .await
    .expect_err("a gate call timeout past a year is refused");
    assert_eq!(gate.code(), "INVALID_CONFIG");
    let sloth = SlothClient::new(&node, "forever".to_string()).with_timeout(Duration::MAX);
    assert_eq!(
        sloth
            .nap(UInt64Value { value: 1 })
            .await
            .expect("nap")
            .value,
        1
    );
    let by_name = node
        .call(
            goverse::EncodedCall::new(
                "Sloth",
                "forever",
                "Naps",
                goverse::Codec::Json,
                b"{}".to_vec(),
            )
            .timeout(Duration::MAX),
        )
        .await
        .expect("by name");
    assert_eq!(by_name, b"1");
    node.shutdown().await;
}

/// Calls past an object's mailbox bound, or past the node's bound on
/// calls in flight, are refused with `OVERLOADED` rather than queued
/// without end; the calls within the bounds run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_bounds_are_refused_as_overloaded() {
    let outcomes = |results: Vec<goverse::Result<Int32Value>>| {
        let refused = results
            .iter()
            .filter(|r| r.as_ref().is_err_and(|e| e.code() == "OVERLOADED"))
            .count();
        let ran = results.iter().filter(|r| r.is_ok()).count();
        (ran, refused)
    };
    let nap = |node: &Node, id: String| {
        let sloth = SlothClient::new(node, id);
        tokio::spawn(async move { sloth.nap(UInt64Value { value: 1000 }).await })
    };

    // One object: one call runs, two wait, the other three are refused.
    let node = Node::builder()
        .register::<Sloth>()
        .max_queued_per_object(2)
        .start()
        .await
        .expect("node");
    let calls: Vec<_> = (0..6).map(|_| nap(&node, "crowded".into())).collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("task"));
    }
    assert_eq!(outcomes(results), (3, 3));
    node.shutdown().await;

    // Six objects on a node that takes three calls from outside at once
    // (by name, as gates, tools and other nodes call).
    let node = Node::builder()
        .register::<Sloth>()
        .max_calls_in_flight(3)
        .start()
        .await
        .expect("node");
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move {
                node.call(goverse::EncodedCall::new(
                    "Sloth",
                    format!("busy-{i}"),
                    "Nap",
                    goverse::Codec::Json,
                    b"1000".to_vec(),
                ))
                .await
                .map(|_| Int32Value { value: 1 })
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("task"));
    }
    assert_eq!(outcomes(results), (3, 3));
    node.shutdown().await;
}
