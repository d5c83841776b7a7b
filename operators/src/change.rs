//! Per-key changes: what a time's consolidated updates mean for one primary key.
//!
//! The sink operator gathers the updates of one time, consolidates them, and groups them by key.
//! Each key then holds at most one retraction and one insertion ([`Change`]); anything else —
//! two insertions, two retractions, a multiplicity above one — is a [`Violation`] of the declared
//! primary key, handled by the [`ViolationPolicy`].
//!
//! [`changes_from_updates`] is the pure core of that step, separate from timely so that it can
//! be tested and benchmarked alone.
//!
//! The order of a time's changes, and where a large time is cut into chunks ([`chunk_start`]),
//! is a function of the time's *consolidated* updates only ([`consolidate_by_key`]): a replay
//! whose raw updates differ (say, by pairs that cancel) but consolidate to the same changes
//! yields them in the same order and the same chunks.

use std::fmt;

/// The change of one key at one time: the value retracted (`before`) and inserted (`after`).
///
/// `before: None, after: Some` is an insert, `Some, None` a delete, `Some, Some` an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<K, V> {
    /// The primary key.
    pub key: K,
    /// The value the key held before this time, if any.
    pub before: Option<V>,
    /// The value the key holds after this time, if any.
    pub after: Option<V>,
}

impl<K, V> Change<K, V> {
    /// The kind of change.
    pub fn kind(&self) -> ChangeKind {
        match (&self.before, &self.after) {
            (None, Some(_)) => ChangeKind::Insert,
            (Some(_), None) => ChangeKind::Delete,
            _ => ChangeKind::Update,
        }
    }
}

/// Insert, update or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A new key.
    Insert,
    /// A key whose value changed.
    Update,
    /// A key that went away.
    Delete,
}

/// Updates of one key at one time that do not form a single change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation<K, V> {
    /// The key.
    pub key: K,
    /// The key's consolidated updates at that time (value, diff), none of them zero.
    pub updates: Vec<(V, isize)>,
}

impl<K: fmt::Debug, V> fmt::Display for Violation<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inserts: isize = self.updates.iter().filter(|u| u.1 > 0).map(|u| u.1).sum();
        let deletes: isize = -self.updates.iter().filter(|u| u.1 < 0).map(|u| u.1).sum::<isize>();
        write!(f, "key {:?} has {inserts} insertion(s) and {deletes} retraction(s) at one time", self.key)
    }
}

/// What the sink does when a key's updates at a time are not a single change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ViolationPolicy {
    /// Report an error and stop delivering (the default).
    #[default]
    Fail,
    /// Drop that key's updates at that time, count them and log them.
    Skip,
    /// Route the offending updates to the sink's dead-letter collection.
    DeadLetter,
}

/// Orders one time's updates so that equal `(key, value)` pairs are adjacent and a key's pairs
/// form one run: the order of `(key, value)`.
///
/// An unstable sort by key alone (keys of the sink compare their stored hash first, so
/// comparisons are cheap), then each run of a key's updates by value. Values are compared only
/// within their key's run (a key's two updates once), rather than whenever the sort happens to
/// meet two updates of one key: a value is often a row elsewhere in memory, read for the first
/// time.
/// (Sorting `(hash, index)` pairs and permuting the updates in place executes fewer
/// instructions, but its random swaps over a multi-megabyte time miss the cache and measured
/// about 15% slower end to end. A sample sort — up to 255 splitters from a sorted sample, a byte
/// per update naming its bucket, updates swapped into their buckets in place, each bucket sorted
/// on its own — measured a third slower on 200 000 updates: `benches/pipeline.rs`,
/// `per_row_large_time`.)
pub fn order_by_key<K: Ord, V: Ord>(updates: &mut [((K, V), isize)]) {
    updates.sort_unstable_by(|a, b| a.0 .0.cmp(&b.0 .0));
    let mut start = 0;
    while start < updates.len() {
        let end = key_run_end(updates, start);
        if end - start > 1 {
            updates[start..end].sort_unstable_by(|a, b| a.0 .1.cmp(&b.0 .1));
        }
        start = end;
    }
}

/// The end of the run of `start`'s key in `updates`, ordered by key.
fn key_run_end<K: Eq, V>(updates: &[((K, V), isize)], start: usize) -> usize {
    let key = &updates[start].0 .0;
    start + 1 + updates[start + 1..].iter().take_while(|u| u.0 .0 == *key).count()
}

