//! The part of a sink's definition every connector sees: name, format, key, schema, cadence and
//! metrics — everything in a [`SinkSpec`](crate::SinkSpec) except which connector it names.
//!
//! Connectors import this type and never the full spec, so the spec (which holds the connector's
//! settings) sits above the connectors and the layers import in one direction only:
//! `config` → `connectors` → `settings`.

use crate::envelope::Format;
use crate::key::KeyEncoding;
use crate::schema::Schema;
use differential_sinks_operators::{
    BufferConfig, CommitPolicy, SinkMetrics, ViolationPolicy, WorkerContext, WorkerMetrics,
};
use std::sync::Arc;

/// The common settings of a sink, validated with its [`SinkSpec`](crate::SinkSpec).
#[derive(Clone, Debug)]
pub struct SinkSettings {
    pub(crate) name: String,
    pub(crate) format: Format,
    pub(crate) primary_key: Option<Vec<String>>,
    pub(crate) key_by_function: bool,
    pub(crate) key_encoding: KeyEncoding,
    pub(crate) schema: Option<Schema>,
    pub(crate) connect_schema: bool,
    pub(crate) violations: ViolationPolicy,
    pub(crate) commit: CommitPolicy,
    pub(crate) metrics: Arc<SinkMetrics>,
    /// This worker's counters, once the settings were bound to a worker ([`Self::for_worker`]).
    pub(crate) worker_metrics: Option<WorkerMetrics>,
    pub(crate) input_starts_at: Option<u64>,
    pub(crate) write_chunk: usize,
    pub(crate) buffer: BufferConfig,
}

impl SinkSettings {
    /// The defaults of a sink called `name`: append-only, no key, JSON keys, no schema, commit at
    /// every frontier advance.
    pub fn new(name: impl Into<String>) -> Self {
        SinkSettings {
            name: name.into(),
            format: Format::AppendOnly { force: false },
            primary_key: None,
            key_by_function: false,
            key_encoding: KeyEncoding::Json,
            schema: None,
            connect_schema: false,
            violations: ViolationPolicy::Fail,
            commit: CommitPolicy::default(),
            metrics: Arc::new(SinkMetrics::default()),
            worker_metrics: None,
            input_starts_at: None,
            write_chunk: differential_sinks_operators::DEFAULT_WRITE_CHUNK,
            buffer: BufferConfig::default(),
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }
    /// The declared primary key columns.
    pub fn primary_key(&self) -> Option<&[String]> {
        self.primary_key.as_deref()
    }
    /// Whether records carry a key: declared columns or a key function.
    pub fn keyed(&self) -> bool {
        self.primary_key.is_some() || self.key_by_function
    }
    /// The counters every worker of this process updates.
    pub fn metrics(&self) -> &Arc<SinkMetrics> {
        &self.metrics
    }
    /// This worker's counters: they add to [`metrics`](Self::metrics) and to the `metrics` facade,
    /// labelled with the sink's name and the worker the connector was opened for (worker 0 for
    /// settings not opened for a worker, as in a connector's own tests).
    pub fn worker_metrics(&self) -> WorkerMetrics {
        match &self.worker_metrics {
            Some(m) => m.clone(),
            None => self.metrics.for_worker(&self.name, 0),
        }
    }
    /// These settings for the connector of worker `ctx`, with that worker's counters registered.
    pub(crate) fn for_worker(&self, ctx: WorkerContext) -> SinkSettings {
        let mut s = self.clone();
        s.worker_metrics = Some(self.metrics.for_worker(&self.name, ctx.index));
        s
    }
    /// The declared schema.
    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_ref()
    }
    /// The key encoding.
    pub fn key_encoding(&self) -> &KeyEncoding {
        &self.key_encoding
    }
    /// The memory budget for undelivered times, and where updates over it are spilled.
    pub fn buffer(&self) -> &BufferConfig {
        &self.buffer
    }
    /// The commit cadence.
    pub fn commit_policy(&self) -> &CommitPolicy {
        &self.commit
    }
}

#[cfg(test)]
impl SinkSettings {
    /// Settings for a connector's unit test: `format`, keyed by `primary_key` when given.
    /// (Only the table connectors' tests use it: unused in a build with none of them.)
    #[cfg_attr(
        not(any(
            feature = "cassandra",
            feature = "clickhouse",
            feature = "doris",
            feature = "elasticsearch",
            feature = "jdbc",
            feature = "kafka",
            feature = "deltalake",
            feature = "iceberg"
        )),
        allow(dead_code)
    )]
    pub(crate) fn for_test(format: Format, primary_key: &[&str], schema: Option<Schema>) -> Self {
        let mut s = SinkSettings::new("s");
        s.format = format;
        if !primary_key.is_empty() {
            s.primary_key = Some(primary_key.iter().map(|c| c.to_string()).collect());
        }
        s.schema = schema;
        s
    }
}
