//! The counters and histograms of what a node does outside its turns:
//! frames sent to peers, storage batches, shard moves, failovers, replays
//! and refused requests. The parts that do the work add to them; the
//! node's `/metrics` reads them at scrape time.
//!
//! Every event here is already far costlier than an atomic add (a batch
//! written, a frame sent, a shard moved), so plain shared atomics do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram with fixed upper bounds, safe to record into from any
/// thread.
#[derive(Debug)]
#[cfg_attr(not(feature = "ops"), allow(dead_code))]
pub(crate) struct Histogram {
    /// Upper bounds, ascending; one more bucket above the last.
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    /// The sum of what was recorded, in units of `1 / scale`.
    sum: AtomicU64,
    scale: f64,
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "ops"), allow(dead_code))]
pub(crate) struct HistogramSnapshot {
    pub(crate) sum: f64,
    pub(crate) count: u64,
    /// Per bucket (not cumulative): its upper bound (`f64::MAX` for the
    /// last) and its count.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// A histogram of durations, in seconds.
    fn seconds(bounds: &'static [f64]) -> Self {
        Self::new(bounds, 1e9)
    }

    /// A histogram of counts (batch sizes).
    fn counts(bounds: &'static [f64]) -> Self {
        Self::new(bounds, 1.0)
    }

    fn new(bounds: &'static [f64], scale: f64) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Records a duration (a histogram of seconds).
    pub(crate) fn record_duration(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.record(took.as_secs_f64(), nanos);
    }

    /// Records a count (a histogram of counts).
    pub(crate) fn record_count(&self, count: usize) {
        self.record(count as f64, count as u64);
    }

    fn record(&self, value: f64, scaled: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        if let Some(slot) = self.buckets.get(bucket) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(scaled, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "ops"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            sum: self.sum.load(Ordering::Relaxed) as f64 / self.scale,
            count: counts.iter().sum(),
            buckets: self
                .bounds
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(counts)
                .collect(),
        }
    }
}

/// Batch sizes: 1 to the largest batches the transport and the committer
/// make (256 and 512).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Storage commits: a local file in tens of microseconds to a remote
/// database under load in seconds.
const COMMIT_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Shard handoffs: from draining the shard to handing it over.
const HANDOFF_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What a node has done outside its turns since it started.
#[derive(Debug)]
#[cfg_attr(not(feature = "ops"), allow(dead_code))]
pub(crate) struct Meters {
    /// Frames sent to other nodes (calls, creates, deletes, pushes).
    pub(crate) remote_calls: AtomicU64,
    /// Frames per batch written to a peer's stream.
    pub(crate) remote_batch: Histogram,
    /// Shards this node drained and handed over to another.
    pub(crate) shard_moves: AtomicU64,
    /// How long each handoff took, from the start of the drain.
    pub(crate) handoff: Histogram,
    /// Nodes this node saw leave the cluster without leaving (their lease
    /// ran out: a crash, a partition).
    pub(crate) failovers: AtomicU64,
    /// Object states written through the group committer.
    pub(crate) storage_writes: AtomicU64,
    /// Writes per storage batch.
    pub(crate) storage_batch: Histogram,
    /// How long each storage batch took to commit.
    pub(crate) storage_commit: Histogram,
    /// Reliable calls answered from their record instead of run again.
    pub(crate) reliable_replays: AtomicU64,
    /// Gate requests refused by a rate limit.
    pub(crate) rate_limited: AtomicU64,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            remote_calls: AtomicU64::new(0),
            remote_batch: Histogram::counts(BATCH_SIZES),
            shard_moves: AtomicU64::new(0),
            handoff: Histogram::seconds(HANDOFF_SECONDS),
            failovers: AtomicU64::new(0),
            storage_writes: AtomicU64::new(0),
            storage_batch: Histogram::counts(BATCH_SIZES),
            storage_commit: Histogram::seconds(COMMIT_SECONDS),
            reliable_replays: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::counts(&[1.0, 4.0]);
        for count in [1, 2, 4, 5, 300] {
            histogram.record_count(count);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.sum, 312.0);
        assert_eq!(
            snapshot.buckets,
            vec![(1.0, 1), (4.0, 2), (f64::MAX, 2)],
            "le=1 holds 1; le=4 holds 2 and 4; the rest above"
        );
    }

    #[test]
    fn durations_sum_in_seconds() {
        let histogram = Histogram::seconds(&[0.001]);
        histogram.record_duration(Duration::from_micros(500));
        histogram.record_duration(Duration::from_millis(2));
        let snapshot = histogram.snapshot();
        assert!((snapshot.sum - 0.0025).abs() < 1e-12, "{}", snapshot.sum);
        assert_eq!(snapshot.buckets, vec![(0.001, 1), (f64::MAX, 1)]);
    }
}
