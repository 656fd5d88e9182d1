//! Several nodes in one process forming a cluster, over real loopback
//! sockets: routing to the owner from any node, shard moves when a node
//! joins or leaves (with callers seeing no errors and state moving with the
//! objects), failover when a node dies, the shard-count check, and ids that
//! pin an object to a shard or a node.
//!
//! Every scenario runs twice: over the in-process store and over real etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use goverse::placement::shard_of;
use goverse::prelude::*;
use goverse::storage::{MemoryStorage, Storage as _};
use goverse::{Codec, EncodedCall};
use goverse_tests::{Backend, PATIENCE, unique_prefix, wait_until};

const SHARDS: u32 = 64;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    total: i64,
}

#[goverse::object(persistent)]
impl Ledger {
    /// Adds to the total and returns it.
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        Ok(Int64Value { value: self.total })
    }

    /// The node hosting this object.
    pub async fn host(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: ctx.node_id().to_string(),
        })
    }

    /// Takes `request` milliseconds before answering.
    pub async fn stall(&self, _ctx: &Context, request: Int64Value) -> goverse::Result<Empty> {
        let millis = u64::try_from(request.value).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(Empty {})
    }

    /// Fails with the error `request` names, as an object's code would.
    pub async fn fail(&self, _ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        Err(match request.value.as_str() {
            "application" => Error::application("INSUFFICIENT_FUNDS", "balance is 3"),
            "io" => std::io::Error::other("disk full").into(),
            "unavailable" => Error::Unavailable("the exchange is closed".into()),
            "overloaded" => Error::Overloaded("too many orders".into()),
            "denied" => Error::AccessDenied {
                message: "not your ledger".into(),
            },
            "stale" => Error::StaleOwner {
                target: "Ledger/x".into(),
                epoch: 1,
                current: 2,
            },
            _ => Error::Config("no exchange is configured".into()),
        })
    }

    /// The trace context this call came with ("" for none).
    pub async fn trace(&self, ctx: &Context, _request: Empty) -> goverse::Result<StringValue> {
        Ok(StringValue {
            value: ctx.traceparent().unwrap_or_default().to_string(),
        })
    }

    /// The trace context seen by ledger `request` when called from here.
    pub async fn trace_of(
        &self,
        ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<StringValue> {
        LedgerClient::new(ctx, request.value).trace(Empty {}).await
    }
}

/// The nodes of one test cluster, sharing one coordination backend and one
/// storage (as they would share a database).
struct TestCluster {
    backend: Backend,
    prefix: String,
    storage: Arc<MemoryStorage>,
    lease_ttl: Duration,
}

impl TestCluster {
    fn new(backend: Backend, test: &str) -> Self {
        let lease_ttl = match backend {
            Backend::Memory(_) => Duration::from_secs(1),
            // etcd's shortest lease.
            Backend::Etcd(_) => Duration::from_secs(2),
        };
        Self {
            backend,
            prefix: unique_prefix(test),
            storage: Arc::new(MemoryStorage::new()),
            lease_ttl,
        }
    }

    async fn node(&self, id: &str) -> Node {
        self.node_with_shards(id, SHARDS)
            .await
            .expect("node starts")
    }

    async fn node_with_shards(&self, id: &str, shards: u32) -> goverse::Result<Node> {
        self.builder(id, shards).await.start().await
    }

    async fn builder(&self, id: &str, shards: u32) -> goverse::NodeBuilder {
        Node::builder()
            .register::<Ledger>()
            .node_id(id)
            .shard_count(shards)
            .listen("127.0.0.1:0".parse().expect("address"))
            .storage(self.storage.clone())
            .coordinator(self.backend.coordinator(&self.prefix, self.lease_ttl).await)
            .call_timeout(Duration::from_secs(20))
    }
}

/// Waits until `nodes` serve every shard between them, each a fair share,
/// with nothing moving.
async fn wait_balanced(nodes: &[&Node]) {
    let fair = SHARDS as usize / nodes.len();
    wait_until(
        "the shards are balanced over the nodes",
        PATIENCE,
        || async {
            let counts: Vec<u64> = nodes.iter().map(|n| n.stats().shards).collect();
            let total: u64 = counts.iter().sum();
            let view = nodes[0].cluster_view();
            let settled = (0..SHARDS).all(|s| !view.is_moving(s));
            total == u64::from(SHARDS)
                && settled
                && counts
                    .iter()
                    .all(|&c| c as usize >= fair && c as usize <= fair + 1)
        },
    )
    .await;
}

