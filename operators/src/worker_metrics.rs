//! One worker's counters, recorded twice: into the process-wide [`SinkMetrics`] atomics (the
//! source of truth, read through [`SinkMetrics::snapshot`]) and into the [`metrics`] facade,
//! labelled `sink` and `worker`, for whatever recorder the application installed (a Prometheus
//! exporter, say).
//!
//! A [`WorkerMetrics`] registers its facade handles once, when it is made for a worker
//! ([`SinkMetrics::for_worker`]); every later call is an atomic add on the shared counter plus
//! one on the handle. Calls happen per batch, chunk or commit, never per row. Without an
//! installed recorder the handles are no-ops, so a library user who installs none pays an
//! atomic add and an indirect call per batch.
//!
//! | Facade name | Kind | Labels | What |
//! |---|---|---|---|
//! | `dsink_updates_in_total` | counter | `sink`, `worker` | updates the sink operator received |
//! | `dsink_updates_already_committed_total` | counter | `sink`, `worker` | updates dropped because an earlier run committed their time |
//! | `dsink_changes_out_total` | counter | `sink`, `worker` | changes handed to the writer |
//! | `dsink_records_out_total` | counter | `sink`, `worker` | records handed to the target |
//! | `dsink_records_out_bytes_total` | counter | `sink`, `worker` | encoded bytes of those records |
//! | `dsink_commits_total` | counter | `sink`, `worker` | commits made (coordinated: by the committer, `worker="0"`) |
//! | `dsink_commit_seconds` | histogram | `sink`, `worker` | commit latency: `commit` (pipelined: until durable), or the committer's commit |
//! | `dsink_prepare_seconds` | histogram | `sink`, `worker` | coordinated writers: time to prepare a share of a commit (closing data files) |
//! | `dsink_frontier_lag` | gauge | `sink`, `worker` | input frontier minus committed frontier, in logical time (coordinated: worker 0 only) |
//! | `dsink_files_committed_total` | counter | `sink`, `worker` | data files committed (lakehouse tables) |
//! | `dsink_small_files_committed_total` | counter | `sink`, `worker` | of those, files below the connector's small-file size |
//! | `dsink_key_violations_total` | counter | `sink`, `worker`, `policy` (`fail`, `skip`, `dead_letter`) | key violations |
//! | `dsink_errors_total` | counter | `sink`, `worker` | workers (or the committer) stopped by an error |
//! | `dsink_retries_total` | counter | `sink`, `worker` | retried attempts at the target after a retriable failure |
//! | `dsink_spilled_updates_total` | counter | `sink`, `worker` | updates written to spill files |
//! | `dsink_spilled_bytes_total` | counter | `sink`, `worker` | bytes written to spill files |

use crate::metrics::SinkMetrics;
use metrics::{Counter, Histogram, Unit};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The facade name of [`SinkMetrics::updates_in`].
pub const UPDATES_IN: &str = "dsink_updates_in_total";
/// The facade name of [`SinkMetrics::updates_already_committed`].
pub const UPDATES_ALREADY_COMMITTED: &str = "dsink_updates_already_committed_total";
/// The facade name of [`SinkMetrics::changes_out`].
pub const CHANGES_OUT: &str = "dsink_changes_out_total";
/// The facade name of [`SinkMetrics::records_out`].
pub const RECORDS_OUT: &str = "dsink_records_out_total";
/// The facade name of [`SinkMetrics::bytes_out`].
pub const RECORDS_OUT_BYTES: &str = "dsink_records_out_bytes_total";
/// The facade name of [`SinkMetrics::commits`].
pub const COMMITS: &str = "dsink_commits_total";
/// The histogram of commit latency, in seconds.
pub const COMMIT_SECONDS: &str = "dsink_commit_seconds";
/// The histogram of coordinated writers' time to prepare a share of a commit, in seconds.
pub const PREPARE_SECONDS: &str = "dsink_prepare_seconds";
/// The gauge of the input frontier minus the committed frontier, in logical time.
pub const FRONTIER_LAG: &str = "dsink_frontier_lag";
/// The facade name of [`SinkMetrics::files_committed`].
pub const FILES_COMMITTED: &str = "dsink_files_committed_total";
/// The facade name of [`SinkMetrics::small_files`].
pub const SMALL_FILES_COMMITTED: &str = "dsink_small_files_committed_total";
/// Key violations, labelled by `policy`: the three `violations_*` counters of [`SinkMetrics`].
pub const KEY_VIOLATIONS: &str = "dsink_key_violations_total";
/// The facade name of [`SinkMetrics::errors`].
pub const ERRORS: &str = "dsink_errors_total";
/// The facade name of [`SinkMetrics::retries`].
pub const RETRIES: &str = "dsink_retries_total";
/// The facade name of [`SinkMetrics::spilled_updates`].
pub const SPILLED_UPDATES: &str = "dsink_spilled_updates_total";
/// The facade name of [`SinkMetrics::spilled_bytes`].
pub const SPILLED_BYTES: &str = "dsink_spilled_bytes_total";

