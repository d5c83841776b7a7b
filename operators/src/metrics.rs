//! Counters a sink keeps, shared by all workers of a process.
//!
//! Every update the operator receives is accounted for: delivered as part of a change, dropped
//! because an earlier run already committed its time, cancelled by consolidation, or caught as a
//! key violation (failed, skipped or dead-lettered). Nothing is dropped without a count.
//!
//! The atomics are the source of truth; workers add to them through a
//! [`WorkerMetrics`](crate::worker_metrics::WorkerMetrics) ([`SinkMetrics::for_worker`]), which
//! also records each count to the `metrics` facade with `sink` and `worker` labels (names in
//! [`crate::worker_metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one sink; clone the `Arc` into every worker to aggregate a process.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Updates received by the sink operator.
    pub updates_in: AtomicU64,
    /// Updates dropped because their time was before the frontier committed by an earlier run.
    pub updates_already_committed: AtomicU64,
    /// Changes handed to writers (inserts + updates + deletes).
    pub changes_out: AtomicU64,
    /// Records handed to the target by connectors (a change may become 0, 1 or 2 records).
    pub records_out: AtomicU64,
    /// Encoded bytes (keys + values) handed to the target by connectors.
    pub bytes_out: AtomicU64,
    /// Commits made (per worker, or by the coordinator).
    pub commits: AtomicU64,
    /// Data files committed, by file-based targets (lakehouse tables).
    pub files_committed: AtomicU64,
    /// Of those, files below the small-file size the connector names (candidates for compaction).
    pub small_files: AtomicU64,
    /// Key violations that failed the sink.
    pub violations_failed: AtomicU64,
    /// Key violations skipped by policy.
    pub violations_skipped: AtomicU64,
    /// Key violations routed to the dead-letter output.
    pub violations_dead_lettered: AtomicU64,
    /// Workers that stopped with an error.
    pub errors: AtomicU64,
    /// Updates written to spill files because the buffer was over `buffer.max.bytes` (an update
    /// merged again into a larger run counts again).
    pub spilled_updates: AtomicU64,
    /// Bytes written to spill files.
    pub spilled_bytes: AtomicU64,
    /// Attempts at the target retried after a retriable failure.
    pub retries: AtomicU64,
    /// Microseconds from the start of each commit until it was durable, summed: writers'
    /// commits, or the committer's (coordinated sinks). Pipelined commits overlap the writing of
    /// later times, so their sum may exceed the time the sink ran.
    pub commit_micros: AtomicU64,
    /// Microseconds coordinated writers spent preparing their share of a commit (closing data
    /// files), summed over workers.
    pub prepare_micros: AtomicU64,
}

/// A plain copy of [`SinkMetrics`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`SinkMetrics::updates_in`].
    pub updates_in: u64,
    /// See [`SinkMetrics::updates_already_committed`].
    pub updates_already_committed: u64,
    /// See [`SinkMetrics::changes_out`].
    pub changes_out: u64,
    /// See [`SinkMetrics::records_out`].
    pub records_out: u64,
    /// See [`SinkMetrics::bytes_out`].
    pub bytes_out: u64,
    /// See [`SinkMetrics::commits`].
    pub commits: u64,
    /// See [`SinkMetrics::files_committed`].
    pub files_committed: u64,
    /// See [`SinkMetrics::small_files`].
    pub small_files: u64,
    /// See [`SinkMetrics::violations_failed`].
    pub violations_failed: u64,
    /// See [`SinkMetrics::violations_skipped`].
    pub violations_skipped: u64,
    /// See [`SinkMetrics::violations_dead_lettered`].
    pub violations_dead_lettered: u64,
    /// See [`SinkMetrics::errors`].
    pub errors: u64,
    /// See [`SinkMetrics::spilled_updates`].
    pub spilled_updates: u64,
    /// See [`SinkMetrics::spilled_bytes`].
    pub spilled_bytes: u64,
    /// See [`SinkMetrics::retries`].
    pub retries: u64,
    /// See [`SinkMetrics::commit_micros`].
    pub commit_micros: u64,
    /// See [`SinkMetrics::prepare_micros`].
    pub prepare_micros: u64,
}

impl SinkMetrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            updates_in: r(&self.updates_in),
            updates_already_committed: r(&self.updates_already_committed),
            changes_out: r(&self.changes_out),
            records_out: r(&self.records_out),
            bytes_out: r(&self.bytes_out),
            commits: r(&self.commits),
            files_committed: r(&self.files_committed),
            small_files: r(&self.small_files),
            violations_failed: r(&self.violations_failed),
            violations_skipped: r(&self.violations_skipped),
            violations_dead_lettered: r(&self.violations_dead_lettered),
            errors: r(&self.errors),
            spilled_updates: r(&self.spilled_updates),
            spilled_bytes: r(&self.spilled_bytes),
            retries: r(&self.retries),
            commit_micros: r(&self.commit_micros),
            prepare_micros: r(&self.prepare_micros),
        }
    }
}
