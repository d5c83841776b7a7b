//! A worker's updates for times not yet delivered, held within a memory budget.
//!
//! Updates are kept by time. The buffer estimates the bytes it holds (see
//! [`BufferConfig`](crate::BufferConfig)); once over the budget it sorts the largest times'
//! updates into runs and spills them ([`crate::spill`]) until half the budget is free. A time with
//! too many runs has its smallest half merged into one, so a time never needs more than
//! [`MAX_RUNS`] + 1 open files to be read back, and runs stay in tiers of similar size. When the frontier passes a time, [`TimeBuffers::take_complete`] hands
//! it over as a [`Merge`] of its memory part and its runs. The time being delivered stays counted
//! until [`TimeBuffers::release`], so what the worker holds stays within about the budget.
//!
//! A delivered time's vector is kept (emptied, and counted) for the next new time, up to a
//! quarter of the budget: a stream of large times then fills one vector after the other instead
//! of growing each from nothing, copying it at every doubling and faulting in fresh pages. It is
//! the first thing let go when the buffer is over its budget.

use crate::change::consolidate_by_key;
use crate::merge::{Merge, Update};
use crate::spill::{Run, SpillDir, SpillError};
use crate::time::Frontier;
use crate::SinkTime;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A time with more runs than this has its smallest half merged into one.
pub const MAX_RUNS: usize = 16;

/// One time's updates: those in memory, and those spilled.
struct Pending<K, V> {
    memory: Vec<Update<K, V>>,
    /// The estimated heap bytes of `memory`'s updates.
    heap: usize,
    runs: Vec<Run>,
}

impl<K, V> Pending<K, V> {
    fn bytes(&self) -> usize {
        self.memory.capacity() * std::mem::size_of::<Update<K, V>>() + self.heap
    }
}

/// What spilling wrote, for the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spilled {
    /// Updates written.
    pub updates: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A time handed over for delivery.
pub struct Complete<K, V, T> {
    /// The time.
    pub time: T,
    /// Its consolidated updates, largest first.
    pub merge: Merge<K, V>,
    /// What it holds in memory, to [`TimeBuffers::release`] once delivered.
    pub bytes: usize,
}

/// A worker's undelivered updates by time, within a memory budget.
pub struct TimeBuffers<K, V, T> {
    pending: BTreeMap<T, Pending<K, V>>,
    /// Estimated bytes held: every pending time's, plus the time being delivered.
    bytes: usize,
    max_bytes: usize,
    spill: SpillDir,
    /// A delivered time's emptied vector, for the next new time (counted in `bytes`).
    spare: Vec<Update<K, V>>,
}

