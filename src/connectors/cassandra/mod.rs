//! The `cassandra` connector: rows into a Cassandra or ScyllaDB table on the `scylla` driver
//! (feature `cassandra`; `connector = cassandra` or `scylladb`).
//!
//! ```text
//!  change of key k at time t ──► insert / update: INSERT INTO ks.t JSON ? DEFAULT NULL USING TIMESTAMP ts(t)
//!                                delete:          DELETE FROM ks.t USING TIMESTAMP ts(t) WHERE k = fromJson(?)
//!        │ unlogged batches of `cassandra.max_batch_rows` / `max_batch_bytes`
//!        ▼ commit(upper): every batch acknowledged, then a row in ks.dsink_progress records upper
//! ```
//!
//! # Delivery guarantee: idempotent by write timestamps
//!
//! Every statement of logical time `t` carries `USING TIMESTAMP ts(t)` with
//! `ts(t) = cassandra.timestamp_offset + t` ([`write_timestamp`]): strictly increasing with the
//! time. Cassandra keeps, per cell, the write with the highest timestamp (a delete's tombstone
//! included, and on a tie the delete wins), so
//!
//! * a replayed statement writes the same cells with the same timestamp: a no-op;
//! * a retried or reordered older write can never overwrite a later one, nor resurrect a row
//!   deleted at a later time;
//! * the sink emits one statement per key and time (the operator consolidates a time's updates
//!   per key), so an insert and a delete of one key never share a timestamp.
//!
//! Restarts resume from the progress table (`cassandra.progress_table`, default
//! `dsink_progress`, created if missing; a sink's rows there are keyed by `name@keyspace.table`,
//! so two sinks of one name into two tables keep their progress apart), and whatever is
//! replayed past it is harmless. The
//! table must be written only by this sink (or by writers using the same timestamp scheme):
//! timestamps are logical, not wall-clock microseconds — set `cassandra.timestamp_offset` above
//! any timestamp already in the table when adopting an existing one.
//!
//! Rows are sent as JSON (`INSERT … JSON`), so Cassandra converts each value to its column's type
//! and sets the columns a row lacks to null: an update replaces the whole row, as an upsert must.
//! Cassandra lowercases unquoted JSON keys, so a field name that is not all lowercase is sent
//! quoted ([`insert_json`]) and names the case-sensitive column `"userId"`, as the DELETE does.
//! At creation the table's columns are read from `system_schema.columns`: `primary_key` must be
//! exactly the table's partition key plus clustering columns, and declared columns must exist.
//! `type = debezium` is refused.
//!
//! Write timeouts, unavailable replicas and lost connections are retried (a batch that landed
//! before its timeout is replayed harmlessly); a statement the server refuses (syntax, an
//! unknown column, a value of the wrong type, authorization) stops the sink at once with the
//! server's message.
//!
//! # Files
//!
//! `config.rs` the options; `table.rs` the table's columns and the creation-time checks;
//! `statements.rs` the CQL text; `encoder.rs` the values bound per change ([`CassandraEncoder`]);
//! `batch.rs` unlogged batches; `session.rs` the driver session and its errors; `progress.rs`
//! the progress rows; `writer.rs` the [`CassandraWriter`].
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `cassandra.url` | contact points `host:port[,host:port]` — required |
//! | `cassandra.keyspace`, `cassandra.table` | the target — required |
//! | `cassandra.user` (RisingWave: `cassandra.username`), `cassandra.password` | credentials (the password is never printed) |
//! | `cassandra.datacenter` | the local datacenter: requests go only to its nodes (the driver's default policy preferring it, without failover to other datacenters); a cluster with no node in it is refused at creation, naming the datacenters it has. Unset: every node is local |
//! | `cassandra.max_batch_rows` | statements per unlogged batch (default 100) |
//! | `cassandra.max_batch_bytes` | estimated data bytes per unlogged batch (default 32 768; Cassandra refuses multi-partition batches over `batch_size_fail_threshold_in_kb`, 50 KiB by default) |
//! | `cassandra.request_timeout_ms` | timeout of connecting and of every request (default 30 000); a timed-out batch is retried |
//! | `cassandra.timestamp_offset` | added to every write timestamp (default 0) |
//! | `cassandra.progress_table` | where committed frontiers are kept (default `dsink_progress`) |

mod batch;
mod config;
mod encoder;
mod progress;
mod session;
pub mod statements;
mod table;
mod writer;

pub use config::CassandraConfig;
pub use encoder::{BoundStatement, CassandraEncoder};
pub use statements::{delete_cql, insert_cql, insert_json, qualified, write_timestamp};
pub use table::{check_table, CqlColumn};
pub use writer::CassandraWriter;

use crate::connectors::{Connector, Writers};
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for CassandraConfig {
    const NAME: &'static str = "cassandra";
    const ENCODED_ROWS: bool = true;
    const ALIASES: &'static [&'static str] = &["scylladb"];
    type Table = ();
    type Encoder<V: Row> = CassandraEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        CassandraConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        table::validate(self, sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<CassandraEncoder<V>> {
        Ok(CassandraEncoder::new(sink, self.timestamp_offset))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        Ok(Writers::independent(CassandraWriter::<V>::open(self, sink, ctx)?))
    }
}
