//! A node's background work: auto-loaded objects, idle collection, the
//! summaries it publishes, and
//! purging reliable-call records and tombstones past their retention.

use std::collections::BTreeMap;

use super::*;

impl NodeInner {
    /// Creates the auto-load objects of `shards`, which this node has just
    /// started serving.
    pub(crate) fn auto_load_shards(self: &Arc<Self>, shards: &[u32]) {
        let count = self.config.shard_count;
        let mut creates = Vec::new();
        for entry in &self.config.auto_load {
            match entry.per {
                crate::config::AutoLoadPer::Object => {
                    if placement::validate_id(&entry.id, count).is_ok()
                        && shards.contains(&placement::shard_for(&entry.id, count))
                    {
                        creates.push((entry.type_name.clone(), entry.id.clone()));
                    }
                }
                crate::config::AutoLoadPer::Shard => {
                    for shard in shards {
                        creates.push((
                            entry.type_name.clone(),
                            format!("shard#{shard}/{}", entry.id),
                        ));
                    }
                }
                crate::config::AutoLoadPer::Node => {}
            }
        }
        self.spawn_creates(creates);
    }

    pub(super) fn auto_load_per_node(self: &Arc<Self>) {
        let address = self.address();
        if address.is_empty() {
            return;
        }
        let creates = self
            .config
            .auto_load
            .iter()
            .filter(|e| e.per == crate::config::AutoLoadPer::Node)
            .map(|e| (e.type_name.clone(), format!("{address}/{}", e.id)))
            .collect();
        self.spawn_creates(creates);
    }

    pub(super) fn spawn_creates(self: &Arc<Self>, creates: Vec<(String, String)>) {
        if creates.is_empty() {
            return;
        }
        let node = self.clone();
        self.runtime.spawn(async move {
            for (type_name, id) in creates {
                if let Err(error) = node.create(&type_name, &id, None).await {
                    tracing::warn!(object_type = %type_name, object_id = %id, %error, "auto-load failed");
                }
            }
        });
    }

    pub(super) fn add_background(&self, task: JoinHandle<()>) {
        self.background.locked().push(task);
    }

    pub(super) fn stop_background(&self) {
        for task in std::mem::take(&mut *self.background.locked()) {
            task.abort();
        }
    }

