//! Counts and times the calls a node serves, per method of an object type:
//! how many ended with each code, and how long they took.
//!
//! Many callers of one object run on several cores at once, so every
//! thread records into cells of its own, which no other thread writes: a
//! call's counts are plain additions, with no locked instruction and no
//! cache line another core writes, and a scrape adds the cells up.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::code::Code;

/// Upper bounds of the duration buckets, in seconds (`+Inf` follows).
pub(crate) const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The same bounds in nanoseconds, for the recording side.
const BUCKET_NANOS: [u64; 12] = [
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Threads that get cells of their own (runtime workers come first); any
/// later thread records into cells shared by all of them.
const OWN_SLOTS: usize = 64;

/// The outcome labels, by index: `OK`, every built-in code, and one label
/// for all of the applications' own codes (their number is unbounded).
pub(crate) fn outcome_label(index: usize) -> &'static str {
    match index {
        0 => "OK",
        _ => crate::code::BUILT_IN
            .get(index - 1)
            .map_or("APPLICATION", |(_, name)| name),
    }
}

pub(crate) const OUTCOMES: usize = crate::code::BUILT_IN.len() + 2;

fn outcome_index(code: Option<&Code>) -> usize {
    match code {
        None => 0,
        Some(code) => crate::code::BUILT_IN
            .iter()
            .position(|(known, _)| known == code)
            .map_or(OUTCOMES - 1, |position| position + 1),
    }
}

