//! Activation, hooks, explicit create/delete, idle deactivation, timers and
//! persistent state through the storage seam.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use goverse::prelude::*;
use goverse_tests::{PATIENCE, wait_until};

/// What happened to each object, by id: hooks and timer firings.
static EVENTS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

fn record(id: &str, event: impl Into<String>) {
    EVENTS
        .lock()
        .expect("events")
        .entry(id.to_string())
        .or_default()
        .push(event.into());
}

fn events(id: &str) -> Vec<String> {
    EVENTS
        .lock()
        .expect("events")
        .get(id)
        .cloned()
        .unwrap_or_default()
}

fn count(id: &str, event: &str) -> usize {
    events(id).iter().filter(|e| *e == event).count()
}

#[derive(Debug, Default)]
pub struct Sleepy {
    calls: i32,
}

#[goverse::object(idle_timeout = "300ms")]
impl Sleepy {
    pub async fn touch(&mut self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        self.calls += 1;
        Ok(Int32Value { value: self.calls })
    }

    /// Starts a timer named by the request, firing every 20 ms.
    pub async fn start(&mut self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        ctx.start_timer(&request.value, Duration::from_millis(20));
        Ok(Empty {})
    }

    pub async fn stop(
        &mut self,
        ctx: &Context,
        request: StringValue,
    ) -> goverse::Result<BoolValue> {
        Ok(BoolValue {
            value: ctx.stop_timer(&request.value),
        })
    }

    /// Deletes itself from inside its own turn: a call cycle.
    pub async fn vanish(&mut self, ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        SleepyClient::new(ctx, ctx.id()).delete().await?;
        Ok(Empty {})
    }

    /// Deletes the object the request names, from inside this turn.
    pub async fn remove(&mut self, ctx: &Context, request: StringValue) -> goverse::Result<Empty> {
        SleepyClient::new(ctx, request.value).delete().await?;
        Ok(Empty {})
    }

    #[on_activate]
    async fn activated(&mut self, ctx: &Context) -> goverse::Result<()> {
        record(ctx.id(), "activate");
        if ctx.id().starts_with("refuse") {
            return Err(goverse::Error::application(
                "NOT_TODAY",
                "refusing to activate",
            ));
        }
        Ok(())
    }

    #[on_deactivate]
    async fn deactivated(&mut self, ctx: &Context) -> goverse::Result<()> {
        record(ctx.id(), "deactivate");
        Ok(())
    }

    #[on_timer]
    async fn fired(&mut self, ctx: &Context, timer: &str) -> goverse::Result<()> {
        record(ctx.id(), format!("timer:{timer}"));
        if timer == "panic" {
            panic!("timer panicked");
        }
        Ok(())
    }
}

/// A type no node of these tests registers.
#[derive(Debug, Default)]
pub struct Unregistered;

