//! One worker's Iceberg writer: the [`ArrowEncoder`]'s batches into Parquet data files under the
//! table's `data/`, one open file per partition (at most `file.max.open` of them: past it the file
//! written least recently is closed), handed to the committer at each prepare
//! ([`IcebergFiles`]). The worker encodes; the files are written on their own thread
//! ([`FileThread`]).
//!
//! Upserts: the file thread keeps the index of the keys this worker owns ([`KeyIndex`], read
//! from the table at start), follows every written row and deleted key in it, and writes the
//! positions to delete into a delete file per partition at each prepare, and before it whenever
//! they take `file.target.size` (16 bytes each), so a commit's deletes are never held whole; the
//! delete files go to the committer with the data files.

use super::catalog::iceberg_error;
use super::config::IcebergConfig;
use super::position_deletes::{load_index, write_position_deletes};
use super::progress::latest_commit;
use super::table::{parquet_properties, TablePlan, COMPRESSION_PROPERTY};
use crate::connectors::lakehouse::file_thread::{DataFiles, FileThread};
use crate::connectors::lakehouse::{owned_by, KeyIndex};
use crate::connectors::resumed_frontier;
use crate::encode::arrow::{ArrowChanges, ArrowEncoder, KeyEncoder};
use crate::encode::ChangeEncoder;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use differential_sinks_operators::{
    resolve_resume, Change, CoordinatedWriter, Frontier, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
    WorkerProgress,
};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{serialize_data_file_to_json, DataFileFormat, PartitionKey, Struct};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{CurrentFileStatus as _, IcebergWriter as _, IcebergWriterBuilder as _};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// One worker's data files for one prepare, as the committer receives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergFiles {
    /// The data files in Iceberg's JSON form of a manifest entry's data file.
    pub files: Vec<String>,
    /// Rows in them.
    pub rows: u64,
    /// Upserts: the position-delete files of the rows the worker's changes replaced or deleted,
    /// in the same JSON form.
    pub deletes: Vec<String>,
    /// Rows they delete.
    pub deleted: u64,
    /// Upserts: the snapshot the worker's index of keys was read at (`None`: the table had none).
    pub read_at: Option<i64>,
}

/// What a position to delete takes while it waits to be written (a file id and a position).
const BYTES_PER_DELETE: usize = 16;

type FileWriter = DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// One worker's writer: rows to Arrow batches (on the worker) to Parquet data files under the
/// table's `data/` (on the writer's file thread).
pub struct IcebergWriter<V> {
    /// Changes to Arrow batches (and, for upserts, deleted keys).
    encoder: ArrowEncoder<V>,
    progress: Vec<WorkerProgress<u64>>,
    files: FileThread<IcebergDataFiles>,
}

/// A worker's data files, on the file thread.
struct IcebergDataFiles {
    runtime: Runtime,
    name: String,
    plan: TablePlan,
    builder: FileWriterBuilder,
    /// The open data file writer of each partition (`Struct::empty()` when unpartitioned), and
    /// when it was last written (a count of writes): at most `max_open` of them.
    writers: HashMap<Struct, (FileWriter, u64)>,
    max_open: usize,
    writes: u64,
    /// Splits batches by partition (`None` when the table is unpartitioned).
    splitter: Option<RecordBatchPartitionSplitter>,
    /// Upserts: the keys of written rows, and where each key this worker owns has its row.
    keys: Option<KeyEncoder>,
    index: KeyIndex<Struct>,
    /// Upserts: the snapshot the index was read at.
    read_at: Option<i64>,
    /// Upserts: the open data files' ids in the index.
    open_ids: HashMap<String, u32>,
    files: Vec<String>,
    rows: u64,
    /// Upserts: position-delete files written since the last prepare, and the rows they delete.
    deletes: Vec<String>,
    deleted: u64,
    /// `file.target.size`: also the bytes of positions held before they are written out.
    target: usize,
    metrics: WorkerMetrics,
}

