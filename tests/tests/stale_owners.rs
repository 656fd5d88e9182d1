//! Fencing end to end, where ownership changes under running turns: a turn
//! that outlives its shard's move away and back, and the stale copies a
//! node keeps after it lost its shards and was handed them back.
//!
//! Each scenario runs on the in-process store with memory storage, and on
//! real etcd with real PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use goverse::placement::shard_of;
use goverse::prelude::*;
use goverse::storage::{
    CallRecord, Claim, Fence, MemoryStorage, NO_STATE, PostgresOptions, PostgresStorage,
    SharedStorage, StateWrite, Storage, StoredState,
};
use goverse_tests::{Backend, PATIENCE, database_url, unique_prefix, wait_until};
use tokio::sync::watch;

const SHARDS: u32 = 16;

/// Points in a turn where a test holds it until it says go.
mod gates {
    use super::{Arc, AtomicUsize, HashMap, Mutex, OnceLock, Ordering, watch};

    struct Gate {
        entered: AtomicUsize,
        open: watch::Sender<bool>,
    }

    fn gate(name: &str) -> Arc<Gate> {
        static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
        GATES
            .get_or_init(Mutex::default)
            .lock()
            .expect("gates")
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    entered: AtomicUsize::new(0),
                    open: watch::channel(false).0,
                })
            })
            .clone()
    }

    /// Waits until gate `name` opens (at once if it is open).
    pub(super) async fn pass(name: &str) {
        let gate = gate(name);
        gate.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = gate.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }

    /// How many turns reached gate `name`.
    pub(super) fn entered(name: &str) -> usize {
        gate(name).entered.load(Ordering::SeqCst)
    }

    /// Lets every turn waiting at gate `name` through, and all later ones.
    pub(super) fn open(name: &str) {
        gate(name).open.send_replace(true);
    }
}

/// A persistent till.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Till {
    total: i64,
}

#[goverse::object(persistent)]
impl Till {
    /// Sets the total.
    pub async fn set(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total = request.value;
        Ok(Int64Value { value: self.total })
    }

