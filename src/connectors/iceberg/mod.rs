//! The `iceberg` connector: an Apache Iceberg table, appended to or upserted, written by every
//! worker in parallel and committed by one, through a SQL catalog kept in SQLite.
//!
//! ```text
//!  worker 0..n   changes ─► rows ─► Arrow batch (encode::arrow) ─► Parquet data files
//!                │  prepare(upper): close the open files → IcebergFiles { data files as JSON }
//!                ▼
//!  worker 0      committer: one snapshot per round =
//!                  every worker's data files
//!                + upserts: one position-delete file for the rows they replace (see Upserts)
//!                + summary "dsink.*" = { sink, from, to, frontiers, peers, generation, base, files, rows }
//!                  → the catalog swaps the table's metadata pointer (one SQL UPDATE)
//! ```
//!
//! **Append-only** rounds are iceberg-rust's fast appends. `type = append-only` with
//! `force_append_only = true` writes a collection that has retractions (deletes are dropped,
//! updates become inserts).
//!
//! **Upserts** (`type = upsert` with `primary_key`) are written as *position deletes*; see
//! [Upserts](#upserts) below. `type = debezium` is refused: a table holds rows, not events.
//!
//! # Upserts
//!
//! Workers write each key's new row into their data files and send the committer, with the
//! files, every key's change in the order they wrote them: where the new row is (data file and
//! row position), or that the key was deleted. Worker 0 keeps a
//! [`KeyIndex`](crate::connectors::lakehouse::KeyIndex) — the data file and position of every
//! live key's row — read from the table when the sink starts (the key columns of its data files,
//! minus its position deletes) and kept current by its own commits. A round's changes become the positions of the rows they replace, in older files or in files of the same
//! round when a key changed twice before the commit; they are written into one position-delete
//! file and committed with the round's data files in one snapshot (operation `overwrite`, or
//! `append` when nothing was replaced). Keys are compared in Arrow's row format of the key
//! columns ([`KeyEncoder`](crate::encode::arrow::KeyEncoder)), computed from the very arrays
//! written, so keys read back from Parquet equal the keys workers send.
//!
//! iceberg-rust's transactions add data files only (no row-delta commit), so the sink
//! writes the manifests, manifest list and metadata file itself and swaps the metadata location
//! in the catalog's `iceberg_tables` row with the same compare-and-swap `UPDATE` the SQL catalog
//! uses, after the same fencing check as an append; a lost swap reloads and tries again.
//!
//! Position deletes rather than the equality deletes RisingWave writes: readers apply them
//! without comparing rows (pyiceberg, the tests' reader, refuses equality deletes), at the price
//! of the index on worker 0 (the key's bytes and a few words per live row). A table holding
//! equality deletes (from another engine) is refused when the sink starts; rows other writers add
//! with a key while the sink runs are not seen by the index, so give the sink the table's keys to
//! itself. Format-2 tables only.
//!
//! # Exactly-once
//!
//! The operator's coordinated mode makes one snapshot per commit round for all workers. Its
//! summary, written atomically with the data files (the catalog's compare-and-swap of the
//! metadata location makes the snapshot and its summary visible at once, or not at all), records
//! the sink's progress:
//!
//! | summary property | value |
//! |---|---|
//! | `dsink.sink` | the sink's name (`sink.name`) |
//! | `dsink.from`, `dsink.to` | the frontier before and after this commit: `[from, to)` are the times it holds (`complete` once the input ended) |
//! | `dsink.frontiers` | every worker's frontier, comma-separated |
//! | `dsink.peers`, `dsink.generation`, `dsink.base` | the worker count and generation (see [`resolve_resume`](differential_sinks_operators::resolve_resume)) |
//! | `dsink.files`, `dsink.rows` | what the snapshot added |
//! | `dsink.small-files` | how many of its data files are below ¾ of `file.target.size` (Iceberg's default `min-file-size-bytes` for compaction); also counted in the sink's metrics (`files_committed`, `small_files`) |
//!
//! A restarted sink walks back from the table's current snapshot through its ancestors to the
//! latest snapshot whose `dsink.sink` is its name, and drops every change before the frontiers
//! recorded there, so each change lands in exactly one snapshot. Other writers may commit to the
//! same table in between: their snapshots are skipped. Data files written but not committed by a
//! run that stopped are referenced by no manifest, so readers never see them; they are orphans
//! that Iceberg's orphan-file removal deletes. A round in which no worker wrote a row makes no
//! snapshot. A restart with a different worker count is accepted only when every worker had
//! reached the same frontier.
//!
//! A second run of the same sink cannot append the same times again: every commit attempt
//! (iceberg-rust's transaction reloads the table before each attempt and retries a lost
//! compare-and-swap) loads the table through a catalog wrapper that first checks the sink's
//! latest snapshot is still the one this run made last, and the SQL catalog's compare-and-swap
//! of the metadata location rules out any commit between that load and the swap. A run that
//! finds another snapshot of its sink stops with a `Fenced` error and appends nothing. Other
//! writers' commits in between are harmless: the attempt is retried on the newer table.
//!
//! Each commit also sets the table property `dsink.progress.<sink>` to the frontier it reached,
//! in the same metadata swap. Properties outlive snapshots: when a restart finds the property but
//! no snapshot of its sink on the current branch — the snapshots were expired (possible once
//! other writers committed after the sink) or the table was rolled back — it refuses to start
//! with a `Resume` error instead of delivering everything again or skipping what was rolled
//! back. Keep the sink's latest snapshot when expiring snapshots of a table others also write.
//!
//! # Schema
//!
//! The row schema ([`SinkSpecBuilder::schema`](crate::SinkSpecBuilder::schema), or `dsink
//! --schema`) is compared with an existing table's current schema at creation — names, order,
//! types and nullability — and any difference is refused with a schema error naming the columns.
//! Without a declared schema the table's own is used. With `create_table_if_not_exists = true` a
//! missing namespace and table are created (format v2, partitioned by `partition_by` if given)
//! from the row schema:
//!
//! | row schema type | Iceberg type | Arrow type |
//! |---|---|---|
//! | `boolean` | `boolean` | `Boolean` |
//! | `int32` / `int64` | `int` / `long` | `Int32` / `Int64` |
//! | `float32` / `float64` | `float` / `double` | `Float32` / `Float64` |
//! | `decimal(p,s)` | `decimal(p,s)` | `Decimal128(p, s)` |
//! | `string` | `string` | `Utf8` |
//! | `date` | `date` | `Date32` |
//! | `timestamp` | `timestamp` | `Timestamp(Microsecond, None)` |
//! | `timestamptz` | `timestamptz` | `Timestamp(Microsecond, "+00:00")` |
//!
//! `bytes` and `json` columns are refused, as are tables with nested or other column types.
//!
//! # Partitioning
//!
//! `partition_by` gives a table the sink creates a partition spec, in the form other engines
//! write it: comma-separated terms, each a column (identity), `bucket(N, col)`,
//! `truncate(W, col)`, `year(col)`, `month(col)`, `day(col)` or `hour(col)`; the partition fields
//! are named as Iceberg's Java writers name them (`col_bucket`, `col_day`, …). An existing table
//! keeps its own spec: without `partition_by` the sink writes whatever it is, and a different
//! `partition_by` is refused at creation. Every worker splits its batches by partition
//! (iceberg-rust's `RecordBatchPartitionSplitter`) and keeps one open data file per partition,
//! under `data/<field>=<value>/…`; upserts write one position-delete file per partition of the
//! rows they delete, so a row that moves to another partition is deleted in the one it left.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `warehouse.path` | the warehouse: a local path, a `file://` URL, or `s3://bucket/prefix` (feature `iceberg-s3`) — required |
//! | `database.name` | the namespace (dot-separated for nested ones) — required |
//! | `table.name` | the table — required |
//! | `catalog.type` | `sql` (the default; SQLite through sqlx) or `rest` (an Iceberg REST catalog server; see [REST catalog](#rest-catalog)). `glue`, `hive`, `storage`, `memory` are refused: this build has no client for them, and an in-memory catalog forgets the table and the sink's progress |
//! | `catalog.uri` | the SQL catalog's database, `sqlite:/path/catalog.db` (default `<warehouse.path>/catalog.db`; required with an `s3://` warehouse); for `rest`, the server's base URL (required) |
//! | `catalog.credential` | `rest`: OAuth2 client credentials `client_id:client_secret`, exchanged for a token; never printed |
//! | `catalog.token` | `rest`: a bearer token sent as it is; never printed |
//! | `catalog.oauth2_server_uri`, `catalog.scope` | `rest`: the token endpoint (default `<catalog.uri>/v1/oauth/tokens`) and scope (default `catalog`) of the credential's exchange |
//! | `s3.region` | the bucket's region — required with `s3://` (any value for S3-compatible stores, e.g. `us-east-1`) |
//! | `s3.endpoint` | the S3 API's URL of an S3-compatible store (MinIO, moto, …); default AWS. An `http://` endpoint allows plain HTTP |
//! | `s3.access.key`, `s3.secret.key` | static credentials, both or neither (neither: the AWS default chain — environment, profile, instance role); never printed |
//! | `s3.path.style.access` | `true` for path-style requests; default `true` with `s3.endpoint`, `false` without |
//! | `catalog.name` | the catalog's name in the SQL catalog's rows (default `default`) |
//! | `create_table_if_not_exists` | `true` to create a missing namespace and table from the row schema (default `false`) |
//! | `partition_by` | the partition spec of a table the sink creates (see [Partitioning](#partitioning)) |
//! | `file.target.size` | roll to a new data file at this many bytes of Parquet (default 128 MiB) |
//! | `upsert.index.max.bytes` | upserts: what each worker's index of the keys it owns may take (bytes, or with a `KiB`/`MiB`/`GiB` suffix; default 4 GiB, about 64 bytes besides each key's own); past it the sink stops, naming the option |
//! | `commit.interval.ms`, `commit.max_changes` | the common commit cadence: fewer, larger snapshots |
//!
//! Every worker writes its data files under the table's location itself and opens the catalog:
//! a timely cluster of several processes needs the catalog file, and a local warehouse, on a file
//! system they all share.
//!
//! # On S3
//!
//! With the `iceberg-s3` feature, `warehouse.path = s3://bucket/prefix` puts the tables' data and
//! metadata files on AWS S3 or an S3-compatible store (`s3.endpoint`) through iceberg-rust's own
//! S3 storage (`iceberg-storage-opendal`, OpenDAL's S3 service). The catalog stays a SQLite file:
//! SQLite cannot live on S3, so `catalog.uri` must name it (there is no default next to an S3
//! warehouse). What holds there:
//!
//! * **Commits are as atomic as on a local warehouse**: a commit writes a new metadata file
//!   (a fresh UUID name, never overwritten) and then swaps the table's metadata pointer in the
//!   SQLite catalog with a compare-and-swap. S3 itself is never asked for an atomic operation,
//!   so any S3-compatible store works; two writers are kept apart by the catalog, as above.
//! * **Exactly-once** and the fencing of a second run hold unchanged: the progress is in the
//!   snapshot summary the swap publishes. Data files of a stopped run are orphans on S3.
//! * Sink creation loads (or creates) the table, so an unreachable endpoint, a missing bucket or
//!   refused credentials stop the sink at creation with an error naming `warehouse.path`,
//!   `s3.endpoint`, `s3.region` and the credential options; the secret key is never printed.
//!
//! pyiceberg reads such a table with its `SqlCatalog` on the same SQLite file and the S3
//! properties `s3.endpoint`, `s3.region`, `s3.access-key-id`, `s3.secret-access-key`.
//!
//! The SQL catalog's tables are those of Iceberg's JDBC catalog, so pyiceberg's `SqlCatalog`
//! (and Java's `JdbcCatalog`) open the same database and read the table.
//!
//! # REST catalog
//!
//! With `catalog.type = rest` the table's metadata pointer lives in an Iceberg REST catalog
//! server (iceberg-rust's REST client); `warehouse.path` is sent as the catalog's `warehouse`
//! and picks the storage the data files are written through. The committer's fencing is the
//! same: every load a commit attempt starts from checks the sink's latest snapshot, and the
//! commit's requirements (`assert-table-uuid`, `assert-ref-snapshot-id`) make the server refuse
//! it (`409`) if anything committed since that load — the compare-and-swap. After a `409` the
//! transaction loads the table again: a snapshot of this sink that this run did not make stops
//! it as `Fenced`, any other writer's is committed on top of. Upserts' row deltas, which the
//! sink builds itself, are sent the same way (`rest_commit`): their metadata changes
//! (`add-snapshot`, `set-snapshot-ref`, `set-properties`) with those two requirements.

