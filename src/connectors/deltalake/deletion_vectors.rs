//! Upserts into a Delta table as **deletion vectors**: reading the primary-key index
//! ([`KeyIndex`]) back from a table, writing vectors of the positions a round deletes, and
//! placing them on the data files they hit.
//!
//! A deletion vector marks rows of a data file as deleted without rewriting it (Delta's
//! `deletionVectors` table feature: reader version 3, writer version 7); a file has at most one,
//! holding every row of the file deleted so far. Each worker finds the positions its keys'
//! changes delete in its own index of the keys it owns (see the writer). For the files it wrote in
//! this run, whose rows no other worker deletes, it writes the vectors itself ([`OwnVectors`]:
//! the new positions with those of its previous vector of the file, into one
//! `deletion_vector_<uuid>.bin` per round at the table root, in the protocol's format through
//! delta-kernel's writer). Positions in files older than the run — written before a change of the
//! worker count, or by another writer, so possibly holding several workers' keys — go to the
//! committer, which unions every worker's with the file's current vector and writes those
//! ([`apply_deletes`]). The commit carries, with the round's data files, a `remove` of each hit
//! file as it was and an `add` of the same file with its new vector — the way Delta's own engines
//! commit a DELETE or MERGE with deletion vectors; a file of the same round (a key changed twice
//! before the commit) is added with its vector from the start. The statistics of a file with a
//! vector are marked `tightBounds: false`, as the protocol asks.

use crate::connectors::lakehouse::{read_columns, KeyIndex};
use crate::encode::arrow::{KeyEncoder, PackedKeys};
use crate::error::{Error, ErrorKind, Result};
use buoyant_kernel::actions::deletion_vector::{
    DeletionVectorDescriptor as KernelDescriptor, DeletionVectorStorageType as KernelStorage,
};
use buoyant_kernel::actions::deletion_vector_writer::{KernelDeletionVector, StreamingDeletionVectorWriter};
use deltalake::kernel::{Action, Add, DeletionVectorDescriptor, Remove, StorageType, TableFeatures};
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::logstore::LogStoreRef;
use deltalake::{DeltaTable, Path};
use std::collections::{HashMap, HashSet};

fn failed(location: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Fatal, format!("Delta table `{location}`: {what}: {e}"))
}

/// True when the table's protocol has the `deletionVectors` feature the upserts write.
pub fn deletion_vectors_enabled(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.protocol()
            .writer_features()
            .is_some_and(|f| f.iter().any(|f| f.as_ref() == TableFeatures::DeletionVectors.as_ref()))
    })
}

fn to_kernel(d: &DeletionVectorDescriptor) -> KernelDescriptor {
    KernelDescriptor {
        storage_type: match d.storage_type {
            StorageType::UuidRelativePath => KernelStorage::PersistedRelative,
            StorageType::Inline => KernelStorage::Inline,
            StorageType::AbsolutePath => KernelStorage::PersistedAbsolute,
        },
        path_or_inline_dv: d.path_or_inline_dv.clone(),
        offset: d.offset,
        size_in_bytes: d.size_in_bytes,
        cardinality: d.cardinality,
    }
}

/// The rows a file's deletion vector deletes.
fn read_vector(table: &DeltaTable, d: &DeletionVectorDescriptor, location: &str) -> Result<HashSet<u64>> {
    read_stored_vector(&table.log_store(), table.table_url(), d, location)
}

/// The rows a deletion vector of the table at `root` deletes.
fn read_stored_vector(
    store: &LogStoreRef,
    root: &url::Url,
    d: &DeletionVectorDescriptor,
    location: &str,
) -> Result<HashSet<u64>> {
    let storage = store.engine(None).storage_handler();
    let rows = to_kernel(d).read(storage, root).map_err(|e| failed(location, "reading a deletion vector", e))?;
    Ok(rows.iter().collect())
}

