//! One worker's Delta Lake writer: the [`ArrowEncoder`]'s batches into Parquet data files in the
//! table directory (delta-rs' `RecordBatchWriter`), handed to the committer at each prepare
//! ([`DeltaFiles`]); nothing reaches the log until the committer commits them. The worker encodes;
//! the files are written on their own thread ([`FileThread`]).
//!
//! A data file is one Parquet row group, closed when the file reaches `target_file_size`
//! ([`writer_properties`]): `RecordBatchWriter` copies the finished row groups of its in-memory
//! file on every write (to restore them if the write fails), which grows with the file once it
//! passes a row group; with one row group per file there is never one to copy, and the file is
//! copied once, when it is stored. (delta-rs' streaming writer, which uploads row groups as they
//! fill, comes only with its DataFusion feature.)
//!
//! Upserts: the file thread keeps the index of the keys this worker owns ([`KeyIndex`], read
//! from the table at start) and follows every written row and deleted key in it. At each prepare
//! — and before it, when a file closes and the positions found take `file.target.size` — it
//! writes the deletion vectors of the data files it wrote in this run (only it deletes rows of
//! those) into one vector file, each vector holding every row of its file deleted so far, and
//! hands the committer those and the positions it deletes in older files — a file written before
//! a change of the worker count or by another writer may hold rows of several workers' keys, and
//! a data file has one vector, so the committer merges every worker's positions there.

