//! One time's consolidated updates, from its largest `(key, value)` down, merged from the part
//! held in memory and the runs spilled to disk — and the chunks the operator cuts from them.
//!
//! The sink operator delivers a time in chunks of about `write_chunk` updates taken from the
//! *end* of the time's updates ordered by `(key, value)`; within a chunk, changes come in
//! ascending key order (see [`crate::change::chunk_start`]). [`Merge`] yields the time's
//! consolidated updates in descending order, whatever mix of memory and runs holds them, and
//! [`keyed_chunk`] / [`unkeyed_chunk`] cut exactly the chunks that ordering the whole time in
//! memory would: so the changes a writer receives, their order and their split into calls
//! depend only on the time's consolidated changes — never on whether, when or how often its
//! updates were spilled.

use crate::change::Change;
use crate::spill::{Run, RunReader, SpillError};
use serde::de::DeserializeOwned;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One update: `((key, value), diff)`.
pub type Update<K, V> = ((K, V), isize);

/// Where a merge reads updates from, each in descending `(key, value)` order.
enum Source<K, V> {
    /// Consolidated and sorted ascending: read from the end.
    Memory(Vec<Update<K, V>>),
    /// A run on disk, written in descending order.
    Disk(RunReader<Update<K, V>>),
}

impl<K: DeserializeOwned, V: DeserializeOwned> Source<K, V> {
    fn next(&mut self) -> Result<Option<Update<K, V>>, SpillError> {
        match self {
            Source::Memory(v) => Ok(v.pop()),
            Source::Disk(r) => r.next(),
        }
    }
}

/// A source's next update, ordered by `(key, value)` for the max-heap.
struct Head<K, V> {
    update: Update<K, V>,
    source: usize,
}

impl<K: Ord, V: Ord> PartialEq for Head<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Ord, V: Ord> Eq for Head<K, V> {}
impl<K: Ord, V: Ord> PartialOrd for Head<K, V> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, V: Ord> Ord for Head<K, V> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.update.0.cmp(&other.update.0).then(other.source.cmp(&self.source))
    }
}

/// A time's consolidated updates in descending `(key, value)` order.
pub struct Merge<K, V> {
    sources: Vec<Source<K, V>>,
    heap: BinaryHeap<Head<K, V>>,
    peeked: Option<Update<K, V>>,
}

impl<K: Ord + DeserializeOwned, V: Ord + DeserializeOwned> Merge<K, V> {
    /// Merges `memory` (consolidated and sorted ascending, as
    /// [`consolidate_by_key`](crate::consolidate_by_key) leaves it) with `runs`.
    pub fn new(memory: Vec<Update<K, V>>, runs: Vec<Run>) -> Result<Self, SpillError> {
        let mut sources = Vec::with_capacity(runs.len() + 1);
        if !memory.is_empty() {
            sources.push(Source::Memory(memory));
        }
        for run in runs {
            sources.push(Source::Disk(run.open()?));
        }
        let mut heap = BinaryHeap::new();
        if sources.len() > 1 {
            for (i, s) in sources.iter_mut().enumerate() {
                if let Some(update) = s.next()? {
                    heap.push(Head { update, source: i });
                }
            }
        }
        Ok(Merge { sources, heap, peeked: None })
    }

    /// The next consolidated update from the sources.
    fn pull(&mut self) -> Result<Option<Update<K, V>>, SpillError> {
        if self.sources.len() == 1 {
            // One source is consolidated already.
            return self.sources[0].next();
        }
        while let Some(Head { update: (kv, mut diff), source }) = self.heap.pop() {
            self.refill(source)?;
            while self.heap.peek().is_some_and(|h| h.update.0 == kv) {
                let Some(h) = self.heap.pop() else { break };
                diff += h.update.1;
                self.refill(h.source)?;
            }
            if diff != 0 {
                return Ok(Some((kv, diff)));
            }
        }
        Ok(None)
    }

    fn refill(&mut self, source: usize) -> Result<(), SpillError> {
        if let Some(update) = self.sources[source].next()? {
            self.heap.push(Head { update, source });
        }
        Ok(())
    }

    /// The next update, without taking it (its diff may be changed).
    pub fn peek_mut(&mut self) -> Result<Option<&mut Update<K, V>>, SpillError> {
        if self.peeked.is_none() {
            self.peeked = self.pull()?;
        }
        Ok(self.peeked.as_mut())
    }