/// Describes every metric (help text and unit) to the installed recorder; call it once after
/// installing one. Recording works without it.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(UPDATES_IN, "Updates the sink operator received");
    describe_counter!(UPDATES_ALREADY_COMMITTED, "Updates dropped because an earlier run committed their time");
    describe_counter!(CHANGES_OUT, "Changes (inserts, updates, deletes) handed to the writer");
    describe_counter!(RECORDS_OUT, "Records handed to the target");
    describe_counter!(RECORDS_OUT_BYTES, Unit::Bytes, "Encoded bytes of the records handed to the target");
    describe_counter!(COMMITS, "Commits made (coordinated sinks: by the committer on worker 0)");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Commit latency");
    describe_histogram!(
        PREPARE_SECONDS,
        Unit::Seconds,
        "Time a coordinated writer took to prepare its share of a commit"
    );
    describe_gauge!(FRONTIER_LAG, "Input frontier minus committed frontier, in logical time");
    describe_counter!(FILES_COMMITTED, "Data files committed");
    describe_counter!(SMALL_FILES_COMMITTED, "Data files committed below the connector's small-file size");
    describe_counter!(KEY_VIOLATIONS, "Key violations, by the policy that handled them");
    describe_counter!(ERRORS, "Workers (or the committer) stopped by an error");
    describe_counter!(RETRIES, "Attempts at the target retried after a retriable failure");
    describe_counter!(SPILLED_UPDATES, "Updates written to spill files");
    describe_counter!(SPILLED_BYTES, Unit::Bytes, "Bytes written to spill files");
}

/// One worker's view of a sink's counters: each call adds to the shared [`SinkMetrics`] atomic
/// and to the facade handle registered for this sink and worker. Cheap to clone.
#[derive(Clone)]
pub struct WorkerMetrics {
    shared: Arc<SinkMetrics>,
    pub(crate) sink: Arc<str>,
    worker: usize,
    updates_in: Counter,
    updates_already_committed: Counter,
    changes_out: Counter,
    records_out: Counter,
    bytes_out: Counter,
    commits: Counter,
    commit_seconds: Histogram,
    prepare_seconds: Histogram,
    files_committed: Counter,
    small_files: Counter,
    violations_failed: Counter,
    violations_skipped: Counter,
    violations_dead_lettered: Counter,
    errors: Counter,
    retries: Counter,
    spilled_updates: Counter,
    spilled_bytes: Counter,
}

impl fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMetrics").field("sink", &self.sink).field("worker", &self.worker).finish_non_exhaustive()
    }
}

impl SinkMetrics {
    /// The counters of worker `worker` of sink `sink`: registers its facade handles (labels
    /// `sink`, `worker`) with the recorder installed now. Make one per worker and keep it.
    pub fn for_worker(self: &Arc<Self>, sink: &str, worker: usize) -> WorkerMetrics {
        let labels = [("sink", sink.to_string()), ("worker", worker.to_string())];
        let counter = |name: &'static str| metrics::counter!(name, &labels);
        let violations = |policy: &'static str| metrics::counter!(KEY_VIOLATIONS, "sink" => sink.to_string(), "worker" => worker.to_string(), "policy" => policy);
        WorkerMetrics {
            shared: Arc::clone(self),
            sink: sink.into(),
            worker,
            updates_in: counter(UPDATES_IN),
            updates_already_committed: counter(UPDATES_ALREADY_COMMITTED),
            changes_out: counter(CHANGES_OUT),
            records_out: counter(RECORDS_OUT),
            bytes_out: counter(RECORDS_OUT_BYTES),
            commits: counter(COMMITS),
            commit_seconds: metrics::histogram!(COMMIT_SECONDS, &labels),
            prepare_seconds: metrics::histogram!(PREPARE_SECONDS, &labels),
            files_committed: counter(FILES_COMMITTED),
            small_files: counter(SMALL_FILES_COMMITTED),
            violations_failed: violations("fail"),
            violations_skipped: violations("skip"),
            violations_dead_lettered: violations("dead_letter"),
            errors: counter(ERRORS),
            retries: counter(RETRIES),
            spilled_updates: counter(SPILLED_UPDATES),
            spilled_bytes: counter(SPILLED_BYTES),
        }
    }
}

