//! The `clickhouse` connector: rows into a MergeTree-family table over ClickHouse's HTTP
//! interface (feature `clickhouse`).
//!
//! ```text
//!  changes of time t ──► RowBinary rows (+ version / sign / delete columns the sink fills)
//!        │  blocks of `clickhouse.batch.rows` rows or `clickhouse.batch.bytes` bytes,
//!        │  streamed to the server in 256 KiB chunks while they are encoded
//!        ▼
//!  INSERT INTO db.table (cols…) FORMAT RowBinary   (blocks of a commit one after another)
//!        │  commit(upper): its blocks acknowledged, then (after the previous commit's row)
//!        ▼
//!  INSERT INTO db.dsink_progress VALUES (sink, worker, peers, generation, base, upper)
//! ```
//!
//! On ReplacingMergeTree tables (and plain tables with deduplication tokens) commits are
//! *pipelined* ([`SinkWriter::pipelined`](differential_sinks_operators::SinkWriter::pipelined)):
//! `commit` returns once its last block is sent, the worker goes on encoding and sending the next
//! times, and the committed frontier moves when the block is acknowledged and the progress row
//! written — progress rows in commit order, each only after the one before, so a progress row
//! never covers a block that was not acknowledged. On CollapsingMergeTree (a cancelling row must
//! follow the row it cancels) and on plain tables without tokens (see the delivery guarantee)
//! each commit completes before the next time is written.
//!
//! Rows go as `RowBinary`, written straight from the rows' `Serialize` implementations by
//! [`rowbinary`](crate::encode::rowbinary) through the connector's encoder ([`ClickHouseEncoder`]), which follows the column
//! types read from `system.columns` and stops the sink on a value that does not fit its column
//! (naming the column, its type and the row's key) rather than let the server truncate it. A
//! table with a column type the encoder does not know (`Tuple`, `Map`, `IPv4`, `DateTime64`, …)
//! is written as `JSONEachRow` instead; the list is in [`rowbinary`](crate::encode::rowbinary)'s docs.
//!
//! A block's insert starts once 256 KiB of it are encoded and its data follows as the block
//! grows, so the server parses while the sink encodes (on servers with `insert_deduplication_token`
//! blocks are sent whole, since the token names the block's last time). The last bytes of each
//! chunk are held back until the next one, so a request cut off midway — the sink failed or the
//! process died — ends inside a row and the server inserts none of that block.
//!
//! # Files
//!
//! `config.rs` the options; `table.rs` the table as `system.tables` / `system.columns` describe
//! it, the plan ([`plan`], [`TablePlan`]) and the creation-time check; `encoder.rs` the insert
//! blocks ([`ClickHouseEncoder`]); `rowbinary.rs` the RowBinary encoding of one row; `client.rs`
//! the HTTP client ([`ClickHouse`]) and streamed insert bodies; `sql.rs` quoting; `progress.rs`
//! the progress table; `writer.rs` the [`ClickHouseWriter`].
//!
//! # What each table engine gets
//!
//! The engine and columns are read from `system.tables` / `system.columns` when the sink is
//! created (and again when a worker resumes); a mismatch is refused with the table, the columns
//! and the fix in the message.
//!
//! | engine | `type = upsert` | `type = append-only` |
//! |---|---|---|
//! | `ReplacingMergeTree(ver)` | insert/update → the new row with `ver` = logical time, `del` = 0; delete → the old row with `del` = 1 (needs `clickhouse.delete.column`). Read with `FINAL WHERE del = 0`. | rows with `ver` = time |
//! | `CollapsingMergeTree(sign)` | insert → row, sign +1; delete → old row, sign −1; update → both. Read with `GROUP BY … HAVING sum(sign) > 0` or `FINAL`. | rows with sign +1 |
//! | any other `*MergeTree` | refused | rows as they are |
//!
//! For upserts, `primary_key` must name exactly the table's sorting key (`ORDER BY`), which is
//! what the engine collapses by. `type = debezium` is refused. Replicated engines work the same.
//!
//! # Delivery guarantee
//!
//! Once every block of a commit (and of the commits before it) has been acknowledged, a row
//! recording its frontier `upper` goes into the progress table
//! (`clickhouse.progress.table`, default `dsink_progress`, created if missing). A restarted
//! worker reads its frontier back from there (see
//! [`resolve_resume`](differential_sinks_operators::resolve_resume)) and skips what it covers.
//! What a crash *between* a block insert and the progress row replays depends on the engine and
//! the server:
//!
//! * **ReplacingMergeTree(ver)**, any version: exactly-once in effect. A replayed row carries the
//!   same version (the logical time) as the row it repeats, so after merges or with `FINAL` the
//!   table is the same as if nothing had been replayed; and an older row can never replace a
//!   newer one.
//! * **CollapsingMergeTree(sign)** on servers with `insert_deduplication_token` (22.2 and later,
//!   detected with `SELECT version()`): each block gets a token derived from (sink, worker,
//!   generation, the block's first and last time, its number within the commit), so an identical
//!   replayed block is dropped by the server when the table deduplicates inserts
//!   (`Replicated*` tables, or `non_replicated_deduplication_window` on others).
//! * **CollapsingMergeTree(sign)** on older servers such as 18.16: blocks are deterministic for a
//!   given history and commit boundaries, so `Replicated*` tables deduplicate a replayed block by
//!   its checksum; a non-replicated table cannot, and a block replayed after a crash in that
//!   window would be counted twice. The window is one insert wide; outside it the progress table
//!   makes restarts exact. Prefer ReplacingMergeTree there.
//! * **Append-only** onto a plain MergeTree: the same as CollapsingMergeTree.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `clickhouse.url` | the HTTP interface, e.g. `http://127.0.0.1:8123` — required |
//! | `clickhouse.table` | the target table — required |
//! | `clickhouse.database` | its database (default `default`) |
//! | `clickhouse.user`, `clickhouse.password` | credentials (sent as `X-ClickHouse-User`/`-Key` headers; the password is never logged) |
//! | `clickhouse.delete.column` | a `UInt8` column set to 1 on delete rows (ReplacingMergeTree upserts) |
//! | `clickhouse.progress.table` | where committed frontiers are kept (default `dsink_progress`) |
//! | `clickhouse.batch.rows`, `clickhouse.batch.bytes` | block size limits (default 500 000 rows, 64 MiB) |
//! | `clickhouse.timeout.ms` | per-request timeout (default 300 000) |
//!
//! Transient failures (connection errors, HTTP 5xx without an exception code, and exception codes
//! such as `TOO_MANY_PARTS` or `TIMEOUT_EXCEEDED`) are retried with backoff; other exceptions stop
//! the sink with the server's message.

