//! The `deltalake` connector: a Delta Lake table, appended to or upserted, written by every
//! worker in parallel and committed by one.
//!
//! ```text
//!  worker 0..n   changes ─► rows ─► Arrow batch (encode::arrow) ─► Parquet data files
//!                │  prepare(upper): close the open files → DeltaFiles { Add actions, upserts' changes }
//!                ▼
//!  worker 0      committer: one Delta commit per round =
//!                  every worker's Add actions
//!                + upserts: remove + add of each file whose rows they delete, with its new deletion vector
//!                + txn actions (app id = sink name …) recording every worker's frontier
//!                + commitInfo["dsink"] = { sink, from, to, peers, generation, files, small_files, rows, deleted }
//! ```
//!
//! Built on delta-rs without its `datafusion` feature, which gives table creation, Parquet
//! writing and commits of any actions, but no MERGE, DELETE or scans. `type = append-only` (with
//! `force_append_only = true` for a collection that has retractions: deletes are dropped,
//! updates become inserts) appends data files. `type = upsert` (with `primary_key`) writes each
//! key's new row like an append and deletes its previous row with a **deletion vector**; see
//! [Upserts](#upserts). `type = debezium` is refused: a table holds rows, not events.
//!
//! # Upserts
//!
//! Workers report, with their files, every key's change in the order they wrote them: where the
//! new row is (data file and row position), or that the key was deleted. Worker 0 keeps a
//! [`KeyIndex`](crate::connectors::lakehouse::KeyIndex) of every live key's file and position, read when the
//! sink starts from the table's data files (their key columns minus their deletion vectors) and
//! kept current by its own commits. A round's changes become the positions of the rows they
//! replace; for each data file hit, the positions are unioned with its current deletion vector,
//! every new vector of the round is written into one `deletion_vector_<uuid>.bin` at the table
//! root (the protocol's format, through delta-kernel's writer), and the commit carries a
//! `remove` of the file as it was and an `add` of the same file with its new vector (statistics
//! marked `tightBounds: false`), besides the round's data files; a file of the same round gets
//! its vector in its first `add`. No data file is rewritten. The commit's operation is
//! `STREAMING UPDATE`, as streaming engines record an update-mode micro-batch.
//!
//! The table needs the `deletionVectors` table feature (reader version 3, writer version 7); the
//! sink creates its tables with `delta.enableDeletionVectors = true` and refuses an existing
//! table without it. Readers must apply deletion vectors (Spark, delta-kernel, the Python
//! reader's DataFusion `QueryBuilder`; not its pyarrow scanner). Upserts need an unpartitioned
//! table: delta-rs' writer splits rows by partition itself, so their positions are not known.
//! Rows other writers add with a key while the sink runs are not in the index: give the sink the
//! table's keys to itself.
//!
//! # Exactly-once
//!
//! The operator's coordinated mode makes one Delta version per commit round for all workers.
//! Each commit carries, in the same atomic log entry as the data files, `txn` (SetTransaction)
//! actions the Delta protocol keeps in every snapshot and checkpoint:
//!
//! | app id | version |
//! |---|---|
//! | `<sink>` | the frontier every worker has reached (the next time to deliver; `i64::MAX` once the input ended) |
//! | `<sink>.w<i>` | worker `i`'s frontier |
//! | `<sink>.peers`, `<sink>.generation`, `<sink>.base` | the worker count and generation (see [`resolve_resume`](differential_sinks_operators::resolve_resume)) |
//!
//! A restarted sink reads them back from the latest snapshot and drops every change before the
//! frontier, so each change lands in exactly one committed version. Any Delta client can read
//! `<sink>`'s version to know how far the table is complete. Data files written but not
//! committed by a run that stopped are never referenced by the log, so readers never see them;
//! they are harmless orphans that `VACUUM` removes. A round in which no worker wrote a row makes
//! no commit (a restart replays those times and writes nothing). A restart with a different
//! worker count is accepted only when every worker had reached the same frontier.
//!
//! The progress lives in `txn` actions rather than in the commit info because checkpoints keep
//! the former and log clean-up (`delta.logRetentionDuration`) drops the latter. A table with
//! `delta.setTransactionRetentionDuration` set expires `txn` actions: a sink idle for longer
//! than that would forget its place and deliver again from the start, so leave it unset on
//! tables this sink writes. If two runs of one sink commit to a table at once, delta-rs'
//! conflict checker refuses the commit of the run whose snapshot is older, since a newer commit
//! wrote the same `txn` app ids (`ConcurrentTransaction`); that run stops with a `Fenced` error.
//! This fencing comes from delta-rs; the tests exercise it on S3 (below).
//!
//! # On S3
//!
//! With the `deltalake-s3` feature, `location = s3://bucket/prefix` writes the table through
//! delta-rs' AWS storage (object_store's `AmazonS3`) to AWS S3 or an S3-compatible store
//! (`s3.endpoint`). Every worker writes its data files to the bucket itself; worker 0 writes the
//! log. What holds there:
//!
//! * **Commits are atomic and never overwrite one another.** A Delta commit is the creation of
//!   `_delta_log/<version>.json`; the sink makes delta-rs create it with a conditional put
//!   (`If-None-Match: *`, object_store's `conditional_put = etag`), so of two writers committing
//!   the same version exactly one succeeds, and the other goes through the conflict checker
//!   (above). This is safe with concurrent writers on any store that honours `If-None-Match` on
//!   `PutObject` (AWS S3, MinIO, Cloudflare R2, moto), without a separate lock service. The
//!   sink pins these storage options, so
//!   `AWS_S3_ALLOW_UNSAFE_RENAME` in the environment cannot switch it to the unsafe rename. A
//!   store that ignores the header would let a second writer silently replace a commit: do not
//!   point the sink at one.
//! * **Exactly-once** holds as on a local file system: the progress lives in the same log
//!   entry as the data files, and data files of a stopped run that no commit names are orphans
//!   readers never see (`VACUUM` removes them).
//! * Sink creation reads the table (if any) on S3, so an unreachable endpoint, a missing bucket
//!   or refused credentials stop the sink at creation with an error naming `location`,
//!   `s3.endpoint`, `s3.region` and the credential options; the secret key is never printed.
//!   Later object store errors are retried (`Retriable`).
//!
//! # Schema
//!
//! The row schema ([`SinkSpecBuilder::schema`](crate::SinkSpecBuilder::schema), or `dsink
//! --schema`) is compared with an existing table's schema at creation — names, order, types and
//! nullability — and any difference is refused with a schema error naming the columns. Without a
//! declared schema the table's own schema is used. With `create_table_if_not_exists = true` a
//! missing table is created from the row schema; see [`schema`] for the type mapping.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `location` | the table directory: a local path, a `file://` URL, or `s3://bucket/prefix` (feature `deltalake-s3`) — required |
//! | `s3.region` | the bucket's region — required with `s3://` (any value for S3-compatible stores, e.g. `us-east-1`) |
//! | `s3.endpoint` | the S3 API's URL of an S3-compatible store (MinIO, moto, …); default AWS. An `http://` endpoint allows plain HTTP |
//! | `s3.access.key`, `s3.secret.key` | static credentials, both or neither (neither: the AWS default chain — environment, profile, instance role); never printed |
//! | `s3.path.style.access` | `true` for path-style requests; default `true` with `s3.endpoint`, `false` without |
//! | `create_table_if_not_exists` | `true` to create a missing table from the row schema (default `false`) |
//! | `file.target.size` | close a data file at this many bytes of Parquet (default 128 MiB) |
//! | `upsert.index.max.bytes` | upserts: what each worker's index of the keys it owns may take (bytes, or with a `KiB`/`MiB`/`GiB` suffix; default 4 GiB, about 64 bytes besides each key's own); past it the sink stops, naming the option |
//! | `commit.interval.ms`, `commit.max_changes` | the common commit cadence: fewer, larger Delta versions |
//!
//! Each commit's `dsink` commit info counts its data files below ¾ of `file.target.size`
//! (`small_files`, Iceberg's default `min-file-size-bytes`), as do the sink's metrics
//! (`files_committed`, `small_files`; `dsink` prints them): many small files mean a longer
//! commit cadence or an OPTIMIZE is due.
//!
//! The `s3.*` options are refused for a local `location`, and `s3://` is refused naming the
//! feature in a build without `deltalake-s3`. Other object stores (`gs://`, `abfss://`, …) are not
//! supported.