use super::deletion_vectors::{load_index, OwnVectors};
use super::progress::{read_progress, TableProgress};
use super::table::{delta_error, load_table, storage_error, table_builder, TablePlan};
use super::DeltaLakeConfig;
use crate::connectors::lakehouse::file_thread::{DataFiles, FileThread};
use crate::connectors::lakehouse::{owned_by, FileDeletes, KeyIndex};
use crate::connectors::resumed_frontier;
use crate::encode::arrow::{ArrowChanges, ArrowEncoder, KeyEncoder};
use crate::encode::ChangeEncoder;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use deltalake::kernel::{Add, DeletionVectorDescriptor, StorageType};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use differential_sinks_operators::{
    resolve_resume, Change, CoordinatedWriter, Frontier, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// How data files are encoded: Snappy, as delta-rs writes them, and one row group per file (no
/// row-count or byte limit: the writer closes the file at the target size instead).
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(format!("differential-sinks {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .build()
}

/// What a position to delete takes while it waits (a file id and a position).
const BYTES_PER_DELETE: usize = 16;

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
    pub(crate) fn from_add(a: Add) -> Self {
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
    pub(crate) fn into_add(self) -> Add {
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
    /// Upserts: the rows the worker's changes replaced or deleted in files older than the run,
    /// by data file, positions ascending (other workers may delete rows of the same files).
    pub deletes: Vec<FileDeletes>,
    /// Upserts: the deletion vectors of files this worker wrote (in this round or before), each
    /// holding every row of the file deleted so far.
    pub vectors: Vec<OwnVector>,
    /// Upserts: the rows this round deletes, in all.
    pub deleted: u64,
}

/// A deletion vector a worker wrote for one of its own data files (stored relative to the table
/// root, in the file the UUID names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnVector {
    /// The data file.
    pub path: String,
    /// The vector file's z85-encoded UUID.
    pub uuid: String,
    /// Where the vector starts in that file.
    pub offset: Option<i32>,
    /// Its size in bytes.
    pub size: i32,
    /// The rows it deletes.
    pub cardinality: i64,
}

impl OwnVector {
    fn new(path: String, d: DeletionVectorDescriptor) -> Self {
        OwnVector {
            path,
            uuid: d.path_or_inline_dv,
            offset: d.offset,
            size: d.size_in_bytes,
            cardinality: d.cardinality,
        }
    }

    /// The data file's path and its vector's descriptor.
    pub fn into_descriptor(self) -> (String, DeletionVectorDescriptor) {
        let d = DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: self.uuid,
            offset: self.offset,
            size_in_bytes: self.size,
            cardinality: self.cardinality,
        };
        (self.path, d)
    }
}

/// One worker's writer: rows to Arrow batches (on the worker) to Parquet files in the table
/// directory (on the writer's file thread).
pub struct DeltaLakeWriter<V> {
    runtime: Runtime,
    config: DeltaLakeConfig,
    sink: String,
    /// Changes to Arrow batches (and, for upserts, deleted keys).
    encoder: ArrowEncoder<V>,
    files: FileThread<DeltaDataFiles>,
}

/// A worker's data files, on the file thread.
struct DeltaDataFiles {
    runtime: Runtime,
    config: DeltaLakeConfig,
    schema: SchemaRef,
    /// Upserts: the keys of written rows.
    keys: Option<KeyEncoder>,
    partition_columns: Vec<String>,
    writer: Option<RecordBatchWriter>,
    files: Vec<DataFile>,
    rows: u64,
    /// Upserts: where each key this worker owns has its row, and the open file's id there (its
    /// path is known once it is closed).
    index: KeyIndex<()>,
    open_file: Option<u32>,
    /// Upserts: the data files this worker wrote in this run, and their deletion vectors.
    own: HashSet<String>,
    vectors: Option<OwnVectors>,
    /// Upserts, since the last prepare: the vectors written of own files, the positions to
    /// delete in older files, and the rows deleted in all.
    own_vectors: Vec<OwnVector>,
    older_deletes: Vec<FileDeletes>,
    deleted: u64,
    /// Rows in the open file.
    open_rows: u64,
    metrics: WorkerMetrics,
}

impl<V: Serialize + 'static> DeltaLakeWriter<V> {
    /// The writer of `plan`'s table, encoding with `encoder`.
    pub(crate) fn open(
        config: &DeltaLakeConfig,
        spec: &SinkSettings,
        plan: &TablePlan,
        encoder: ArrowEncoder<V>,
        ctx: WorkerContext,
    ) -> Result<Self> {
        let location = config.location.display();
        let runtime = crate::delivery::runtime::current_thread("the Delta Lake sink")?;
        let keys = encoder.keys().cloned();
        let index = match (&keys, runtime.block_on(load_table(config))?) {
            (Some(keys), Some(table)) => {
                runtime.block_on(load_index(&table, keys, &location, owned_by(ctx), config.index_max_bytes))?
            }
            _ => KeyIndex::with_budget(config.index_max_bytes),
        };
        let vectors = match &keys {
            Some(_) => {
                let _guard = runtime.enter();
                let store = table_builder(config)?
                    .build_storage()
                    .map_err(|e| delta_error("opening the storage", &location, e))?;
                Some(OwnVectors::new(store, config.table_url()?, location.clone()))
            }
            None => None,
        };
        let files = DeltaDataFiles {
            own: HashSet::new(),
            vectors,
            own_vectors: Vec::new(),
            older_deletes: Vec::new(),
            deleted: 0,
            runtime,
            config: config.clone(),
            schema: Arc::clone(encoder.schema()),
            keys,
            index,
            open_file: None,
            partition_columns: plan.partition_columns.clone(),
            writer: None,
            files: Vec::new(),
            rows: 0,
            open_rows: 0,
            metrics: spec.worker_metrics(),
        };
        Ok(DeltaLakeWriter {
            runtime: crate::delivery::runtime::current_thread("the Delta Lake sink")?,
            config: config.clone(),
            sink: spec.name().to_string(),
            encoder,
            files: FileThread::spawn("dsink:deltalake".into(), files)?,
        })
    }
}

impl DeltaDataFiles {
    fn location(&self) -> String {
        self.config.location.display()
    }

