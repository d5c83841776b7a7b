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

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "clickhouse")]
pub mod clickhouse;
#[cfg(feature = "deltalake")]
pub mod deltalake;
#[cfg(feature = "doris")]
pub mod doris;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
#[cfg(feature = "file")]
pub mod file;
#[cfg(any(feature = "clickhouse", feature = "elasticsearch", feature = "doris"))]
pub mod http;
#[cfg(feature = "iceberg")]
pub mod iceberg;
#[cfg(feature = "jdbc")]
pub mod jdbc;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(any(feature = "kinesis", feature = "pulsar"))]
pub mod local_progress;
#[cfg(feature = "test-utils")]
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "pulsar")]
pub mod pulsar;
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
pub mod s3;

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
    /// A PostgreSQL / MySQL / MariaDB / TiDB table (`connector = jdbc`).
    #[cfg(feature = "jdbc")]
    Jdbc(Box<jdbc::JdbcConfig>),
    /// A ClickHouse MergeTree table over HTTP (`connector = clickhouse`).
    #[cfg(feature = "clickhouse")]
    ClickHouse(clickhouse::ClickHouseConfig),
    /// An Elasticsearch / OpenSearch index over `_bulk` (`connector = elasticsearch`).
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(elasticsearch::ElasticsearchConfig),
    /// An Apache Doris table via Stream Load (`connector = doris`).
    #[cfg(feature = "doris")]
    Doris(doris::DorisConfig),
    /// A Cassandra / ScyllaDB table (`connector = cassandra`).
    #[cfg(feature = "cassandra")]
    Cassandra(cassandra::CassandraConfig),
    /// Kafka topics (`connector = kafka`).
    #[cfg(feature = "kafka")]
    Kafka(Box<kafka::KafkaConfig>),
    /// NATS subjects and JetStream streams (`connector = nats`).
    #[cfg(feature = "nats")]
    Nats(nats::NatsConfig),
    /// Amazon Kinesis data streams (`connector = kinesis`).
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisConfig),
    /// Pulsar topics (`connector = pulsar`).
    #[cfg(feature = "pulsar")]
    Pulsar(pulsar::PulsarConfig),
    /// An append-only Delta Lake table (`connector = deltalake`).
    #[cfg(feature = "deltalake")]
    DeltaLake(deltalake::DeltaLakeConfig),
    /// An append-only Apache Iceberg table in a SQL catalog (`connector = iceberg`).
    #[cfg(feature = "iceberg")]
    Iceberg(iceberg::IcebergConfig),
    /// A target of the application's own: any [`RecordWriter`], one per worker, with the
    /// library's formats, encodings, routing and commit protocol (built in code only).
    Custom(CustomConnector),
}

/// Makes one [`RecordWriter`] per worker for [`ConnectorConfig::Custom`].
pub type WriterFactory = dyn Fn(WorkerContext) -> Result<Box<dyn RecordWriter>> + Send + Sync;

/// A user-supplied target: a name (for messages) and a per-worker writer factory.
#[derive(Clone)]
pub struct CustomConnector {
    name: &'static str,
    factory: std::sync::Arc<WriterFactory>,
}

impl CustomConnector {
    /// A target called `name` whose writers `factory` makes.
    ///
    /// ```
    /// use differential_sinks::connectors::{CustomConnector, RecordWriter};
    /// use differential_sinks::operators::{Frontier, WorkerContext};
    /// use differential_sinks::{RecordBatch, SinkSpec};
    ///
    /// struct Stdout;
    /// impl RecordWriter for Stdout {
    ///     fn resume(&mut self, _: WorkerContext) -> differential_sinks::Result<Frontier<u64>> { Ok(Frontier::minimum()) }
    ///     fn write(&mut self, batch: &RecordBatch) -> differential_sinks::Result<()> {
    ///         for r in batch.iter() { println!("{}", String::from_utf8_lossy(r.value.unwrap_or(b"null"))); }
    ///         Ok(())
    ///     }
    ///     fn commit(&mut self, _: Frontier<u64>) -> differential_sinks::Result<()> { Ok(()) }
    /// }
    /// let target = CustomConnector::new("stdout", |_ctx| Ok(Box::new(Stdout) as Box<dyn RecordWriter>));
    /// let spec = SinkSpec::builder("print", target).upsert().primary_key(["id"]).build().unwrap();
    /// assert_eq!(spec.connector().name(), "stdout");
    /// ```
    pub fn new<F>(name: &'static str, factory: F) -> Self
    where
        F: Fn(WorkerContext) -> Result<Box<dyn RecordWriter>> + Send + Sync + 'static,
    {
        CustomConnector { name, factory: std::sync::Arc::new(factory) }
    }
}

impl std::fmt::Debug for CustomConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomConnector({})", self.name)
    }
}

