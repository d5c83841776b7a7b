//! The Delta Lake connector's per-worker file writer, its committer, and the progress record.

use super::batch::{arrow_schema, check_table_schema, delta_schema, schema_from_delta, RowBatcher};
use super::upsert::{apply_deletes, deletion_vectors_enabled, load_index};
use super::DeltaLakeConfig;
use crate::connectors::lakehouse::small_files;
use crate::connectors::lakehouse::{deletes, KeyIndex, RowChange};
use crate::connectors::resumed_frontier;
use crate::encode::arrow::{split_changes, upsert_keys, KeyEncoder};
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use differential_sinks_operators::{
    resolve_resume, Change, Committer, CoordinatedWriter, Frontier, Prepared, SinkMetrics, SinkTime, SinkWriter,
    WorkerContext, WorkerProgress,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// The commit-info key under which each commit describes itself (see the module docs).
pub const COMMIT_INFO_KEY: &str = "dsink";

fn delta_error(what: &str, location: &str, e: DeltaTableError) -> Error {
    let kind = match &e {
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => ErrorKind::Retriable,
        // Another writer committed what this commit depends on: for this sink, another run of it.
        DeltaTableError::Transaction { source: TransactionError::CommitConflict(_) } => ErrorKind::Fenced,
        _ => ErrorKind::Fatal,
    };
    Error::new(kind, format!("Delta table `{location}`: {what}: {e}"))
}

pub(crate) fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the Delta Lake sink's runtime", e))
}

/// A builder for the table at `config`'s location, with its storage options.
fn table_builder(config: &DeltaLakeConfig) -> Result<DeltaTableBuilder> {
    let location = config.location.display();
    let builder = DeltaTableBuilder::from_url(config.table_url()?).map_err(|e| delta_error("opening", &location, e))?;
    let options = config.storage_options();
    Ok(if options.is_empty() { builder } else { builder.with_storage_options(options) })
}

/// The table at `config`'s location, loaded; `None` if there is none yet.
pub(crate) async fn load_table(config: &DeltaLakeConfig) -> Result<Option<DeltaTable>> {
    let location = config.location.display();
    if let Some(dir) = config.location.local() {
        if !dir.join("_delta_log").is_dir() {
            return Ok(None);
        }
    }
    match table_builder(config)?.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(storage_error(config, delta_error("loading", &location, e))),
    }
}

/// An object store failure on S3 says which options decide where the sink connects and as whom
/// (a commit conflict is not about them).
fn storage_error(config: &DeltaLakeConfig, e: Error) -> Error {
    match &config.location {
        crate::connectors::lakehouse::s3::StorageLocation::S3 { options, .. } if e.kind() != ErrorKind::Fenced => {
            let endpoint = options.endpoint.as_deref().unwrap_or("AWS");
            let message = format!(
                "{e} (check `location`'s bucket, `s3.endpoint` = `{endpoint}`, `s3.region` = `{}` and the \
                 credentials `s3.access.key` / `s3.secret.key`)",
                options.region
            );
            Error::new(e.kind(), message)
        }
        _ => e,
    }
}

/// What the sink writes: the table's Delta schema (declared, or the table's own) and its
/// partition columns.
#[derive(Clone)]
pub(crate) struct TablePlan {
    pub(crate) delta: StructType,
    pub(crate) partition_columns: Vec<String>,
    /// The sink upserts (a table it creates gets deletion vectors).
    pub(crate) upsert: bool,
}

