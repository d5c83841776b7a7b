//! Upserts into an Iceberg table as **position deletes**: reading the primary-key index
//! ([`KeyIndex`]) back from a table, the position-delete files, and the row-delta commit
//! iceberg-rust does not offer (its transactions only fast-append data files).
//!
//! Every worker writes its keys' new rows into data files as in append-only mode and keeps a
//! [`KeyIndex`] of the keys it owns — each live key's data file and row position — read at start
//! from the table (its data files' key columns minus its position deletes; every worker reads
//! every file and keeps its own keys) and following its own changes. At each prepare it writes
//! the positions its round's changes replace or delete (a key's previous row, in an older file or
//! in a file of the same round when the key changed twice) into a position-delete file per
//! partition; the committer commits every worker's data and delete files in one snapshot. A data
//! file written before a change of the worker count, or by another writer, may so get delete
//! files from several workers in one snapshot, which Iceberg allows. Keys are the key columns
//! packed ([`KeyEncoder`]), the same bytes from a row where it is produced and from the columns
//! read back.
//!
//! Position deletes rather than the equality deletes RisingWave writes: readers apply them by
//! position alone (pyiceberg, which the tests read with, rejects equality deletes), and scans do
//! not have to compare every row with every delete; the price is the index (the key's packed
//! bytes and a few words per live row), split among the workers by key.

use super::catalog::{iceberg_error, CatalogHandle};
use crate::connectors::lakehouse::{read_columns, KeyIndex};
use crate::encode::arrow::{KeyEncoder, PackedKeys};
use crate::error::{Error, ErrorKind, Result};
use arrow_array::{Int64Array, RecordBatch, StringArray};
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, FormatVersion, ManifestFile, ManifestWriterBuilder, NestedField,
    Operation, PrimitiveType, Snapshot, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Struct,
    Summary, TableMetadataBuildResult, Type, MAIN_BRANCH,
};
use iceberg::table::Table;
use iceberg::writer::file_writer::{FileWriter as _, FileWriterBuilder as _, ParquetWriterBuilder};
use parquet::file::properties::WriterProperties;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The field id Iceberg reserves for a position delete's data file path.
pub const FILE_PATH_FIELD_ID: i32 = 2_147_483_546;
/// The field id Iceberg reserves for a position delete's row position.
pub const POS_FIELD_ID: i32 = 2_147_483_545;

/// Reads a worker's index from the table's current snapshot: every live data file's key columns,
/// minus the rows its position-delete files delete, keeping the keys `owns`, within `max_bytes`
/// (`upsert.index.max.bytes`). A table with equality deletes (written by
/// another engine) is refused: which rows they leave cannot be known without applying them to
/// every row.
pub async fn load_index(
    table: &Table,
    keys: &KeyEncoder,
    name: &str,
    owns: impl Fn(&[u8]) -> bool,
    max_bytes: usize,
) -> Result<KeyIndex<Struct>> {
    let mut index = KeyIndex::with_budget(max_bytes);
    let Some(snapshot) = table.metadata().current_snapshot() else { return Ok(index) };
    let io = table.file_io();
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| iceberg_error("reading the manifest list", name, e))?;
    let (mut data, mut partitions, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for m in list.entries() {
        let manifest = m.load_manifest(io).await.map_err(|e| iceberg_error("reading a manifest", name, e))?;
        for e in manifest.entries().iter().filter(|e| e.is_alive()) {
            match e.content_type() {
                DataContentType::Data => {
                    data.push(e.file_path().to_string());
                    partitions.push(e.data_file().partition().clone());
                }
                DataContentType::PositionDeletes => deletes.push(e.file_path().to_string()),
                DataContentType::EqualityDeletes => {
                    return Err(Error::config(format!(
                        "the Iceberg table `{name}` has equality-delete files (`{}`), which the iceberg sink's \
                         upserts cannot account for; compact the table (rewrite its data files) first, or \
                         write with `type = append-only`",
                        e.file_path()
                    )))
                }
            }
        }
    }
    let ids: HashMap<&str, u32> = data.iter().enumerate().map(|(i, p)| (p.as_str(), i as u32)).collect();
    let mut deleted: HashSet<(u32, u64)> = HashSet::new();
    for path in &deletes {
        for batch in read_file(table, path, &["file_path", "pos"], name).await? {
            let (Some(paths), Some(pos)) = (
                batch.column(0).as_any().downcast_ref::<StringArray>(),
                batch.column(1).as_any().downcast_ref::<Int64Array>(),
            ) else {
                return Err(Error::new(
                    ErrorKind::Fatal,
                    format!("Iceberg table `{name}`: position-delete file `{path}` is not (string, long)"),
                ));
            };
            for (p, n) in paths.iter().zip(pos.iter()) {
                if let (Some(id), Some(n)) = (p.and_then(|p| ids.get(p)), n) {
                    deleted.insert((*id, n as u64));
                }
            }
        }
    }
    let names: Vec<&str> = keys.names().iter().map(String::as_str).collect();
    for (id, (path, partition)) in data.into_iter().zip(partitions).enumerate() {
        let mut rows = PackedKeys::default();
        for batch in read_file(table, &path, &names, name).await? {
            rows.append(&keys.encode(batch.columns().to_vec())?);
        }
        let live = rows
            .iter()
            .enumerate()
            .map(|(pos, key)| (!deleted.contains(&(id as u32, pos as u64)) && owns(key)).then_some(key));
        index.add_file(path, partition, live)?;
    }
    Ok(index)
}