    fn file_writer(&mut self) -> Result<&mut RecordBatchWriter> {
        if self.writer.is_none() {
            let url = self.config.table_url()?;
            let schema = Arc::clone(&self.schema);
            let parts = (!self.partition_columns.is_empty()).then(|| self.partition_columns.clone());
            let _guard = self.runtime.enter();
            let options = self.config.storage_options();
            let options = (!options.is_empty()).then_some(options);
            let w = RecordBatchWriter::try_new(url.as_str(), schema, parts, options)
                .map_err(|e| delta_error("opening a data file writer", &self.location(), e))?
                .with_writer_properties(writer_properties());
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

    /// Writes one time's encoded changes. Upserts: the new rows go into the data files like
    /// appends, and every key's change moves its place in the index.
    fn write_encoded(&mut self, out: ArrowChanges) -> Result<()> {
        self.metrics.records_out(out.deleted.len() as u64);
        for key in out.deleted.iter() {
            self.index.delete(key);
        }
        for batch in out.batches {
            let n = batch.num_rows() as u64;
            if let Some(keys) = self.keys.as_ref() {
                // The rows go into the open file, named once it is closed.
                let index = &mut self.index;
                let file = *self.open_file.get_or_insert_with(|| index.file(String::new(), ()));
                let first = self.open_rows;
                for (i, key) in keys.encode_batch(&batch)?.iter().enumerate() {
                    index.upsert(key, file, first + i as u64)?;
                }
            }
            self.write_batch(batch)?;
            self.rows += n;
            self.metrics.records_out(n);
        }
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
        if let (Some(file), Some(add)) = (self.open_file.take(), adds.first()) {
            self.index.set_path(file, add.path.clone());
            self.own.insert(add.path.clone());
        }
        let bytes: i64 = adds.iter().map(|a| a.size).sum();
        self.metrics.bytes_out(bytes.max(0) as u64);
        self.files.extend(adds.into_iter().map(DataFile::from_add));
        // With no file open, every position found so far is in a named file: once they take
        // `file.target.size`, they go out before the prepare.
        if self.index.pending_deletes().saturating_mul(BYTES_PER_DELETE) >= self.config.target_file_size {
            self.take_deletes()?;
        }
        Ok(())
    }

    /// Takes the positions to delete found since the last time: the rows of this worker's own
    /// files get their vectors here (a later vector of a file in the same round holds the earlier
    /// one's rows); rows of older files, which other workers may delete rows of too, are kept for
    /// the committer to merge. Called only while no file is open (the open file has no path yet).
    fn take_deletes(&mut self) -> Result<()> {
        self.deleted += self.index.pending_deletes() as u64;
        let (own, older): (Vec<FileDeletes>, Vec<FileDeletes>) =
            self.index.take_deletes().into_iter().flat_map(|(_, files)| files).partition(|(p, _)| self.own.contains(p));
        self.older_deletes.extend(older);
        if let (Some(v), false) = (&mut self.vectors, own.is_empty()) {
            let written = self.runtime.block_on(v.write(own))?;
            self.own_vectors.extend(written.into_iter().map(|(path, d)| OwnVector::new(path, d)));
        }
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

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let mut out = ArrowChanges::default();
        self.encoder.encode(time.to_u64(), changes, &mut out)?;
        self.files.write(out)
    }

    fn commit(&mut self, _upper: &Frontier<T>) -> Result<()> {
        Err(Error::config("the deltalake connector commits for all workers at once; it cannot commit one worker"))
    }
}

impl<V: Serialize + 'static, T: SinkTime> CoordinatedWriter<Key, V, T> for DeltaLakeWriter<V> {
    type Prepared = DeltaFiles;

    fn begin_prepare(&mut self, _upper: &Frontier<T>) -> Result<()> {
        self.files.begin_prepare()
    }

    fn prepare(&mut self, _upper: &Frontier<T>) -> Result<DeltaFiles> {
        self.files.prepare()
    }
}

impl DataFiles for DeltaDataFiles {
    type Prepared = DeltaFiles;

    fn write(&mut self, changes: ArrowChanges) -> Result<()> {
        self.write_encoded(changes)
    }

    fn prepare(&mut self) -> Result<DeltaFiles> {
        self.close_files()?;
        self.take_deletes()?;
        Ok(DeltaFiles {
            files: std::mem::take(&mut self.files),
            rows: std::mem::take(&mut self.rows),
            deletes: std::mem::take(&mut self.older_deletes),
            vectors: std::mem::take(&mut self.own_vectors),
            deleted: std::mem::take(&mut self.deleted),
        })
    }
}