    /// Takes the next update.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Update<K, V>>, SpillError> {
        match self.peeked.take() {
            Some(u) => Ok(Some(u)),
            None => self.pull(),
        }
    }

    /// With the whole time in memory (no runs): its updates left, ascending, so that a chunk is
    /// cut from their end in one move rather than update by update. An update peeked is put
    /// back first.
    fn memory_only(&mut self) -> Option<&mut Vec<Update<K, V>>> {
        let [Source::Memory(updates)] = self.sources.as_mut_slice() else { return None };
        // The peeked update was popped from the end, and goes back there.
        updates.extend(self.peeked.take());
        Some(updates)
    }

    /// The vector the time's memory part was held in (emptied), to hold another time's updates
    /// without growing a new one from nothing; `None` if the time had no memory part.
    pub fn into_memory(self) -> Option<Vec<Update<K, V>>> {
        self.sources.into_iter().find_map(|s| match s {
            Source::Memory(mut v) => {
                v.clear();
                Some(v)
            }
            Source::Disk(_) => None,
        })
    }

    /// True when every update was taken.
    pub fn is_done(&mut self) -> Result<bool, SpillError> {
        Ok(self.peek_mut()?.is_none())
    }
}

/// The next chunk of a keyed sink's time into `chunk`, in ascending order: the largest `max`
/// updates left, and the rest of the run of the smallest key among them — the chunk
/// [`chunk_start`](crate::chunk_start) cuts from the end of the time ordered in memory.
pub fn keyed_chunk<K, V>(merge: &mut Merge<K, V>, max: usize, chunk: &mut Vec<Update<K, V>>) -> Result<(), SpillError>
where
    K: Ord + DeserializeOwned,
    V: Ord + DeserializeOwned,
{
    let max = max.max(1);
    if let Some(updates) = merge.memory_only() {
        let from = crate::change::chunk_start(updates, max);
        chunk.extend(updates.drain(from..));
        return Ok(());
    }
    while chunk.len() < max {
        match merge.next()? {
            Some(u) => chunk.push(u),
            None => break,
        }
    }
    if let Some(last) = chunk.last() {
        let same = |merge: &mut Merge<K, V>| -> Result<bool, SpillError> {
            Ok(merge.peek_mut()?.is_some_and(|u| u.0 .0 == last.0 .0))
        };
        let mut more = Vec::new();
        while same(merge)? {
            more.extend(merge.next()?);
        }
        chunk.extend(more);
    }
    chunk.reverse();
    Ok(())
}

/// The next chunk of a sink without a primary key, as changes: every unit of multiplicity is its
/// own change. The largest rows whose multiplicities fit in `max` (in ascending order), or, when
/// the largest row alone has more, `max` copies of it — what
/// [`unkeyed_chunk`](crate::unkeyed_chunk) takes from the end of the time ordered in memory.
pub fn unkeyed_chunk<K, V>(
    merge: &mut Merge<K, V>,
    max: usize,
    taken: &mut Vec<Update<K, V>>,
    changes: &mut Vec<Change<K, V>>,
) -> Result<(), SpillError>
where
    K: Ord + Clone + DeserializeOwned,
    V: Ord + Clone + DeserializeOwned,
{
    if let Some(updates) = merge.memory_only() {
        crate::change::unkeyed_chunk(updates, max, changes);
        return Ok(());
    }
    let max = max.max(1);
    let mut budget = max;
    while let Some(u) = merge.peek_mut()? {
        if u.1.unsigned_abs() > budget {
            break;
        }
        budget -= u.1.unsigned_abs();
        taken.extend(merge.next()?);
    }
    if taken.is_empty() {
        // The largest row alone has more than `max` copies: take `max` of them.
        if let Some(((key, value), diff)) = merge.peek_mut()? {
            changes.extend((0..max).map(|_| one(key, value, *diff)));
            *diff -= diff.signum() * max as isize;
        }
        return Ok(());
    }
    for ((key, value), diff) in taken.drain(..).rev() {
        changes.extend((0..diff.unsigned_abs()).map(|_| one(&key, &value, diff)));
    }
    Ok(())
}

