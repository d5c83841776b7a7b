//! Where each primary key's row is in a lakehouse table's data files, for the sinks that upsert
//! by deleting rows by position (Iceberg position deletes, Delta deletion vectors). Pure, no I/O.
//!
//! Every worker keeps a [`KeyIndex`] of the keys it owns — the keys the sink routes to it — and
//! follows its own changes as it writes them: a key's new row replaces its place (data file and
//! position), a deleted key leaves; the place a key had is a row to delete. At each prepare the
//! worker takes the round's deletes ([`KeyIndex::take_deletes`]) — per partition, each data
//! file's positions in order — and writes them as delete files of its own; the committer only
//! commits. The index follows a round before the round is committed: a commit that fails stops
//! the sink, and a restart reads every worker's index back from the table as committed.
//!
//! At start each worker reads the key of every live row of the table and keeps the ones it owns
//! ([`KeyIndex::add_file`] with the others as `None`): rows of files written before a change of
//! the worker count, or by another writer, are found by whichever worker owns their key now.
//! Keys are the key columns packed ([`KeyEncoder`](crate::encode::arrow::KeyEncoder)), the same
//! bytes from a row where it is produced and from the columns read back. The index holds each
//! owned key's bytes and a few words per live row; a round's deletes hold two words each until
//! the prepare.
//!
//! The index grows with the table, so it has a budget (`upsert.index.max.bytes`, per worker,
//! counting [`KEY_OVERHEAD`] bytes besides each live key's own): a key that would take it past
//! is refused ([`IndexFull`]), and the sink stops naming the option, rather than the worker's
//! memory growing until the system ends it.
//!
//! ```
//! use differential_sinks::connectors::lakehouse::KeyIndex;
//!
//! let mut index: KeyIndex<()> = KeyIndex::default();
//! // At start: a.parquet's rows are keys 7 and 8 (8's row was deleted before).
//! index.add_file("a.parquet".into(), (), [Some(b"7".as_slice()), None]).unwrap();
//! // Key 7 gets a new row, row 0 of b.parquet: row 0 of a.parquet is to be deleted.
//! let b = index.file("b.parquet".into(), ());
//! index.upsert(b"7", b, 0).unwrap();
//! // Key 9 is new; key 7 is deleted again: row 0 of b.parquet goes too.
//! index.upsert(b"9", b, 1).unwrap();
//! index.delete(b"7");
//! assert_eq!(index.take_deletes(), vec![((), vec![("a.parquet".to_string(), vec![0]), ("b.parquet".to_string(), vec![0])])]);
//! assert_eq!(index.len(), 1);
//! ```

use smallvec::SmallVec;
use std::fmt;
use std::hash::Hash;

/// About what a live key costs the index besides its bytes: its slot in the map (the boxed
/// key's pointer and length, one place, the table's control byte and spare room) and its
/// allocation's overhead.
pub const KEY_OVERHEAD: usize = 64;

/// The default budget of a worker's index (`upsert.index.max.bytes`): some 40 million keys of
/// tens of bytes.
pub const DEFAULT_INDEX_MAX_BYTES: usize = 4 << 30;

/// A key refused because the index would pass its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexFull {
    /// Live keys held.
    pub keys: usize,
    /// Their estimated bytes.
    pub bytes: usize,
    /// The budget.
    pub max_bytes: usize,
}

impl From<IndexFull> for crate::error::Error {
    /// The sink stops: the index cannot take the table's keys within its budget.
    fn from(full: IndexFull) -> Self {
        crate::error::Error::new(crate::error::ErrorKind::Fatal, full.to_string())
    }
}

impl fmt::Display for IndexFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the upsert key index of this worker holds {} keys (about {} bytes) and the next would pass \
             `upsert.index.max.bytes` = {}: raise the option, or run more workers (each indexes only the keys \
             it owns)",
            self.keys, self.bytes, self.max_bytes
        )
    }
}

/// The index's maps: keys are hashed with foldhash (seeded per process), several times faster
/// than the standard library's SipHash on keys of a few to tens of bytes.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A row's place: a data file (an index into [`KeyIndex`]'s files) and position.
type Loc = (u32, u64);