#[goverse::object]
impl Unregistered {
    pub async fn ping(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    total: i64,
    #[serde(default)]
    note: String,
}

#[goverse::object(persistent, idle_timeout = "200ms", name = "SavedCounter")]
impl Saved {
    pub async fn add(
        &mut self,
        _ctx: &Context,
        request: Int64Value,
    ) -> goverse::Result<Int64Value> {
        self.total += request.value;
        self.note = format!("last add {}", request.value);
        Ok(Int64Value { value: self.total })
    }
}

async fn node() -> Node {
    Node::builder()
        .register::<Sleepy>()
        .register::<Saved>()
        .start()
        .await
        .expect("node starts")
}

#[tokio::test]
async fn the_first_call_activates_and_hooks_run_once() {
    let node = node().await;
    let sleepy = SleepyClient::new(&node, "hooks");
    assert_eq!(sleepy.touch(Empty {}).await.expect("touch").value, 1);
    assert_eq!(sleepy.touch(Empty {}).await.expect("touch").value, 2);
    assert_eq!(events("hooks"), vec!["activate"]);
    assert_eq!(node.stats().activations, 1);
}

#[tokio::test]
async fn a_failing_on_activate_fails_the_call_and_is_retried_next_time() {
    let node = node().await;
    let error = SleepyClient::new(&node, "refuse-1")
        .touch(Empty {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), "ACTIVATION_FAILED", "{error}");
    assert!(error.to_string().contains("NOT_TODAY"), "{error}");
    assert_eq!(node.stats().active, 0);
    let _ = SleepyClient::new(&node, "refuse-1")
        .touch(Empty {})
        .await
        .unwrap_err();
    assert_eq!(count("refuse-1", "activate"), 2);
}

#[tokio::test]
async fn explicit_create_and_delete() {
    let node = node().await;
    node.create::<Sleepy>("explicit").await.expect("create");
    SleepyClient::new(&node, "explicit")
        .create()
        .await
        .expect("create again is fine");
    assert_eq!(events("explicit"), vec!["activate"]);
    let sleepy = SleepyClient::new(&node, "explicit");
    assert_eq!(sleepy.touch(Empty {}).await.expect("touch").value, 1);

    sleepy.delete().await.expect("delete");
    assert_eq!(events("explicit"), vec!["activate", "deactivate"]);
    node.delete::<Sleepy>("explicit")
        .await
        .expect("deleting again is fine");
    SleepyClient::new(&node, "never-existed")
        .delete()
        .await
        .expect("deleting the unknown is fine");
    // Objects exist virtually: the next call activates a fresh one.
    assert_eq!(sleepy.touch(Empty {}).await.expect("touch").value, 1);
    assert_eq!(
        node.create::<Unregistered>("x").await.unwrap_err().code(),
        Code::UnknownObjectType
    );

    // From inside a turn: another object may be deleted, the object itself
    // may not (its delete would wait on the turn that waits on it).
    let other = SleepyClient::new(&node, "other");
    assert_eq!(other.touch(Empty {}).await.expect("touch").value, 1);
    sleepy
        .remove(StringValue {
            value: "other".into(),
        })
        .await
        .expect("remove another");
    assert_eq!(events("other"), vec!["activate", "deactivate"]);
    let cycle = sleepy.vanish(Empty {}).await.unwrap_err();
    assert_eq!(cycle.code(), Code::CallCycle, "{cycle}");
}

#[tokio::test]
async fn idle_objects_deactivate_and_busy_ones_stay() {
    let node = node().await;
    let idle = SleepyClient::new(&node, "idle");
    let busy = SleepyClient::new(&node, "busy");
    idle.touch(Empty {}).await.expect("touch");
    // Keep `busy` in use for longer than the idle timeout.
    for _ in 0..12 {
        busy.touch(Empty {}).await.expect("touch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until("the idle object deactivates", PATIENCE, || async {
        count("idle", "deactivate") == 1
    })
    .await;
    assert_eq!(
        count("busy", "deactivate"),
        0,
        "an object in use was deactivated"
    );
    // A call after deactivation activates a fresh instance.
    assert_eq!(idle.touch(Empty {}).await.expect("touch").value, 1);
    assert_eq!(count("idle", "activate"), 2);
}

#[tokio::test]
async fn timers_fire_as_turns_and_stop_on_request() {
    let node = node().await;
    let sleepy = SleepyClient::new(&node, "ticker");
    sleepy
        .start(StringValue { value: "a".into() })
        .await
        .expect("start");
    wait_until("timer a fires three times", PATIENCE, || async {
        count("ticker", "timer:a") >= 3
    })
    .await;
    assert!(
        sleepy
            .stop(StringValue { value: "a".into() })
            .await
            .expect("stop")
            .value
    );
    assert!(
        !sleepy
            .stop(StringValue { value: "a".into() })
            .await
            .expect("stop")
            .value
    );
    let fired = count("ticker", "timer:a");
    // A negative check needs a window: ten periods without a firing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count("ticker", "timer:a"), fired, "a stopped timer fired");
}

#[tokio::test]
async fn timers_stop_when_the_object_deactivates_and_do_not_keep_it_alive() {
    let node = node().await;
    let sleepy = SleepyClient::new(&node, "timer-idle");
    sleepy
        .start(StringValue { value: "t".into() })
        .await
        .expect("start");
    wait_until("the timer fires", PATIENCE, || async {
        count("timer-idle", "timer:t") >= 1
    })
    .await;
    // Timer turns are not calls: the object still goes idle and deactivates.
    wait_until("the object deactivates", PATIENCE, || async {
        count("timer-idle", "deactivate") == 1
    })
    .await;
    let fired = count("timer-idle", "timer:t");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count("timer-idle", "timer:t"),
        fired,
        "a timer outlived its object"
    );
}

#[tokio::test]
async fn a_panicking_timer_discards_the_activation() {
    let node = node().await;
    let sleepy = SleepyClient::new(&node, "timer-panic");
    sleepy.touch(Empty {}).await.expect("touch");
    sleepy
        .start(StringValue {
            value: "panic".into(),
        })
        .await
        .expect("start");
    wait_until("the panic is counted", PATIENCE, || async {
        node.stats().panics == 1
    })
    .await;
    assert_eq!(
        count("timer-panic", "timer:panic"),
        1,
        "the timer kept firing after a panic"
    );
    assert_eq!(
        sleepy.touch(Empty {}).await.expect("touch").value,
        1,
        "the activation was not discarded"
    );
}

#[tokio::test]
async fn persistent_state_survives_deactivation_and_shutdown() {
    let storage = std::sync::Arc::new(goverse::storage::MemoryStorage::new());
    let node = Node::builder()
        .register::<Saved>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    let saved = SavedClient::new(&node, "s1");
    assert_eq!(
        saved.add(Int64Value { value: 5 }).await.expect("add").value,
        5
    );
    wait_until("the object is saved and deactivated", PATIENCE, || async {
        node.stats().deactivations == 1
    })
    .await;
    assert_eq!(
        saved.add(Int64Value { value: 2 }).await.expect("add").value,
        7,
        "state was not loaded"
    );
    node.shutdown().await;

    // A new node on the same storage sees the state saved at shutdown.
    let again = Node::builder()
        .register::<Saved>()
        .storage(storage.clone())
        .start()
        .await
        .expect("node");
    assert_eq!(
        SavedClient::new(&again, "s1")
            .add(Int64Value { value: 1 })
            .await
            .expect("add")
            .value,
        8
    );
    // Rows written before a field existed still load (serde default).
    use goverse::storage::{Fence, Storage};
    storage
        .save(
            "SavedCounter",
            "old",
            br#"{"total":40}"#,
            Fence { epoch: 1 },
        )
        .await
        .expect("seed");
    assert_eq!(
        SavedClient::new(&again, "old")
            .add(Int64Value { value: 2 })
            .await
            .expect("add")
            .value,
        42
    );
    // Delete removes stored state too.
    again.delete::<Saved>("s1").await.expect("delete");
    assert_eq!(
        SavedClient::new(&again, "s1")
            .add(Int64Value { value: 1 })
            .await
            .expect("add")
            .value,
        1
    );
}
