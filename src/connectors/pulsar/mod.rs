//! The `pulsar` connector: records produced to a Pulsar topic with the `pulsar` crate.
//!
//! ```text
//!  worker w ── EnvelopeWriter ── Bridge (bounded queue) ──► PulsarWriter (tokio, one producer)
//!                                                            │ send_non_blocking: partition key,
//!                                                            │ properties, JSON payload
//!                                                            ▼ commit: flush batch, await receipts
//!                                                        topic (partitioned by key)
//! ```
//!
//! # Messages
//!
//! The payload is the record's JSON value (empty for a tombstone); the partition key is the
//! encoded primary key, so one key's records go to one partition, in order. Properties:
//! `dsink.time` (logical time), `dsink.seq` (the record's index among its key's records at that
//! time; unkeyed: its position among the worker's records of the whole time, numbered the same
//! way on a replay), `dsink.op` (`c`, `u`, `d`) and, without a
//! key, `dsink.worker` (`worker/peers`).
//!
//! # Guarantee: at-least-once
//!
//! `commit` returns once the broker has acknowledged every message written before it (a
//! pending batch is flushed first). With `progress.dir`, each worker then records its committed
//! frontier in a local file and a restart resumes from there, replaying only the times after the
//! last commit; without it a restart replays from the start.
//!
//! Exactly-once through broker deduplication needs producer sequence ids that continue from
//! what the broker has seen. The `pulsar` crate (6.9) numbers each new producer's messages from
//! 0 and offers no way to set a message's sequence id, so a restarted producer under a fixed name
//! would have its first messages dropped as "duplicates" of the previous run's — a loss, not a
//! deduplication. This connector therefore lets the broker name its producers and does not rely
//! on deduplication: replays after a crash are possible, and `(key, dsink.time, dsink.seq)`
//! identifies each record uniquely so that readers can drop them (keep the highest
//! `(time, seq)` applied per key).
//!
//! **Restart.** A worker reads its committed frontier back from `progress.dir`
//! ([`LocalProgress`](crate::connectors::local_progress::LocalProgress)) and the operator
//! delivers the changes after it again; without `progress.dir` it starts from the beginning.
//!
//! Files: `config.rs` (options), `writer.rs` (the producer, receipts, progress after each
//! commit).
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `service.url` | `pulsar://host:port` (or `pulsar+ssl://`) — required |
//! | `topic` | the topic — required |
//! | `auth.token` | a JWT for token authentication |
//! | `batch.size` | messages per batch (default: no batching) |
//! | `batch.byte.size` | bytes per batch |
//! | `compression` | `none` (default), `lz4`, `zlib`, `snappy` |
//! | `progress.dir` | a local directory for each worker's committed frontier |

mod config;
mod writer;

pub use config::{PulsarCompression, PulsarConfig};
pub use writer::{open, OP_PROPERTY, SEQ_PROPERTY, TIME_PROPERTY, WORKER_PROPERTY};

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::encode::RecordEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for PulsarConfig {
    const NAME: &'static str = "pulsar";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = RecordEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        PulsarConfig::parse(opts)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<RecordEncoder<V>> {
        Ok(RecordEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(EnvelopeWriter::new(sink, open(self, sink, ctx)?)))
    }
}