/// Writes `vectors` (a data file's path and the rows its vector deletes) into one
/// `deletion_vector_<uuid>.bin` at the table root, in the protocol's format; returns each file's
/// descriptor.
pub async fn write_vectors(
    store: &LogStoreRef,
    vectors: Vec<(String, KernelDeletionVector)>,
    location: &str,
) -> Result<Vec<(String, DeletionVectorDescriptor)>> {
    if vectors.is_empty() {
        return Ok(Vec::new());
    }
    let uuid = uuid::Uuid::new_v4();
    let mut bytes: Vec<u8> = Vec::new();
    let mut placed = Vec::with_capacity(vectors.len());
    {
        let mut w = StreamingDeletionVectorWriter::new(&mut bytes);
        for (path, dv) in vectors {
            let written = w.write_deletion_vector(dv).map_err(|e| failed(location, "encoding a deletion vector", e))?;
            placed.push((
                path,
                DeletionVectorDescriptor {
                    storage_type: StorageType::UuidRelativePath,
                    path_or_inline_dv: z85::encode(uuid.as_bytes()),
                    offset: Some(written.offset),
                    size_in_bytes: written.size_in_bytes,
                    cardinality: written.cardinality,
                },
            ));
        }
        w.finalize().map_err(|e| failed(location, "encoding deletion vectors", e))?;
    }
    let object = Path::from(format!("deletion_vector_{uuid}.bin"));
    store.object_store(None).put(&object, bytes.into()).await.map_err(|e| {
        Error::new(ErrorKind::Retriable, format!("Delta table `{location}`: writing deletion vectors: {e}"))
    })?;
    Ok(placed)
}

/// The deletion vectors of the data files a worker wrote in this run (no other worker deletes
/// their rows): the positions its round deletes in each, with the rows its earlier vector of the
/// file deleted, written into one file by the worker itself.
pub struct OwnVectors {
    store: LogStoreRef,
    root: url::Url,
    location: String,
    /// Each own file's latest vector.
    latest: HashMap<String, DeletionVectorDescriptor>,
}

impl OwnVectors {
    /// The vectors of the table at `root`, stored through `store`.
    pub fn new(store: LogStoreRef, root: url::Url, location: String) -> Self {
        OwnVectors { store, root, location, latest: HashMap::new() }
    }

    /// Writes the vectors of `deletes` (own files' paths and positions) and returns their
    /// descriptors; each holds every row of the file deleted so far.
    pub async fn write(&mut self, deletes: Vec<(String, Vec<u64>)>) -> Result<Vec<(String, DeletionVectorDescriptor)>> {
        let mut vectors = Vec::with_capacity(deletes.len());
        for (path, positions) in deletes {
            let mut dv = KernelDeletionVector::new();
            dv.add_deleted_row_indexes(positions);
            if let Some(d) = self.latest.get(&path) {
                dv.add_deleted_row_indexes(read_stored_vector(&self.store, &self.root, d, &self.location)?);
            }
            vectors.push((path, dv));
        }
        let placed = write_vectors(&self.store, vectors, &self.location).await?;
        for (path, d) in &placed {
            self.latest.insert(path.clone(), d.clone());
        }
        Ok(placed)
    }
}

/// Reads a worker's index from the table's current snapshot: every data file's key columns,
/// minus the rows its deletion vector deletes, keeping the keys `owns`, within `max_bytes`
/// (`upsert.index.max.bytes`).
pub async fn load_index(
    table: &DeltaTable,
    keys: &KeyEncoder,
    location: &str,
    owns: impl Fn(&[u8]) -> bool,
    max_bytes: usize,
) -> Result<KeyIndex<()>> {
    let mut index = KeyIndex::with_budget(max_bytes);
    let snapshot = table.snapshot().map_err(|e| failed(location, "reading the snapshot", e))?;
    let store = table.log_store().object_store(None);
    let names: Vec<&str> = keys.names().iter().map(String::as_str).collect();
    for file in snapshot.log_data().iter() {
        let path = file.path().to_string();
        let deleted = match file.deletion_vector_descriptor() {
            Some(d) => read_vector(table, &d, location)?,
            None => HashSet::new(),
        };
        let object = Path::parse(&path).map_err(|e| failed(location, "a data file's path", e))?;
        let bytes = store
            .get(&object)
            .await
            .map_err(|e| Error::new(ErrorKind::Retriable, format!("Delta table `{location}`: reading `{path}`: {e}")))?
            .bytes()
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Retriable, format!("Delta table `{location}`: reading `{path}`: {e}"))
            })?;
        let mut rows = PackedKeys::default();
        for batch in read_columns(bytes, &names, &format!("`{path}` of Delta table `{location}`"))? {
            rows.append(&keys.encode(batch.columns().to_vec())?);
        }
        let live =
            rows.iter().enumerate().map(|(pos, key)| (!deleted.contains(&(pos as u64)) && owns(key)).then_some(key));
        index.add_file(path, (), live)?;
    }
    Ok(index)
}

