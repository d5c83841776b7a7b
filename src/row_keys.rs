//! Primary keys of rows in a lakehouse table's data files, for the sinks that upsert by deleting
//! rows by position (Iceberg position deletes, Delta deletion vectors). Pure, no I/O but the
//! Parquet decoding of key columns.
//!
//! Workers report, in the order they wrote them, where each key's new row went (data file and
//! row position) or that the key was deleted ([`RowChange`]). One [`KeyIndex`] — each live key's
//! data file and position — turns a commit round's changes into the positions of the rows they
//! replace: in older files, or in files of the same round when a key changed twice before the
//! commit ([`KeyIndex::plan`]), and follows the round once it is committed
//! ([`KeyIndex::apply`]). Keys are compared in Arrow's row format of the key columns
//! ([`KeyEncoder`]), computed from the very arrays written, so keys read back from Parquet at
//! start equal the keys workers send. The index costs the key's bytes plus about 40 bytes per
//! live row.
//!
//! ```
//! use arrow_array::{ArrayRef, Int64Array, RecordBatch};
//! use arrow_schema::{DataType, Field, Schema};
//! use differential_sinks::row_keys::{KeyEncoder, KeyIndex, RowChange};
//! use std::sync::Arc;
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
//! let keys = KeyEncoder::new(&schema, &["id".to_string()], "t").unwrap();
//! let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef]).unwrap();
//! let k = keys.encode_batch(&batch).unwrap();
//! let mut index: KeyIndex<()> = KeyIndex::default();
//! index.add_file("a.parquet".into(), (), k.iter().cloned().map(Some));
//! // Key 8 gets a new row (row 0 of b.parquet): its row 1 of a.parquet is deleted.
//! let paths = vec!["b.parquet".to_string()];
//! let changes = vec![RowChange::Upsert { key: k[1].clone(), file: 0, pos: 0 }];
//! let plan = index.plan([(paths.as_slice(), changes.as_slice())], |_| ());
//! assert_eq!(plan.deletes, vec![((), vec![("a.parquet".to_string(), vec![1])])]);
//! index.apply(plan);
//! assert_eq!(index.len(), 2);
//! ```

use crate::arrow_rows::RowBatcher;
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::SinkSettings;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, SchemaRef};
use differential_sinks_operators::Change;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// One key's change in a worker's prepared files, in the order the worker wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowChange {
    /// The key's row is now row `pos` of the worker's data file `file` (an index into
    /// the worker's list of data file paths).
    Upsert {
        /// The key in Arrow's row format.
        key: Vec<u8>,
        /// Which of the worker's data files.
        file: u32,
        /// The row's position in it.
        pos: u64,
    },
    /// The key has no row any more.
    Delete {
        /// The key in Arrow's row format.
        key: Vec<u8>,
    },
}

/// The primary-key columns of Arrow batches as comparable bytes (Arrow's row format).
pub struct KeyEncoder {
    names: Vec<String>,
    indices: Vec<usize>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeyEncoder {
    /// An encoder for `key` columns of batches of `schema`.
    pub fn new(schema: &SchemaRef, key: &[String], table: &str) -> Result<Self> {
        if key.is_empty() {
            return Err(Error::config(
                "option `type` = `upsert`: the iceberg sink needs the primary key's columns — declare them with \
                 `primary_key` (a key function names no columns the table could be searched by)",
            ));
        }
        let mut indices = Vec::with_capacity(key.len());
        for name in key {
            let Ok(i) = schema.index_of(name) else {
                return Err(Error::schema(format!(
                    "primary key column `{name}` is not a column of the Iceberg table `{table}`; its columns are {}",
                    schema.fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ")
                )));
            };
            indices.push(i);
        }
        let types: Vec<DataType> = indices.iter().map(|i| schema.field(*i).data_type().clone()).collect();
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())
            .map_err(|e| Error::schema(format!("the primary key of `{table}` cannot be compared: {e}")))?;
        Ok(KeyEncoder { names: key.to_vec(), indices, types, converter })
    }

    /// The key of every row of `batch`, a batch of the table's schema.
    pub fn encode_batch(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let columns: Vec<ArrayRef> = self.indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        self.encode(columns)
    }