impl<V: Serialize + 'static> IcebergWriter<V> {
    /// The writer of `plan`'s table, encoding with `encoder`; reads the sink's progress from the
    /// table as loaded.
    pub(crate) fn open(
        config: &IcebergConfig,
        spec: &SinkSettings,
        plan: TablePlan,
        encoder: ArrowEncoder<V>,
        ctx: WorkerContext,
    ) -> Result<Self> {
        let progress =
            latest_commit(plan.table.metadata(), spec.name())?.map(|(_, r)| r.progress()).unwrap_or_default();
        let name = config.qualified();
        let meta = plan.table.metadata();
        let codec = meta.properties().get(COMPRESSION_PROPERTY).map(String::as_str).unwrap_or("zstd");
        let parquet = ParquetWriterBuilder::new(parquet_properties(codec, &name)?, Arc::clone(&plan.schema));
        let location =
            DefaultLocationGenerator::new(meta).map_err(|e| iceberg_error("locating the data files", &name, e))?;
        let names =
            DefaultFileNameGenerator::new(format!("dsink-{}", uuid::Uuid::new_v4()), None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            config.target_file_size,
            plan.table.file_io().clone(),
            location,
            names,
        );
        let splitter = if plan.spec.is_unpartitioned() {
            None
        } else {
            Some(
                RecordBatchPartitionSplitter::try_new_with_computed_values(
                    Arc::clone(&plan.schema),
                    Arc::clone(&plan.spec),
                )
                .map_err(|e| iceberg_error("partitioning rows", &name, e))?,
            )
        };
        let runtime = crate::delivery::runtime::current_thread("the Iceberg sink")?;
        let keys = encoder.keys().cloned();
        let index = match &keys {
            Some(keys) => {
                runtime.block_on(load_index(&plan.table, keys, &name, owned_by(ctx), config.index_max_bytes))?
            }
            None => KeyIndex::with_budget(config.index_max_bytes),
        };
        let files = IcebergDataFiles {
            read_at: plan.table.metadata().current_snapshot_id(),
            runtime,
            keys,
            index,
            open_ids: HashMap::new(),
            name,
            builder: DataFileWriterBuilder::new(rolling),
            writers: HashMap::new(),
            max_open: config.max_open_files.max(1),
            writes: 0,
            splitter,
            files: Vec::new(),
            rows: 0,
            deletes: Vec::new(),
            deleted: 0,
            target: config.target_file_size,
            metrics: spec.worker_metrics(),
            plan,
        };
        Ok(IcebergWriter { encoder, progress, files: FileThread::spawn("dsink:iceberg".into(), files)? })
    }
}