impl From<CustomConnector> for ConnectorConfig {
    fn from(c: CustomConnector) -> Self {
        ConnectorConfig::Custom(c)
    }
}

impl RecordWriter for Box<dyn RecordWriter> {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        (**self).resume(ctx)
    }
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        (**self).write(batch)
    }
    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        (**self).commit(upper)
    }
    fn pipelined(&self) -> bool {
        (**self).pipelined()
    }
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        (**self).durable(wait)
    }
}

/// A frontier read back from a target, in the dataflow's time type; a `Resume` error if it does
/// not fit that type.
pub(crate) fn resumed_frontier<T: SinkTime>(f: Frontier<u64>) -> Result<Frontier<T>> {
    Frontier::<T>::from_u64_frontier(f).ok_or_else(|| {
        Error::new(
            ErrorKind::Resume,
            format!("the committed frontier {f:?} does not fit the dataflow's timestamp type"),
        )
    })
}

/// How many of a lakehouse commit's data files (by size) are small: below three quarters of the
/// file target size, Iceberg's default `min-file-size-bytes` for compaction. Many small files
/// slow every reader down; a longer commit cadence (`commit.interval.ms`, `commit.max_changes`)
/// or compaction fixes them. Committers record the count in the commit and, once it is
/// committed, in [`SinkMetrics::files_committed`](differential_sinks_operators::SinkMetrics) and
/// `small_files`.
#[cfg(any(feature = "deltalake", feature = "iceberg"))]
pub(crate) fn small_files(sizes: impl IntoIterator<Item = u64>, target: usize) -> u64 {
    let below = (target as u64).saturating_mul(3) / 4;
    sizes.into_iter().filter(|s| *s < below).count() as u64
}