/// Checks `spec` against the table (existing or to be created), as sink creation must.
pub(crate) async fn plan_table(config: &DeltaLakeConfig, spec: &SinkSettings) -> Result<TablePlan> {
    let location = config.location.display();
    let declared = spec.schema().map(delta_schema).transpose()?;
    match load_table(config).await? {
        Some(table) => {
            let snapshot = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
            let existing: StructType = snapshot.schema().as_ref().clone();
            let partition_columns = snapshot.metadata().partition_columns().to_vec();
            match declared {
                Some(rows) => check_table_schema(&existing, &rows, &location)?,
                // Without a declared schema the table's own is the row schema; check it is writable.
                None => drop(schema_from_delta(&existing)?),
            }
            let upsert = matches!(spec.format(), Format::Upsert);
            if upsert && !partition_columns.is_empty() {
                return Err(Error::config(format!(
                    "option `type` = `upsert`: the Delta table at `{location}` is partitioned by {partition_columns:?}; \
                     the deltalake sink upserts into unpartitioned tables only"
                )));
            }
            Ok(TablePlan { delta: existing, partition_columns, upsert })
        }
        None => {
            let Some(delta) = declared else {
                return Err(Error::config(format!(
                    "there is no Delta table at `location` = `{location}` and no row schema to create one from: \
                     declare the schema (SinkSpecBuilder::schema, or dsink --schema) with \
                     `create_table_if_not_exists = true`, or point `location` at an existing table"
                )));
            };
            if !config.create_table_if_not_exists {
                return Err(Error::config(format!(
                    "there is no Delta table at `location` = `{location}`: set `create_table_if_not_exists = true` to \
                     create it from the row schema, or point `location` at an existing table"
                )));
            }
            Ok(TablePlan { delta, partition_columns: Vec::new(), upsert: matches!(spec.format(), Format::Upsert) })
        }
    }
}

/// One Parquet data file a worker wrote and the committer adds to the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// The path relative to the table root.
    pub path: String,
    /// The size in bytes.
    pub size: i64,
    /// Milliseconds since the epoch when it was written.
    pub modification_time: i64,
    /// The partition values, for a partitioned table.
    pub partition_values: Vec<(String, Option<String>)>,
    /// Column statistics (Delta's JSON `stats`).
    pub stats: Option<String>,
}

impl DataFile {
    fn from_add(a: Add) -> Self {
        let mut partition_values: Vec<_> = a.partition_values.into_iter().collect();
        partition_values.sort();
        DataFile {
            path: a.path,
            size: a.size,
            modification_time: a.modification_time,
            partition_values,
            stats: a.stats,
        }
    }
    fn into_add(self) -> Add {
        Add {
            path: self.path,
            size: self.size,
            modification_time: self.modification_time,
            partition_values: self.partition_values.into_iter().collect(),
            data_change: true,
            stats: self.stats,
            ..Default::default()
        }
    }
}

/// What a worker hands the committer for one frontier: the data files it wrote since the last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaFiles {
    /// The files, in the order written.
    pub files: Vec<DataFile>,
    /// Rows in them.
    pub rows: u64,
    /// Upserts: every key's change, in the order the worker wrote them; `file` indexes `files`.
    pub changes: Vec<RowChange>,
}

/// The progress a table holds for one sink, read from its `txn` actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableProgress {
    /// One record per worker of the latest generation.
    pub records: Vec<WorkerProgress<u64>>,
}

fn app_ids(sink: &str, peers: usize) -> (String, String, String, String, Vec<String>) {
    (
        sink.to_string(),
        format!("{sink}.peers"),
        format!("{sink}.generation"),
        format!("{sink}.base"),
        (0..peers).map(|w| format!("{sink}.w{w}")).collect(),
    )
}

/// A frontier as a `txn` version: its time, or `i64::MAX` once the input has ended.
pub fn frontier_version(f: &Frontier<u64>) -> Result<i64> {
    match f.time() {
        None => Ok(i64::MAX),
        Some(&t) => i64::try_from(t).ok().filter(|v| *v < i64::MAX).ok_or_else(|| {
            Error::new(ErrorKind::Resume, format!("time {t} is too large to record as a Delta transaction version"))
        }),
    }
}

/// The frontier a `txn` version records.
pub fn version_frontier(v: i64) -> Result<Frontier<u64>> {
    match v {
        i64::MAX => Ok(Frontier::complete()),
        v if v >= 0 => Ok(Frontier::at(v as u64)),
        v => Err(Error::new(ErrorKind::Resume, format!("transaction version {v} is not a frontier this sink wrote"))),
    }
}

