//! Turn semantics: `&mut self` calls never overlap and start in arrival
//! order; `&self` calls overlap with each other, never with `&mut self`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use goverse::prelude::*;

#[derive(Debug, Default)]
pub struct Sequencer {
    writers: AtomicUsize,
    readers: AtomicUsize,
    max_readers: AtomicUsize,
    overlaps: AtomicUsize,
    log: Mutex<Vec<i32>>,
}

#[goverse::object]
impl Sequencer {
    /// Appends a value, yielding in the middle so an overlapping turn would show.
    pub async fn append(
        &mut self,
        _ctx: &Context,
        request: Int32Value,
    ) -> goverse::Result<Int32Value> {
        if self.writers.fetch_add(1, Ordering::SeqCst) > 0
            || self.readers.load(Ordering::SeqCst) > 0
        {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.log.lock().expect("log").push(request.value);
        self.writers.fetch_sub(1, Ordering::SeqCst);
        Ok(request)
    }

    /// Reads slowly, so concurrent reads overlap if they are allowed to.
    pub async fn peek(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        if self.writers.load(Ordering::SeqCst) > 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let now = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_readers.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.writers.load(Ordering::SeqCst) > 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.readers.fetch_sub(1, Ordering::SeqCst);
        let len = self.log.lock().expect("log").len();
        Ok(Int32Value {
            value: i32::try_from(len).unwrap_or(i32::MAX),
        })
    }

    /// `overlaps,max_readers,log...`
    pub async fn report(&self, _ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        let log = self.log.lock().expect("log");
        let mut parts = vec![
            self.overlaps.load(Ordering::SeqCst).to_string(),
            self.max_readers.load(Ordering::SeqCst).to_string(),
        ];
        parts.extend(log.iter().map(i32::to_string));
        Ok(StringValue {
            value: parts.join(","),
        })
    }
}

struct Report {
    overlaps: usize,
    max_readers: usize,
    log: Vec<i32>,
}

async fn report(sequencer: &SequencerClient) -> Report {
    let text = sequencer.report(Empty {}).await.expect("report").value;
    let mut parts = text
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<i64>().expect("number"));
    Report {
        overlaps: parts.next().expect("overlaps") as usize,
        max_readers: parts.next().expect("max_readers") as usize,
        log: parts.map(|v| v as i32).collect(),
    }
}

async fn node() -> Node {
    Node::builder()
        .register::<Sequencer>()
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutating_calls_from_one_caller_run_one_at_a_time_in_arrival_order() {
    let node = node().await;
    let sequencer = SequencerClient::new(&node, "ordered");
    // All 60 calls are issued before the first finishes: each later one queues.
    let calls = (0..60).map(|i| sequencer.append(Int32Value { value: i }));
    for result in join_all(calls).await {
        result.expect("append");
    }
    let report = report(&sequencer).await;
    assert_eq!(report.overlaps, 0, "two exclusive turns overlapped");
    assert_eq!(
        report.log,
        (0..60).collect::<Vec<_>>(),
        "turns ran out of arrival order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutating_calls_from_many_callers_never_overlap_and_keep_per_caller_order() {
    let node = node().await;
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..8 {
        let sequencer = SequencerClient::new(&node, "shared");
        tasks.spawn(async move {
            for i in 0..20 {
                sequencer
                    .append(Int32Value {
                        value: caller * 1000 + i,
                    })
                    .await
                    .expect("append");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("caller task");
    }
    let report = report(&SequencerClient::new(&node, "shared")).await;
    assert_eq!(report.overlaps, 0, "two exclusive turns overlapped");
    assert_eq!(report.log.len(), 160);
    for caller in 0..8 {
        let mine: Vec<i32> = report
            .log
            .iter()
            .copied()
            .filter(|v| v / 1000 == caller)
            .collect();
        assert_eq!(mine, (0..20).map(|i| caller * 1000 + i).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_run_side_by_side_but_never_beside_a_write() {
    let node = node().await;
    let sequencer = SequencerClient::new(&node, "mixed");
    let mut calls = Vec::new();
    for round in 0..5 {
        for _ in 0..6 {
            let sequencer = sequencer.clone();
            calls.push(tokio::spawn(async move {
                sequencer.peek(Empty {}).await.map(drop)
            }));
        }
        let sequencer = sequencer.clone();
        calls.push(tokio::spawn(async move {
            sequencer
                .append(Int32Value { value: round })
                .await
                .map(drop)
        }));
    }
    for call in calls {
        call.await.expect("task").expect("call");
    }
    let report = report(&sequencer).await;
    assert_eq!(report.overlaps, 0, "a read overlapped a write");
    assert!(
        report.max_readers > 1,
        "reads never overlapped (max {})",
        report.max_readers
    );
    assert_eq!(report.log.len(), 5);
}

#[tokio::test]
async fn different_objects_are_independent_and_nodes_do_not_share_state() {
    let first = node().await;
    let second = node().await;
    SequencerClient::new(&first, "x")
        .append(Int32Value { value: 1 })
        .await
        .expect("append");
    SequencerClient::new(&first, "y")
        .append(Int32Value { value: 2 })
        .await
        .expect("append");
    assert_eq!(
        report(&SequencerClient::new(&first, "x")).await.log,
        vec![1]
    );
    assert_eq!(
        report(&SequencerClient::new(&first, "y")).await.log,
        vec![2]
    );
    assert_eq!(
        report(&SequencerClient::new(&second, "x")).await.log,
        Vec::<i32>::new()
    );
    assert_eq!(first.stats().active, 2);
    assert_eq!(second.stats().active, 1);
}