    pub(super) fn collect_idle_once(self: Arc<Self>) -> BoxFuture<'static, usize> {
        Box::pin(async move {
            let mut collected = 0;
            for host in self.by_name.values() {
                collected += host.clone().collect_idle(self.clone()).await;
            }
            collected
        })
    }

    /// Purges reliable-call records and tombstones (rows holding no state)
    /// past their retention, at an eighth of it, on nodes that host a
    /// persistent type (every such node does it; the delete is idempotent).
    pub(super) fn start_purger(self: &Arc<Self>) {
        if !self.by_name.values().any(|h| h.descriptor().persistent) {
            return;
        }
        let retention = self.config.reliable_call_retention;
        let period = (retention / 8).clamp(Duration::from_millis(50), Duration::from_secs(600));
        self.every(period, Start::Now, move |node| async move {
            match node.storage.purge_calls(retention).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "reliable-call records purged"),
                Err(error) => tracing::warn!(%error, "purging reliable-call records failed"),
            }
            match node.storage.purge_tombstones(retention).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "tombstones purged"),
                Err(error) => tracing::warn!(%error, "purging tombstones failed"),
            }
        });
    }

    /// Runs `work` on the node every `period`, from now or after a first
    /// period, for as long as the node lives, as a background task.
    fn every<F, Fut>(self: &Arc<Self>, period: Duration, start: Start, work: F)
    where
        F: Fn(Arc<NodeInner>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let node = Arc::downgrade(self);
        let task = self.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            if matches!(start, Start::AfterAPeriod) {
                ticks.tick().await;
            }
            loop {
                ticks.tick().await;
                let Some(node) = node.upgrade() else {
                    break;
                };
                work(node).await;
            }
        });
        self.add_background(task);
    }

    /// Publishes the node's summary at every summary interval, from the
    /// start.
    pub(super) fn start_summaries(self: &Arc<Self>) {
        self.every(
            self.config.summary_interval,
            Start::Now,
            |node| async move {
                let summary = node.summary();
                if let Err(error) = node.coordinator.publish_summary(&summary).await {
                    tracing::debug!(%error, "publishing the node's summary failed");
                }
            },
        );
    }

    /// What the node says of itself to operators now.
    pub(crate) fn summary(&self) -> crate::cluster::NodeSummary {
        let at_unix_ms = crate::cluster::unix_now_ms();
        let calls = self.calls_served();
        let unready = self.unready();
        crate::cluster::NodeSummary {
            node: self.id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            at_unix_ms,
            interval_ms: u64::try_from(self.config.summary_interval.as_millis())
                .unwrap_or(u64::MAX),
            objects: self
                .by_name
                .iter()
                .map(|(name, host)| (name.to_string(), host.len() as u64))
                .collect(),
            activations: self.stats.activations(),
            calls: calls.as_ref().map(|calls| calls.total),
            shards: self.shards_served(),
            ready: unready.is_none(),
            unready,
            membership_proven: self.view().online,
            gate_clients: self.clients().map(|sink| sink.counts().clients),
            calls_by_type: calls
                .as_ref()
                .map(|calls| calls.by_type.clone())
                .unwrap_or_default(),
            call_durations_by_type: calls
                .as_ref()
                .map(|calls| calls.durations_by_type.clone())
                .unwrap_or_default(),
            call_durations: calls.map(|calls| calls.durations).unwrap_or_default(),
        }
    }

    /// Calls served since the start, when the node counts them.
    fn calls_served(&self) -> Option<CallsServed> {
        #[cfg(feature = "ops")]
        if self.config.call_metrics {
            use super::call_metrics::BUCKETS;
            let mut served = CallsServed::default();
            let mut buckets = [0u64; BUCKETS.len() + 1];
            for (name, host) in &self.by_name {
                let Some(methods) = host.call_totals() else {
                    continue;
                };
                let mut calls = 0;
                let mut type_buckets = [0u64; BUCKETS.len() + 1];
                for (_, totals) in methods {
                    calls += totals.outcomes.iter().sum::<u64>();
                    for (total, count) in type_buckets.iter_mut().zip(totals.buckets) {
                        *total += count;
                    }
                }
                for (total, count) in buckets.iter_mut().zip(type_buckets) {
                    *total += count;
                }
                served.by_type.insert(name.to_string(), calls);
                served
                    .durations_by_type
                    .insert(name.to_string(), type_buckets.to_vec());
            }
            let bounds = BUCKETS.iter().copied().map(Some).chain([None]);
            served.durations = bounds.zip(buckets).collect();
            served.total = served.by_type.values().sum();
            return Some(served);
        }
        None
    }

    /// Scans for idle objects at a quarter of the shortest idle timeout.
    pub(super) fn start_idle_collector(self: &Arc<Self>) {
        let Some(shortest) = self.by_name.values().map(|h| h.idle_timeout()).min() else {
            return;
        };
        let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        self.every(period, Start::AfterAPeriod, |node| async move {
            node.collect_idle_once().await;
        });
    }
}

/// When periodic work first runs.
#[derive(Clone, Copy)]
enum Start {
    Now,
    AfterAPeriod,
}

/// The calls a node served since it started, as its summary gives them.
#[derive(Default)]
struct CallsServed {
    total: u64,
    by_type: BTreeMap<String, u64>,
    /// Per duration bucket: its upper bound (none for the last) and count.
    durations: Vec<(Option<f64>, u64)>,
    /// Each type's counts per bucket, in the order of `durations`.
    durations_by_type: BTreeMap<String, Vec<u64>>,
}