/// Orders one time's updates by `(key, value)` ([`order_by_key`]), adds up the diffs of equal
/// pairs and drops those that cancel: afterwards `updates` is a function of the time's
/// consolidated collection alone, however many raw updates produced it.
///
/// ```
/// use differential_sinks_operators::consolidate_by_key;
/// let mut updates = vec![((2, "x"), 1), ((1, "a"), 1), ((2, "x"), -1), ((1, "a"), 1), ((1, "b"), -1)];
/// consolidate_by_key(&mut updates);
/// assert_eq!(updates, vec![((1, "a"), 2), ((1, "b"), -1)]);
/// ```
pub fn consolidate_by_key<K: Ord, V: Ord>(updates: &mut Vec<((K, V), isize)>) {
    updates.sort_unstable_by(|a, b| a.0 .0.cmp(&b.0 .0));
    // One pass over the keys' runs: a key with one update is kept unless its diff is zero; a
    // key with several has them ordered by value, and equal pairs added up, in place.
    let n = updates.len();
    let (mut write, mut read) = (0, 0);
    while read < n {
        let end = key_run_end(updates, read);
        if end - read > 1 {
            updates[read..end].sort_unstable_by(|a, b| a.0 .1.cmp(&b.0 .1));
        }
        while read < end {
            let mut diff = updates[read].1;
            let mut next = read + 1;
            while next < end && updates[next].0 .1 == updates[read].0 .1 {
                diff += updates[next].1;
                next += 1;
            }
            if diff != 0 {
                updates.swap(write, read);
                updates[write].1 = diff;
                write += 1;
            }
            read = next;
        }
    }
    updates.truncate(write);
}

/// Consolidates one time's updates and groups them by key into changes and violations.
///
/// `updates` is left empty (its allocation is kept for reuse). Changes come out grouped by key,
/// in an order fixed by the keys (whose comparison starts with their routing hash) and the
/// consolidated updates alone.
///
/// ```
/// use differential_sinks_operators::{changes_from_updates, Change};
/// let mut updates = vec![((1, "a"), -1), ((1, "b"), 1), ((2, "x"), 1), ((2, "x"), -1), ((3, "c"), 2)];
/// let (mut changes, mut violations) = (Vec::new(), Vec::new());
/// changes_from_updates(&mut updates, &mut changes, &mut violations);
/// assert_eq!(changes, vec![Change { key: 1, before: Some("a"), after: Some("b") }]);
/// assert_eq!(violations.len(), 1); // key 3 was inserted twice
/// ```
pub fn changes_from_updates<K: Ord, V: Ord>(
    updates: &mut Vec<((K, V), isize)>,
    changes: &mut Vec<Change<K, V>>,
    violations: &mut Vec<Violation<K, V>>,
) {
    consolidate_by_key(updates);
    changes_from_ordered(updates, 0, changes, violations);
}

/// Where a chunk of at most about `max` updates at the end of `updates` (ordered by
/// [`order_by_key`]) may start without splitting a key's run.
///
/// The cut is made by counting updates, so for the chunks — and with them the order in which a
/// time's changes are delivered — to depend only on the time's changes, `updates` must be
/// consolidated ([`consolidate_by_key`]) first: otherwise extra updates that cancel move the cuts.
pub fn chunk_start<K: Eq, V>(updates: &[((K, V), isize)], max: usize) -> usize {
    let mut start = updates.len().saturating_sub(max.max(1));
    while start > 0 && updates[start].0 .0 == updates[start - 1].0 .0 {
        start -= 1;
    }
    start
}

/// Turns `updates[from..]`, consolidated ([`consolidate_by_key`], or a merge of consolidated
/// parts) and starting at a key boundary, into changes and violations, removing
/// them from `updates`. Taking chunks from the end (see [`chunk_start`]) lets a large time be
/// delivered piecewise without moving the rest. Changes come out in the order of their keys.
///
/// A key's values are taken as distinct and their diffs as non-zero, as consolidation leaves
/// them: they are not compared again (a value is often a row elsewhere in memory, long out of
/// the cache by the time its chunk is cut).
pub fn changes_from_ordered<K: Eq, V: Eq>(
    updates: &mut Vec<((K, V), isize)>,
    from: usize,
    changes: &mut Vec<Change<K, V>>,
    violations: &mut Vec<Violation<K, V>>,
) {
    // First pass, by reference: where each key's run ends.
    let n = updates.len();
    let mut ends: Vec<u32> = Vec::new();
    for i in from + 1..=n {
        if i == n || updates[i].0 .0 != updates[i - 1].0 .0 {
            ends.push((i - from) as u32);
        }
    }
    changes.reserve(ends.len());
    // Second pass: move each run out once.
    let mut drain = updates.drain(from..);
    let mut start = 0u32;
    for end in ends {
        let len = (end - start) as usize;
        start = end;
        if len == 1 {
            // The common case: one update of the key.
            let ((key, value), diff) = drain.next().expect("counted");
            match diff {
                1 => changes.push(Change { key, before: None, after: Some(value) }),
                -1 => changes.push(Change { key, before: Some(value), after: None }),
                0 => {}
                _ => violations.push(Violation { key, updates: vec![(value, diff)] }),
            }
            continue;
        }
        // Several updates of one key, each of another value (consolidated).
        let mut key = None;
        let mut group: Vec<(V, isize)> = Vec::with_capacity(len);
        for ((k, v), d) in drain.by_ref().take(len) {
            key.get_or_insert(k);
            debug_assert!(d != 0 && group.last().is_none_or(|(last, _)| *last != v), "not consolidated");
            group.push((v, d));
        }
        let key = key.expect("a run has a key");
        // Two or more distinct values: a retraction and an insertion are an update; anything
        // else breaks the key.
        match group.len() {
            2 if group[0].1 * group[1].1 == -1 => {
                let mut g = group.into_iter();
                let (first, second) = (g.next().expect("two"), g.next().expect("two"));
                let (before, after) = if first.1 == -1 { (first.0, second.0) } else { (second.0, first.0) };
                changes.push(Change { key, before: Some(before), after: Some(after) });
            }
            _ => violations.push(Violation { key, updates: group }),
        }
    }
}