/// The connectors this build knows, for error messages.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    for (on, name) in [
        (cfg!(feature = "file"), "file"),
        (cfg!(feature = "test-utils"), "memory"),
        (cfg!(feature = "jdbc"), "jdbc"),
        (cfg!(feature = "clickhouse"), "clickhouse"),
        (cfg!(feature = "elasticsearch"), "elasticsearch"),
        (cfg!(feature = "doris"), "doris"),
        (cfg!(feature = "cassandra"), "cassandra"),
        (cfg!(feature = "kafka"), "kafka"),
        (cfg!(feature = "nats"), "nats"),
        (cfg!(feature = "kinesis"), "kinesis"),
        (cfg!(feature = "pulsar"), "pulsar"),
        (cfg!(feature = "deltalake"), "deltalake"),
        (cfg!(feature = "iceberg"), "iceberg"),
    ] {
        if on {
            v.push(name);
        }
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
            #[cfg(feature = "jdbc")]
            "jdbc" => Ok(ConnectorConfig::Jdbc(Box::new(jdbc::JdbcConfig::from_options(opts)?))),
            #[cfg(feature = "clickhouse")]
            "clickhouse" => Ok(ConnectorConfig::ClickHouse(clickhouse::ClickHouseConfig::from_options(opts)?)),
            #[cfg(feature = "elasticsearch")]
            "elasticsearch" | "opensearch" => {
                Ok(ConnectorConfig::Elasticsearch(elasticsearch::ElasticsearchConfig::from_options(opts)?))
            }
            #[cfg(feature = "doris")]
            "doris" => Ok(ConnectorConfig::Doris(doris::DorisConfig::from_options(opts)?)),
            #[cfg(feature = "cassandra")]
            "cassandra" | "scylladb" => Ok(ConnectorConfig::Cassandra(cassandra::CassandraConfig::from_options(opts)?)),
            #[cfg(feature = "kafka")]
            "kafka" => Ok(ConnectorConfig::Kafka(Box::new(kafka::KafkaConfig::from_options(opts)?))),
            #[cfg(feature = "nats")]
            "nats" => Ok(ConnectorConfig::Nats(nats::NatsConfig::from_options(opts)?)),
            #[cfg(feature = "kinesis")]
            "kinesis" => Ok(ConnectorConfig::Kinesis(kinesis::KinesisConfig::from_options(opts)?)),
            #[cfg(feature = "pulsar")]
            "pulsar" => Ok(ConnectorConfig::Pulsar(pulsar::PulsarConfig::from_options(opts)?)),
            #[cfg(feature = "deltalake")]
            "deltalake" => Ok(ConnectorConfig::DeltaLake(deltalake::DeltaLakeConfig::from_options(opts)?)),
            #[cfg(feature = "iceberg")]
            "iceberg" => Ok(ConnectorConfig::Iceberg(iceberg::IcebergConfig::from_options(opts)?)),
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
            #[cfg(feature = "jdbc")]
            ConnectorConfig::Jdbc(_) => "jdbc",
            ConnectorConfig::Custom(ref c) => c.name,
            #[cfg(feature = "clickhouse")]
            ConnectorConfig::ClickHouse(_) => "clickhouse",
            #[cfg(feature = "elasticsearch")]
            ConnectorConfig::Elasticsearch(_) => "elasticsearch",
            #[cfg(feature = "doris")]
            ConnectorConfig::Doris(_) => "doris",
            #[cfg(feature = "cassandra")]
            ConnectorConfig::Cassandra(_) => "cassandra",
            #[cfg(feature = "kafka")]
            ConnectorConfig::Kafka(_) => "kafka",
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(_) => "nats",
            #[cfg(feature = "kinesis")]
            ConnectorConfig::Kinesis(_) => "kinesis",
            #[cfg(feature = "pulsar")]
            ConnectorConfig::Pulsar(_) => "pulsar",
            #[cfg(feature = "deltalake")]
            ConnectorConfig::DeltaLake(_) => "deltalake",
            #[cfg(feature = "iceberg")]
            ConnectorConfig::Iceberg(_) => "iceberg",
        }
    }

    /// True if the target defines keys itself (a table's primary key), so a keyed format may
    /// take them from there instead of a declared `primary_key`.
    pub fn has_own_keys(&self) -> bool {
        // A table has a primary key; the jdbc connector checks the declared key against it and
        // names the table's key in its error when `primary_key` is missing.
        cfg!(feature = "jdbc") && self.name() == "jdbc"
    }

    /// Connector-specific checks of the whole spec, at creation.
    pub(crate) fn validate(&self, spec: &SinkSpec) -> Result<()> {
        let _ = spec;
        match self {
            #[cfg(feature = "jdbc")]
            ConnectorConfig::Jdbc(c) => jdbc::validate(c, spec),
            #[cfg(feature = "clickhouse")]
            ConnectorConfig::ClickHouse(c) => clickhouse::validate(c, spec),
            #[cfg(feature = "elasticsearch")]
            ConnectorConfig::Elasticsearch(c) => c.validate(spec),
            #[cfg(feature = "doris")]
            ConnectorConfig::Doris(c) => c.validate(spec),
            #[cfg(feature = "cassandra")]
            ConnectorConfig::Cassandra(c) => cassandra::validate(c, spec),
            #[cfg(feature = "kafka")]
            ConnectorConfig::Kafka(c) => c.validate(spec),
            #[allow(unreachable_patterns)]
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(c) => c.validate(spec),
            #[cfg(feature = "deltalake")]
            ConnectorConfig::DeltaLake(c) => deltalake::validate(c, spec),
            #[cfg(feature = "iceberg")]
            ConnectorConfig::Iceberg(c) => iceberg::validate(c, spec),
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
        match self {
            #[cfg(feature = "file")]
            ConnectorConfig::File(c) => Ok(Box::new(EnvelopeWriter::new(spec, file::FileWriter::open(c, spec, ctx)?))),
            #[cfg(feature = "test-utils")]
            ConnectorConfig::Memory(c) => Ok(Box::new(EnvelopeWriter::new(spec, c.target().writer(spec.name())))),
            #[cfg(feature = "jdbc")]
            ConnectorConfig::Jdbc(c) => Ok(Box::new(jdbc::JdbcWriter::<V>::open(c, spec)?)),
            ConnectorConfig::Custom(c) => Ok(Box::new(EnvelopeWriter::new(spec, (c.factory)(ctx)?))),
            #[cfg(feature = "clickhouse")]
            ConnectorConfig::ClickHouse(c) => Ok(Box::new(clickhouse::ClickHouseWriter::<V>::open(c, spec, ctx)?)),
            #[cfg(feature = "elasticsearch")]
            ConnectorConfig::Elasticsearch(c) => {
                Ok(Box::new(elasticsearch::ElasticsearchWriter::<V>::open(c, spec, ctx)?))
            }
            #[cfg(feature = "doris")]
            ConnectorConfig::Doris(c) => Ok(Box::new(doris::DorisWriter::<V>::open(c, spec, ctx)?)),
            #[cfg(feature = "cassandra")]
            ConnectorConfig::Cassandra(c) => Ok(Box::new(cassandra::CassandraWriter::<V>::open(c, spec, ctx)?)),
            #[cfg(feature = "kafka")]
            ConnectorConfig::Kafka(c) => {
                Ok(Box::new(EnvelopeWriter::new(spec, kafka::KafkaWriter::open(c, spec, ctx)?)))
            }
            #[cfg(feature = "nats")]
            ConnectorConfig::Nats(c) => {
                Ok(Box::new(EnvelopeWriter::new(spec, nats::open(c, spec, Default::default())?)))
            }
            #[cfg(feature = "kinesis")]
            ConnectorConfig::Kinesis(c) => Ok(Box::new(EnvelopeWriter::new(spec, kinesis::open(c, spec, ctx)?))),
            #[cfg(feature = "pulsar")]
            ConnectorConfig::Pulsar(c) => Ok(Box::new(EnvelopeWriter::new(spec, pulsar::open(c, spec, ctx)?))),
            // Delta commits cover all workers: `SinkCollection::sink` builds the coordinated sink.
            #[cfg(feature = "deltalake")]
            ConnectorConfig::DeltaLake(_) => Err(Error::config(
                "the deltalake connector commits for all workers at once and has no per-worker writer",
            )),
            // Iceberg snapshots cover all workers: `SinkCollection::sink` builds the coordinated sink.
            #[cfg(feature = "iceberg")]
            ConnectorConfig::Iceberg(_) => {
                Err(Error::config("the iceberg connector commits for all workers at once and has no per-worker writer"))
            }
        }
    }
}

