//! The `elasticsearch` connector: documents in Elasticsearch or OpenSearch through the `_bulk`
//! API, over plain `reqwest` (feature `elasticsearch`; `connector = elasticsearch` or
//! `opensearch`).
//!
//! ```text
//!  changes of time t ──► one action per key: index (insert / update) or delete,
//!        │               _id = the primary key as text (`delimiter` between columns),
//!        │               version = t, version_type = external
//!        ▼
//!  lanes (`concurrent_requests`), a key always in the same lane: each lane one `_bulk` request
//!  in flight, cut at `batch_num_messages` documents or `batch_size_kb`
//!        │  per-item statuses: 2xx done; 404 on delete done; 409 (version conflict) done;
//!        │  429 / 5xx items retried alone with backoff; other 4xx stop the sink with their ids
//!        ▼
//!  commit(upper): every lane acknowledged, then the progress document
//!  `<progress_index>/_doc/<sink>.<scope>.w<worker>.g<generation>` records `upper`, where
//!  `scope` is a digest of the sink's name and its index (`index`, or `index_column`)
//! ```
//!
//! # Delivery guarantee: exactly-once in effect
//!
//! Every write carries the logical time as an external version. Elasticsearch applies a write
//! only if its version is higher than the document's (deletes keep their version as a tombstone
//! for `index.gc_deletes`, 60 s by default), so a write replayed after a restart — or overtaken
//! by a later one — is refused with a 409, which the sink counts as done. Restarts resume from the
//! progress documents (read back through a `_search` for the sink's scope: two sinks of one name
//! into two indexes keep their progress apart, and a sink with more documents than one search
//! returns is refused, never resumed from some of them), so usually nothing is replayed at all, and
//! what is replayed (the writes after the last progress document) changes nothing. A key's
//! writes always travel through the same lane in time order, so concurrency never reorders them.
//! With `version_type = none` writes are `update` + `doc_as_upsert` with `retry_on_conflict`,
//! and the guarantee is at-least-once. An append-only sink without a `primary_key` lets the
//! server choose ids: at-least-once.
//!
//! Documents the server refuses for good (mapping conflicts, documents too large, a missing
//! index with auto-creation off) are never dropped: the sink stops with an error naming each
//! refused document's id, status and reason (the first ten, and the count).
//!
//! # Options (RisingWave's names)
//!
//! | option | meaning |
//! |---|---|
//! | `url` | the server, e.g. `http://127.0.0.1:9200` — required |
//! | `index` | the index of every document, or |
//! | `index_column` | a column whose value names each row's index |
//! | `routing_column` | a column whose value routes each document |
//! | `delimiter` | separator of composite ids (default `_`) |
//! | `username`, `password` | basic authentication (the password is never logged) |
//! | `batch_num_messages` | documents per `_bulk` request (default 5000) |
//! | `batch_size_kb` | KiB per `_bulk` request (default 5120) |
//! | `concurrent_requests` | requests in flight per worker (default 2) |
//! | `retry_on_conflict` | for `version_type = none` updates (default 3) |
//! | `version_type` | `external` (default) or `none` |
//! | `progress_index` | where committed frontiers are kept (default `dsink_progress`) |
//! | `timeout.ms` | per-request timeout (default 120 000) |
//!
//! Requests are sent with `Content-Type: application/x-ndjson`.
//!
//! # Files
//!
//! `config.rs` the options; `table.rs` the creation-time checks; `encoder.rs` the `_bulk` lines
//! ([`BulkEncoder`]); `client.rs` the `_bulk` requests and item outcomes; `progress.rs` the
//! progress documents; `writer.rs` the [`ElasticsearchWriter`].

mod client;
mod config;
mod encoder;
mod progress;
mod table;
mod writer;

pub use config::{ElasticsearchConfig, Versioning};
pub use encoder::{BulkBody, BulkEncoder, Item};
pub use writer::ElasticsearchWriter;

use crate::connectors::{Connector, Writers};
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for ElasticsearchConfig {
    const NAME: &'static str = "elasticsearch";
    const ENCODED_ROWS: bool = true;
    const ALIASES: &'static [&'static str] = &["opensearch"];
    type Table = ();
    type Encoder<V: Row> = BulkEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        ElasticsearchConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        table::check(self, sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<BulkEncoder<V>> {
        BulkEncoder::new(self, sink)
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        Ok(Writers::independent(ElasticsearchWriter::<V>::open(self, sink, ctx)?))
    }
}