impl<K, V, T> TimeBuffers<K, V, T>
where
    K: Ord + Serialize + DeserializeOwned,
    V: Ord + Serialize + DeserializeOwned,
    T: SinkTime,
{
    /// An empty buffer of `max_bytes`, spilling under `spill_dir`.
    pub fn new(max_bytes: usize, spill_dir: &Path, sink: &str, worker: usize) -> Self {
        TimeBuffers {
            pending: BTreeMap::new(),
            bytes: 0,
            max_bytes,
            spill: SpillDir::new(spill_dir, sink, worker),
            spare: Vec::new(),
        }
    }

    /// Removes what crashed runs of this sink left in the spill directory.
    pub fn clean_stale(&self) -> Result<(), SpillError> {
        self.spill.clean_stale()
    }

    /// Adds one input batch's updates, leaving `batch` empty (its allocation kept). The updates
    /// of a time `keep` refuses are dropped instead; returns how many were.
    pub fn absorb(&mut self, batch: &mut Vec<((K, V), T, isize)>, mut keep: impl FnMut(&T) -> bool) -> u64 {
        // The heap estimate of every update of the batch: its first update's encoded size.
        let per_update = batch.first().map_or(0, |(kv, _, _)| bincode::serialized_size(kv).unwrap_or(0) as usize);
        // A batch is almost always one time: find its runs of one time by reference, then move
        // each run into its time's buffer in one go, with one map lookup per run.
        let mut runs: Vec<(T, usize)> = Vec::new();
        for (_, t, _) in batch.iter() {
            match runs.last_mut() {
                Some((rt, n)) if rt == t => *n += 1,
                _ => runs.push((*t, 1)),
            }
        }
        let mut dropped = 0;
        let mut updates = batch.drain(..);
        for (t, n) in runs {
            let run = updates.by_ref().take(n);
            if !keep(&t) {
                dropped += n as u64;
                run.for_each(drop);
                continue;
            }
            // A new time takes the spare vector, whose bytes are counted already.
            let mut p = match self.pending.remove(&t) {
                Some(p) => p,
                None => Pending { memory: std::mem::take(&mut self.spare), heap: 0, runs: Vec::new() },
            };
            let before = p.bytes();
            p.memory.reserve(n);
            p.memory.extend(run.map(|(kv, _, r)| (kv, r)));
            p.heap += per_update * n;
            self.put_back(t, p, before);
        }
        dropped
    }

    fn put_back(&mut self, t: T, p: Pending<K, V>, before: usize) {
        self.bytes = (self.bytes + p.bytes()).saturating_sub(before);
        self.pending.insert(t, p);
    }

    /// True when the buffer holds more than its budget.
    pub fn over_budget(&self) -> bool {
        self.bytes > self.max_bytes
    }

    /// Spills the largest times' memory parts until at most half the budget is held (or nothing
    /// pending is left in memory).
    pub fn spill(&mut self) -> Result<Spilled, SpillError> {
        let mut spilled = Spilled::default();
        // The spare goes first; if that is enough, nothing is spilled.
        self.drop_spare();
        if !self.over_budget() {
            return Ok(spilled);
        }
        while self.bytes > self.max_bytes / 2 {
            let Some((&t, _)) =
                self.pending.iter().filter(|(_, p)| !p.memory.is_empty()).max_by_key(|(_, p)| p.bytes())
            else {
                break;
            };
            let p = self.pending.get_mut(&t).expect("found above");
            let held = p.bytes();
            let mut memory = std::mem::take(&mut p.memory);
            p.heap = 0;
            self.bytes = self.bytes.saturating_sub(held);
            consolidate_by_key(&mut memory);
            spilled.updates += memory.len() as u64;
            let run = self.spill.write_run(memory.into_iter().rev().map(Ok))?;
            spilled.bytes += run.bytes();
            p.runs.push(run);
            if p.runs.len() > MAX_RUNS {
                // Merge the time's smallest half of runs into one, so reading the time back
                // never needs more than `MAX_RUNS` + 1 open files; merging the smallest keeps
                // the runs in tiers of similar size, so each update is rewritten a logarithmic
                // number of times, not once per merge.
                p.runs.sort_by_key(Run::bytes);
                let smallest: Vec<Run> = p.runs.drain(..MAX_RUNS / 2 + 1).collect();
                let mut merge = Merge::<K, V>::new(Vec::new(), smallest)?;
                let run = self.spill.write_run(std::iter::from_fn(|| merge.next().transpose()))?;
                spilled.updates += run.len();
                spilled.bytes += run.bytes();
                p.runs.push(run);
            }
        }
        Ok(spilled)
    }

    /// The first pending time, if the frontier has passed it.
    pub fn first_complete(&self, frontier: &Frontier<T>) -> Option<T> {
        self.pending.keys().next().filter(|t| frontier.is_beyond(t)).copied()
    }

    /// Takes the first pending time if the frontier has passed it: its updates consolidated and
    /// merged, largest first. Its memory stays counted until [`Self::release`].
    pub fn take_complete(&mut self, frontier: &Frontier<T>) -> Result<Option<Complete<K, V, T>>, SpillError> {
        let Some(t) = self.first_complete(frontier) else { return Ok(None) };
        let Some(mut p) = self.pending.remove(&t) else { return Ok(None) };
        let bytes = p.bytes();
        // Consolidate first: the chunks, and so the order in which the writer receives the
        // time's changes, must depend on the time's changes alone and not on how many raw
        // updates (say, pairs that cancel) produced them.
        consolidate_by_key(&mut p.memory);
        Ok(Some(Complete { time: t, merge: Merge::new(p.memory, p.runs)?, bytes }))
    }

    /// Stops counting a delivered time's memory, keeping its vector as the spare if that is at
    /// most a quarter of the budget (and larger than the spare there is).
    pub fn release(&mut self, delivered: Complete<K, V, T>) {
        self.bytes = self.bytes.saturating_sub(delivered.bytes);
        let Some(memory) = delivered.merge.into_memory() else { return };
        let held = memory.capacity() * std::mem::size_of::<Update<K, V>>();
        if held <= self.max_bytes / 4 && memory.capacity() > self.spare.capacity() {
            self.drop_spare();
            self.spare = memory;
            self.bytes += held;
        }
    }

    fn drop_spare(&mut self) {
        let held = self.spare.capacity() * std::mem::size_of::<Update<K, V>>();
        self.bytes = self.bytes.saturating_sub(held);
        self.spare = Vec::new();
    }

    /// Drops everything (the sink stopped); spill files go with their runs.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.spare = Vec::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every time's consolidated updates, descending, as the buffer hands them over.
    fn drain(buffers: &mut TimeBuffers<u32, u32, u64>) -> Vec<(u64, Vec<Update<u32, u32>>)> {
        let mut out = Vec::new();
        while let Some(mut c) = buffers.take_complete(&Frontier::at(u64::MAX)).unwrap() {
            let mut updates = Vec::new();
            while let Some(u) = c.merge.next().unwrap() {
                updates.push(u);
            }
            let time = c.time;
            buffers.release(c);
            out.push((time, updates));
        }
        out
    }

    /// A batch's runs of one time go to their times, however the times interleave, and the
    /// updates of times `keep` refuses are dropped and counted; the held bytes go back to zero.
    #[test]
    fn a_batch_goes_to_its_times_and_refused_times_are_dropped() {
        let dir = std::env::temp_dir().join(format!("dsink-buffer-test-{}", std::process::id()));
        let mut buffers = TimeBuffers::<u32, u32, u64>::new(1 << 30, &dir, "buffer", 0);
        let mut batch = vec![((1, 10), 1, 1), ((2, 20), 1, 1), ((3, 30), 2, 1), ((4, 40), 3, 1), ((1, 10), 1, 1)];
        assert_eq!(buffers.absorb(&mut batch, |t| *t != 3), 1);
        assert!(batch.is_empty());
        let mut batch = vec![((5, 50), 2, 1), ((2, 20), 1, -1), ((6, 60), 3, 1)];
        assert_eq!(buffers.absorb(&mut batch, |t| *t != 3), 1);
        assert_eq!(
            drain(&mut buffers),
            vec![(1, vec![((1, 10), 2)]), (2, vec![((5, 50), 1), ((3, 30), 1)])],
            "time 1's updates of key 2 cancel; time 3 was refused"
        );
        assert!(!buffers.over_budget());
        // What is held is the spare vector a delivered time left, and nothing once cleared.
        assert_eq!(buffers.bytes, buffers.spare.capacity() * std::mem::size_of::<Update<u32, u32>>());
        buffers.clear();
        assert_eq!(buffers.bytes, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A delivered time's vector holds the next new time's updates, counted all along, and is
    /// the first thing let go over the budget: here enough, so nothing is spilled.
    #[test]
    fn a_delivered_times_vector_is_reused_and_let_go_first() {
        let dir = std::env::temp_dir().join(format!("dsink-buffer-spare-{}", std::process::id()));
        let size = std::mem::size_of::<Update<u32, u32>>();
        // Room for a spare of 100 updates (a quarter of the budget).
        let mut buffers = TimeBuffers::<u32, u32, u64>::new(400 * size, &dir, "buffer", 0);
        let mut batch: Vec<_> = (0..100).map(|k| ((k, k), 1, 1)).collect();
        buffers.absorb(&mut batch, |_| true);
        let mut batch = vec![((7, 7), 3, 1)];
        buffers.absorb(&mut batch, |_| true);
        let c = buffers.take_complete(&Frontier::at(2)).unwrap().expect("time 1 is complete");
        buffers.release(c);
        let spare = buffers.spare.capacity();
        assert!(spare >= 100, "the delivered time's vector is kept");
        assert_eq!(
            buffers.bytes,
            Pending { memory: Vec::<Update<u32, u32>>::with_capacity(spare), heap: 0, runs: Vec::new() }.bytes()
                + buffers.pending[&3].bytes()
        );
        // A new time takes it: no allocation, nothing counted twice.
        let before = buffers.bytes;
        let mut batch: Vec<_> = (0..50).map(|k| ((k, k), 2, 1)).collect();
        buffers.absorb(&mut batch, |_| true);
        assert_eq!((buffers.spare.capacity(), buffers.pending[&2].memory.capacity()), (0, spare));
        assert_eq!(buffers.bytes, before + 50 * 8, "only the new updates' heap estimate is added");
        // Deliver time 2 (its vector is the spare again), then push time 3 over the budget.
        let c = buffers.take_complete(&Frontier::at(3)).unwrap().expect("time 2 is complete");
        buffers.release(c);
        assert_eq!(buffers.spare.capacity(), spare);
        // Time 3 alone fits the budget (220 updates of 16 bytes and an 8-byte heap estimate
        // each), with the spare it does not.
        let mut batch: Vec<_> = (0..219).map(|k| ((k, k), 3, 1)).collect();
        buffers.absorb(&mut batch, |_| true);
        assert!(buffers.over_budget());
        let spilled = buffers.spill().unwrap();
        assert_eq!((spilled.updates, buffers.spare.capacity()), (0, 0), "the spare went, and that was enough");
        assert!(!buffers.over_budget());
        assert_eq!(buffers.bytes, buffers.pending[&3].bytes());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
