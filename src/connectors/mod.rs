//! Connectors: one folder per target system, each behind its cargo feature, each of one shape —
//! `mod.rs` (the module's design note), `config.rs` (options, parsed from the options map and
//! checked at creation) and `writer.rs` (delivery).
//!
//! Message-oriented targets implement [`RecordWriter`] and receive encoded [`RecordBatch`]es;
//! [`EnvelopeWriter`] turns the operator's per-key changes into those batches through the
//! envelope and encoder, so every such connector gets the three formats and both key encodings
//! for free.

use crate::config::SinkSpec;
use crate::encode::{now_millis, JsonEncoder};
use crate::envelope::{Emission, Format, Op};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::options::Options;
use crate::record::RecordBatch;
use differential_sinks_operators::{Change, Frontier, SinkTime, SinkWriter, WorkerContext};
use serde::Serialize;
use std::marker::PhantomData;

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "test-utils")]
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "pulsar")]
pub mod pulsar;

/// The settings of one connector, selected by the `connector` option.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConnectorConfig {
    /// JSON lines files in a directory (`connector = file`).
    #[cfg(feature = "file")]
    File(file::FileConfig),
    /// An in-memory target for tests (`connector = memory`).
    #[cfg(feature = "test-utils")]
    Memory(memory::MemoryConfig),
    /// NATS subjects and JetStream streams (`connector = nats`).
    #[cfg(feature = "nats")]
    Nats(nats::NatsConfig),
    /// Amazon Kinesis data streams (`connector = kinesis`).
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisConfig),
    /// Pulsar topics (`connector = pulsar`).
    #[cfg(feature = "pulsar")]
    Pulsar(pulsar::PulsarConfig),
}

/// The connectors this build knows, for error messages.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "file") {
        v.push("file");
    }
    if cfg!(feature = "test-utils") {
        v.push("memory");
    }
    if cfg!(feature = "nats") {
        v.push("nats");
    }
    if cfg!(feature = "kinesis") {
        v.push("kinesis");
    }
    if cfg!(feature = "pulsar") {
        v.push("pulsar");
    }
    v
}

impl ConnectorConfig {
    /// Parses the connector's own options, consuming them from `opts`.
    pub fn from_options(connector: &str, opts: &mut Options) -> Result<Self> {
        let _ = &opts;
        match connector {
            #[cfg(feature = "file")]
            "file" => Ok(ConnectorConfig::File(file::FileConfig::from_options(opts)?)),
            #[cfg(feature = "test-utils")]
            "memory" => Ok(ConnectorConfig::Memory(memory::MemoryConfig::from_options(opts)?)),
            #[cfg(feature = "nats")]
            "nats" => Ok(ConnectorConfig::Nats(nats::NatsConfig::from_options(opts)?)),
            #[cfg(feature = "kinesis")]
            "kinesis" => Ok(ConnectorConfig::Kinesis(kinesis::KinesisConfig::from_options(opts)?)),
            #[cfg(feature = "pulsar")]
            "pulsar" => Ok(ConnectorConfig::Pulsar(pulsar::PulsarConfig::from_options(opts)?)),
            other => Err(Error::config(format!(
                "option `connector` = `{other}` is not available in this build (available: {}); \
                 enable the cargo feature of the same name",
                available().join(", ")
            ))),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &'static str {
        match *self {
            #[cfg(feature = "file")]
            ConnectorConfig::File(_) => "file",
            #[cfg(feature = "test-utils")]
            ConnectorConfig::Memory(_) => "memory",
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(_) => "nats",
            #[cfg(feature = "kinesis")]
            ConnectorConfig::Kinesis(_) => "kinesis",
            #[cfg(feature = "pulsar")]
            ConnectorConfig::Pulsar(_) => "pulsar",
        }
    }

    /// True if the target defines keys itself (a table's primary key), so a keyed format may
    /// take them from there instead of a declared `primary_key`.
    pub fn has_own_keys(&self) -> bool {
        false
    }

    /// Connector-specific checks of the whole spec, at creation.
    pub(crate) fn validate(&self, spec: &SinkSpec) -> Result<()> {
        let _ = spec;
        match self {
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(c) => c.validate(spec),
            _ => Ok(()),
        }
    }

    /// Opens this worker's writer.
    pub(crate) fn open_writer<V, T>(
        &self,
        spec: &SinkSpec,
        ctx: WorkerContext,
    ) -> Result<Box<dyn SinkWriter<Key, V, T, Error = Error>>>
    where
        V: Serialize + 'static,
        T: SinkTime,
    {
        let _ = ctx;
        match self {
            #[cfg(feature = "file")]
            ConnectorConfig::File(c) => Ok(Box::new(EnvelopeWriter::new(spec, file::FileWriter::open(c, spec, ctx)?))),
            #[cfg(feature = "test-utils")]
            ConnectorConfig::Memory(c) => Ok(Box::new(EnvelopeWriter::new(spec, c.target().writer(spec.name())))),
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(c) => {
                Ok(Box::new(EnvelopeWriter::new(spec, nats::open(c, spec, Default::default())?)))
            }
            #[cfg(feature = "kinesis")]
            ConnectorConfig::Kinesis(c) => Ok(Box::new(EnvelopeWriter::new(spec, kinesis::open(c, spec, ctx)?))),
            #[cfg(feature = "pulsar")]
            ConnectorConfig::Pulsar(c) => Ok(Box::new(EnvelopeWriter::new(spec, pulsar::open(c, spec, ctx)?))),
        }
    }
}

/// A target that receives encoded records. See [`differential_sinks_operators::writer`] for the
/// call order and what `commit` must guarantee.
pub trait RecordWriter: 'static {
    /// The frontier this worker committed in an earlier run.
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>>;
    /// Delivers one time's records (in key order).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Makes everything written durable together with `upper`.
    fn commit(&mut self, upper: Frontier<u64>) -> Result<()>;
}

