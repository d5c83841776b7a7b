//! The sink operator's settings: its name, commit cadence, key-violation policy and counters.

use crate::change::ViolationPolicy;
use crate::metrics::SinkMetrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When a worker commits what it has written.
///
/// A commit happens once the input frontier has passed at least one new time and either
/// `max_changes` changes are waiting or `interval` has elapsed since the last commit; the end of
/// the input always commits. The default (`interval` zero) commits at every frontier advance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitPolicy {
    /// Commit as soon as this many changes are written but uncommitted.
    pub max_changes: Option<u64>,
    /// Commit when this much time has passed since the previous commit.
    pub interval: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy { max_changes: None, interval: Duration::ZERO }
    }
}

/// The operator's settings.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// The sink's name (in operator names, logs, errors and progress records).
    pub name: String,
    /// The commit cadence.
    pub commit: CommitPolicy,
    /// What to do with key violations.
    pub violations: ViolationPolicy,
    /// Whether the key is a primary key. When false (an append-only sink without a key), the key
    /// identifies the whole row and a multiplicity of `n` is delivered as `n` changes.
    pub keyed: bool,
    /// Counters, shared by all workers that hold a clone.
    pub metrics: Arc<SinkMetrics>,
    /// The time the input's history starts at, if not the beginning: an input restored from a
    /// snapshot taken at time `s` has every earlier change folded into `s`. A restart whose
    /// committed frontier lies before `s` is refused, since delivered and undelivered changes
    /// are mixed in the snapshot. `None` declares that the input replays from the beginning.
    pub input_starts_at: Option<u64>,
    /// At most about this many changes are handed to the writer in one `write` call; a larger
    /// time is delivered in several calls (chunks in key order). Default [`DEFAULT_WRITE_CHUNK`].
    pub write_chunk: usize,
    /// How much a worker holds in memory for times not yet delivered, and where the rest goes.
    pub buffer: BufferConfig,
    /// How keys are routed and the target written, passed to the writers in their
    /// [`WorkerContext`](crate::WorkerContext) (default: routing not recorded, format 1).
    pub layout: crate::Layout,
}

/// The operator's memory budget for undelivered times.
///
/// Each worker counts the updates it holds for times the input frontier has not passed yet (and
/// the time it is delivering): their inline size, their vector's spare capacity, and their
/// encoded (bincode) size as the estimate of what they own on the heap, sampled once per input
/// batch. Past `max_bytes`, the largest times are sorted into runs and spilled to files under
/// `spill_dir` until half the budget is free; a time is merged back from its runs, chunk by chunk,
/// when the frontier passes it. The estimate counts what a spilled run would hold: rows that
/// own much more heap than they encode to (say, JSON trees of small maps) take correspondingly
/// more memory than the budget says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    /// The budget per worker, in bytes. Default [`DEFAULT_BUFFER_MAX_BYTES`].
    pub max_bytes: usize,
    /// Where spill files go (a subdirectory per sink and worker is made). Default
    /// `<system temp dir>/differential-sinks-spill`.
    pub spill_dir: PathBuf,
}

/// The default [`BufferConfig::max_bytes`]: 256 MiB per worker.
pub const DEFAULT_BUFFER_MAX_BYTES: usize = 256 << 20;

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { max_bytes: DEFAULT_BUFFER_MAX_BYTES, spill_dir: default_spill_dir() }
    }
}

/// The default [`BufferConfig::spill_dir`].
pub fn default_spill_dir() -> PathBuf {
    std::env::temp_dir().join("differential-sinks-spill")
}

/// The default [`SinkConfig::write_chunk`].
pub const DEFAULT_WRITE_CHUNK: usize = 16 * 1024;

impl SinkConfig {
    /// Defaults for a sink called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SinkConfig {
            name: name.into(),
            commit: CommitPolicy::default(),
            violations: ViolationPolicy::default(),
            keyed: true,
            input_starts_at: None,
            write_chunk: DEFAULT_WRITE_CHUNK,
            buffer: BufferConfig::default(),
            metrics: Arc::new(SinkMetrics::default()),
            layout: crate::Layout::default(),
        }
    }
}