/// Takes the changes of at most `max` records from the end of `updates` — one time's
/// consolidated updates of a sink without a primary key — into `changes`, removing what it took.
/// A row of multiplicity `n` is `n` records: one larger than `max` is taken `max` at a time (its
/// diff shrinks in place), so a single row with a huge diff never becomes a huge `Vec`.
///
/// ```
/// use differential_sinks_operators::unkeyed_chunk;
/// let mut updates = vec![(("r1", 1), 1), (("r2", 2), 100_000_000)];
/// let mut changes = Vec::new();
/// unkeyed_chunk(&mut updates, 16, &mut changes);
/// assert_eq!(changes.len(), 16);
/// assert_eq!(updates, vec![(("r1", 1), 1), (("r2", 2), 100_000_000 - 16)]);
/// ```
pub fn unkeyed_chunk<K: Clone, V: Clone>(
    updates: &mut Vec<((K, V), isize)>,
    max: usize,
    changes: &mut Vec<Change<K, V>>,
) {
    let max = max.max(1);
    let (mut start, mut budget) = (updates.len(), max);
    while start > 0 && updates[start - 1].1.unsigned_abs() <= budget {
        budget -= updates[start - 1].1.unsigned_abs();
        start -= 1;
    }
    let one = |key: &K, value: &V, diff: isize| {
        if diff > 0 {
            Change { key: key.clone(), before: None, after: Some(value.clone()) }
        } else {
            Change { key: key.clone(), before: Some(value.clone()), after: None }
        }
    };
    if start == updates.len() {
        // The last row alone has more than `max` records: take `max` of them.
        if let Some(((key, value), diff)) = updates.last_mut() {
            changes.extend((0..max).map(|_| one(key, value, *diff)));
            *diff -= diff.signum() * max as isize;
        }
        return;
    }
    for ((key, value), diff) in updates.drain(start..) {
        match diff {
            // The common case: one record, the update moved into it.
            1 => changes.push(Change { key, before: None, after: Some(value) }),
            -1 => changes.push(Change { key, before: Some(value), after: None }),
            _ => changes.extend((0..diff.unsigned_abs()).map(|_| one(&key, &value, diff))),
        }
    }
}

