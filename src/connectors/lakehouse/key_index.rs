//! Where each primary key's row is in a lakehouse table's data files, for the sinks that upsert
//! by deleting rows by position (Iceberg position deletes, Delta deletion vectors). Pure, no I/O.
//!
//! Workers report, in the order they wrote them, where each key's new row went (data file and
//! row position) or that the key was deleted ([`RowChange`]). One [`KeyIndex`] — each live key's
//! data file and position — turns a commit round's changes into the positions of the rows they
//! replace: in older files, or in files of the same round when a key changed twice before the
//! commit ([`KeyIndex::plan`]), and follows the round once it is committed
//! ([`KeyIndex::apply`]). Keys are compared in Arrow's row format of the key columns
//! ([`KeyEncoder`](crate::encode::arrow::KeyEncoder)), computed from the very arrays written, so
//! keys read back from Parquet at start ([`read_columns`](super::read_columns)) equal the keys
//! workers send. The index holds the key's bytes and a few words per live row, on the committing
//! worker only.
//!
//! ```
//! use arrow_array::{ArrayRef, Int64Array, RecordBatch};
//! use arrow_schema::{DataType, Field, Schema};
//! use differential_sinks::connectors::lakehouse::{KeyIndex, RowChange};
//! use differential_sinks::encode::arrow::KeyEncoder;
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

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::hash::Hash;

/// The index's maps: keys are hashed with foldhash (seeded per process), several times faster
/// than the standard library's SipHash on keys of a few to tens of bytes.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

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
        KeyIndex { files: Vec::new(), partitions: Vec::new(), rows: HashMap::default() }
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
        let workers: Vec<(&'a [String], &'a [RowChange])> = workers.into_iter().collect();
        let changes: usize = workers.iter().map(|(_, c)| c.len()).sum();
        let mut new_files: Vec<String> = Vec::new();
        // Sized for every change up front: growing it rehashes every key seen so far.
        let mut latest: HashMap<&'a [u8], Option<Loc>> = HashMap::with_capacity_and_hasher(changes, Default::default());
        let mut deletes: Vec<Loc> = Vec::with_capacity(changes);
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
        let mut by_partition: HashMap<&P, Vec<FileDeletes>> = HashMap::default();
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
                // A live key's places are replaced where they are, without hashing a new key in.
                Some(at) => match self.rows.get_mut(key.as_slice()) {
                    Some(places) => {
                        places.clear();
                        places.push(at);
                    }
                    None => {
                        self.rows.insert(key.into_boxed_slice(), SmallVec::from_elem(at, 1));
                    }
                },
                None => {
                    self.rows.remove(key.as_slice());
                }
            }
        }
    }
}