impl IcebergDataFiles {
    /// Writes a batch into its partitions' current data files (opening them as needed); returns
    /// each partition's part of the batch, with its partition, its file's path and the part's
    /// first row position in it.
    fn write_batch(&mut self, batch: RecordBatch) -> Result<Vec<(RecordBatch, Struct, String, u64)>> {
        let parts: Vec<(Option<PartitionKey>, RecordBatch)> = match &self.splitter {
            None => vec![(None, batch)],
            Some(splitter) => splitter
                .split(&batch)
                .map_err(|e| iceberg_error("partitioning rows", &self.name, e))?
                .into_iter()
                .map(|(key, part)| (Some(key), part))
                .collect(),
        };
        let mut out = Vec::with_capacity(parts.len());
        for (key, part) in parts {
            let data = key.as_ref().map_or_else(Struct::empty, |k| k.data().clone());
            if !self.writers.contains_key(&data) && self.writers.len() >= self.max_open {
                self.close_least_recent()?;
            }
            self.writes += 1;
            let w = match self.writers.entry(data.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert((
                    self.runtime
                        .block_on(self.builder.build(key))
                        .map_err(|e| iceberg_error("opening a data file writer", &self.name, e))?,
                    0,
                )),
            };
            w.1 = self.writes;
            let w = &mut w.0;
            let n = part.num_rows() as u64;
            self.runtime
                .block_on(w.write(part.clone()))
                .map_err(|e| iceberg_error("encoding Parquet", &self.name, e))?;
            // The rolling writer writes a batch whole into one file, after rolling if it had to.
            out.push((part, data, w.current_file_path(), w.current_row_num() as u64 - n));
        }
        Ok(out)
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
            for (part, partition, path, first) in self.write_batch(batch)? {
                let Some(keys) = self.keys.as_ref() else { continue };
                let encoded = keys.encode_batch(&part)?;
                let index = &mut self.index;
                let file = *self.open_ids.entry(path).or_insert_with_key(|path| index.file(path.clone(), partition));
                for (i, key) in encoded.iter().enumerate() {
                    index.upsert(key, file, first + i as u64)?;
                }
            }
            self.rows += n;
            self.metrics.records_out(n);
        }
        // The positions found so far go out as delete files once they take `file.target.size`.
        if self.index.pending_deletes().saturating_mul(BYTES_PER_DELETE) >= self.target {
            self.write_deletes()?;
        }
        Ok(())
    }

    /// Writes the positions to delete found since the last time, one file per partition,
    /// serialised for the committer.
    fn write_deletes(&mut self) -> Result<()> {
        let deleted = self.index.pending_deletes() as u64;
        if deleted == 0 {
            return Ok(());
        }
        let codec =
            self.plan.table.metadata().properties().get(COMPRESSION_PROPERTY).map(String::as_str).unwrap_or("zstd");
        let mut out = Vec::new();
        for (partition, positions) in self.index.take_deletes() {
            let props = parquet_properties(codec, &self.name)?;
            let file = self.runtime.block_on(write_position_deletes(
                &self.plan.table,
                &partition,
                &positions,
                props,
                &self.name,
            ))?;
            self.metrics.bytes_out(file.file_size_in_bytes());
            out.push(
                serialize_data_file_to_json(file, &self.plan.partition_type, self.plan.format_version)
                    .map_err(|e| iceberg_error("recording a delete file", &self.name, e))?,
            );
        }
        self.deletes.extend(out);
        self.deleted += deleted;
        Ok(())
    }

    /// Closes the open data files and keeps them, serialised, for the next prepare.
    fn close_files(&mut self) -> Result<()> {
        let writers: Vec<FileWriter> = self.writers.drain().map(|(_, (w, _))| w).collect();
        for w in writers {
            self.close(w)?;
        }
        Ok(())
    }

    /// Closes the data file of the partition written least recently, to open another.
    fn close_least_recent(&mut self) -> Result<()> {
        let oldest = self.writers.iter().min_by_key(|(_, (_, at))| *at).map(|(p, _)| p.clone());
        match oldest.and_then(|p| self.writers.remove(&p)) {
            Some((w, _)) => self.close(w),
            None => Ok(()),
        }
    }

    /// Closes one partition's data file writer (its files: it may have rolled) and keeps them.
    fn close(&mut self, mut w: FileWriter) -> Result<()> {
        let files =
            self.runtime.block_on(w.close()).map_err(|e| iceberg_error("writing a data file", &self.name, e))?;
        for f in files {
            self.metrics.bytes_out(f.file_size_in_bytes());
            let json = serialize_data_file_to_json(f, &self.plan.partition_type, self.plan.format_version)
                .map_err(|e| iceberg_error("recording a data file", &self.name, e))?;
            self.files.push(json);
        }
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for IcebergWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let point = resolve_resume(&self.progress, ctx)?;
        resumed_frontier(point.frontier)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let mut out = ArrowChanges::default();
        self.encoder.encode(time.to_u64(), changes, &mut out)?;
        self.files.write(out)
    }

    fn commit(&mut self, _upper: &Frontier<T>) -> Result<()> {
        Err(Error::config("the iceberg connector commits for all workers at once; it cannot commit one worker"))
    }
}

impl<V: Serialize + 'static, T: SinkTime> CoordinatedWriter<Key, V, T> for IcebergWriter<V> {
    type Prepared = IcebergFiles;

    fn begin_prepare(&mut self, _upper: &Frontier<T>) -> Result<()> {
        self.files.begin_prepare()
    }

    fn prepare(&mut self, _upper: &Frontier<T>) -> Result<IcebergFiles> {
        self.files.prepare()
    }
}

impl DataFiles for IcebergDataFiles {
    type Prepared = IcebergFiles;

    fn write(&mut self, changes: ArrowChanges) -> Result<()> {
        self.write_encoded(changes)
    }

    fn prepare(&mut self) -> Result<IcebergFiles> {
        self.close_files()?;
        self.open_ids.clear();
        self.write_deletes()?;
        Ok(IcebergFiles {
            files: std::mem::take(&mut self.files),
            rows: std::mem::take(&mut self.rows),
            deletes: std::mem::take(&mut self.deletes),
            deleted: std::mem::take(&mut self.deleted),
            read_at: self.read_at,
        })
    }
}