/// Consolidates one time's updates of a sink without a primary key: every unit of multiplicity
/// is its own change (`+n` → n inserts, `−n` → n deletes). `K` identifies the row itself.
///
/// ```
/// use differential_sinks_operators::changes_from_unkeyed_updates;
/// let mut updates = vec![(("r1", 1), 2), (("r2", 2), 1), (("r2", 2), -1), (("r3", 3), -1)];
/// let mut changes = Vec::new();
/// changes_from_unkeyed_updates(&mut updates, &mut changes);
/// assert_eq!(changes.iter().filter(|c| c.after.is_some()).count(), 2);
/// assert_eq!(changes.iter().filter(|c| c.before.is_some()).count(), 1);
/// ```
pub fn changes_from_unkeyed_updates<K: Ord + Clone, V: Ord + Clone>(
    updates: &mut Vec<((K, V), isize)>,
    changes: &mut Vec<Change<K, V>>,
) {
    differential_dataflow::consolidation::consolidate(updates);
    for ((key, value), diff) in updates.drain(..) {
        for _ in 1..diff.unsigned_abs() {
            changes.push(if diff > 0 {
                Change { key: key.clone(), before: None, after: Some(value.clone()) }
            } else {
                Change { key: key.clone(), before: Some(value.clone()), after: None }
            });
        }
        changes.push(if diff > 0 {
            Change { key, before: None, after: Some(value) }
        } else {
            Change { key, before: Some(value), after: None }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = (Vec<Change<u32, &'static str>>, Vec<Violation<u32, &'static str>>);

    fn run(mut updates: Vec<((u32, &'static str), isize)>) -> Outcome {
        let (mut c, mut v) = (Vec::new(), Vec::new());
        changes_from_updates(&mut updates, &mut c, &mut v);
        assert!(updates.is_empty());
        c.sort_by_key(|c| c.key);
        v.sort_by_key(|v| v.key);
        (c, v)
    }

    #[test]
    fn insert_delete_update_cancel() {
        let (c, v) =
            run(vec![((1, "a"), 1), ((2, "b"), -1), ((3, "c"), -1), ((3, "d"), 1), ((4, "e"), 1), ((4, "e"), -1)]);
        assert!(v.is_empty());
        assert_eq!(
            c,
            vec![
                Change { key: 1, before: None, after: Some("a") },
                Change { key: 2, before: Some("b"), after: None },
                Change { key: 3, before: Some("c"), after: Some("d") },
            ]
        );
    }

    #[test]
    fn update_where_new_value_sorts_first() {
        let (c, _) = run(vec![((3, "z"), -1), ((3, "a"), 1)]);
        assert_eq!(c, vec![Change { key: 3, before: Some("z"), after: Some("a") }]);
    }

    #[test]
    fn violations() {
        let (c, v) = run(vec![
            ((1, "a"), 1),
            ((1, "b"), 1),
            ((2, "x"), -2),
            ((3, "p"), -1),
            ((3, "q"), -1),
            ((4, "r"), 1),
            ((4, "s"), -1),
            ((4, "t"), 1),
        ]);
        assert!(c.is_empty());
        assert_eq!(v.iter().map(|v| v.key).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(v[0].to_string(), "key 1 has 2 insertion(s) and 0 retraction(s) at one time");
    }

    /// Taking chunks from the end at key boundaries yields the same changes as one pass.
    #[test]
    fn chunks_agree_with_one_pass() {
        let mut updates: Vec<((u32, u32), isize)> = Vec::new();
        for k in 0..500u32 {
            updates.push(((k, k), -1));
            updates.push(((k, k + 1), 1));
            if k % 7 == 0 {
                updates.push(((k, k + 2), 1)); // a violation
            }
        }
        let (mut whole, mut whole_v) = (Vec::new(), Vec::new());
        changes_from_updates(&mut updates.clone(), &mut whole, &mut whole_v);
        order_by_key(&mut updates);
        let (mut parts, mut parts_v) = (Vec::new(), Vec::new());
        while !updates.is_empty() {
            let from = chunk_start(&updates, 37);
            assert!(from == 0 || updates[from].0 .0 != updates[from - 1].0 .0, "a key is split");
            changes_from_ordered(&mut updates, from, &mut parts, &mut parts_v);
        }
        for v in [&mut whole, &mut parts] {
            v.sort_by_key(|c| c.key);
        }
        whole_v.sort_by_key(|v| v.key);
        parts_v.sort_by_key(|v| v.key);
        assert_eq!(whole, parts);
        assert_eq!(whole_v, parts_v);
    }

    /// The grouping by key, then by value within a key, agrees with a plain sort-based
    /// consolidation on random input, including colliding and interleaved keys.
    #[test]
    fn agrees_with_sorting() {
        let mut seed = 12345u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let n = (next() % 40) as usize;
            let updates: Vec<((u8, u8), isize)> =
                (0..n).map(|_| (((next() % 6) as u8, (next() % 3) as u8), [1, -1, 2][(next() % 3) as usize])).collect();
            let mut reference = updates.clone();
            differential_dataflow::consolidation::consolidate(&mut reference);
            let mut ours = updates.clone();
            consolidate_by_key(&mut ours);
            assert_eq!(ours, reference);
            // Ordering alone (by key, then each key's run by value) is the order of the pairs.
            let (mut ordered, mut sorted) = (updates.clone(), updates.clone());
            order_by_key(&mut ordered);
            sorted.sort_by_key(|a| a.0);
            let pairs = |u: &[((u8, u8), isize)]| u.iter().map(|(kv, _)| *kv).collect::<Vec<_>>();
            assert_eq!(pairs(&ordered), pairs(&sorted));
            let (mut c, mut v) = (Vec::new(), Vec::new());
            changes_from_updates(&mut updates.clone(), &mut c, &mut v);
            // Rebuild the consolidated updates from changes and violations and compare.
            let mut rebuilt: Vec<((u8, u8), isize)> = Vec::new();
            for ch in c {
                if let Some(b) = ch.before {
                    rebuilt.push(((ch.key, b), -1));
                }
                if let Some(a) = ch.after {
                    rebuilt.push(((ch.key, a), 1));
                }
            }
            for vi in v {
                rebuilt.extend(vi.updates.into_iter().map(|(val, d)| ((vi.key, val), d)));
            }
            rebuilt.sort();
            assert_eq!(rebuilt, reference);
        }
    }
}
