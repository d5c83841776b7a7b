//! At-least-once replays of the connectors that keep their progress in a `progress.dir` (Kinesis
//! and Pulsar: `tests/kinesis.rs`, `tests/pulsar.rs`): the directory saved and put back as it was,
//! which is what a crash leaves when it comes after later records were stored but before their
//! progress was recorded, and the deduplication by record identity a reader applies to the replay
//! (the connectors' module docs).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

/// The files of a `progress.dir`, by name and contents.
pub fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Puts back the files of `snapshot` in `dir` and removes every other one.
pub fn restore_dir(dir: &Path, snapshot: &BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    for (name, bytes) in snapshot {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// What a deduplicating reader makes of `records`: the first record of each `identity` (the
/// record's `(key, time, seq)`), in the order read, after checking that every copy of a record
/// is the same record (equal `content`). Returns the records kept and how many were dropped.
pub fn dedup_by_identity<'a, T: Clone, I: Ord + Debug, C: PartialEq + Debug>(
    records: &'a [T],
    identity: impl Fn(&'a T) -> I,
    content: impl Fn(&'a T) -> C,
) -> (Vec<T>, usize) {
    let mut first: BTreeMap<I, &'a T> = BTreeMap::new();
    let mut kept = Vec::new();
    for r in records {
        let id = identity(r);
        match first.get(&id) {
            Some(f) => assert_eq!(content(f), content(r), "two different records share the identity {id:?}"),
            None => {
                first.insert(id, r);
                kept.push(r.clone());
            }
        }
    }
    let dropped = records.len() - kept.len();
    (kept, dropped)
}