/// Reads the sink's progress from the table's `txn` actions (empty when it never committed).
pub(crate) async fn read_progress(table: &DeltaTable, sink: &str) -> Result<TableProgress> {
    let location = table.table_url().to_string();
    let state = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
    let log = table.log_store();
    let get = |app: String| {
        let log = Arc::clone(&log);
        let location = location.clone();
        async move {
            state
                .transaction_version(log.as_ref(), &app)
                .await
                .map_err(|e| delta_error(&format!("reading transaction `{app}`"), &location, e))
        }
    };
    let (min_id, peers_id, gen_id, base_id, _) = app_ids(sink, 0);
    let Some(peers) = get(peers_id).await? else {
        if get(min_id.clone()).await?.is_some() {
            return Err(Error::new(
                ErrorKind::Resume,
                format!(
                    "the Delta table `{location}` has a transaction `{min_id}` this sink did not write (no worker \
                     count recorded beside it); use another `sink.name` or a fresh table"
                ),
            ));
        }
        return Ok(TableProgress { records: Vec::new() });
    };
    let bad = |what: &str| Error::new(ErrorKind::Resume, format!("the Delta table `{location}`: {what}"));
    let peers = usize::try_from(peers).map_err(|_| bad("the recorded worker count is negative"))?;
    let generation = get(gen_id).await?.ok_or_else(|| bad("the sink's generation is missing"))? as u64;
    let base = version_frontier(get(base_id).await?.ok_or_else(|| bad("the sink's base frontier is missing"))?)?;
    let (.., workers) = app_ids(sink, peers);
    let mut records = Vec::with_capacity(peers);
    for (worker, app) in workers.into_iter().enumerate() {
        let frontier = match get(app).await? {
            Some(v) => version_frontier(v)?,
            None => base,
        };
        records.push(WorkerProgress { worker, peers, generation, base, frontier });
    }
    Ok(TableProgress { records })
}

/// One worker's writer: rows to Arrow batches to Parquet files in the table directory.
pub struct DeltaLakeWriter<V> {
    runtime: Runtime,
    config: DeltaLakeConfig,
    sink: String,
    format: Format,
    batcher: RowBatcher,
    partition_columns: Vec<String>,
    writer: Option<RecordBatchWriter>,
    files: Vec<DataFile>,
    rows: u64,
    /// Upserts: the primary key's encoder, the changes since the last prepare, and the rows in
    /// the open file (whose changes point at the next entry of `files`).
    keys: Option<KeyEncoder>,
    changes: Vec<RowChange>,
    open_rows: u64,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V: Serialize + 'static> DeltaLakeWriter<V> {
    pub(crate) fn open(config: &DeltaLakeConfig, spec: &SinkSettings, plan: &TablePlan) -> Result<Self> {
        let arrow = arrow_schema(&plan.delta)?;
        Ok(DeltaLakeWriter {
            keys: upsert_keys(spec, &arrow, &config.location.display().to_string())?,
            changes: Vec::new(),
            open_rows: 0,
            runtime: runtime()?,
            config: config.clone(),
            sink: spec.name().to_string(),
            format: spec.format().clone(),
            batcher: RowBatcher::new(arrow)?,
            partition_columns: plan.partition_columns.clone(),
            writer: None,
            files: Vec::new(),
            rows: 0,
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        })
    }

    fn location(&self) -> String {
        self.config.location.display()
    }

    fn file_writer(&mut self) -> Result<&mut RecordBatchWriter> {
        if self.writer.is_none() {
            let url = self.config.table_url()?;
            let schema = Arc::clone(self.batcher.schema());
            let parts = (!self.partition_columns.is_empty()).then(|| self.partition_columns.clone());
            let _guard = self.runtime.enter();
            let options = self.config.storage_options();
            let options = (!options.is_empty()).then_some(options);
            let w = RecordBatchWriter::try_new(url.as_str(), schema, parts, options)
                .map_err(|e| delta_error("opening a data file writer", &self.location(), e))?;
            self.writer = Some(w);
        }
        Ok(self.writer.as_mut().expect("set above"))
    }

    /// Writes a batch into the open data file, and closes the file once it reaches the target size.
    fn write_batch(&mut self, batch: RecordBatch) -> Result<()> {
        let location = self.location();
        let target = self.config.target_file_size;
        let n = batch.num_rows() as u64;
        self.file_writer()?;
        let w = self.writer.as_mut().expect("opened above");
        self.runtime.block_on(w.write(batch)).map_err(|e| delta_error("encoding Parquet", &location, e))?;
        self.open_rows += n;
        if w.buffer_len() >= target {
            self.close_files()?;
        }
        Ok(())
    }