mod committer;
mod config;
mod deletion_vectors;
mod progress;
pub mod schema;
mod table;
mod writer;

/// Moved to [`schema`] (the type mapping) and [`crate::encode::arrow`] (the row batcher).
#[deprecated(note = "moved to differential_sinks::connectors::deltalake::schema and differential_sinks::encode::arrow")]
pub mod batch {
    pub use super::schema::*;
    pub use crate::encode::arrow::RowBatcher;
}

pub use committer::DeltaLakeCommitter;
pub use config::{DeltaLakeConfig, DEFAULT_TARGET_FILE_SIZE};
pub use progress::{frontier_version, version_frontier, TableProgress, COMMIT_INFO_KEY};
pub use writer::{DataFile, DeltaFiles, DeltaLakeWriter};

use crate::connectors::{Connector, Writers};
use crate::delivery::runtime::current_thread;
use crate::encode::arrow::{upsert_keys, ArrowEncoder, ArrowTable};
use crate::encoded_row::RowEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for DeltaLakeConfig {
    const NAME: &'static str = "deltalake";
    const TAKES_ROWS: bool = true;
    /// Rows are packed for the table's Arrow columns where they are produced.
    const ENCODED_ROWS: bool = true;
    /// Worker 0 commits every worker's files in one snapshot / version.
    const COMMITS_ALL_WORKERS: bool = true;
    const TABLE_KEYS: bool = true;
    type Table = ArrowTable;
    type Encoder<V: Row> = ArrowEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        DeltaLakeConfig::parse(opts)
    }

    /// Checks at creation: the format, and the table against the row schema.
    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        crate::connectors::lakehouse::check_format(sink, "deltalake")?;
        current_thread("the Delta Lake sink")?.block_on(table::plan_table(self, sink)).map(drop)
    }

    /// Rows to Arrow batches of the table's schema, and the keys upserts delete.
    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &ArrowTable) -> Result<ArrowEncoder<V>> {
        ArrowEncoder::new(sink, table)
    }

    /// Opens this worker's writer (creating the table if asked and missing) and, for worker 0,
    /// the way to make the committer.
    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let plan = current_thread("the Delta Lake sink")?.block_on(table::plan_table(self, sink))?;
        let encoder = self.encoder(sink, &plan.arrow_table(self)?)?;
        let w = DeltaLakeWriter::open(self, sink, &plan, encoder, ctx)?;
        let (config, sink) = (self.clone(), sink.clone());
        let layout = ctx.layout;
        Ok(Writers::coordinated(w, move || DeltaLakeCommitter::open(&config, &sink, plan, layout)))
    }

    /// Rows packed for the table's columns ([`ArrowTable::row_encoder`]).
    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<RowEncoder<V>> {
        let plan = current_thread("the Delta Lake sink")?.block_on(table::plan_table(self, sink))?;
        Ok(plan.arrow_table(self)?.row_encoder())
    }

    /// Upserts: the key columns packed ([`KeyEncoder::row_key`](crate::encode::arrow::KeyEncoder::row_key)), which a worker's index of the
    /// table's keys is read back as.
    fn table_key<V: Row>(&self, sink: &SinkSettings) -> Result<Option<RowEncoder<V>>> {
        let plan = current_thread("the Delta Lake sink")?.block_on(table::plan_table(self, sink))?;
        let table = plan.arrow_table(self)?;
        Ok(upsert_keys(sink, &table.schema, &table.name)?.map(|k| k.row_key()))
    }
}