/// Turns per-key changes into encoded records for a [`RecordWriter`].
pub struct EnvelopeWriter<W, V> {
    inner: W,
    format: Format,
    keyed: bool,
    encoder: JsonEncoder,
    batch: RecordBatch,
    metrics: std::sync::Arc<differential_sinks_operators::SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<W: RecordWriter, V: Serialize> EnvelopeWriter<W, V> {
    /// Wraps `inner` with `spec`'s format and encoding.
    pub fn new(spec: &SinkSpec, inner: W) -> Self {
        let schema = if spec.connect_schema { spec.schema.as_ref() } else { None };
        EnvelopeWriter {
            inner,
            format: spec.format.clone(),
            keyed: spec.primary_key.is_some() || spec.key_by_function,
            encoder: JsonEncoder::new(&spec.name, schema),
            batch: RecordBatch::default(),
            metrics: std::sync::Arc::clone(&spec.metrics),
            _row: PhantomData,
        }
    }

    /// Encodes `changes` of `time` into `batch` (public for benchmarks).
    pub fn encode(&mut self, time: u64, changes: &[Change<Key, V>]) -> Result<&RecordBatch> {
        self.batch.reset(time);
        let ts_ms = now_millis();
        let (format, encoder, batch, keyed) = (&self.format, &self.encoder, &mut self.batch, self.keyed);
        for change in changes {
            let key = change.key.bytes()?;
            let mut failed = None;
            format.emit(change, |emission| {
                if failed.is_some() {
                    return;
                }
                let r = match &emission {
                    Emission::Tombstone => batch.push::<fn(&mut Vec<u8>) -> Result<()>>(key, None, Op::Delete),
                    // Without a key, the key bytes are the row's JSON: reuse them as the value.
                    Emission::Row { op, .. } if !keyed => batch.push(
                        b"",
                        Some(|out: &mut Vec<u8>| {
                            out.extend_from_slice(key);
                            Ok(())
                        }),
                        *op,
                    ),
                    Emission::Row { op, .. } | Emission::Debezium { op, .. } => {
                        let op = *op;
                        batch.push(key, Some(|out: &mut Vec<u8>| encoder.emission(&emission, time, ts_ms, out)), op)
                    }
                };
                if let Err(e) = r {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(&self.batch)
    }
}

impl<W: RecordWriter, V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for EnvelopeWriter<W, V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let f = self.inner.resume(ctx)?;
        Frontier::<T>::from_u64(f.to_u64()).ok_or_else(|| {
            Error::new(
                ErrorKind::Resume,
                format!("the committed frontier {f:?} does not fit the dataflow's timestamp type"),
            )
        })
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        self.encode(time.to_u64(), changes)?;
        self.inner.write(&self.batch)?;
        differential_sinks_operators::SinkMetrics::add(&self.metrics.records_out, self.batch.len() as u64);
        differential_sinks_operators::SinkMetrics::add(&self.metrics.bytes_out, self.batch.bytes() as u64);
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let up = match upper.time() {
            Some(t) => Frontier::at(t.to_u64()),
            None => Frontier::complete(),
        };
        self.inner.commit(up)
    }
}