/// Reads `columns` of a Parquet file of the table.
async fn read_file(table: &Table, path: &str, columns: &[&str], name: &str) -> Result<Vec<RecordBatch>> {
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(|e| iceberg_error("opening a data file", name, e))?
        .read()
        .await
        .map_err(|e| iceberg_error(&format!("reading `{path}`"), name, e))?;
    read_columns(bytes, columns, &format!("`{path}` of Iceberg table `{name}`"))
}

/// The schema of a position-delete file.
fn position_delete_schema() -> Result<iceberg::spec::Schema> {
    iceberg::spec::Schema::builder()
        .with_fields([
            Arc::new(NestedField::required(FILE_PATH_FIELD_ID, "file_path", Type::Primitive(PrimitiveType::String))),
            Arc::new(NestedField::required(POS_FIELD_ID, "pos", Type::Primitive(PrimitiveType::Long))),
        ])
        .build()
        .map_err(|e| Error::new(ErrorKind::Fatal, format!("the position-delete schema: {e}")))
}

/// Writes `deletes` (data files of `partition` in path order, each with its positions ascending)
/// into one position-delete file of that partition under the table's data directory.
pub async fn write_position_deletes(
    table: &Table,
    partition: &Struct,
    deletes: &[(String, Vec<u64>)],
    props: WriterProperties,
    name: &str,
) -> Result<DataFile> {
    let schema = Arc::new(position_delete_schema()?);
    let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
        .map_err(|e| iceberg_error("converting the position-delete schema", name, e))?;
    // One row per position; `from_iter_values` needs iterators of known length.
    let paths: Vec<&str> =
        deletes.iter().flat_map(|(path, positions)| std::iter::repeat_n(path.as_str(), positions.len())).collect();
    let pos: Vec<i64> = deletes.iter().flat_map(|(_, positions)| positions.iter().map(|n| *n as i64)).collect();
    let (paths, pos) = (StringArray::from_iter_values(paths), Int64Array::from(pos));
    let batch = RecordBatch::try_new(Arc::new(arrow), vec![Arc::new(paths), Arc::new(pos)])
        .map_err(|e| Error::new(ErrorKind::Fatal, format!("building position deletes: {e}")))?;
    let location = format!(
        "{}/data/dsink-{}-deletes.{}",
        table.metadata().location().trim_end_matches('/'),
        uuid::Uuid::new_v4(),
        DataFileFormat::Parquet
    );
    let output = table.file_io().new_output(&location).map_err(|e| iceberg_error("creating a delete file", name, e))?;
    let mut w = ParquetWriterBuilder::new(props, schema)
        .build(output)
        .await
        .map_err(|e| iceberg_error("opening a delete file", name, e))?;
    w.write(&batch).await.map_err(|e| iceberg_error("writing a delete file", name, e))?;
    let mut built = w.close().await.map_err(|e| iceberg_error("closing a delete file", name, e))?;
    let mut b = built.pop().ok_or_else(|| Error::new(ErrorKind::Fatal, "the delete file writer wrote no file"))?;
    b.content(DataContentType::PositionDeletes)
        .partition(partition.clone())
        .partition_spec_id(table.metadata().default_partition_spec_id());
    b.build().map_err(|e| Error::new(ErrorKind::Fatal, format!("Iceberg table `{name}`: a delete file: {e}")))
}

/// One snapshot adding data files and position-delete files (Iceberg's "row delta"), with the
/// sink's summary properties, and table properties set in the same metadata swap.
pub struct RowDelta {
    /// Data files added.
    pub data: Vec<DataFile>,
    /// Position-delete files added.
    pub deletes: Vec<DataFile>,
    /// Extra snapshot summary properties.
    pub summary: HashMap<String, String>,
    /// Table properties to set.
    pub properties: HashMap<String, String>,
}