/// One thread's counts for one method, on cache lines of its own.
#[repr(align(128))]
struct Cell {
    outcomes: [AtomicU64; OUTCOMES],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Cell {
    fn default() -> Self {
        Self {
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a count only this thread writes: a load and a store, where
/// a shared count needs a locked read-modify-write.
fn add_own(count: &AtomicU64, n: u64) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn add_shared(count: &AtomicU64, n: u64) {
    count.fetch_add(n, Ordering::Relaxed);
}

impl Cell {
    fn add(&self, add: fn(&AtomicU64, u64), outcome: usize, bucket: usize, nanos: u64) {
        add(&self.outcomes[outcome], 1);
        add(&self.buckets[bucket], 1);
        add(&self.sum_nanos, nanos);
    }
}

/// The calls of one object type, by method.
pub(crate) struct CallMetrics {
    methods: usize,
    /// By thread slot, that thread's cell for each method, made at its
    /// first call.
    own: Box<[OnceLock<Box<[Cell]>>]>,
    /// For each method, the cell of the threads past [`OWN_SLOTS`].
    shared: Box<[Cell]>,
}

/// What a scrape reads for one method.
pub(crate) struct MethodTotals {
    /// Calls by outcome index (see [`outcome_label`]).
    pub(crate) outcomes: [u64; OUTCOMES],
    /// Calls per duration bucket, not cumulative; the last is `+Inf`.
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    pub(crate) sum: Duration,
}

impl CallMetrics {
    pub(crate) fn new(methods: usize) -> Self {
        Self {
            methods,
            own: (0..OWN_SLOTS).map(|_| OnceLock::new()).collect(),
            shared: (0..methods).map(|_| Cell::default()).collect(),
        }
    }

    /// Records one call of method `method` that took `took` and ended with
    /// `code` (`None`: it succeeded).
    pub(crate) fn record(&self, method: usize, took: Duration, code: Option<&Code>) {
        if method >= self.methods {
            return;
        }
        let outcome = outcome_index(code);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS.partition_point(|&bound| bound < nanos);
        match this_thread_slot().and_then(|slot| self.own.get(slot)) {
            Some(own) => {
                let cells =
                    own.get_or_init(|| (0..self.methods).map(|_| Cell::default()).collect());
                cells[method].add(add_own, outcome, bucket, nanos);
            }
            None => self.shared[method].add(add_shared, outcome, bucket, nanos),
        }
    }

    /// The totals of method `method` over every thread.
    pub(crate) fn totals(&self, method: usize) -> Option<MethodTotals> {
        let shared = self.shared.get(method)?;
        let mut totals = MethodTotals {
            outcomes: [0; OUTCOMES],
            buckets: [0; BUCKETS.len() + 1],
            sum: Duration::ZERO,
        };
        let own = self.own.iter().filter_map(|cells| cells.get()?.get(method));
        for cell in own.chain([shared]) {
            for (total, count) in totals.outcomes.iter_mut().zip(&cell.outcomes) {
                *total += count.load(Ordering::Relaxed);
            }
            for (total, count) in totals.buckets.iter_mut().zip(&cell.buckets) {
                *total += count.load(Ordering::Relaxed);
            }
            totals.sum += Duration::from_nanos(cell.sum_nanos.load(Ordering::Relaxed));
        }
        Some(totals)
    }
}

/// This thread's own slot, given at its first call while any are left.
fn this_thread_slot() -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Option<usize> = {
            let slot = NEXT.fetch_add(1, Ordering::Relaxed);
            (slot < OWN_SLOTS).then_some(slot)
        };
    }
    SLOT.with(|slot| *slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_bucket_tables_agree() {
        for (seconds, nanos) in BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!(
                Duration::from_secs_f64(*seconds),
                Duration::from_nanos(nanos)
            );
        }
        let metrics = CallMetrics::new(1);
        // A call of exactly a bound's length falls in that bound's bucket.
        metrics.record(0, Duration::from_micros(10), None);
        metrics.record(0, Duration::from_nanos(10_001), None);
        let totals = metrics.totals(0).expect("method 0");
        assert_eq!(totals.buckets[0], 1);
        assert_eq!(totals.buckets[1], 1);
    }

    #[test]
    fn threads_past_the_own_slots_share_cells_and_lose_nothing() {
        let metrics = std::sync::Arc::new(CallMetrics::new(1));
        let threads: Vec<_> = (0..OWN_SLOTS + 8)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        metrics.record(0, Duration::from_micros(1), None);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("joins");
        }
        let totals = metrics.totals(0).expect("method 0");
        assert_eq!(totals.outcomes[0], (OWN_SLOTS as u64 + 8) * 100);
        assert_eq!(
            totals.sum,
            Duration::from_micros(1) * (OWN_SLOTS as u32 + 8) * 100
        );
    }

    #[test]
    fn calls_add_up_by_outcome_and_bucket() {
        let metrics = CallMetrics::new(2);
        metrics.record(1, Duration::from_micros(3), None);
        metrics.record(1, Duration::from_millis(2), Some(&Code::DeadlineExceeded));
        metrics.record(
            1,
            Duration::from_secs(60),
            Some(&Code::Application("MINE".into())),
        );
        std::thread::spawn(move || metrics)
            .join()
            .map(|metrics| {
                metrics.record(1, Duration::from_micros(3), None);
                let totals = metrics.totals(1).expect("method 1");
                assert_eq!(totals.outcomes[0], 2, "OK");
                let deadline = (0..OUTCOMES)
                    .find(|&i| outcome_label(i) == "DEADLINE_EXCEEDED")
                    .expect("a label");
                assert_eq!(totals.outcomes[deadline], 1);
                assert_eq!(outcome_label(OUTCOMES - 1), "APPLICATION");
                assert_eq!(totals.outcomes[OUTCOMES - 1], 1);
                assert_eq!(totals.buckets[0], 2, "3 µs is in the first bucket");
                assert_eq!(totals.buckets[5], 1, "2 ms is under 5 ms");
                assert_eq!(totals.buckets[BUCKETS.len()], 1, "a minute is past 5 s");
                let expected =
                    Duration::from_micros(6) + Duration::from_millis(2) + Duration::from_secs(60);
                assert_eq!(totals.sum, expected);
                assert!(
                    metrics
                        .totals(0)
                        .expect("method 0")
                        .outcomes
                        .iter()
                        .all(|&n| n == 0)
                );
                assert!(metrics.totals(2).is_none());
            })
            .expect("joins");
    }
}
