//! The `kafka` connector (cargo feature `kafka`): upsert, append-only and Debezium records in
//! JSON or Avro, exactly-once from every worker, on the `rdkafka` crate with a bundled librdkafka.
//!
//! ```text
//!  sink operator (worker i) ── per-key changes of time t ──► KafkaEncoder (envelope; JSON, or
//!                                                              │ Confluent-framed Avro by KafkaTable's schemas)
//!                                                              │ RecordBatch(t): key, value|tombstone
//!                                                              ▼
//!  KafkaWriter (worker i)                                     producer "<prefix>-w<i>"
//!     begin txn ─► data records ──► <topic>           (partition = murmur2(key), header dsink.time = t)
//!               └► progress record ─► <topic>.__progress  (key "<sink>/g<gen>/w<i>", compacted)
//!     commit txn  (or: commit early when the transaction holds transaction.max.records / .bytes)
//! ```
//!
//! Files: `config.rs` (options), `table.rs` (topic checks and creation, creation-time checks,
//! registered Avro schemas), `encoder.rs` (the pure encoder), `writer.rs` (the producer and the
//! commit protocol), `progress.rs` (progress records and reading them back), `client.rs`
//! (librdkafka settings, delivery reports, error classification), `registry.rs` (the Schema
//! Registry client), `registry_tls.rs` (its HTTPS: roots and certificate checks), `avro.rs` (schemas and the Avro encoding).
//!
//! # Records
//!
//! The message key is the encoded primary key (JSON `{"id":7}`, text with `key.encode = text`, or
//! an Avro record of the key columns with `encode = avro`); append-only sinks without a key send
//! no key. librdkafka partitions by the key with `murmur2_random` (what Java clients use), so one
//! key stays on one partition; since one worker owns each key (the operator routes by key) and
//! writes its changes in time order, a key's records are in time order in its partition. Every
//! data record carries the header `dsink.time` (the logical time, decimal text); in exactly-once
//! mode also `dsink.txn` = `<run>.<n>`, naming the transaction that wrote it. Formats come from the
//! envelope ([`KafkaEncoder`], on the message family's JSON records): upsert writes the row (or a tombstone,
//! a null value, on delete), Debezium writes `{before, after, op, ts_ms, source}` (and a tombstone
//! after a delete with `debezium.tombstone = true`), append-only writes inserts.
//!
//! The writer calls rdkafka from the worker thread: `send` only enqueues into librdkafka, whose
//! own threads batch, compress and send, and a full queue makes `send` wait (backpressure). So
//! it needs no [`Bridge`](crate::delivery::Bridge), which would add a copy and a thread hop per
//! batch; only commits and flushes block, as the writer contract expects.
//!
//! # Exactly-once (`sink.delivery = exactly-once`, the default)
//!
//! Each worker has one transactional producer, `transactional.id = <prefix>-w<worker>` (prefix
//! `dsink-<sink>-<topic>` unless `transactional.id.prefix` says otherwise). A commit of frontier
//! `F` writes, in the same transaction as the data, a [`ProgressRecord`] to the progress topic
//! (`<topic>.__progress`, or `progress.topic`; created on first use, compacted, one partition):
//! sink name, data topic, the worker's [`WorkerProgress`](differential_sinks_operators::WorkerProgress)
//! (worker, peers, generation, base, frontier), `partial`, and the run/transaction pair that
//! `dsink.txn` headers refer to. The data and the record become visible together or not at all.
//!
//! On start, a worker calls `init_transactions`, which aborts whatever its predecessor left open
//! and **fences** it: a zombie with the same id gets `ProducerFenced` at its next call, which the
//! sink reports as [`ErrorKind::Fenced`](crate::ErrorKind::Fenced). It then reads the progress
//! topic back with `isolation.level = read_committed` and resumes with
//! [`resolve_resume`](differential_sinks_operators::resolve_resume): same worker count, each worker
//! from its own record; another count, a new generation from the common frontier (or a refusal
//! with instructions when the workers stopped at different frontiers). When the worker count
//! shrinks, each new worker also fences the old ids `j ≥ peers` with `j % peers == index`.
//!
//! A read_committed consumer stops at the *last stable offset*, the first offset of the oldest
//! transaction still open on the partition; commits made after it are hidden until it ends. A
//! crashed worker's open transaction (aborted only when its successor starts) could thus hide
//! another worker's later progress and make it resume from a stale record. So the reader first
//! waits until the last stable offset has reached the high watermark it saw when it started,
//! i.e. until every transaction open at that moment has ended. No worker of the new run writes
//! before every worker has resumed (the input frontier cannot pass a time before every worker
//! has built its dataflow), so this wait ends as soon as every successor has fenced its
//! predecessor; it gives up after `kafka.timeout.ms` with an error saying which.
//!
//! ## Bounded transactions
//!
//! A transaction is committed early once it holds `transaction.max.records` records or
//! `transaction.max.bytes` bytes, so a large snapshot (one time with millions of changes) never
//! needs one giant transaction (the problem of Materialize issue #23955). An early commit in the
//! middle of time `t` records frontier `t` (every earlier time is complete) with `partial = n`, the
//! number of records of `t` committed so far — counted across batches, since the operator may hand
//! a large time over in several. A time's records come in a deterministic order (its changes
//! sorted by encoded key, each turning into the same records), so on restart the operator
//! re-delivers all of `t` and the writer skips its first `n` records. Since keys move between
//! workers when the worker count changes, a restart with another count is refused while any
//! worker's record has `partial > 0`.
//!
//! ## Failures
//!
//! librdkafka retries transient produce errors itself (the idempotent producer keeps order and
//! drops duplicates). Retriable errors of the blocking calls (metadata, `init_transactions`,
//! `commit_transaction`, flush, registry requests) are retried with backoff until
//! `retry.deadline.ms` ([`retry`](crate::delivery::retry)). Fencing stops the sink with
//! `ErrorKind::Fenced`; authorization failures, records too large for the broker and a missing
//! topic stop it with `ErrorKind::Fatal`; each message says what to change. A transaction that
//! cannot commit is aborted and the sink stops with a message saying a restart resumes from the
//! last committed progress. Dropping the writer aborts an open transaction.
//!
//! ## Restart
//!
//! A restarted worker fences its predecessor, reads the progress topic back and resumes from
//! its committed frontier (skipping the records of a partially committed time that are already
//! in the topic); the operator re-delivers every change after that frontier. Nothing committed
//! is written twice, nothing uncommitted is visible to `read_committed` consumers.
//!
//! # At-least-once (`sink.delivery = at-least-once`)
//!
//! The idempotent producer without transactions, with pipelined commits
//! ([`SinkWriter::pipelined`](differential_sinks_operators::SinkWriter::pipelined)): a commit
//! closes an *epoch* of records and returns; the worker goes on with the next times while
//! librdkafka's thread counts delivery reports per epoch (the record's delivery opaque names its
//! epoch). Once every record of an epoch and of the ones before it is reported, and none failed,
//! the frontier is durable: the operator moves the committed frontier, and the writer sends a
//! progress record of it, acknowledged with a later epoch (or, at the end of the input, at once) —
//! so a progress record never runs ahead of the data. A restart resumes from the latest
//! acknowledged one: only the changes after it may be delivered twice.
//!
//! # Avro
//!
//! With `encode = avro`, values (and primary-key columns, unless `key.encode = text`) are Avro in
//! the Confluent wire format: byte 0, the big-endian u32 schema id, the datum. Schemas are derived
//! from the sink's [`Schema`](crate::Schema) (see [`avro`](crate::encode::avro) for the type mapping) and registered
//! under `<topic>-value` and `<topic>-key` when the sink opens; their ids are the connector's
//! [`KafkaTable`]. The [`KafkaEncoder`] turns the envelope's JSON records into the final bytes:
//! it streams the JSON text into Avro by the schema ([`AvroType::encode_json`](crate::encode::avro::AvroType::encode_json)) and frames
//! it; the writer sends what the encoder made. Its bytes are checked against apache-avro's (see
//! [`avro`](crate::encode::avro)).
//!
//! The registry client ([`Registry`]) speaks the two calls the sink needs:
//! `POST /subjects/{subject}/versions` → `{"id": N}` (the same id for the same schema) and, for
//! readers, `GET /schemas/ids/{id}`, over `http://` or over `https://` with rustls (chain and host
//! name always checked; a refused certificate stops the sink with a `Config` error naming
//! `schema.registry.ssl.root.cert` or the host).
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `topic` | the data topic — required |
//! | `properties.bootstrap.server` | the brokers, `host:port,…` — required |
//! | `sink.delivery` | `exactly-once` (default) or `at-least-once` |
//! | `encode` | `json` (default) or `avro` |
//! | `schema.registry` | the Schema Registry URL (`http://…` or `https://…`), required with `encode = avro`; a `user:password@` in it is basic auth (never printed) |
//! | `schema.registry.username`, `schema.registry.password` | basic auth for the registry (the password is never printed); not together with credentials in the URL |
//! | `schema.registry.ssl.root.cert` | PEM file of the CA(s) an `https://` registry's certificate must lead to (default: the system's store); the certificate must also name the URL's host. Refused with `http://`, and when it cannot be read or holds no certificate |
//! | `topic.create` | `true` to create the topic when it is missing (default: refuse, naming this option) |
//! | `topic.partitions`, `topic.replication.factor` | for a created topic (default 1, 1) |
//! | `topic.config.*` | topic configs for a created topic, e.g. `topic.config.cleanup.policy=compact` |
//! | `progress.topic` | the progress topic (default `<topic>.__progress`) |
//! | `transactional.id.prefix` | prefix of the workers' transactional ids (default `dsink-<sink>-<topic>`) |
//! | `transaction.max.records` | commit a transaction early at this many records (default 100000) |
//! | `transaction.max.bytes` | … or at this many bytes of keys and values (default 64 MiB; a `KiB`/`MiB`/`GiB` suffix is accepted). Both bounds are positive: 0 is refused |
//! | `kafka.timeout.ms` | timeout of one blocking client call (default 30000) |
//! | `retry.deadline.ms` | how long retriable failures are retried (default 120000) |
//! | `properties.*` | any librdkafka setting, passed through: `compression.type`, `linger.ms`, `batch.size`, `acks`, `security.protocol`, `sasl.*`, `ssl.*`, … (secrets are redacted in `Debug` and logs; `transactional.id` and `enable.idempotence` are the sink's own) |
//!
//! # Security and compression
//!
//! librdkafka is built here with OpenSSL and zstd, so the settings of managed services (Confluent
//! Cloud, MSK, Aiven, Redpanda Cloud, Event Hubs) work under the names RisingWave gives them:
//!
//! | option | |
//! |---|---|
//! | `properties.security.protocol` | `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` |
//! | `properties.ssl.ca.location` | the CA file (PEM) the brokers' certificates must chain to (default: the system's roots); host names are checked against the certificates |
//! | `properties.ssl.certificate.location`, `properties.ssl.key.location`, `properties.ssl.key.password` | a client certificate, for brokers that require one (mutual TLS) |
//! | `properties.sasl.mechanism` | `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`; `GSSAPI` (Kerberos, `properties.sasl.kerberos.*`) with the `kafka-gssapi` cargo feature, which links the system's Cyrus SASL |
//! | `properties.sasl.username`, `properties.sasl.password` | the login of PLAIN and SCRAM |
//! | `properties.compression.type` | `none`, `gzip`, `snappy`, `lz4` or `zstd` |
//!
//! A broker certificate the CA did not sign, a host name its certificate does not name, a client
//! certificate the broker requires but was not given and a refused login stop the sink's creation
//! with [`ErrorKind::Config`](crate::ErrorKind::Config) as soon as librdkafka reports them, with
//! its reason and the options to check, instead of retrying until a timeout. Values of secret
//! settings (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.config`, …)
//! appear in no `Debug` output, log line or error, also when librdkafka refuses one.
//!
//! The common options (`type`, `primary_key`, `force_append_only`, `key.encode`, …) are in
//! [`crate::config`].

