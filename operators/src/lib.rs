//! Timely/differential glue for `differential-sinks`: routing, buffering and the commit protocol.
//!
//! This crate knows timely and differential dataflow and nothing about any target system. Its one
//! operator, [`SinkExt::sink_with`] (and [`SinkExt::sink_coordinated`] for targets where one commit
//! must cover all workers), takes a collection of `(V, T, ±1)` updates — or, through
//! [`KeyedSinkExt`], of `(key, value)` pairs keyed where they were produced, the value perhaps the
//! row already encoded — and
//!
//! * routes each update to the worker that owns its primary key ([`route_hash`]);
//! * buffers updates by time within a memory budget ([`BufferConfig`]; past it, sorted runs are
//!   spilled to local files — [`spill`] — and merged back), and, once the input frontier passes a
//!   time, consolidates them into
//!   one [`Change`] per key (`before`, `after`) — or a [`Violation`] of the key, handled by the
//!   [`ViolationPolicy`] — and hands them to a [`SinkWriter`] in time order;
//! * commits on a cadence ([`CommitPolicy`]), telling the writer which frontier becomes durable;
//! * on start, asks the writer which frontier an earlier run committed and drops updates before
//!   it, so a restarted dataflow delivers each change once;
//! * returns a stream whose frontier is the committed frontier, to `probe()`;
//! * counts what it does in [`SinkMetrics`] and, labelled by sink and worker, in the `metrics`
//!   facade ([`worker_metrics`] lists the names), and wraps each commit in a `tracing` span.
//!
//! The writer contract is in [`writer`]; the pure consolidation step is [`changes_from_updates`].

#![warn(missing_docs)]

mod buffer;
pub mod change;
pub mod config;
mod coordinate;
pub mod crash;
mod finish;
pub mod handle;
mod lag;
mod merge;
pub mod metrics;
pub mod route;
pub mod sink;
mod sink_ext;
pub mod spill;
pub mod time;
pub mod worker_metrics;
pub mod writer;

pub use change::{
    changes_from_ordered, changes_from_unkeyed_updates, changes_from_updates, chunk_start, consolidate_by_key,
    order_by_key, unkeyed_chunk, Change, ChangeKind, Violation, ViolationPolicy,
};
pub use config::{
    default_spill_dir, BufferConfig, CommitPolicy, SinkConfig, DEFAULT_BUFFER_MAX_BYTES, DEFAULT_WRITE_CHUNK,
};
pub use crash::crash_point;
pub use handle::{Committed, SinkHandle};
pub use metrics::{MetricsSnapshot, SinkMetrics};
pub use route::{route_hash, routing_fingerprint, Fnv64, StableHasher, ROUTING_HASH_VERSION};
pub use sink_ext::{KeyedSinkExt, SinkExt, SinkOutput};
pub use time::{Frontier, SinkTime};
pub use worker_metrics::{describe_metrics, WorkerMetrics};
pub use writer::{
    reroutes, resolve_resume, Committer, CoordinatedWriter, Layout, Prepared, ResumePoint, SinkWriter, WorkerContext,
    WorkerProgress,
};

/// Failures the operator itself detects; writers' error types convert from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorError {
    /// A key's updates at one time were not a single insert, update or delete, and the policy is
    /// to fail.
    KeyViolation {
        /// The sink.
        sink: String,
        /// The time of the updates.
        time: String,
        /// Which key and what it received.
        detail: String,
    },
    /// The input's first time lies beyond the frontier an earlier run committed: the updates in
    /// between were compacted into later times and cannot be told apart from delivered ones.
    ResumeGap {
        /// The sink.
        sink: String,
        /// The frontier the target holds.
        committed: String,
        /// The input's frontier when the sink started.
        input_starts: String,
    },
    /// The recorded progress cannot be resumed safely (e.g. a different number of workers).
    ResumeConflict {
        /// What is wrong and what to do.
        message: String,
    },
    /// Updates over the memory budget could not be spilled to disk, or read back.
    Spill {
        /// The sink.
        sink: String,
        /// What failed, with the path and the option to change.
        message: String,
    },
    /// Another worker (or the committer) of a coordinated sink failed, which stops the sink on
    /// every worker; this worker's own writer did nothing wrong.
    PeerFailed {
        /// The sink.
        sink: String,
        /// Who failed: `worker N` or `the committer on worker 0`.
        source: String,
        /// Its error.
        message: String,
    },
}

impl std::fmt::Display for OperatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorError::KeyViolation { sink, time, detail } => write!(
                f,
                "sink `{sink}`: primary key violation at time {time}: {detail}; declare a key that is unique in the \
                 collection, or set the violation policy to skip or dead-letter"
            ),
            OperatorError::ResumeGap { sink, committed, input_starts } => write!(
                f,
                "sink `{sink}`: the target already holds every change before {committed}, but the input starts at \
                 {input_starts}; the changes in between cannot be told apart from delivered ones. Replay the input \
                 from a time at or before {committed}, or write to a fresh target"
            ),
            OperatorError::ResumeConflict { message } => write!(f, "cannot resume: {message}"),
            OperatorError::Spill { sink, message } => write!(f, "sink `{sink}`: {message}"),
            OperatorError::PeerFailed { sink, source, message } => {
                write!(f, "sink `{sink}`: {source} failed, which stops the coordinated sink on every worker: {message}")
            }
        }
    }
}

impl std::error::Error for OperatorError {}