/// Calls `ids` round and round through `via`, keeping per-id counts of
/// successes and the errors seen, until stopped.
struct Driver {
    stop: Arc<AtomicBool>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    done: Arc<std::sync::Mutex<BTreeMap<String, i64>>>,
    calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    fn start(via: &Node, ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let done: Arc<std::sync::Mutex<BTreeMap<String, i64>>> = Arc::default();
        let calls = Arc::new(AtomicU64::new(0));
        let node = via.clone();
        let task = tokio::spawn({
            let (stop, errors, done, calls) =
                (stop.clone(), errors.clone(), done.clone(), calls.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    for id in &ids {
                        match LedgerClient::new(&node, id.clone())
                            .add(Int64Value { value: 1 })
                            .await
                        {
                            Ok(_) => {
                                *done.lock().expect("done").entry(id.clone()).or_default() += 1;
                            }
                            Err(error) => errors.lock().expect("errors").push(error.to_string()),
                        }
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Self {
            stop,
            errors,
            done,
            calls,
            task,
        }
    }

    async fn wait_for_calls(&self, more: u64) {
        let target = self.calls.load(Ordering::SeqCst) + more;
        let calls = self.calls.clone();
        wait_until("the driver makes progress", PATIENCE, || {
            let calls = calls.clone();
            async move { calls.load(Ordering::SeqCst) >= target }
        })
        .await;
    }

    /// Stops the callers and checks that they saw no error during `what`
    /// and that every add acknowledged to them is in its ledger.
    async fn finish(self, via: &Node, what: &str) {
        let (errors, done) = self.stop().await;
        assert!(
            errors.is_empty(),
            "callers saw errors during {what}: {errors:?}"
        );
        assert_ledgers(via, &done).await;
    }

    async fn stop(self) -> (Vec<String>, BTreeMap<String, i64>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("driver");
        let errors = self.errors.lock().expect("errors").clone();
        let done = self.done.lock().expect("done").clone();
        (errors, done)
    }
}

/// Every ledger holds exactly the number of acknowledged adds.
async fn assert_ledgers(via: &Node, done: &BTreeMap<String, i64>) {
    for (id, count) in done {
        let total = LedgerClient::new(via, id.clone())
            .add(Int64Value { value: 0 })
            .await
            .expect("read ledger")
            .value;
        assert_eq!(total, *count, "ledger {id} lost or repeated adds");
    }
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("ledger-{i}")).collect()
}

async fn calls_route_to_the_owner_from_any_node(backend: Backend) {
    let cluster = TestCluster::new(backend, "routing");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let c = cluster.node("c").await;
    wait_balanced(&[&a, &b, &c]).await;

    let mut hosts = BTreeSet::new();
    for id in ids(40) {
        let ledger = LedgerClient::new(&a, id.clone());
        assert_eq!(
            ledger
                .add(Int64Value { value: 2 })
                .await
                .expect("add")
                .value,
            2
        );
        let host = ledger.host(Empty {}).await.expect("host").value;
        let owner = a
            .cluster_view()
            .current_owner(shard_of(&id, SHARDS))
            .map(|n| n.id.to_string());
        assert_eq!(
            Some(host.clone()),
            owner,
            "{id} is hosted by its shard's owner"
        );
        hosts.insert(host);
    }
    assert_eq!(hosts.len(), 3, "objects spread over every node: {hosts:?}");
    let active: u64 = [&a, &b, &c].iter().map(|n| n.stats().active).sum();
    assert_eq!(active, 40, "one activation per object across the cluster");

    // Calls by name, in JSON, route the same way.
    let body = b
        .call(EncodedCall::new(
            "Ledger",
            "ledger-7",
            "Add",
            Codec::Json,
            b"\"5\"".to_vec(),
        ))
        .await;
    assert_eq!(body.expect("json call"), b"\"7\"");
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

async fn a_joining_node_takes_shards_without_caller_errors(backend: Backend) {
    let cluster = TestCluster::new(backend, "join");
    let a = cluster.node("a").await;
    wait_balanced(&[&a]).await;
    let driver = Driver::start(&a, ids(24));
    driver.wait_for_calls(100).await;

    let b = cluster.node("b").await;
    let c = cluster.node("c").await;
    wait_balanced(&[&a, &b, &c]).await;
    driver.wait_for_calls(100).await;
    driver.finish(&b, "the moves").await;
    assert!(
        b.stats().activations > 0 && c.stats().activations > 0,
        "objects moved to the new nodes"
    );
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

async fn a_node_leaving_gracefully_hands_over_without_caller_errors(backend: Backend) {
    let cluster = TestCluster::new(backend, "leave");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let c = cluster.node("c").await;
    wait_balanced(&[&a, &b, &c]).await;
    let driver = Driver::start(&a, ids(24));
    driver.wait_for_calls(100).await;

    c.shutdown().await;
    wait_balanced(&[&a, &b]).await;
    driver.wait_for_calls(100).await;
    driver.finish(&a, "the leave").await;
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn an_operator_drains_a_node_and_undrains_it_without_caller_errors(backend: Backend) {
    let cluster = TestCluster::new(backend, "drain");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let admin = cluster.backend.admin(&cluster.prefix).await;
    let driver = Driver::start(&a, ids(24));
    driver.wait_for_calls(100).await;
    // A shard pinned to b moves with the drain too.
    let pinned = (0..SHARDS)
        .find(|&s| {
            b.cluster_view()
                .current_owner(s)
                .is_some_and(|n| &*n.id == "b")
        })
        .expect("b serves shards");
    admin.pin(pinned, "b").await.expect("pin");

    admin.drain("b").await.expect("drain");
    wait_until(
        "the drained node has handed every shard over",
        PATIENCE,
        || async { b.stats().shards == 0 && a.stats().shards == u64::from(SHARDS) },
    )
    .await;
    let view = admin.view().await.expect("view");
    assert!(view.nodes["b"].draining && !view.nodes["a"].draining);
    assert_eq!(
        view.current_owner(pinned).map(|n| n.id.clone()).as_deref(),
        Some("a"),
        "the pinned shard left the drained node"
    );
    driver.wait_for_calls(100).await;
    // The last node taking shards, a node nobody knows, and a drained
    // node as a shard's new home are refused.
    for refused in [
        admin.drain("a").await,
        admin.drain("nobody").await,
        admin.pin(0, "b").await,
    ] {
        assert_eq!(refused.expect_err("refused").code(), "INVALID_CONFIG");
    }

    // Restarted, the drained node takes shards again without an undrain.
    b.shutdown().await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    assert!(!admin.view().await.expect("view").nodes["b"].draining);
    driver.wait_for_calls(100).await;

    // A drain that ends by undrain.
    admin.drain("b").await.expect("drain again");
    wait_until("b is empty again", PATIENCE, || async {
        b.stats().shards == 0
    })
    .await;
    admin.undrain("b").await.expect("undrain");
    wait_balanced(&[&a, &b]).await;
    driver.wait_for_calls(100).await;
    driver.finish(&a, "the drains").await;
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn an_operator_pins_a_shard_to_a_node_and_unpins_it(backend: Backend) {
    let cluster = TestCluster::new(backend, "admin-pin");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let admin = cluster.backend.admin(&cluster.prefix).await;
    // A shard `a` serves, pinned to `b`, moves there and stays.
    let shard = (0..SHARDS)
        .find(|&s| {
            a.cluster_view()
                .current_owner(s)
                .is_some_and(|n| &*n.id == "a")
        })
        .expect("a serves shards");
    admin.pin(shard, "b").await.expect("pin");
    wait_until("the pinned shard is on b", PATIENCE, || async {
        let view = b.cluster_view();
        view.current_owner(shard).is_some_and(|n| &*n.id == "b") && !view.is_moving(shard)
    })
    .await;
    assert!(admin.view().await.expect("view").shards[shard as usize].pinned);
    assert_eq!(
        admin
            .pin(SHARDS, "b")
            .await
            .expect_err("no such shard")
            .code(),
        "INVALID_CONFIG"
    );
    admin.unpin(shard).await.expect("unpin");
    wait_until("the shard is unpinned", PATIENCE, || async {
        !b.cluster_view().shards[shard as usize].pinned
    })
    .await;
    wait_balanced(&[&a, &b]).await;
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn nodes_publish_summaries_that_wake_no_view(backend: Backend) {
    let cluster = TestCluster::new(backend, "summaries");
    let start = |id: &'static str| {
        let cluster = &cluster;
        async move {
            cluster
                .builder(id, SHARDS)
                .await
                .summary_interval(Duration::from_millis(20))
                .call_metrics(true)
                .start()
                .await
                .expect("node starts")
        }
    };
    let (a, b) = (start("a").await, start("b").await);
    wait_balanced(&[&a, &b]).await;
    LedgerClient::new(&a, "summarized".to_string())
        .add(Int64Value { value: 1 })
        .await
        .expect("add");
    let admin = cluster.backend.admin(&cluster.prefix).await;
    let latest = || async {
        admin
            .summaries()
            .await
            .expect("summaries")
            .into_iter()
            .map(|s| (s.node.clone(), s))
            .collect::<BTreeMap<_, _>>()
    };
    wait_until("both nodes have published summaries", PATIENCE, || async {
        let summaries = latest().await;
        summaries.len() == 2
            && summaries
                .values()
                .map(|s| s.objects.get("Ledger").copied().unwrap_or(0))
                .sum::<u64>()
                == 1
            // The call is counted once its turn is done.
            && summaries.values().map(|s| s.calls.unwrap_or(0)).sum::<u64>() == 1
    })
    .await;
    let summaries = latest().await;
    let (ledger_a, ledger_b) = (
        summaries["a"].objects["Ledger"],
        summaries["b"].objects["Ledger"],
    );
    assert_eq!(ledger_a + ledger_b, 1, "{summaries:?}");
    assert!(
        summaries.values().all(|s| s.ready && s.shards > 0),
        "{summaries:?}"
    );
    assert_eq!(
        summaries["a"].shards + summaries["b"].shards,
        u64::from(SHARDS)
    );
    // With call metrics on, the owner counted the call, by type and by
    // duration bucket.
    let counted = |f: &dyn Fn(&goverse::cluster::NodeSummary) -> u64| -> u64 {
        summaries.values().map(f).sum()
    };
    assert_eq!(counted(&|s| s.calls.unwrap_or(0)), 1, "{summaries:?}");
    assert_eq!(
        counted(&|s| s.calls_by_type.get("Ledger").copied().unwrap_or(0)),
        1
    );
    assert_eq!(
        counted(&|s| s.call_durations.iter().map(|(_, n)| n).sum()),
        1
    );
    assert_eq!(
        counted(&|s| s
            .call_durations_by_type
            .get("Ledger")
            .map_or(0, |buckets| buckets.iter().sum())),
        1,
        "the call's duration is counted under its type too: {summaries:?}"
    );
    assert!(
        summaries.values().all(|s| s.membership_proven
            && s.unready.is_none()
            && s.gate_clients.is_none()
            && s.call_durations_by_type["Ledger"].len() == s.call_durations.len()),
        "{summaries:?}"
    );
    assert!(
        summaries.values().all(|s| s
            .call_durations
            .last()
            .is_some_and(|(bound, _)| bound.is_none())),
        "the last bucket is unbounded: {summaries:?}"
    );

    // Many summaries later, the nodes still hold the same view: a summary
    // changes nothing they route by.
    let before = (a.cluster_view(), b.cluster_view());
    let since = summaries["b"].at_unix_ms;
    wait_until("b publishes five more summaries", PATIENCE, || async {
        latest().await["b"].at_unix_ms >= since + 100
    })
    .await;
    assert!(Arc::ptr_eq(&before.0, &a.cluster_view()));
    assert!(Arc::ptr_eq(&before.1, &b.cluster_view()));
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn a_crashed_nodes_shards_move_within_the_lease(backend: Backend) {
    let cluster = TestCluster::new(backend, "crash");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    // An object owned by b, called from a.
    let id = ids(200)
        .into_iter()
        .find(|id| {
            a.cluster_view()
                .current_owner(shard_of(id, SHARDS))
                .is_some_and(|n| &*n.id == "b")
        })
        .expect("b owns some ledger");
    let ledger = LedgerClient::new(&a, id.clone());
    ledger
        .add(Int64Value { value: 1 })
        .await
        .expect("add before the crash");

    let crashed_at = tokio::time::Instant::now();
    b.crash();
    // A call in flight to the dead node fails (it may have run); calls made
    // after that wait for the failover within their deadline and succeed.
    let mut failures = 0;
    let value = loop {
        match ledger.add(Int64Value { value: 1 }).await {
            Ok(value) => break value,
            Err(error) => {
                assert_eq!(error.code(), "UNAVAILABLE", "{error}");
                failures += 1;
                assert!(failures < 5, "calls keep failing: {error}");
            }
        }
    };
    let took = crashed_at.elapsed();
    assert!(value.value >= 1, "{value:?}");
    assert!(
        took < cluster.lease_ttl + Duration::from_secs(2) + Duration::from_secs(3),
        "failover took {took:?}"
    );
    assert_eq!(ledger.host(Empty {}).await.expect("host").value, "a");
    wait_balanced(&[&a]).await;
    a.shutdown().await;
}

async fn a_node_with_another_shard_count_is_refused(backend: Backend) {
    let cluster = TestCluster::new(backend, "shard-count");
    let a = cluster.node("a").await;
    let error = cluster
        .node_with_shards("b", SHARDS * 2)
        .await
        .expect_err("a different shard count is refused");
    assert_eq!(error.code(), "INVALID_CONFIG");
    assert!(
        error.to_string().contains(&format!("has {SHARDS} shards")),
        "{error}"
    );
    a.shutdown().await;
}

async fn special_ids_land_where_they_say(backend: Backend) {
    let cluster = TestCluster::new(backend, "special-ids");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let view = a.cluster_view();
    for shard in [0, 5, SHARDS - 1] {
        let id = format!("shard#{shard}/monitor");
        let host = LedgerClient::new(&a, id)
            .host(Empty {})
            .await
            .expect("host")
            .value;
        let owner = view.current_owner(shard).map(|n| n.id.to_string());
        assert_eq!(
            Some(host),
            owner,
            "shard#{shard} lands on the shard's owner"
        );
    }
    for node in [&a, &b] {
        let id = format!("{}/monitor", node.address());
        let host = LedgerClient::new(&a, id)
            .host(Empty {})
            .await
            .expect("host")
            .value;
        assert_eq!(host, node.id(), "a node-pinned id lands on its node");
    }
    let error = LedgerClient::new(&a, "127.0.0.1:1/monitor")
        .host(Empty {})
        .await
        .expect_err("no such node");
    assert_eq!(error.code(), "UNAVAILABLE");
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn a_stale_owner_cannot_overwrite_the_new_owners_state(backend: Backend) {
    let cluster = TestCluster::new(backend, "fencing");
    let idle = Duration::from_millis(300);
    let a = cluster
        .builder("a", SHARDS)
        .await
        .idle_timeout(idle)
        .start()
        .await
        .expect("a");
    let b = cluster
        .builder("b", SHARDS)
        .await
        .idle_timeout(idle)
        .start()
        .await
        .expect("b");
    wait_balanced(&[&a, &b]).await;
    let id = ids(200)
        .into_iter()
        .find(|id| {
            a.cluster_view()
                .current_owner(shard_of(id, SHARDS))
                .is_some_and(|n| &*n.id == "a")
        })
        .expect("a owns some ledger");
    let shard = shard_of(&id, SHARDS);
    // A ledger of the same shard that nobody has stored yet.
    let fresh = ids(4000)
        .into_iter()
        .find(|other| *other != id && shard_of(other, SHARDS) == shard)
        .expect("another ledger in the shard");
    let on_a = LedgerClient::new(&a, id.clone());
    assert_eq!(
        on_a.add(Int64Value { value: 5 }).await.expect("add").value,
        5
    );
    wait_until("a has saved the ledger", PATIENCE, || async {
        cluster
            .storage
            .load("Ledger", &id)
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    let saved_by_a = cluster
        .storage
        .load("Ledger", &id)
        .await
        .expect("load")
        .expect("saved");

    // a is cut off from the cluster but goes on serving what it had.
    a.isolate();
    wait_until("b takes a's shards", PATIENCE, || async {
        b.cluster_view()
            .current_owner(shard)
            .is_some_and(|n| &*n.id == "b")
    })
    .await;
    let on_b = LedgerClient::new(&b, id.clone());
    assert_eq!(
        on_b.add(Int64Value { value: 1 })
            .await
            .expect("add on b")
            .value,
        6
    );
    wait_until("b has saved the ledger", PATIENCE, || async {
        let stored = cluster.storage.load("Ledger", &id).await.ok().flatten();
        stored.is_some_and(|s| s != saved_by_a)
    })
    .await;
    let saved_by_b = cluster
        .storage
        .load("Ledger", &id)
        .await
        .expect("load")
        .expect("saved");

    // The stale owner still believes it owns the object: it takes the call,
    // but the call's write carries the old epoch and is refused, so the call
    // fails and the stale activation goes.
    let error = on_a
        .add(Int64Value { value: 10 })
        .await
        .expect_err("a stale owner's write is refused");
    assert_eq!(error.code(), "STALE_OWNER");
    assert_eq!(a.stats().stale_writes, 1);
    let now = cluster
        .storage
        .load("Ledger", &id)
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(now, saved_by_b, "the stale owner's write must not land");
    assert!(
        now.epoch > saved_by_a.epoch,
        "b wrote under a newer epoch: {now:?}"
    );

    // An object with no row yet: b activates it with a read, which stores
    // nothing, then the stale owner stores it first. b's first write
    // claims the object, finds what the stale owner stored, and runs on
    // it instead of writing over it: no acknowledged write is lost.
    let fresh_on_b = LedgerClient::new(&b, fresh.clone());
    assert_eq!(
        fresh_on_b.host(Empty {}).await.expect("host").value,
        "b",
        "b owns the fresh ledger"
    );
    assert!(
        cluster
            .storage
            .load("Ledger", &fresh)
            .await
            .expect("load")
            .is_none(),
        "a read stores nothing"
    );
    let stale_first = LedgerClient::new(&a, fresh.clone())
        .add(Int64Value { value: 10 })
        .await;
    let expected = match stale_first {
        Ok(total) => {
            assert_eq!(total.value, 10);
            11
        }
        Err(error) => {
            assert_eq!(error.code(), "STALE_OWNER", "{error}");
            1
        }
    };
    // A by-name call: refused as stale once, it runs again on the state
    // the stale owner stored.
    let added = b
        .call(goverse::EncodedCall::new(
            "Ledger",
            fresh.clone(),
            "Add",
            Codec::Json,
            br#""1""#.to_vec(),
        ))
        .await
        .expect("add on b");
    assert_eq!(added, format!("\"{expected}\"").into_bytes());
    // Once claimed, the stale owner's writes are refused.
    let error = LedgerClient::new(&a, fresh.clone())
        .add(Int64Value { value: 100 })
        .await
        .expect_err("the stale owner's write after the claim is refused");
    assert_eq!(error.code(), "STALE_OWNER");
    assert_eq!(
        fresh_on_b
            .add(Int64Value { value: 0 })
            .await
            .expect("read on b")
            .value,
        expected
    );
    a.crash();
    b.shutdown().await;
}

async fn pinned_shards_go_to_their_node_and_stay(backend: Backend) {
    let cluster = TestCluster::new(backend, "pins");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let view = a.cluster_view();
    // Pin three shards a owns to b.
    let pinned: Vec<u32> = (0..SHARDS)
        .filter(|&s| view.current_owner(s).is_some_and(|n| &*n.id == "a"))
        .take(3)
        .collect();
    for &shard in &pinned {
        a.pin_shard(shard, "b").await.expect("pin");
    }
    let owned_by_b = |node: &Node| {
        let view = node.cluster_view();
        pinned
            .iter()
            .all(|&s| view.current_owner(s).is_some_and(|n| &*n.id == "b") && !view.is_moving(s))
    };
    wait_until("the pinned shards move to b", PATIENCE, || async {
        owned_by_b(&a)
    })
    .await;

    // A third node joins: the rest rebalances, the pins stay.
    let c = cluster.node("c").await;
    wait_until("c gets its share", PATIENCE, || async {
        let view = c.cluster_view();
        (0..SHARDS).all(|s| view.current_owner(s).is_some() && !view.is_moving(s))
            && c.stats().shards >= u64::from(SHARDS) / 3 - 1
    })
    .await;
    assert!(owned_by_b(&c), "pinned shards stayed on b");
    assert!(
        a.pin_shard(0, "nobody").await.is_err(),
        "an unknown node is refused"
    );
    assert!(
        a.pin_shard(SHARDS, "b").await.is_err(),
        "an unknown shard is refused"
    );
    a.unpin_shard(pinned[0]).await.expect("unpin");
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

async fn auto_loaded_objects_exist_once_each(backend: Backend) {
    use goverse::config::AutoLoad;
    let cluster = TestCluster::new(backend, "auto-load");
    let start = |id: &'static str| {
        let cluster = &cluster;
        async move {
            cluster
                .builder(id, SHARDS)
                .await
                .auto_load(AutoLoad::object("Ledger", "global"))
                .auto_load(AutoLoad::per_shard("Ledger", "watch"))
                .auto_load(AutoLoad::per_node("Ledger", "agent"))
                .start()
                .await
                .expect("node")
        }
    };
    let a = start("a").await;
    let b = start("b").await;
    wait_balanced(&[&a, &b]).await;
    let expected = |nodes: u64| u64::from(SHARDS) + 1 + nodes;
    wait_until(
        "every auto-loaded object is active, once",
        PATIENCE,
        || async { a.stats().active + b.stats().active == expected(2) },
    )
    .await;
    for shard in [0, SHARDS - 1] {
        let host = LedgerClient::new(&a, format!("shard#{shard}/watch"))
            .host(Empty {})
            .await
            .expect("host")
            .value;
        let owner = a
            .cluster_view()
            .current_owner(shard)
            .map(|n| n.id.to_string());
        assert_eq!(Some(host), owner);
    }
    // A joining node takes over its share of them, and adds its own agent.
    let c = start("c").await;
    wait_balanced(&[&a, &b, &c]).await;
    wait_until(
        "the auto-loaded objects moved, none twice",
        PATIENCE,
        || async { a.stats().active + b.stats().active + c.stats().active == expected(3) },
    )
    .await;
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

async fn twenty_nodes_joining_one_by_one_stay_balanced_with_bounded_moves(backend: Backend) {
    const NODES: usize = 20;
    let cluster = TestCluster::new(backend, "twenty");
    let mut nodes = Vec::new();
    let mut ideal_moves = 0.0;
    for i in 0..NODES {
        nodes.push(cluster.node(&format!("n{i:02}")).await);
        if i > 0 {
            // The least any balancing can move: the newcomer's share.
            ideal_moves += f64::from(SHARDS) / (i + 1) as f64;
        }
        let all: Vec<&Node> = nodes.iter().collect();
        wait_balanced(&all).await;
    }
    // Every move raised a shard's epoch by one; the first assignment set 1.
    let view = nodes[0].cluster_view();
    let moves: u64 = (0..SHARDS)
        .map(|s| view.shard(s).map_or(0, |st| st.epoch.saturating_sub(1)))
        .sum();
    assert!(
        moves as f64 <= ideal_moves + NODES as f64,
        "{moves} moves for an ideal of {ideal_moves:.0}"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

async fn trace_context_travels_with_nested_calls_across_nodes(backend: Backend) {
    let cluster = TestCluster::new(backend, "trace");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let owned_by = |node: &str| {
        ids(200)
            .into_iter()
            .find(|id| {
                a.cluster_view()
                    .current_owner(shard_of(id, SHARDS))
                    .is_some_and(|n| &*n.id == node)
            })
            .expect("each node owns some ledger")
    };
    let (on_a, on_b) = (owned_by("a"), owned_by("b"));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // From b to a ledger on a, which calls a ledger on b: two remote hops.
    let traced = LedgerClient::new(b.caller().with_traceparent(traceparent), on_a.clone());
    let seen = traced
        .trace_of(StringValue {
            value: on_b.clone(),
        })
        .await
        .expect("traced call");
    assert_eq!(seen.value, traceparent);
    let untraced = LedgerClient::new(&b, on_a.clone());
    assert_eq!(
        untraced
            .trace_of(StringValue {
                value: on_b.clone()
            })
            .await
            .expect("call")
            .value,
        ""
    );
    let malformed = LedgerClient::new(b.caller().with_traceparent("not a traceparent"), on_a);
    assert_eq!(
        malformed.trace(Empty {}).await.expect("call").value,
        "",
        "a malformed one is dropped"
    );
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

async fn a_remote_call_fails_at_its_deadline_while_longer_ones_wait(backend: Backend) {
    let cluster = TestCluster::new(backend, "deadlines");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let on_b: Vec<String> = ids(200)
        .into_iter()
        .filter(|id| {
            a.cluster_view()
                .current_owner(shard_of(id, SHARDS))
                .is_some_and(|n| &*n.id == "b")
        })
        .take(3)
        .collect();
    // A call with a long deadline is out first, so the short one's deadline
    // is the earlier of the two on the stream.
    let long = tokio::spawn({
        let ledger = LedgerClient::new(&a, on_b[0].clone());
        async move { ledger.stall(Int64Value { value: 1_500 }).await }
    });
    let started = tokio::time::Instant::now();
    let short = LedgerClient::new(&a, on_b[1].clone())
        .with_timeout(Duration::from_millis(300))
        .stall(Int64Value { value: 10_000 })
        .await;
    let waited = started.elapsed();
    let error = short.expect_err("the call outlives its deadline");
    assert_eq!(error.code(), "DEADLINE_EXCEEDED", "{error}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "the caller heard at its deadline, not the other call's: {waited:?}"
    );
    long.await
        .expect("task")
        .expect("the longer call is unaffected");
    // The stream still serves calls.
    LedgerClient::new(&a, on_b[2].clone())
        .add(Int64Value { value: 1 })
        .await
        .expect("a call after the expired one");
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

/// An error's code, and for the kinds that carry only a message its
/// variant and text too, are the same whether the object ran on the
/// calling node or on another.
async fn errors_match_the_same_for_local_and_remote_objects(backend: Backend) {
    let cluster = TestCluster::new(backend, "codes");
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_balanced(&[&a, &b]).await;
    let on = |node: &str| {
        ids(64)
            .into_iter()
            .find(|id| {
                a.cluster_view()
                    .current_owner(shard_of(id, SHARDS))
                    .is_some_and(|owner| &*owner.id == node)
            })
            .expect("an object on each node")
    };
    let (local, remote) = (on("a"), on("b"));
    let kinds = [
        "application",
        "io",
        "unavailable",
        "overloaded",
        "denied",
        "stale",
        "config",
    ];
    for kind in kinds {
        let a = &a;
        let fail = |id: String| async move {
            LedgerClient::new(a, id)
                .fail(StringValue { value: kind.into() })
                .await
                .expect_err("fails")
        };
        let (here, there) = (fail(local.clone()).await, fail(remote.clone()).await);
        assert_eq!(here.code(), there.code(), "{kind}: {here:?} / {there:?}");
        if !matches!(kind, "io" | "stale") {
            assert_eq!(
                std::mem::discriminant(&here),
                std::mem::discriminant(&there),
                "{kind}: {here:?} / {there:?}"
            );
            assert_eq!(here.to_string(), there.to_string());
        }
        let expected = match kind {
            "application" => Code::Application("INSUFFICIENT_FUNDS".into()),
            "io" => Code::Other,
            "unavailable" => Code::Unavailable,
            "overloaded" => Code::Overloaded,
            "denied" => Code::AccessDenied,
            "stale" => Code::StaleOwner,
            _ => Code::InvalidConfig,
        };
        assert_eq!(there.code(), expected, "{kind}");
    }
    let there = LedgerClient::new(&a, remote)
        .fail(StringValue {
            value: "application".into(),
        })
        .await
        .expect_err("fails");
    assert!(
        matches!(&there, Error::Application { code, message } if code == "INSUFFICIENT_FUNDS" && message == "balance is 3"),
        "{there:?}"
    );
    for node in [&a, &b] {
        node.shutdown().await;
    }
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(goverse_tests::Backend::memory()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(goverse_tests::Backend::etcd()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    calls_route_to_the_owner_from_any_node,
    errors_match_the_same_for_local_and_remote_objects,
    a_joining_node_takes_shards_without_caller_errors,
    a_node_leaving_gracefully_hands_over_without_caller_errors,
    an_operator_drains_a_node_and_undrains_it_without_caller_errors,
    an_operator_pins_a_shard_to_a_node_and_unpins_it,
    nodes_publish_summaries_that_wake_no_view,
    a_crashed_nodes_shards_move_within_the_lease,
    a_node_with_another_shard_count_is_refused,
    special_ids_land_where_they_say,
    a_stale_owner_cannot_overwrite_the_new_owners_state,
    pinned_shards_go_to_their_node_and_stay,
    auto_loaded_objects_exist_once_each,
    twenty_nodes_joining_one_by_one_stay_balanced_with_bounded_moves,
    trace_context_travels_with_nested_calls_across_nodes,
    a_remote_call_fails_at_its_deadline_while_longer_ones_wait,
);