    /// Upserts: the new rows go into the data files like appends; every key's change is kept,
    /// with its row's place, for the committer to turn into deletion vectors.
    fn write_upserts(&mut self, changes: &[Change<Key, V>]) -> Result<()> {
        let (rows, gone) = split_changes(changes);
        let keys = self.keys.as_ref().expect("upsert mode");
        self.changes.extend(deletes(&mut self.batcher, keys, &gone)?);
        SinkMetrics::add(&self.metrics.records_out, gone.len() as u64);
        let n = rows.len() as u64;
        let Some(batch) = self.batcher.batch(&rows)? else { return Ok(()) };
        // The rows go into the open file, which becomes the next of `files` when it is closed.
        let (file, first) = (self.files.len() as u32, self.open_rows);
        for (i, key) in keys.encode_batch(&batch)?.into_iter().enumerate() {
            self.changes.push(RowChange::Upsert { key, file, pos: first + i as u64 });
        }
        self.write_batch(batch)?;
        self.rows += n;
        SinkMetrics::add(&self.metrics.records_out, n);
        Ok(())
    }

    /// Closes the open data files and keeps them for the next prepare.
    fn close_files(&mut self) -> Result<()> {
        let location = self.location();
        let Some(w) = self.writer.as_mut() else { return Ok(()) };
        if w.buffered_record_batch_count() == 0 {
            return Ok(());
        }
        let adds = self
            .runtime
            .block_on(w.flush())
            .map_err(|e| storage_error(&self.config, delta_error("writing a data file", &location, e)))?;
        if self.keys.is_some() && adds.len() != 1 {
            // An unpartitioned writer makes one file per flush; the changes point at it.
            return Err(Error::new(
                ErrorKind::Fatal,
                format!("Delta table `{location}`: a flush of upserted rows made {} files, not one", adds.len()),
            ));
        }
        self.open_rows = 0;
        let bytes: i64 = adds.iter().map(|a| a.size).sum();
        SinkMetrics::add(&self.metrics.bytes_out, bytes.max(0) as u64);
        self.files.extend(adds.into_iter().map(DataFile::from_add));
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for DeltaLakeWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let progress = match self.runtime.block_on(load_table(&self.config))? {
            Some(table) => self.runtime.block_on(read_progress(&table, &self.sink))?,
            None => TableProgress { records: Vec::new() },
        };
        let point = resolve_resume(&progress.records, ctx)?;
        resumed_frontier(point.frontier)
    }

    fn write(&mut self, _time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        if self.keys.is_some() {
            return self.write_upserts(changes);
        }
        let mut rows: Vec<&V> = Vec::with_capacity(changes.len());
        for change in changes.iter() {
            self.format.emit(change, |e| {
                if let Emission::Row { row, .. } = e {
                    rows.push(row);
                }
            })?;
        }
        let n = rows.len() as u64;
        let Some(batch) = self.batcher.batch(&rows)? else { return Ok(()) };
        self.write_batch(batch)?;
        self.rows += n;
        SinkMetrics::add(&self.metrics.records_out, n);
        Ok(())
    }

    fn commit(&mut self, _upper: &Frontier<T>) -> Result<()> {
        Err(Error::config("the deltalake connector commits for all workers at once; it cannot commit one worker"))
    }
}

impl<V: Serialize + 'static, T: SinkTime> CoordinatedWriter<Key, V, T> for DeltaLakeWriter<V> {
    type Prepared = DeltaFiles;

    fn prepare(&mut self, _upper: &Frontier<T>) -> Result<DeltaFiles> {
        self.close_files()?;
        Ok(DeltaFiles {
            files: std::mem::take(&mut self.files),
            rows: std::mem::take(&mut self.rows),
            changes: std::mem::take(&mut self.changes),
        })
    }
}