/// A target that receives encoded records. See [`differential_sinks_operators::writer`] for the
/// call order and what `commit` must guarantee.
pub trait RecordWriter: 'static {
    /// The frontier this worker committed in an earlier run.
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>>;
    /// Delivers records of one time: all of them, or the next chunk of them (a time's records may
    /// come in several consecutive calls; a key's records are never split).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Makes everything written durable together with `upper` — or, when
    /// [pipelined](Self::pipelined), starts doing so.
    fn commit(&mut self, upper: Frontier<u64>) -> Result<()>;
    /// Whether `commit` only starts a commit, later reported by [`durable`](Self::durable)
    /// (see [`SinkWriter::pipelined`]).
    fn pipelined(&self) -> bool {
        false
    }
    /// The frontier of the latest started commit that is durable by now, if one finished since
    /// the last call; with `wait`, returns once every started commit is.
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        let _ = wait;
        Ok(None)
    }
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

    /// Encodes `changes` of `time` into `batch` (public for benchmarks). Consecutive calls for
    /// one time number its records on (see [`RecordBatch::first`]).
    pub fn encode(&mut self, time: u64, changes: &[Change<Key, V>]) -> Result<&RecordBatch> {
        self.batch.continue_time(time);
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
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        self.encode(time.to_u64(), changes)?;
        self.inner.write(&self.batch)?;
        differential_sinks_operators::SinkMetrics::add(&self.metrics.records_out, self.batch.len() as u64);
        differential_sinks_operators::SinkMetrics::add(&self.metrics.bytes_out, self.batch.bytes() as u64);
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let up = upper.to_u64_frontier();
        self.inner.commit(up)
    }

    fn pipelined(&self) -> bool {
        self.inner.pipelined()
    }

    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>> {
        Ok(self.inner.durable(wait)?.and_then(Frontier::from_u64_frontier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records (time, first, len) of every batch it receives.
    struct Positions(Arc<Mutex<Vec<(u64, u64, usize)>>>);
    impl RecordWriter for Positions {
        fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>> {
            Ok(Frontier::minimum())
        }
        fn write(&mut self, batch: &RecordBatch) -> Result<()> {
            self.0.lock().expect("log").push((batch.time, batch.first, batch.len()));
            Ok(())
        }
        fn commit(&mut self, _: Frontier<u64>) -> Result<()> {
            Ok(())
        }
    }

    /// A time delivered in several calls numbers its records across them; the next time starts
    /// at 0 again.
    #[test]
    fn records_are_numbered_across_the_batches_of_a_time() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let target =
            CustomConnector::new("positions", |_| Ok(Box::new(Positions(Arc::default())) as Box<dyn RecordWriter>));
        let spec = SinkSpec::builder("s", target).append_only(false).build().expect("spec");
        let mut w = EnvelopeWriter::<_, u32>::new(&spec, Positions(Arc::clone(&log)));
        let change = |v: u32| Change { key: Key::from_bytes(v.to_string().into_bytes()), before: None, after: Some(v) };
        let chunk = |range: std::ops::Range<u32>| range.map(change).collect::<Vec<_>>();
        for (t, range) in [(3u64, 0..5u32), (3, 5..12), (3, 12..13), (4, 0..2)] {
            SinkWriter::write(&mut w, &t, &mut chunk(range)).expect("write");
        }
        assert_eq!(*log.lock().expect("log"), vec![(3, 0, 5), (3, 5, 7), (3, 12, 1), (4, 0, 2)]);
    }
}
