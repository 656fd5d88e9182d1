//! Exclusive turns that queue behind a running one: they run in arrival
//! order, survive the activation going away under them, and are skipped
//! once their deadline has passed.
//!
//! These tests run on a current-thread runtime so "every call has queued"
//! is a fact of scheduling, not a guess about timing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use goverse::prelude::*;
use goverse_tests::{PATIENCE, wait_until};
use tokio::sync::Notify;

/// One gate per object id: `hold` waits on it until the test opens it.
#[derive(Default)]
struct Gate {
    entered: AtomicBool,
    open: Notify,
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);

fn gate(id: &str) -> Arc<Gate> {
    GATES
        .lock()
        .expect("gates")
        .entry(id.to_string())
        .or_default()
        .clone()
}

#[derive(Debug, Default)]
pub struct Tally {
    value: i32,
    log: Vec<i32>,
}

#[goverse::object]
impl Tally {
    /// Holds the object until the test opens its gate; panics if asked to.
    pub async fn hold(&mut self, ctx: &Context, request: BoolValue) -> goverse::Result<Empty> {
        let gate = gate(ctx.id());
        let opened = gate.open.notified();
        gate.entered.store(true, Ordering::SeqCst);
        opened.await;
        assert!(!request.value, "asked to panic");
        Ok(Empty {})
    }

    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        self.value += request.value;
        self.log.push(request.value);
        Ok(Int32Value { value: self.value })
    }

    pub async fn log(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        let log: Vec<String> = self.log.iter().map(i32::to_string).collect();
        Ok(StringValue {
            value: log.join(","),
        })
    }
}

async fn node() -> Node {
    Node::builder()
        .register::<Tally>()
        .start()
        .await
        .expect("node starts")
}

/// Starts `hold` on object `id` and returns once it runs.
async fn hold(
    node: &Node,
    id: &str,
    panic: bool,
) -> tokio::task::JoinHandle<goverse::Result<Empty>> {
    let tally = TallyClient::new(node, id);
    let held = tokio::spawn(async move { tally.hold(BoolValue { value: panic }).await });
    let gate = gate(id);
    wait_until("hold is running", PATIENCE, || {
        let gate = gate.clone();
        async move { gate.entered.load(Ordering::SeqCst) }
    })
    .await;
    held
}

/// Spawns `add(1..=count)` calls in order and lets each one reach its queue.
async fn queue_adds(
    node: &Node,
    id: &str,
    count: i32,
) -> Vec<tokio::task::JoinHandle<goverse::Result<Int32Value>>> {
    let mut calls = Vec::new();
    for value in 1..=count {
        let tally = TallyClient::new(node, id);
        calls.push(tokio::spawn(async move {
            tally.add(Int32Value { value }).await
        }));
        // On a current-thread runtime this runs the new task up to its queue.
        tokio::task::yield_now().await;
    }
    calls
}

fn open(id: &str) {
    gate(id).open.notify_one();
}