impl RowDelta {
    /// Commits onto `table` through the catalog's compare-and-swap of the metadata location,
    /// after `check(table)` accepts the table as loaded (the committer's fencing). A lost swap
    /// (another writer committed in between) reloads and tries again, up to 10 times.
    pub fn commit(
        self,
        h: &CatalogHandle,
        ident: &iceberg::TableIdent,
        name: &str,
        mut check: impl FnMut(&Table) -> Result<()>,
    ) -> Result<Table> {
        let mut table = h.load(ident, name)?;
        for _ in 0..10 {
            check(&table)?;
            if table.metadata().format_version() != FormatVersion::V2 {
                return Err(Error::config(format!(
                    "the Iceberg table `{name}` is format {}: the iceberg sink's upserts write position deletes into \
                     format-2 tables only",
                    table.metadata().format_version()
                )));
            }
            let staged = h.block_on(self.stage(&table, name))?;
            if h.commit_staged(ident, &table, staged, name)? {
                return h.load(ident, name);
            }
            table = h.load(ident, name)?;
        }
        Err(Error::new(
            ErrorKind::Retriable,
            format!("Iceberg table `{name}`: ten commit attempts in a row lost the race against other writers"),
        ))
    }

    /// Writes the manifests and manifest list of the new snapshot on top of `table`; returns the
    /// new metadata and the changes that lead to it (the catalog commits either).
    async fn stage(&self, table: &Table, name: &str) -> Result<TableMetadataBuildResult> {
        let err = |what: &'static str| move |e: iceberg::Error| iceberg_error(what, name, e);
        let meta = table.metadata();
        let io = table.file_io();
        let commit = uuid::Uuid::new_v4();
        let snapshot_id = loop {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            let id = ((a ^ b) >> 1) as i64;
            if meta.snapshot_by_id(id).is_none() {
                break id;
            }
        };
        let metadata_dir = format!("{}/metadata", meta.location().trim_end_matches('/'));
        let schema = Arc::clone(meta.current_schema());
        let spec = meta.default_partition_spec().as_ref().clone();
        let mut manifests: Vec<ManifestFile> = match meta.current_snapshot() {
            Some(s) => table
                .manifest_list_reader(s)
                .load()
                .await
                .map_err(err("reading the manifest list"))?
                .consume_entries()
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let mut summary = SnapshotSummaryCollector::default();
        for (i, (files, deletes)) in [(&self.data, false), (&self.deletes, true)].into_iter().enumerate() {
            if files.is_empty() {
                continue;
            }
            let out =
                io.new_output(format!("{metadata_dir}/{commit}-m{i}.avro")).map_err(err("creating a manifest"))?;
            let builder = ManifestWriterBuilder::new(out, Some(snapshot_id), Arc::clone(&schema), spec.clone());
            let mut w = if deletes { builder.build_v2_deletes() } else { builder.build_v2_data() };
            for f in files {
                summary.add_file(f, Arc::clone(&schema), Arc::clone(meta.default_partition_spec()));
                // A negative sequence number: inherited from the manifest list's entry.
                w.add_file(f.clone(), -1).map_err(err("adding a file to a manifest"))?;
            }
            manifests.push(w.write_manifest_file().await.map_err(err("writing a manifest"))?);
        }
        let sequence = meta.next_sequence_number();
        let list_path = format!("{metadata_dir}/snap-{snapshot_id}-0-{commit}.avro");
        let out = io.new_output(&list_path).map_err(err("creating the manifest list"))?;
        let mut list = iceberg::spec::ManifestListWriter::v2(
            out.writer().await.map_err(err("creating the manifest list"))?,
            snapshot_id,
            meta.current_snapshot_id(),
            sequence,
        );
        list.add_manifests(manifests.into_iter()).map_err(err("writing the manifest list"))?;
        list.close().await.map_err(err("writing the manifest list"))?;
        let mut properties = self.summary.clone();
        properties.extend(summary.build());
        let operation = if self.deletes.is_empty() { Operation::Append } else { Operation::Overwrite };
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(meta.current_snapshot_id())
            .with_sequence_number(sequence)
            .with_timestamp_ms(now_ms())
            .with_manifest_list(list_path)
            .with_summary(Summary { operation, additional_properties: properties })
            .with_schema_id(meta.current_schema_id())
            .build();
        let current = table.metadata_location_result().map_err(err("locating the metadata"))?.to_string();
        meta.clone()
            .into_builder(Some(current))
            .add_snapshot(snapshot)
            .and_then(|b| {
                b.set_ref(MAIN_BRANCH, SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)))
            })
            .and_then(|b| b.set_properties(self.properties.clone()))
            .and_then(|b| b.build())
            .map_err(err("building the new metadata"))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