    /// The keys of rows given as the key columns, in key order; they are cast to the table's
    /// types first (a Parquet file may store a column in a narrower or differently labelled
    /// type than the table's Arrow schema).
    pub fn encode(&self, columns: Vec<ArrayRef>) -> Result<Vec<Vec<u8>>> {
        let columns = columns
            .into_iter()
            .zip(&self.types)
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c)
                } else {
                    arrow_cast::cast(&c, t).map_err(|e| Error::schema(format!("a key column cannot be read: {e}")))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| Error::encode(format!("a key cannot be encoded: {e}")))?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// The key columns' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// What one time's changes of an upsert sink write: the new rows (inserts, and the new values of
/// updates), and the rows whose keys are deleted (their last values, to find the keys by).
pub fn split_changes<K, V>(changes: &[Change<K, V>]) -> (Vec<&V>, Vec<&V>) {
    let mut rows = Vec::with_capacity(changes.len());
    let mut gone = Vec::new();
    for change in changes {
        match (&change.before, &change.after) {
            (_, Some(after)) => rows.push(after),
            (Some(before), None) => gone.push(before),
            (None, None) => {}
        }
    }
    (rows, gone)
}

/// The deletes of `gone` (deleted keys' last rows): each key encoded from the row's key columns
/// as a written row's key is, through the same batcher.
pub fn deletes<V: Serialize>(batcher: &mut RowBatcher, keys: &KeyEncoder, gone: &[&V]) -> Result<Vec<RowChange>> {
    let Some(batch) = batcher.batch(gone)? else { return Ok(Vec::new()) };
    Ok(keys.encode_batch(&batch)?.into_iter().map(|key| RowChange::Delete { key }).collect())
}

/// Checks a lakehouse sink's format at creation: append-only, or upsert by declared key columns
/// (`target` names the connector in messages); Debezium is refused, since a table holds rows.
pub fn check_format(spec: &SinkSettings, target: &str) -> Result<()> {
    match spec.format() {
        Format::AppendOnly { .. } => Ok(()),
        Format::Upsert if spec.primary_key().is_none_or(|k| k.is_empty()) => Err(Error::config(format!(
            "option `type` = `upsert`: the {target} sink finds a key's row by the primary key's columns — declare \
             them with `primary_key` (a key function names no columns)"
        ))),
        Format::Upsert => Ok(()),
        Format::Debezium { .. } => Err(Error::config(format!(
            "option `type` = `debezium`: a table holds rows, not change events; use `type = upsert` (the {target} \
             table holds each key's latest row) or `type = append-only`"
        ))),
    }
}

/// The key encoder of an upsert sink (`None` for append-only) over the table's Arrow schema.
pub fn upsert_keys(spec: &SinkSettings, schema: &SchemaRef, table: &str) -> Result<Option<KeyEncoder>> {
    if !matches!(spec.format(), Format::Upsert) {
        return Ok(None);
    }
    KeyEncoder::new(schema, spec.primary_key().unwrap_or_default(), table).map(Some)
}

/// A row's place: a data file (an index into [`KeyIndex`]'s files) and position.
type Loc = (u32, u64);

/// Where each live key's row is in the table, as the sink knows it.
#[derive(Debug)]
pub struct KeyIndex<P> {
    files: Vec<String>,
    /// Each file's partition: a position-delete file goes to the partition of the rows it deletes.
    partitions: Vec<P>,
    /// Usually one place per key; more when the table held duplicates of a key before the sink
    /// started (an upsert deletes them all).
    rows: HashMap<Box<[u8]>, SmallVec<[Loc; 1]>>,
}

/// A data file's path and the ascending positions of its rows to delete.
pub type FileDeletes = (String, Vec<u64>);

/// What committing one round changes: the positions to delete, and the index afterwards.
#[derive(Debug)]
pub struct RoundPlan<P> {
    /// The data files the round adds, in the order their ids were given.
    new_files: Vec<String>,
    /// Per partition, each data file's path and the positions of its rows to delete; files in
    /// path order and positions ascending, as a position-delete file must list them.
    pub deletes: Vec<(P, Vec<FileDeletes>)>,
    new_partitions: Vec<P>,
    updates: Vec<(Vec<u8>, Option<Loc>)>,
}

impl<P> RoundPlan<P> {
    /// The positions the round deletes.
    pub fn delete_count(&self) -> usize {
        self.deletes.iter().flat_map(|(_, files)| files).map(|(_, positions)| positions.len()).sum()
    }
}

impl<P> Default for KeyIndex<P> {
    fn default() -> Self {
        KeyIndex { files: Vec::new(), partitions: Vec::new(), rows: HashMap::new() }
    }
}