fn one<K: Clone, V: Clone>(key: &K, value: &V, diff: isize) -> Change<K, V> {
    if diff > 0 {
        Change { key: key.clone(), before: None, after: Some(value.clone()) }
    } else {
        Change { key: key.clone(), before: Some(value.clone()), after: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{chunk_start, consolidate_by_key};
    use crate::spill::SpillDir;

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Every keyed chunk of `merge`, in order.
    fn keyed_chunks(mut merge: Merge<u8, u8>, max: usize) -> Vec<Vec<Update<u8, u8>>> {
        let mut chunks = Vec::new();
        while !merge.is_done().unwrap() {
            let mut c = Vec::new();
            keyed_chunk(&mut merge, max, &mut c).unwrap();
            chunks.push(c);
        }
        chunks
    }

    /// Every unkeyed chunk of `merge`, as changes, in order.
    fn unkeyed_chunks(mut merge: Merge<u8, u8>, max: usize) -> Vec<Vec<Change<u8, u8>>> {
        let mut chunks = Vec::new();
        while !merge.is_done().unwrap() {
            let (mut taken, mut c) = (Vec::new(), Vec::new());
            unkeyed_chunk(&mut merge, max, &mut taken, &mut c).unwrap();
            chunks.push(c);
        }
        chunks
    }

    /// Merging runs spilled at arbitrary points yields the same chunks as ordering the whole time
    /// in memory, keyed and unkeyed.
    #[test]
    fn chunks_do_not_depend_on_how_a_time_was_spilled() {
        let root = std::env::temp_dir().join(format!("dsink-merge-test-{}", std::process::id()));
        let mut dir = SpillDir::new(&root, "merge", 0);
        let mut seed = 99u64;
        for case in 0..60 {
            let n = (xorshift(&mut seed) % 400) as usize;
            let updates: Vec<Update<u8, u8>> = (0..n)
                .map(|_| {
                    let r = xorshift(&mut seed);
                    (((r % 40) as u8, (r >> 8) as u8 % 3), [1, -1, 2, -3][(r >> 16) as usize % 4])
                })
                .collect();
            let max = 1 + (xorshift(&mut seed) % 30) as usize;
            // In memory, as the operator did before spilling existed.
            let mut whole = updates.clone();
            consolidate_by_key(&mut whole);
            let mut reference = Vec::new();
            let mut unkeyed_reference = Vec::new();
            {
                let mut w = whole.clone();
                while !w.is_empty() {
                    let from = chunk_start(&w, max);
                    reference.push(w.split_off(from));
                }
                let mut w = whole.clone();
                while !w.is_empty() {
                    let mut c = Vec::new();
                    crate::change::unkeyed_chunk(&mut w, max, &mut c);
                    unkeyed_reference.push(c);
                }
            }
            // Wholly in memory: chunks cut from the end of the memory part in one move.
            let merge = || Merge::new(whole.clone(), Vec::new()).unwrap();
            assert_eq!(keyed_chunks(merge(), max), reference, "case {case}, in memory");
            assert_eq!(unkeyed_chunks(merge(), max), unkeyed_reference, "case {case}, in memory");
            // Spilled in random pieces, the last piece kept in memory.
            let split = |seed: &mut u64, dir: &mut SpillDir| {
                let mut runs = Vec::new();
                let mut rest = updates.as_slice();
                while !rest.is_empty() {
                    let k = 1 + (xorshift(seed) as usize % rest.len());
                    let mut piece = rest[..k].to_vec();
                    rest = &rest[k..];
                    consolidate_by_key(&mut piece);
                    if rest.is_empty() && case % 2 == 0 {
                        return (piece, runs);
                    }
                    runs.push(dir.write_run(piece.into_iter().rev().map(Ok)).unwrap());
                }
                (Vec::new(), runs)
            };
            let (memory, runs) = split(&mut seed, &mut dir);
            assert_eq!(keyed_chunks(Merge::new(memory, runs).unwrap(), max), reference, "case {case}");
            let (memory, runs) = split(&mut seed, &mut dir);
            assert_eq!(unkeyed_chunks(Merge::new(memory, runs).unwrap(), max), unkeyed_reference, "case {case}");
        }
        drop(dir);
        let _ = std::fs::remove_dir_all(&root);
    }
}
