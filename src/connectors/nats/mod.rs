//! The `nats` connector: records published on a NATS subject, through JetStream or core NATS.
//!
//! ```text
//!  worker w ── EnvelopeWriter ── Bridge (bounded queue) ──► NatsWriter (tokio, async-nats)
//!                                                            │ publish: subject[.key], headers, JSON
//!                                                            │ commit: await every ack, then
//!                                                            ▼        publish progress record
//!                                       stream `S` (duplicate window)    stream `dsink_progress`
//! ```
//!
//! Files: `config.rs` (options), `table.rs` (creation-time checks), `writer.rs` (publishing,
//! acks, retries, message ids), `progress.rs` (the progress stream).
//!
//! # Messages
//!
//! Each record is one message on `subject`, or on `subject.<key token>` with
//! `subject.key_suffix = true` (the key itself when it is made of `[A-Za-z0-9_-]`, otherwise `~`
//! and its URL-safe base64, so it is always one valid token). The payload is the record's JSON
//! value, empty for a tombstone. Headers:
//!
//! | header | value |
//! |---|---|
//! | `Dsink-Key` | the encoded key (keyed formats: upsert, Debezium, append-only with a key) |
//! | `Dsink-Op` | `c`, `u` or `d` |
//! | `Dsink-Time` | the logical time |
//! | `Nats-Msg-Id` | JetStream only: `sink|subject|time|n|key`, unkeyed `sink|subject|time|wIofP|pos` (see below) |
//!
//! RisingWave's NATS sink is append-only; here upsert and Debezium records work too, the key
//! travelling in `Dsink-Key` (and in the subject when asked), tombstones as empty payloads with
//! `Dsink-Op: d`.
//!
//! # Guarantee
//!
//! **JetStream (`stream` set): exactly-once within the stream's duplicate window.** Every message
//! carries a `Nats-Msg-Id` made of the sink name, the subject, the logical time, the record's
//! index among its key's records at that time and the key (a 128-bit digest for keys longer than
//! 96 bytes) — a function of the data alone. `commit` returns only once JetStream has acknowledged every
//! message written since the last commit, and then records the committed frontier in a JetStream
//! progress stream (`progress.stream`, default `dsink_progress`, subject
//! `<progress stream>.<sink>.<data stream/subject>.g<gen>.w<worker>`, the last message per
//! subject kept: a sink is identified by its name *and* its target, so two sinks of one name
//! publishing to different streams or subjects never share progress).
//! After a crash, a restart resumes from that frontier and publishes again what followed it;
//! JetStream drops every republished message whose id it saw within its duplicate window
//! (2 minutes by default), so the stream holds each record once **provided the restart happens
//! within the window** of the uncommitted tail. A restart later than that publishes the tail
//! since the last commit a second time (at-least-once for that tail only); widen the window
//! (`stream.duplicate_window.ms` when the sink creates the stream, or the stream's own config)
//! to cover your restart time. The progress record and the data are not written atomically —
//! JetStream has no transactions — which is why the window, not the record, makes replays
//! harmless. Unkeyed append-only records are identified by worker and position among the
//! worker's records of the whole time instead of key (a large time reaches the writer in several
//! batches; positions run across them), so their ids are stable only across restarts with the
//! same worker count.
//!
//! A stream without a duplicate window is refused at start. When an ack fails or times out,
//! every publish still awaiting its ack is sent again with the same id (retry with backoff), so
//! a retry never duplicates either; the sink rides through a server restart this way. Order: a
//! record the failure lost is stored again after later records that reached the server, which
//! may include later records of its key. Each change is stored once, but after such a failure a
//! key's records are not always in time order in the stream: a reader that applies, per key,
//! the record with the highest `Dsink-Time` (a key has one change per time) ends in the
//! collection's state whatever the order.
//!
//! **Restart.** A worker reads its sink's records back from the progress stream (the last
//! message of each of its subjects) and resumes from the committed frontier; the changes after
//! it are published again, with the same message ids.
//!
//! **Core NATS (no `stream`): at-most-once.** Messages are flushed at commit but core NATS has
//! no acknowledgements or storage: a subscriber that is not connected misses them. Without
//! `progress.stream` a restart starts from the beginning of the collection.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `server_url` | server URL(s), comma separated — required; `tls://…` requires TLS; a `user:password@` in a URL logs in as that user (the NATS client itself ignores it) |
//! | `subject` | the subject (the prefix with `subject.key_suffix`) — required |
//! | `subject.key_suffix` | `true` to append the key as the last subject token |
//! | `connect_mode` | `plain` (default), `user_and_password`, `credential` |
//! | `username`, `password` | for `user_and_password` |
//! | `jwt`, `nkey` | for `credential`: the user JWT and the nkey seed that signs the nonce |
//! | `ssl.root.cert` | PEM file of the CA the server's certificate must chain to (default: the system's roots); the host in `server_url` must be named by the certificate |
//! | `ssl.cert`, `ssl.key` | a client certificate and its key (PEM), for servers that verify clients |
//! | `ssl.required` | refuse a connection without TLS (default: on when `ssl.root.cert` or `ssl.cert` is set) |
//! | `stream` | the JetStream stream; publishes are acknowledged and deduplicated |
//! | `stream.create` (RisingWave: `allow_create_stream`) | `true` to create the stream if missing (subject, or `subject.>` with key suffixes) |
//! | `stream.duplicate_window.ms` | the duplicate window of a stream the sink creates (default 120000) |
//! | `progress` | `stream` (default with `stream`) or `none` |
//! | `progress.stream` | the JetStream stream of progress records (default `dsink_progress`) |
//! | `jetstream.max_inflight` | publishes awaiting an ack at most (default 8192) |
//! | `request.timeout.ms` | connect, request and ack timeout (default 10000) |
//!
//! A refused login, a server certificate the CA did not sign, a host name the certificate does not
//! name and unreadable `ssl.*` files stop the sink with [`ErrorKind::Config`](crate::ErrorKind::Config)
//! naming the options to check; passwords, JWTs and nkey seeds never appear in `Debug` or errors.

mod config;
mod progress;
mod table;
mod writer;

pub use config::{ConnectMode, NatsConfig, NatsTls, ProgressStore, DEFAULT_PROGRESS_STREAM};
pub use writer::{
    message_id, open, subject_token, unkeyed_message_id, NatsStats, KEY_HEADER, MSG_ID_HEADER, OP_HEADER, TIME_HEADER,
};

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::encode::RecordEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for NatsConfig {
    const NAME: &'static str = "nats";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = RecordEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        NatsConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        self.check_sink(sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<RecordEncoder<V>> {
        Ok(RecordEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(EnvelopeWriter::new(sink, open(self, sink, Default::default())?)))
    }
}
