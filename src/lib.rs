//! # differential-sinks
//!
//! Sink operators that deliver the output of timely/differential dataflow programs to the
//! systems people run, as append-only, upsert or Debezium records keyed by a declared primary
//! key, committed as the dataflow's frontier advances — exactly once wherever the target allows.
//!
//! ```text
//!  Collection<(V, T, ±1)> ──► on the producing worker: the key (and, for a JSON target, the
//!                             row's JSON, encoded once: encoded_row)
//!                         ──► operators: route by key, consolidate per time, commit cadence
//!                                │ per-key changes {key, before, after}
//!                                ▼
//!                        envelope (append-only / upsert / Debezium) ──► encode (JSON, …)
//!                                │ records
//!                                ▼
//!                        connectors/<name>: write, commit(frontier) atomically with the data
//! ```
//!
//! * [`SinkSpec`] — what to deliver where: built in code or parsed from RisingWave-style options.
//! * [`SinkCollection::sink`] — ends a collection in the sink; `probe()` the returned stream to
//!   know what is durable.
//! * [`envelope`], [`encode`], [`key`] — the pure parts, separately tested and benchmarked.
//! * [`connectors`] — one module per target, each behind its cargo feature.
//! * The `dsink` binary replays a JSON-lines change log into any sink.

#![warn(missing_docs)]

/// Moved to [`encode::arrow`].
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
#[deprecated(note = "moved to differential_sinks::encode::arrow")]
pub mod arrow_rows {
    pub use crate::encode::arrow::*;
}
mod byte_string;
pub mod change_log;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod encode;
pub mod encoded_row;
pub mod envelope;
pub mod error;
pub mod json_row;
pub mod key;
pub mod options;
mod producer;
pub mod record;
pub mod row;
/// Moved to [`connectors::lakehouse`] (the key index) and [`encode::arrow`] (the key encoder).
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
#[deprecated(note = "moved to differential_sinks::connectors::lakehouse and differential_sinks::encode::arrow")]
pub mod row_keys {
    pub use crate::connectors::lakehouse::key_index::*;
    pub use crate::connectors::lakehouse::{check_format, read_columns};
    pub use crate::encode::arrow::{split_changes, upsert_keys, KeyEncoder};
}
pub mod schema;
pub mod secret;
pub mod settings;
pub mod sink;
pub mod stable_hash;
#[cfg(any(feature = "kafka", feature = "nats"))]
pub(crate) mod tls;

pub use config::{SinkSpec, SinkSpecBuilder};
pub use connectors::{Connector, ConnectorConfig, RecordWriter};
pub use encoded_row::EncodedRow;
pub use envelope::Format;
pub use error::{Error, ErrorKind, Result};
pub use json_row::JsonRow;
pub use options::Options;
pub use record::{Record, RecordBatch};
pub use schema::{ColumnType, Schema};
pub use settings::SinkSettings;
pub use sink::{Row, SinkCollection};

/// The dataflow side, re-exported.
pub use differential_sinks_operators as operators;
pub use differential_sinks_operators::{
    describe_metrics, Change, CommitPolicy, Committed, Frontier, MetricsSnapshot, SinkHandle, SinkMetrics, SinkOutput,
    SinkTime, ViolationPolicy, WorkerMetrics,
};