impl<P: Clone + Eq + Hash> KeyIndex<P> {
    /// Adds a data file of the table as read at start: its partition, and the key of each of its
    /// rows in position order, `None` for a row already deleted.
    pub fn add_file(&mut self, path: String, partition: P, keys: impl IntoIterator<Item = Option<Vec<u8>>>) {
        let id = self.files.len() as u32;
        self.files.push(path);
        self.partitions.push(partition);
        for (pos, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                self.rows.entry(key.into_boxed_slice()).or_default().push((id, pos as u64));
            }
        }
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no key is live.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The positions a round's changes delete, given each worker's data file paths and changes
    /// in the order it wrote them, and the partition of each new data file. The index is
    /// unchanged until [`apply`](Self::apply).
    pub fn plan<'a>(
        &self,
        workers: impl IntoIterator<Item = (&'a [String], &'a [RowChange])>,
        partition_of: impl Fn(&str) -> P,
    ) -> RoundPlan<P> {
        let mut new_files: Vec<String> = Vec::new();
        let mut latest: HashMap<&'a [u8], Option<Loc>> = HashMap::new();
        let mut deletes: Vec<Loc> = Vec::new();
        for (paths, changes) in workers {
            let base = (self.files.len() + new_files.len()) as u32;
            new_files.extend(paths.iter().cloned());
            for change in changes {
                let (key, now) = match change {
                    RowChange::Upsert { key, file, pos } => (key.as_slice(), Some((base + file, *pos))),
                    RowChange::Delete { key } => (key.as_slice(), None),
                };
                match latest.get(key) {
                    Some(before) => deletes.extend(*before),
                    None => deletes.extend(self.rows.get(key).into_iter().flatten().copied()),
                }
                latest.insert(key, now);
            }
        }
        let new_partitions: Vec<P> = new_files.iter().map(|p| partition_of(p)).collect();
        let (files, partitions) = (&self.files, &self.partitions);
        let at = |id: u32| {
            let id = id as usize;
            if id < files.len() {
                (&files[id], &partitions[id])
            } else {
                (&new_files[id - files.len()], &new_partitions[id - files.len()])
            }
        };
        // Sorted as integers, then grouped: each path is copied once per file, not per row.
        deletes.sort_unstable();
        let mut by_partition: HashMap<&P, Vec<FileDeletes>> = HashMap::new();
        for group in deletes.chunk_by(|a, b| a.0 == b.0) {
            let (path, partition) = at(group[0].0);
            let positions = group.iter().map(|(_, pos)| *pos).collect();
            by_partition.entry(partition).or_default().push((path.clone(), positions));
        }
        let deletes = by_partition
            .into_iter()
            .map(|(partition, mut files)| {
                files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (partition.clone(), files)
            })
            .collect();
        let updates = latest.into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
        RoundPlan { new_files, deletes, new_partitions, updates }
    }

    /// Records a committed round.
    pub fn apply(&mut self, plan: RoundPlan<P>) {
        self.files.extend(plan.new_files);
        self.partitions.extend(plan.new_partitions);
        for (key, now) in plan.updates {
            match now {
                Some(at) => {
                    self.rows.insert(key.into_boxed_slice(), SmallVec::from_elem(at, 1));
                }
                None => {
                    self.rows.remove(key.as_slice());
                }
            }
        }
    }
}

/// Reads `columns` (top-level, by name, in that order) of the Parquet file `bytes`; `what`
/// names the file in errors.
pub fn read_columns(bytes: bytes::Bytes, columns: &[&str], what: &str) -> Result<Vec<RecordBatch>> {
    let bad = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Fatal, format!("reading Parquet file {what}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let descr = builder.parquet_schema();
    let mut leaves = Vec::with_capacity(columns.len());
    for c in columns {
        let Some(i) = descr.columns().iter().position(|d| d.path().parts() == [c.to_string()]) else {
            return Err(bad(&format!("it has no column `{c}`")));
        };
        leaves.push(i);
    }
    let mask = ProjectionMask::leaves(descr, leaves.iter().copied());
    let reader = builder.with_projection(mask).build().map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        // The projection keeps the file's column order; put the columns in the order asked for.
        let order =
            columns.iter().map(|c| batch.schema().index_of(c).map_err(|e| bad(&e))).collect::<Result<Vec<_>>>()?;
        out.push(batch.project(&order).map_err(|e| bad(&e))?);
    }
    Ok(out)
}