/// Where each live key this worker owns has its row, as the sink knows it.
#[derive(Debug)]
pub struct KeyIndex<P> {
    files: Vec<String>,
    /// Each file's partition: a position-delete file goes to the partition of the rows it deletes.
    partitions: Vec<P>,
    /// Usually one place per key; more when the table held duplicates of a key before the sink
    /// started (an upsert deletes them all).
    rows: HashMap<Box<[u8]>, SmallVec<[Loc; 1]>>,
    /// The places of rows to delete since the last [`take_deletes`](Self::take_deletes).
    deletes: Vec<Loc>,
    /// The estimated bytes of the live keys: [`KEY_OVERHEAD`] and its length each.
    bytes: usize,
    max_bytes: usize,
}

/// A data file's path and the ascending positions of its rows to delete.
pub type FileDeletes = (String, Vec<u64>);

impl<P> Default for KeyIndex<P> {
    /// An empty index of the default budget ([`DEFAULT_INDEX_MAX_BYTES`]).
    fn default() -> Self {
        KeyIndex::with_budget(DEFAULT_INDEX_MAX_BYTES)
    }
}

impl<P> KeyIndex<P> {
    /// An empty index that refuses a key past `max_bytes` (estimated as the module docs say).
    pub fn with_budget(max_bytes: usize) -> Self {
        KeyIndex {
            files: Vec::new(),
            partitions: Vec::new(),
            rows: HashMap::default(),
            deletes: Vec::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The estimated bytes of the live keys.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<P: Clone + Eq + Hash> KeyIndex<P> {
    /// Adds a data file of the table as read at start: its partition, and the key of each of its
    /// rows in position order, `None` for a row already deleted or whose key another worker owns.
    /// A key past the budget is refused, and the rest of the file with it.
    pub fn add_file<'k>(
        &mut self,
        path: String,
        partition: P,
        keys: impl IntoIterator<Item = Option<&'k [u8]>>,
    ) -> Result<(), IndexFull> {
        let id = self.file(path, partition);
        for (pos, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                match self.rows.get_mut(key) {
                    Some(places) => places.push((id, pos as u64)),
                    None => self.insert(key, (id, pos as u64))?,
                }
            }
        }
        Ok(())
    }

    /// Adds a new live key, within the budget.
    fn insert(&mut self, key: &[u8], at: Loc) -> Result<(), IndexFull> {
        let bytes = self.bytes + KEY_OVERHEAD + key.len();
        if bytes > self.max_bytes {
            return Err(IndexFull { keys: self.rows.len(), bytes: self.bytes, max_bytes: self.max_bytes });
        }
        self.rows.insert(key.into(), SmallVec::from_elem(at, 1));
        self.bytes = bytes;
        Ok(())
    }

    /// Registers a data file this worker writes, returning its id for [`upsert`](Self::upsert).
    pub fn file(&mut self, path: String, partition: P) -> u32 {
        self.files.push(path);
        self.partitions.push(partition);
        (self.files.len() - 1) as u32
    }

    /// Names a file registered before its path was known (a writer that names its file when it
    /// closes it).
    pub fn set_path(&mut self, file: u32, path: String) {
        self.files[file as usize] = path;
    }

    /// `key`'s row is now row `pos` of file `file`: its earlier rows are to be deleted. A new
    /// key past the budget is refused.
    pub fn upsert(&mut self, key: &[u8], file: u32, pos: u64) -> Result<(), IndexFull> {
        match self.rows.get_mut(key) {
            Some(places) => {
                self.deletes.extend(places.iter().copied());
                places.clear();
                places.push((file, pos));
                Ok(())
            }
            None => self.insert(key, (file, pos)),
        }
    }

    /// `key` has no row any more: its rows are to be deleted.
    pub fn delete(&mut self, key: &[u8]) {
        if let Some(places) = self.rows.remove(key) {
            self.deletes.extend(places);
            self.bytes = self.bytes.saturating_sub(KEY_OVERHEAD + key.len());
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

    /// Rows deleted since the last call, waiting for [`take_deletes`](Self::take_deletes).
    pub fn pending_deletes(&self) -> usize {
        self.deletes.len()
    }

    /// The rows to delete since the last call: per partition, each data file's path and the
    /// positions of its rows to delete; files in path order and positions ascending, as a
    /// position-delete file must list them.
    pub fn take_deletes(&mut self) -> Vec<(P, Vec<FileDeletes>)> {
        let mut deletes = std::mem::take(&mut self.deletes);
        // Sorted as integers, then grouped: each path is copied once per file, not per row.
        deletes.sort_unstable();
        let mut by_partition: HashMap<&P, Vec<FileDeletes>> = HashMap::default();
        for group in deletes.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0 as usize;
            let positions = group.iter().map(|(_, pos)| *pos).collect();
            by_partition.entry(&self.partitions[id]).or_default().push((self.files[id].clone(), positions));
        }
        let mut out: Vec<(P, Vec<FileDeletes>)> = by_partition
            .into_iter()
            .map(|(partition, mut files)| {
                files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (partition.clone(), files)
            })
            .collect();
        // In the order of each partition's first file, so equal rounds give equal output.
        out.sort_by(|a, b| a.1[0].0.cmp(&b.1[0].0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{IndexFull, KeyIndex, KEY_OVERHEAD};

    #[test]
    fn duplicates_left_before_the_start_are_all_deleted() {
        let mut index: KeyIndex<u8> = KeyIndex::default();
        index.add_file("a".into(), 1, [Some(b"k".as_slice()), Some(b"k".as_slice())]).unwrap();
        index.add_file("b".into(), 2, [None, Some(b"k".as_slice())]).unwrap();
        let c = index.file("c".into(), 1);
        index.upsert(b"k", c, 0).unwrap();
        let deletes = index.take_deletes();
        assert_eq!(deletes, vec![(1, vec![("a".to_string(), vec![0, 1])]), (2, vec![("b".to_string(), vec![1])])]);
        // The next round deletes only the row the key has now.
        index.upsert(b"k", c, 1).unwrap();
        assert_eq!(index.take_deletes(), vec![(1, vec![("c".to_string(), vec![0])])]);
        assert_eq!(index.len(), 1);
    }

    /// Live keys count against the budget, read at start or written; a key past it is refused
    /// (saying how many keys and bytes the index holds), a replaced key costs nothing more, and
    /// a deleted key gives its bytes back.
    #[test]
    fn a_key_past_the_budget_is_refused_and_deleted_keys_make_room() {
        let per_key = KEY_OVERHEAD + 2;
        let mut index: KeyIndex<()> = KeyIndex::with_budget(3 * per_key);
        index.add_file("a".into(), (), [Some(b"k1".as_slice()), None, Some(b"k2".as_slice())]).unwrap();
        let b = index.file("b".into(), ());
        index.upsert(b"k3", b, 0).unwrap();
        index.upsert(b"k1", b, 1).unwrap();
        assert_eq!(index.bytes(), 3 * per_key);
        let full = IndexFull { keys: 3, bytes: 3 * per_key, max_bytes: 3 * per_key };
        assert_eq!(index.upsert(b"k4", b, 2), Err(full));
        assert!(full.to_string().contains("`upsert.index.max.bytes`"), "{full}");
        assert_eq!(index.add_file("c".into(), (), [Some(b"k5".as_slice())]), Err(full));
        index.delete(b"k2");
        index.upsert(b"k4", b, 2).unwrap();
        assert_eq!((index.len(), index.bytes()), (3, 3 * per_key));
        // What was refused was never indexed: k4 replaced nothing, k5 is not there to delete.
        index.delete(b"k5");
        assert_eq!(index.take_deletes(), vec![((), vec![("a".to_string(), vec![0, 2])])]);
    }

    #[test]
    fn deleting_an_unknown_key_deletes_nothing() {
        let mut index: KeyIndex<()> = KeyIndex::default();
        index.delete(b"nope");
        assert!(index.take_deletes().is_empty());
        assert!(index.is_empty());
    }
}