/// Marks a file's statistics as not tight: with rows deleted by a vector, its min/max values
/// may cover rows that are gone.
fn loose_stats(stats: Option<String>) -> Option<String> {
    let stats = stats?;
    match serde_json::from_str::<serde_json::Value>(&stats) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert("tightBounds".into(), serde_json::Value::Bool(false));
            Some(serde_json::Value::Object(m).to_string())
        }
        _ => Some(stats),
    }
}

/// Turns a round's deleted positions in files older than the run (by data file path, a file
/// perhaps several times: from several workers) into deletion vectors, each the union of the
/// file's vector and the new positions, written into one file; and places those and the workers'
/// own vectors (`own`: of files a worker wrote, which only it deletes from; of a file given twice,
/// the later and larger one) on their files: a new file of the round (in `adds`) gets its vector
/// directly; an older file is removed as it is and added again with its new vector. Returns the
/// actions for the older files.
pub async fn apply_deletes(
    table: &DeltaTable,
    deletes: Vec<(String, Vec<u64>)>,
    own: Vec<(String, DeletionVectorDescriptor)>,
    adds: &mut [Add],
    location: &str,
) -> Result<Vec<Action>> {
    let mut by_file: HashMap<String, Vec<u64>> = HashMap::new();
    for (path, positions) in deletes {
        by_file.entry(path).or_default().extend(positions);
    }
    let mut placed: HashMap<String, DeletionVectorDescriptor> = HashMap::new();
    for (path, d) in own {
        // A worker's later vector of a file holds every row its earlier ones did, and more.
        if placed.get(&path).is_none_or(|p| p.cardinality < d.cardinality) {
            placed.insert(path, d);
        }
    }
    if by_file.is_empty() && placed.is_empty() {
        return Ok(Vec::new());
    }
    let snapshot = table.snapshot().map_err(|e| failed(location, "reading the snapshot", e))?;
    let older: HashMap<String, _> = snapshot
        .log_data()
        .iter()
        .filter(|f| by_file.contains_key(f.path().as_ref()) || placed.contains_key(f.path().as_ref()))
        .map(|f| (f.path().to_string(), f))
        .collect();
    let new: HashMap<String, usize> = adds.iter().enumerate().map(|(i, a)| (a.path.clone(), i)).collect();

    let mut paths: Vec<String> = by_file.keys().cloned().collect();
    paths.sort();
    let mut vectors = Vec::with_capacity(paths.len());
    for path in paths {
        let mut dv = KernelDeletionVector::new();
        dv.add_deleted_row_indexes(by_file[&path].iter().copied());
        match older.get(&path) {
            Some(f) => {
                if let Some(d) = f.deletion_vector_descriptor() {
                    dv.add_deleted_row_indexes(read_vector(table, &d, location)?);
                }
            }
            None => return Err(failed(location, "a deleted row's data file", format!("`{path}` is not in the table"))),
        }
        vectors.push((path, dv));
    }
    placed.extend(write_vectors(&table.log_store(), vectors, location).await?);

    let mut actions = Vec::new();
    let mut placed: Vec<(String, DeletionVectorDescriptor)> = placed.into_iter().collect();
    placed.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, dv) in placed {
        if let Some(&i) = new.get(&path) {
            adds[i].deletion_vector = Some(dv);
            adds[i].stats = loose_stats(adds[i].stats.take());
            continue;
        }
        let Some(f) = older.get(&path) else {
            return Err(failed(location, "a deleted row's data file", format!("`{path}` is not in the table")));
        };
        let remove: Remove = f.remove_action(true);
        #[allow(deprecated)] // the Add action is what a commit carries
        let mut add: Add = f.add_action();
        add.deletion_vector = Some(dv);
        add.data_change = true;
        add.stats = loose_stats(add.stats.take());
        actions.push(Action::Remove(remove));
        actions.push(Action::Add(add));
    }
    Ok(actions)
}