    /// Adds one once gate `request` opens.
    pub async fn add_after(
        &mut self,
        _ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Int64Value> {
        gates::pass(&request.value).await;
        self.total += 1;
        Ok(Int64Value { value: self.total })
    }

    /// The total.
    pub async fn total(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int64Value> {
        Ok(Int64Value { value: self.total })
    }

    /// Like `add_after`, after reading another till (an effect outside
    /// this object).
    pub async fn add_after_a_call(
        &mut self,
        ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<Int64Value> {
        TillClient::new(ctx, format!("{}-other", ctx.id()))
            .total(Empty {})
            .await?;
        self.add_after(ctx, request).await
    }
}

/// Where a scenario's cluster coordinates and stores.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// The in-process store and memory storage.
    Memory,
    /// Real etcd and real PostgreSQL.
    EtcdPostgres,
}

struct TestCluster {
    backend: Backend,
    prefix: String,
    storage: SharedStorage,
    lease_ttl: Duration,
}

impl TestCluster {
    async fn new(setup: Setup, test: &str) -> Self {
        let (backend, storage, lease_ttl): (_, SharedStorage, _) = match setup {
            Setup::Memory => (
                Backend::memory(),
                SharedStorage::new(MemoryStorage::new()),
                Duration::from_secs(1),
            ),
            Setup::EtcdPostgres => (
                Backend::etcd(),
                SharedStorage::new(
                    PostgresStorage::connect(
                        &database_url(),
                        PostgresOptions::default().migrate(true).max_connections(4),
                    )
                    .await
                    .expect("PostgreSQL is reachable"),
                ),
                Duration::from_secs(2),
            ),
        };
        Self {
            backend,
            prefix: unique_prefix(test),
            storage,
            lease_ttl,
        }
    }

    /// A new cluster on the same coordination backend (under a new prefix)
    /// and the same storage, as when a cluster is re-created.
    fn recreated(&self, test: &str) -> Self {
        Self {
            backend: self.backend.clone(),
            prefix: unique_prefix(test),
            storage: self.storage.clone(),
            lease_ttl: self.lease_ttl,
        }
    }

    /// A node whose handoffs wait at most a second for a running turn.
    async fn node(&self, id: &str) -> Node {
        self.start(id).await.expect("node starts")
    }

    async fn start(&self, id: &str) -> goverse::Result<Node> {
        Node::builder()
            .register::<Till>()
            .node_id(id)
            .shard_count(SHARDS)
            .listen("127.0.0.1:0".parse().expect("address"))
            .storage(self.storage.clone())
            .coordinator(self.backend.coordinator(&self.prefix, self.lease_ttl).await)
            .call_timeout(Duration::from_secs(1))
            .start()
            .await
    }
}

/// An id of this run whose shard `node` owns now.
fn id_owned_by(node: &Node, test: &str) -> String {
    let view = node.cluster_view();
    let run = unique_prefix(test).replace('/', "_");
    (0..)
        .map(|i| format!("{run}-{i}"))
        .find(|id| {
            view.current_owner(shard_of(id, SHARDS))
                .is_some_and(|owner| *owner.id == *node.id())
        })
        .expect("the node owns some shard")
}

/// Waits until every node of `nodes` sees `shard` owned by `owner` and not
/// moving, and the owner serves it.
async fn wait_owned(nodes: &[&Node], shard: u32, owner: &str) {
    wait_until(
        &format!("shard {shard} settles on {owner}"),
        PATIENCE,
        || async {
            nodes.iter().all(|node| {
                let view = node.cluster_view();
                view.current_owner(shard).is_some_and(|o| &*o.id == owner) && !view.is_moving(shard)
            })
        },
    )
    .await;
}

/// Waits until `nodes` serve every shard between them, each a fair share,
/// with nothing moving: ownership stays put until the test moves it.
async fn wait_placed(nodes: &[&Node]) {
    let fair = u64::from(SHARDS) / nodes.len() as u64;
    wait_until("the shards are placed and balanced", PATIENCE, || async {
        let counts: Vec<u64> = nodes.iter().map(|n| n.stats().shards).collect();
        let view = nodes[0].cluster_view();
        counts.iter().sum::<u64>() == u64::from(SHARDS)
            && counts.iter().all(|&c| c >= fair && c <= fair + 1)
            && (0..SHARDS).all(|s| !view.is_moving(s))
    })
    .await;
}

/// A turn starts on a, its shard moves to b (a's handoff stops waiting for
/// the turn), b acknowledges a write, the shard comes back to a, and only
/// then does a's old turn try to write. Its write must not land over b's:
/// the turn's activation was loaded under an epoch the object has left.
async fn a_turn_outliving_its_shards_move_away_and_back_cannot_write(setup: Setup) {
    let cluster = TestCluster::new(setup, "outlive").await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_placed(&[&a, &b]).await;
    let id = id_owned_by(&a, "outlive");
    let shard = shard_of(&id, SHARDS);
    let on_a = TillClient::new(&a, id.clone()).with_timeout(PATIENCE);
    let on_b = TillClient::new(&b, id.clone()).with_timeout(PATIENCE);
    on_a.set(Int64Value { value: 1 }).await.expect("set on a");

    let gate = format!("{id}-gate");
    let slow = tokio::spawn({
        let (on_a, gate) = (on_a.clone(), gate.clone());
        async move { on_a.add_after(StringValue { value: gate }).await }
    });
    wait_until("the slow turn runs on a", PATIENCE, || async {
        gates::entered(&gate) == 1
    })
    .await;

    move_shard(&[&a, &b], shard, "b").await;
    assert_eq!(
        on_b.set(Int64Value { value: 100 })
            .await
            .expect("set on b")
            .value,
        100
    );
    move_shard(&[&a, &b], shard, "a").await;

    gates::open(&gate);
    let slow = slow.await.expect("slow call task");
    let total = on_a.total(Empty {}).await.expect("total").value;
    match slow {
        // Run again on the current state: the acknowledged 100 holds.
        Ok(answer) => {
            assert_eq!(answer.value, 101, "the slow call ran on stale state");
            assert_eq!(total, 101);
        }
        Err(error) => {
            assert_eq!(error.code(), "STALE_OWNER", "{error}");
            assert_eq!(total, 100, "b's acknowledged write was overwritten");
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Moves `shard` to `to` and waits until it is settled there.
async fn move_shard(nodes: &[&Node], shard: u32, to: &str) {
    pin(nodes[0], shard, to).await;
    wait_owned(nodes, shard, to).await;
}

/// Pins `shard` to `to`, again if the shard record changed meanwhile.
async fn pin(via: &Node, shard: u32, to: &str) {
    wait_until(
        &format!("shard {shard} is pinned to {to}"),
        PATIENCE,
        || async {
            match via.pin_shard(shard, to).await {
                Ok(()) => true,
                Err(error) if error.code() == "UNAVAILABLE" => false,
                Err(error) => panic!("pin: {error}"),
            }
        },
    )
    .await;
}

/// A cluster re-created under a new prefix on the same storage starts its
/// epochs from the beginning, below those its objects were stored at. Its
/// nodes raise a shard's epoch past what is stored and serve the objects
/// with their state, and so does an embedded node on that storage.
async fn a_re_created_cluster_serves_what_an_earlier_one_stored(setup: Setup) {
    let first = TestCluster::new(setup, "first-life").await;
    let a = first.node("a").await;
    let b = first.node("b").await;
    wait_placed(&[&a, &b]).await;
    let id = id_owned_by(&a, "lives");
    let shard = shard_of(&id, SHARDS);
    let on_a = TillClient::new(&a, id.clone()).with_timeout(PATIENCE);
    on_a.set(Int64Value { value: 7 }).await.expect("set");
    // Two moves: the object is stored at the shard's third epoch or later.
    move_shard(&[&a, &b], shard, "b").await;
    move_shard(&[&a, &b], shard, "a").await;
    on_a.set(Int64Value { value: 8 })
        .await
        .expect("set after moves");
    a.shutdown().await;
    b.shutdown().await;

    let second = first.recreated("second-life");
    let c = second.node("c").await;
    wait_placed(&[&c]).await;
    let on_c = TillClient::new(&c, id.clone()).with_timeout(PATIENCE);
    assert_eq!(on_c.total(Empty {}).await.expect("total").value, 8);
    assert_eq!(
        on_c.set(Int64Value { value: 9 })
            .await
            .expect("a write in the new cluster")
            .value,
        9
    );
    assert!(
        c.cluster_view().shard(shard).expect("shard").epoch > 2,
        "the shard's epoch was raised past the stored one"
    );
    c.shutdown().await;

    let solo = Node::builder()
        .register::<Till>()
        .storage(first.storage.clone())
        .start()
        .await
        .expect("an embedded node");
    let on_solo = TillClient::new(&solo, id).with_timeout(PATIENCE);
    assert_eq!(on_solo.total(Empty {}).await.expect("total").value, 9);
    assert_eq!(
        on_solo
            .set(Int64Value { value: 10 })
            .await
            .expect("a write on the embedded node")
            .value,
        10
    );
    solo.shutdown().await;
}

/// A second process with the id of a live node is refused, so two
/// processes never serve one node's shards at one epoch; once the first
/// is gone (its lease expired), the id can be taken again.
async fn a_second_process_with_a_live_nodes_id_is_refused(setup: Setup) {
    let cluster = TestCluster::new(setup, "twins").await;
    let first = cluster.node("twin").await;
    wait_placed(&[&first]).await;
    let epochs = |node: &Node| {
        let view = node.cluster_view();
        (0..SHARDS)
            .map(|s| view.shard(s).map(|s| s.epoch))
            .collect::<Vec<_>>()
    };
    let before = epochs(&first);
    let error = cluster
        .start("twin")
        .await
        .expect_err("the id is taken by a live process");
    assert_eq!(error.code(), "INVALID_CONFIG", "{error}");
    assert!(
        error.to_string().contains("another live process"),
        "{error}"
    );
    let id = id_owned_by(&first, "twins");
    let till = TillClient::new(&first, id.clone()).with_timeout(PATIENCE);
    till.set(Int64Value { value: 3 })
        .await
        .expect("the first goes on serving");
    assert_eq!(epochs(&first), before, "no shard changed hands");

    // The first dies without deregistering: a restart with its id waits
    // for its lease to expire, then takes over.
    first.crash();
    let restarted = cluster.node("twin").await;
    wait_placed(&[&restarted]).await;
    let till = TillClient::new(&restarted, id).with_timeout(PATIENCE);
    assert_eq!(till.total(Empty {}).await.expect("total").value, 3);
    restarted.shutdown().await;
}

/// A store that holds deletes (and writes of a row holding no state) at
/// a gate until the test opens it.
struct HeldDeletes {
    inner: SharedStorage,
    gate: String,
}

impl HeldDeletes {
    fn holds(&self, data: &[u8]) -> bool {
        data == NO_STATE
    }
}

impl Storage for HeldDeletes {
    async fn load(&self, type_name: &str, id: &str) -> goverse::Result<Option<StoredState>> {
        self.inner.load(type_name, id).await
    }

    async fn save(
        &self,
        type_name: &str,
        id: &str,
        data: &[u8],
        fence: Fence,
    ) -> goverse::Result<()> {
        if self.holds(data) {
            gates::pass(&self.gate).await;
        }
        self.inner.save(type_name, id, data, fence).await
    }

    async fn save_batch(&self, writes: &[StateWrite]) -> Vec<goverse::Result<()>> {
        if writes.iter().any(|w| self.holds(&w.data)) {
            gates::pass(&self.gate).await;
        }
        self.inner.save_batch(writes).await
    }

    fn concurrent_batches(&self) -> usize {
        self.inner.concurrent_batches()
    }

    async fn claim_and_load(
        &self,
        type_name: &str,
        id: &str,
        fence: Fence,
    ) -> goverse::Result<Option<StoredState>> {
        self.inner.claim_and_load(type_name, id, fence).await
    }

    async fn claim_batch(&self, claims: &[Claim]) -> Vec<goverse::Result<Option<StoredState>>> {
        self.inner.claim_batch(claims).await
    }

    async fn load_call(
        &self,
        type_name: &str,
        id: &str,
        call_id: &str,
    ) -> goverse::Result<Option<CallRecord>> {
        self.inner.load_call(type_name, id, call_id).await
    }

    async fn delete(&self, type_name: &str, id: &str, fence: Fence) -> goverse::Result<()> {
        gates::pass(&self.gate).await;
        self.inner.delete(type_name, id, fence).await
    }
}

/// A call that arrives while a delete is being written runs after it, on
/// a new instance: it never brings the deleted state back.
async fn a_call_racing_a_delete_runs_after_it(setup: Setup) {
    let base = TestCluster::new(setup, "delete-race").await;
    let id = unique_prefix("delete-race").replace('/', "_");
    let gate = format!("{id}-gate");
    let storage = Arc::new(HeldDeletes {
        inner: base.storage.clone(),
        gate: gate.clone(),
    });
    let node = Node::builder()
        .register::<Till>()
        .storage(storage)
        .start()
        .await
        .expect("node");
    let till = TillClient::new(&node, id.clone()).with_timeout(PATIENCE);
    till.set(Int64Value { value: 5 }).await.expect("set");
    let delete = tokio::spawn({
        let (node, id) = (node.clone(), id.clone());
        async move { node.delete::<Till>(&id).await }
    });
    wait_until("the delete is being written", PATIENCE, || async {
        gates::entered(&gate) == 1
    })
    .await;
    let open = format!("{id}-open");
    gates::open(&open);
    let mut call = tokio::spawn({
        let till = till.clone();
        async move { till.add_after(StringValue { value: open }).await }
    });
    // Give the call every chance to run before the delete lands (it must
    // not: it waits for the object, which the delete holds).
    let early = tokio::time::timeout(Duration::from_millis(300), &mut call).await;
    assert!(
        early.is_err(),
        "a call ran while the delete was being written"
    );
    gates::open(&gate);
    delete.await.expect("delete task").expect("delete");
    let added = call.await.expect("call task").expect("call");
    assert_eq!(added.value, 1, "the call ran on the deleted state");
    assert_eq!(till.total(Empty {}).await.expect("total").value, 1);
    node.shutdown().await;
}

/// An object deleted by its new owner stays deleted: the old owner, cut
/// off and still serving its copy, cannot write it back.
async fn a_stale_owner_cannot_bring_a_deleted_object_back(setup: Setup) {
    let cluster = TestCluster::new(setup, "stale-delete").await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_placed(&[&a, &b]).await;
    let id = id_owned_by(&a, "stale-delete");
    let shard = shard_of(&id, SHARDS);
    let on_a = TillClient::new(&a, id.clone()).with_timeout(Duration::from_secs(5));
    on_a.set(Int64Value { value: 5 }).await.expect("set on a");
    a.isolate();
    wait_until("b takes a's shards", PATIENCE, || async {
        b.cluster_view()
            .current_owner(shard)
            .is_some_and(|n| &*n.id == "b")
    })
    .await;
    b.delete::<Till>(&id).await.expect("delete on b");
    let error = on_a
        .set(Int64Value { value: 6 })
        .await
        .expect_err("the stale owner's write is refused");
    assert_eq!(error.code(), "STALE_OWNER", "{error}");
    let on_b = TillClient::new(&b, id).with_timeout(PATIENCE);
    assert_eq!(
        on_b.total(Empty {}).await.expect("total").value,
        0,
        "the deleted object stays deleted"
    );
    a.crash();
    b.shutdown().await;
}

/// A call through a gate whose turn outlives its shard's move away and
/// back has its write refused as stale. Having done nothing outside its
/// object, it runs again on the object's current state and the client sees
/// it succeed; a turn that did call another object fails with
/// `STALE_OWNER`, since running it again would repeat that call.
async fn a_call_refused_as_stale_runs_again_where_the_object_is(setup: Setup) {
    let cluster = TestCluster::new(setup, "rerun").await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    wait_placed(&[&a, &b]).await;
    let gate = goverse::gate::Gate::start(
        &a,
        goverse::gate::GateOptions::default().http("127.0.0.1:0".parse().expect("address")),
    )
    .await
    .expect("gate");
    let address = gate.http_address().expect("http").to_string();
    for (method, expected) in [("AddAfter", Ok(101)), ("AddAfterACall", Err("STALE_OWNER"))] {
        let id = id_owned_by(&a, "rerun");
        let shard = shard_of(&id, SHARDS);
        let on_b = TillClient::new(&b, id.clone()).with_timeout(PATIENCE);
        TillClient::new(&a, id.clone())
            .with_timeout(PATIENCE)
            .set(Int64Value { value: 1 })
            .await
            .expect("set on a");
        let held = format!("{id}-gate");
        let call = tokio::spawn({
            let (address, held, id) = (address.clone(), held.clone(), id.clone());
            async move {
                goverse_tests::http_post(
                    &address,
                    &format!("/api/v1/objects/call/Till/{id}/{method}"),
                    &[("content-type", "application/json")],
                    &format!("{held:?}"),
                )
                .await
            }
        });
        wait_until("the call's turn runs on a", PATIENCE, || async {
            gates::entered(&held) == 1
        })
        .await;
        move_shard(&[&a, &b], shard, "b").await;
        on_b.set(Int64Value { value: 100 }).await.expect("set on b");
        move_shard(&[&a, &b], shard, "a").await;
        gates::open(&held);
        let (status, json) = call.await.expect("call task");
        let total = on_b.total(Empty {}).await.expect("total").value;
        match expected {
            Ok(value) => {
                assert_eq!(
                    (status, &json["response"]),
                    (200, &serde_json::json!(value.to_string())),
                    "{method}: {json}"
                );
                assert_eq!(total, value);
            }
            Err(code) => {
                assert_eq!(
                    (status, json["code"].as_str()),
                    (503, Some(code)),
                    "{method}: {json}"
                );
                assert_eq!(total, 100);
            }
        }
    }
    gate.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

macro_rules! on_both_setups {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Setup::Memory).await;
                }
            )*
        }
        mod etcd_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Setup::EtcdPostgres).await;
                }
            )*
        }
    };
}

on_both_setups!(
    a_turn_outliving_its_shards_move_away_and_back_cannot_write,
    a_re_created_cluster_serves_what_an_earlier_one_stored,
    a_second_process_with_a_live_nodes_id_is_refused,
    a_call_racing_a_delete_runs_after_it,
    a_stale_owner_cannot_bring_a_deleted_object_back,
    a_call_refused_as_stale_runs_again_where_the_object_is,
);