#[deprecated(note = "moved to crate::encode::avro")]
pub mod avro {
    //! Moved to [`crate::encode::avro`].
    pub use crate::encode::avro::*;
}
mod client;
mod config;
mod encoder;
mod progress;
pub mod registry;
mod registry_tls;
mod table;
mod writer;

pub use config::{Delivery, Encode, KafkaConfig, RegistryConfig, TopicCreate};
pub use encoder::KafkaEncoder;
pub use progress::{read_progress, ProgressRecord};
pub use registry::Registry;
pub use table::{AvroSchemas, KafkaTable};
pub use writer::{KafkaWriter, TIME_HEADER, TXN_HEADER};

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for KafkaConfig {
    const NAME: &'static str = "kafka";
    const ENCODED_ROWS: bool = true;
    type Table = KafkaTable;
    type Encoder<V: Row> = KafkaEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        KafkaConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        self.check_sink(sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &KafkaTable) -> Result<KafkaEncoder<V>> {
        Ok(KafkaEncoder::new(sink, table))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let writer = KafkaWriter::open(self, sink, ctx)?;
        let table = KafkaTable::register(self, sink)?;
        let encoder = self.encoder(sink, &table)?;
        Ok(Writers::independent(EnvelopeWriter::with_encoder(sink, writer, encoder)))
    }
}