/// The committer on worker 0: one Delta commit per round, holding every worker's data files, the
/// sink's `txn` actions and a commit-info entry describing the commit.
pub struct DeltaLakeCommitter {
    runtime: Runtime,
    config: DeltaLakeConfig,
    sink: String,
    plan: TablePlan,
    table: Option<DeltaTable>,
    peers: usize,
    generation: u64,
    base: Frontier<u64>,
    committed: Frontier<u64>,
    /// Upserts: the primary key's encoder, and where each key's row is (read at resume).
    keys: Option<KeyEncoder>,
    index: Option<KeyIndex<()>>,
    metrics: Arc<SinkMetrics>,
}

impl DeltaLakeCommitter {
    pub(crate) fn open(config: &DeltaLakeConfig, spec: &SinkSettings, plan: TablePlan) -> Result<Self> {
        let keys = upsert_keys(spec, &arrow_schema(&plan.delta)?, &config.location.display().to_string())?;
        Ok(DeltaLakeCommitter {
            keys,
            index: None,
            metrics: Arc::clone(spec.metrics()),
            runtime: runtime()?,
            config: config.clone(),
            sink: spec.name().to_string(),
            plan,
            table: None,
            peers: 0,
            generation: 0,
            base: Frontier::minimum(),
            committed: Frontier::minimum(),
        })
    }

    fn location(&self) -> String {
        self.config.location.display()
    }

    /// Loads the table, creating it from the row schema if the sink was told to.
    async fn table(config: &DeltaLakeConfig, plan: &TablePlan, sink: &str) -> Result<DeltaTable> {
        let location = config.location.display();
        if let Some(t) = load_table(config).await? {
            let snapshot = t.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
            check_table_schema(snapshot.schema().as_ref(), &plan.delta, &location)?;
            return Ok(t);
        }
        if !config.create_table_if_not_exists {
            return Err(Error::config(format!(
                "the Delta table at `location` = `{location}` disappeared; set `create_table_if_not_exists = true` or \
                 restore it"
            )));
        }
        if let Some(dir) = config.location.local() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {location}"), e))?;
        }
        table_builder(config)?
            .build()
            .map_err(|e| delta_error("opening", &location, e))?
            .create()
            .with_columns(plan.delta.fields().cloned())
            .with_table_name(sink)
            .with_save_mode(SaveMode::Ignore)
            // Upserts delete rows with deletion vectors.
            .with_configuration_property(TableProperty::EnableDeletionVectors, plan.upsert.then_some("true"))
            .await
            .map_err(|e| storage_error(config, delta_error("creating the table", &location, e)))
    }
}

impl<T: SinkTime> Committer<DeltaFiles, T> for DeltaLakeCommitter {
    type Error = Error;

    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>> {
        let table = self.runtime.block_on(Self::table(&self.config, &self.plan, &self.sink))?;
        let progress = self.runtime.block_on(read_progress(&table, &self.sink))?;
        if let Some(keys) = &self.keys {
            let location = self.location();
            if !deletion_vectors_enabled(&table) {
                return Err(Error::config(format!(
                    "option `type` = `upsert`: the Delta table at `{location}` does not have deletion vectors, \
                     which the deltalake sink's upserts write; enable them on the table (table property \
                     `delta.enableDeletionVectors = true`, e.g. Spark's ALTER TABLE … SET TBLPROPERTIES), or \
                     let the sink create a new table"
                )));
            }
            self.index = Some(self.runtime.block_on(load_index(&table, keys, &location))?);
        }
        self.table = Some(table);
        self.peers = peers;
        let point = resolve_resume(&progress.records, WorkerContext { index: 0, peers })?;
        self.generation = point.generation;
        self.base = point.base;
        if progress.records.is_empty() {
            return Ok(Vec::new());
        }
        let frontiers: Vec<Frontier<u64>> =
            if progress.records[0].peers == peers && point.generation == progress.records[0].generation {
                progress.records.iter().map(|r| r.frontier).collect()
            } else {
                vec![point.frontier; peers]
            };
        self.committed = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        frontiers.into_iter().map(resumed_frontier).collect()
    }

