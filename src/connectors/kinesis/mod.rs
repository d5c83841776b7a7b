//! The `kinesis` connector: records put into an Amazon Kinesis data stream.
//!
//! ```text
//!  worker w ── EnvelopeWriter ── Bridge (bounded queue) ──► KinesisWriter (tokio, reqwest)
//!                                                            │ PutRecords: ≤ 500 records, ≤ 5 MiB,
//!                                                            │ each key at most once per request
//!                                                            ▼ refused entries sent again, alone
//!                                                       Kinesis stream (shards by partition key)
//! ```
//!
//! # Client
//!
//! `PutRecords` is a SigV4-signed JSON POST (`X-Amz-Target: Kinesis_20131202.PutRecords`), so
//! the connector signs it with `aws-sigv4` and sends it with `reqwest` ([`KinesisClient`]) rather
//! than pulling in `aws-sdk-kinesis` for one API call.
//!
//! # Records
//!
//! The partition key is the encoded primary key (its 64-bit digest, `#` and 16 hex digits, when
//! it is longer than Kinesis's 256 characters), so one key's records stay in one shard, in order.
//! The data is a JSON envelope:
//!
//! ```text
//! {"time":7,"seq":0,"op":"u","key":{"id":3},"value":{...}}      value null for a tombstone
//! {"time":7,"seq":12,"worker":0,"peers":2,"op":"c","key":null,"value":{...}}   (unkeyed append-only)
//! ```
//!
//! `seq` is the record's index among its key's records at that time (a Debezium delete may be
//! followed by a tombstone) — or, without a key, its position among the worker's records of that
//! whole time (a large time is written in several batches; the numbering runs across them, and
//! a replay of the time numbers its records the same way).
//!
//! # Guarantee: at-least-once, with what readers need to deduplicate
//!
//! Kinesis has no idempotent or transactional put, so a record may be stored twice: when a
//! request's answer is lost and the request is sent again, or when a restart replays the times
//! after the last commit. `commit` returns only when every record written before it is stored.
//! Each record carries `(key, time, seq)` (`(worker, peers, time, seq)` without a key), which
//! identifies it uniquely: a reader that keeps the highest `(time, seq)` applied per key drops
//! every duplicate and every stale record. With `progress.dir` each worker records its committed
//! frontier in a local file after each commit, and a restart resumes from there; without it, a
//! restart replays the collection from the start.
//!
//! Partial failures: entries that `PutRecords` refuses with `ProvisionedThroughputExceededException`
//! or `InternalFailure` are sent again — those entries only — with capped exponential backoff
//! and jitter; whole requests that are throttled or fail with a 5xx are sent again the same way.
//! Because a request never holds two records of one key and requests are sent one after
//! another, a retried record never lands after a later record of its key. A record larger than
//! 1 MiB (data and partition key) is refused before sending with an error naming its key.
//!
//! **Restart.** A worker reads its committed frontier back from `progress.dir`
//! ([`LocalProgress`](crate::connectors::local_progress::LocalProgress)) and the operator
//! delivers the changes after it again; without `progress.dir` it starts from the beginning.
//!
//! Files: `config.rs` (options, credentials), `client.rs` (the signed API client), `writer.rs`
//! (requests, retries, progress after each commit).
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `stream` | the data stream's name — required |
//! | `aws.region` | the region — required |
//! | `endpoint` | the endpoint (default `https://kinesis.<region>.amazonaws.com`) |
//! | `aws.credentials.access_key_id`, `aws.credentials.secret_access_key`, `aws.credentials.session_token` | credentials (default: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) |
//! | `progress.dir` | a local directory for each worker's committed frontier |
//! | `kinesis.batch.records` | records per request, 1..=500 (default 500) |
//! | `kinesis.batch.bytes` | bytes per request, 1 MiB..=5 MiB (default 5 MiB) |

mod client;
mod config;
mod writer;

pub use client::KinesisClient;
pub use config::{AwsCredentials, KinesisConfig, MAX_RECORDS, MAX_RECORD_BYTES, MAX_REQUEST_BYTES};
pub use writer::{open, open_with_stats, partition_key, KinesisStats};

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::encode::RecordEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for KinesisConfig {
    const NAME: &'static str = "kinesis";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = RecordEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        KinesisConfig::parse(opts)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<RecordEncoder<V>> {
        Ok(RecordEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(EnvelopeWriter::new(sink, open(self, sink, ctx)?)))
    }
}