#[tokio::test(flavor = "current_thread")]
async fn queued_turns_run_in_arrival_order_after_the_running_one() {
    let node = node().await;
    let held = hold(&node, "order", false).await;
    let calls = queue_adds(&node, "order", 30).await;
    open("order");
    held.await.expect("join").expect("hold");
    let mut totals = Vec::new();
    for call in calls {
        totals.push(call.await.expect("join").expect("add").value);
    }
    let expected: Vec<i32> = (1..=30)
        .scan(0, |sum, v| {
            *sum += v;
            Some(*sum)
        })
        .collect();
    assert_eq!(totals, expected, "queued turns ran out of order");
    let log = TallyClient::new(&node, "order")
        .log(Empty {})
        .await
        .expect("log")
        .value;
    let expected_log: Vec<String> = (1..=30).map(|v| v.to_string()).collect();
    assert_eq!(log, expected_log.join(","));
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn turns_queued_behind_a_panic_run_on_a_fresh_activation() {
    let node = node().await;
    let tally = TallyClient::new(&node, "panics");
    tally.add(Int32Value { value: 1000 }).await.expect("seed");
    let held = hold(&node, "panics", true).await;
    let calls = queue_adds(&node, "panics", 20).await;
    open("panics");
    let error = held.await.expect("join").expect_err("hold panicked");
    assert_eq!(error.code(), "METHOD_PANICKED");
    for call in calls {
        let total = call
            .await
            .expect("join")
            .expect("queued add survives the panic");
        assert!(total.value < 1000, "ran on the discarded state: {total:?}");
    }
    let total = tally.add(Int32Value { value: 0 }).await.expect("add").value;
    assert_eq!(total, (1..=20).sum::<i32>(), "every queued add ran once");
    assert_eq!(node.stats().panics, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn turns_queued_behind_a_delete_run_on_the_new_activation() {
    let node = node().await;
    let tally = TallyClient::new(&node, "deleted");
    tally.add(Int32Value { value: 1000 }).await.expect("seed");
    let held = hold(&node, "deleted", false).await;
    let calls = queue_adds(&node, "deleted", 10).await;
    let deleting = {
        let node = node.clone();
        tokio::spawn(async move { node.delete::<Tally>("deleted").await })
    };
    tokio::task::yield_now().await;
    open("deleted");
    held.await.expect("join").expect("hold");
    deleting.await.expect("join").expect("delete");
    for call in calls {
        call.await
            .expect("join")
            .expect("queued add survives the delete");
    }
    let total = tally.add(Int32Value { value: 0 }).await.expect("add").value;
    // The delete queued on the object before the drain of the adds began.
    assert_eq!(total, 55, "each queued add ran once, after the delete");
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_queued_turn_past_its_deadline_never_runs() {
    let node = node().await;
    let held = hold(&node, "late", false).await;
    let late = TallyClient::new(&node, "late").with_timeout(Duration::from_millis(50));
    let error = late
        .add(Int32Value { value: 7 })
        .await
        .expect_err("the running turn holds the object past the deadline");
    assert_eq!(error.code(), "DEADLINE_EXCEEDED");
    open("late");
    held.await.expect("join").expect("hold");
    let total = TallyClient::new(&node, "late")
        .add(Int32Value { value: 1 })
        .await
        .expect("add")
        .value;
    assert_eq!(total, 1, "the expired call must not have run");
    node.shutdown().await;
}

/// Calls `call` 2,000 times in this task while a task spawned beside it
/// waits to run, and checks that it ran within the first 300 calls: on a
/// single thread only the loop giving way lets it.
async fn assert_loop_gives_way<F: std::future::Future<Output = ()>>(mut call: impl FnMut() -> F) {
    let other_ran = Arc::new(AtomicBool::new(false));
    let flag = other_ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let mut seen_at = None;
    for index in 0..2_000 {
        call().await;
        if seen_at.is_none() && other_ran.load(Ordering::SeqCst) {
            seen_at = Some(index);
        }
    }
    let seen_at = seen_at.expect("the other task ran while the loop called");
    assert!(
        seen_at <= 300,
        "the other task waited for {seen_at} calls of the loop"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_inline_calls_lets_the_other_tasks_of_its_thread_run() {
    let node = node().await;
    let tally = TallyClient::new(&node, "busy");
    // Each add finds the object idle and runs inline, in this task; its
    // caller steps back after 256 inline turns in a row.
    assert_loop_gives_way(|| async {
        tally.add(Int32Value { value: 1 }).await.expect("add");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_shared_calls_lets_the_other_tasks_of_its_thread_run() {
    let node = node().await;
    let tally = TallyClient::new(&node, "read-busy");
    tally.add(Int32Value { value: 1 }).await.expect("add");
    assert_loop_gives_way(|| async {
        tally.log(Empty {}).await.expect("log");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_running_turns_inline_goes_behind_a_caller_waiting_for_its_answer() {
    let node = node().await;
    let held = hold(&node, "fair", false).await;
    // The looping caller queues first, so the drain answers it first.
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let looping = {
        let tally = TallyClient::new(&node, "fair");
        let progress = progress.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                tally.add(Int32Value { value: 1 }).await.expect("add");
                progress.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    tokio::task::yield_now().await;
    let waiting = {
        let tally = TallyClient::new(&node, "fair");
        let progress = progress.clone();
        tokio::spawn(async move {
            tally.add(Int32Value { value: 1 }).await.expect("add");
            progress.load(Ordering::SeqCst)
        })
    };
    tokio::task::yield_now().await;
    open("fair");
    held.await.expect("join").expect("hold");
    let passed_by = waiting.await.expect("join");
    // Its own queued add, and at most one inline turn before stepping back.
    assert!(
        passed_by <= 2,
        "the looping caller ran {passed_by} calls while the other one's answer waited"
    );
    looping.await.expect("join");
    node.shutdown().await;
}