    fn commit(&mut self, prepared: Vec<Prepared<DeltaFiles, T>>, frontiers: &[Frontier<T>]) -> Result<()> {
        let frontiers: Vec<Frontier<u64>> = frontiers.iter().map(Frontier::to_u64_frontier).collect();
        let upper = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        let rows: u64 = prepared.iter().map(|p| p.token.rows).sum();
        let location = self.location();
        let plan = self.index.as_ref().map(|index| {
            let paths: Vec<Vec<String>> =
                prepared.iter().map(|p| p.token.files.iter().map(|f| f.path.clone()).collect()).collect();
            index.plan(
                paths.iter().zip(&prepared).map(|(paths, p)| (paths.as_slice(), p.token.changes.as_slice())),
                |_| (),
            )
        });
        let mut adds: Vec<Add> = prepared.into_iter().flat_map(|p| p.token.files).map(DataFile::into_add).collect();
        let mut files: Vec<Action> = Vec::new();
        if let Some(plan) = &plan {
            let deletes: Vec<(String, Vec<u64>)> = plan.deletes.iter().flat_map(|(_, d)| d.iter().cloned()).collect();
            let table = self.table.as_ref().ok_or_else(|| Error::config("commit before resume"))?;
            files = self.runtime.block_on(apply_deletes(table, deletes, &mut adds, &location))?;
        }
        let data_files = adds.len();
        let small = small_files(adds.iter().map(|a| a.size.max(0) as u64), self.config.target_file_size);
        files.extend(adds.into_iter().map(Action::Add));
        if files.is_empty() {
            // Nothing to add: the rounds had no rows. Recording the frontier alone would make a
            // table version per frontier advance; a restart replays these times and writes
            // nothing for them, so skipping the commit loses and duplicates nothing.
            return Ok(());
        }
        let (min_id, peers_id, gen_id, base_id, workers) = app_ids(&self.sink, self.peers);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let txn = |app: String, v: i64| Transaction::new_with_last_update(app, v, Some(now));
        let mut txns = vec![
            txn(min_id, frontier_version(&upper)?),
            txn(peers_id, self.peers as i64),
            txn(gen_id, self.generation as i64),
            txn(base_id, frontier_version(&self.base)?),
        ];
        for (app, f) in workers.into_iter().zip(&frontiers) {
            txns.push(txn(app, frontier_version(f)?));
        }
        let info = serde_json::json!({
            "sink": self.sink,
            "from": self.committed.to_u64(),
            "to": upper.to_u64(),
            "peers": self.peers,
            "generation": self.generation,
            "frontiers": frontiers.iter().map(|f| f.to_u64()).collect::<Vec<_>>(),
            "files": data_files,
            "small_files": small,
            "rows": rows,
            "deleted": plan.as_ref().map_or(0, |p| p.delete_count()),
        });
        let props = CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata([(COMMIT_INFO_KEY.to_string(), info)]);
        let table = self.table.as_mut().ok_or_else(|| Error::config("commit before resume"))?;
        let partition_by = (!self.plan.partition_columns.is_empty()).then(|| self.plan.partition_columns.clone());
        let operation = if plan.is_some() {
            // What streaming engines record for an update-mode micro-batch.
            DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Update,
                query_id: self.sink.clone(),
                epoch_id: frontier_version(&upper)?,
            }
        } else {
            DeltaOperation::Write { mode: SaveMode::Append, partition_by, predicate: None }
        };
        // Data files (and deletion vectors) written, the log entry not yet.
        crate::operators::crash_point("commit.mid");
        let config = &self.config;
        let finalized = self.runtime.block_on(async {
            let snapshot = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
            CommitBuilder::from(props)
                .with_actions(files)
                .build(Some(snapshot), table.log_store(), operation)
                .await
                .map_err(|e| storage_error(config, delta_error("committing", &location, e)))
        })?;
        table.state = Some(finalized.snapshot());
        SinkMetrics::add(&self.metrics.files_committed, data_files as u64);
        SinkMetrics::add(&self.metrics.small_files, small);
        if let (Some(index), Some(plan)) = (self.index.as_mut(), plan) {
            index.apply(plan);
        }
        tracing::debug!(sink = %self.sink, version = finalized.version(), upper = ?upper, "committed to Delta");
        self.committed = upper;
        Ok(())
    }
}