fn add(atomic: &AtomicU64, counter: &Counter, n: u64) {
    if n > 0 {
        SinkMetrics::add(atomic, n);
        counter.increment(n);
    }
}

impl WorkerMetrics {
    /// The process-wide counters this worker adds to.
    pub fn shared(&self) -> &Arc<SinkMetrics> {
        &self.shared
    }
    /// The worker these counters are labelled with.
    pub fn worker(&self) -> usize {
        self.worker
    }
    /// Adds `n` updates received.
    pub fn updates_in(&self, n: u64) {
        add(&self.shared.updates_in, &self.updates_in, n);
    }
    /// Adds `n` updates dropped as committed by an earlier run.
    pub fn updates_already_committed(&self, n: u64) {
        add(&self.shared.updates_already_committed, &self.updates_already_committed, n);
    }
    /// Adds `n` changes handed to the writer.
    pub fn changes_out(&self, n: u64) {
        add(&self.shared.changes_out, &self.changes_out, n);
    }
    /// Adds `n` records handed to the target.
    pub fn records_out(&self, n: u64) {
        add(&self.shared.records_out, &self.records_out, n);
    }
    /// Adds `n` encoded bytes handed to the target.
    pub fn bytes_out(&self, n: u64) {
        add(&self.shared.bytes_out, &self.bytes_out, n);
    }
    /// Adds `n` commits.
    pub fn commits(&self, n: u64) {
        add(&self.shared.commits, &self.commits, n);
    }
    /// Records one commit's latency.
    pub fn commit_took(&self, latency: Duration) {
        self.commit_seconds.record(latency.as_secs_f64());
        SinkMetrics::add(&self.shared.commit_micros, latency.as_micros() as u64);
    }
    /// Records the time a coordinated writer took to prepare its share of one commit.
    pub fn prepare_took(&self, took: Duration) {
        self.prepare_seconds.record(took.as_secs_f64());
        SinkMetrics::add(&self.shared.prepare_micros, took.as_micros() as u64);
    }
    /// Adds `n` data files committed.
    pub fn files_committed(&self, n: u64) {
        add(&self.shared.files_committed, &self.files_committed, n);
    }
    /// Adds `n` small data files committed.
    pub fn small_files(&self, n: u64) {
        add(&self.shared.small_files, &self.small_files, n);
    }
    /// Adds `n` key violations that failed the sink.
    pub fn violations_failed(&self, n: u64) {
        add(&self.shared.violations_failed, &self.violations_failed, n);
    }
    /// Adds `n` key violations skipped.
    pub fn violations_skipped(&self, n: u64) {
        add(&self.shared.violations_skipped, &self.violations_skipped, n);
    }
    /// Adds `n` key violations dead-lettered.
    pub fn violations_dead_lettered(&self, n: u64) {
        add(&self.shared.violations_dead_lettered, &self.violations_dead_lettered, n);
    }
    /// Adds an error that stopped a worker (or the committer).
    pub fn error(&self) {
        add(&self.shared.errors, &self.errors, 1);
    }
    /// Adds `n` retried attempts.
    pub fn retries(&self, n: u64) {
        add(&self.shared.retries, &self.retries, n);
    }
    /// Adds `n` spilled updates.
    pub fn spilled_updates(&self, n: u64) {
        add(&self.shared.spilled_updates, &self.spilled_updates, n);
    }
    /// Adds `n` spilled bytes.
    pub fn spilled_bytes(&self, n: u64) {
        add(&self.shared.spilled_bytes, &self.spilled_bytes, n);
    }
}