mod client;
mod config;
mod encoder;
mod progress;
#[deprecated(note = "moved to crate::encode::rowbinary")]
pub mod rowbinary {
    //! Moved to [`crate::encode::rowbinary`].
    pub use crate::encode::rowbinary::*;
}
mod sql;
mod table;
mod writer;

pub use client::ClickHouse;
pub use config::ClickHouseConfig;
pub use encoder::{Block, Blocks, ClickHouseEncoder};
pub use table::{compatible, engine_params, plan, Mode, TableColumn, TableInfo, TablePlan};
pub use writer::ClickHouseWriter;

use crate::connectors::{Connector, Writers};
use crate::encoded_row::RowEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for ClickHouseConfig {
    const NAME: &'static str = "clickhouse";
    /// Rows become RowBinary (or JSONEachRow lines) of their own: an unkeyed sink routes them by
    /// identity, without keeping each row's JSON as its key.
    const TAKES_ROWS: bool = true;
    const ENCODED_ROWS: bool = true;
    type Table = TablePlan;
    type Encoder<V: Row> = ClickHouseEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        ClickHouseConfig::parse(opts)
    }

    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        table::validate(self, sink)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &TablePlan) -> Result<ClickHouseEncoder<V>> {
        Ok(ClickHouseEncoder::new(sink, self, table))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        Ok(Writers::independent(ClickHouseWriter::<V>::open(self, sink, ctx)?))
    }

    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<RowEncoder<V>> {
        table::row_encoder(self, sink)
    }
}