mod catalog;
mod committer;
mod config;
mod position_deletes;
mod progress;
mod rest;
mod rest_commit;
mod schema;
mod storage;
mod table;
mod writer;

pub use committer::IcebergCommitter;
pub use config::{
    CatalogKind, IcebergConfig, RestOptions, DEFAULT_CATALOG_NAME, DEFAULT_TARGET_FILE_SIZE, EMBEDDED_CATALOG_FILE,
};
pub use position_deletes::{FILE_PATH_FIELD_ID, POS_FIELD_ID};
pub use progress::{frontier_text, parse_frontier, progress_property, CommitRecord, SUMMARY_PREFIX};
pub use schema::{check_table_schema, iceberg_schema, iceberg_type, schema_from_iceberg};
pub use writer::{IcebergFiles, IcebergWriter};

use crate::connectors::{Connector, Writers};
use crate::encode::arrow::{upsert_keys, ArrowEncoder, ArrowTable};
use crate::encoded_row::RowEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for IcebergConfig {
    const NAME: &'static str = "iceberg";
    const TAKES_ROWS: bool = true;
    /// Rows are packed for the table's Arrow columns where they are produced.
    const ENCODED_ROWS: bool = true;
    /// Worker 0 commits every worker's files in one snapshot / version.
    const COMMITS_ALL_WORKERS: bool = true;
    const TABLE_KEYS: bool = true;
    type Table = ArrowTable;
    type Encoder<V: Row> = ArrowEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        IcebergConfig::parse(opts)
    }

    /// Checks at creation: the format, and the table against the row schema.
    fn validate(&self, sink: &SinkSettings) -> Result<()> {
        crate::connectors::lakehouse::check_format(sink, "iceberg")?;
        table::check_table(self, sink).map_err(|e| storage::explain(self, e))
    }

    /// Rows to Arrow batches of the table's schema, and the keys upserts delete.
    fn encoder<V: Row>(&self, sink: &SinkSettings, table: &ArrowTable) -> Result<ArrowEncoder<V>> {
        ArrowEncoder::new(sink, table)
    }

    /// Opens this worker's writer (creating the table if asked and missing) and, for worker 0,
    /// the way to make the committer.
    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let plan = table::open_table(self, sink).map_err(|e| storage::explain(self, e))?;
        let encoder = self.encoder(sink, &plan.arrow_table(self))?;
        let w = IcebergWriter::open(self, sink, plan.clone(), encoder, ctx).map_err(|e| storage::explain(self, e))?;
        let (config, sink) = (self.clone(), sink.clone());
        let layout = ctx.layout;
        Ok(Writers::coordinated(w, move || IcebergCommitter::open(&config, &sink, plan, layout)))
    }

    /// Rows packed for the table's columns ([`ArrowTable::row_encoder`]).
    fn row_encoder<V: Row>(&self, sink: &SinkSettings) -> Result<RowEncoder<V>> {
        let plan = table::open_table(self, sink).map_err(|e| storage::explain(self, e))?;
        Ok(plan.arrow_table(self).row_encoder())
    }

    /// Upserts: the key columns packed ([`KeyEncoder::row_key`](crate::encode::arrow::KeyEncoder::row_key)), which a worker's index of the
    /// table's keys is read back as.
    fn table_key<V: Row>(&self, sink: &SinkSettings) -> Result<Option<RowEncoder<V>>> {
        let plan = table::open_table(self, sink).map_err(|e| storage::explain(self, e))?;
        let table = plan.arrow_table(self);
        Ok(upsert_keys(sink, &table.schema, &table.name)?.map(|k| k.row_key()))
    }
}
