//! Generated change histories for the property tests, built so that proptest can shrink them.
//!
//! A history is generated as a [`Script`] — a few keys, a first time, and per time slot a gap and
//! a list of [`Step`]s on those keys — by ordinary proptest strategies, and turned into
//! `(row, time, diff)` updates by the pure function [`keyed_updates`], which keeps the collection
//! keyed (at most one row per key). Shrinking the script (fewer slots, fewer steps, smaller gaps,
//! simpler values) thus shrinks the history. The steps produce shapes a plain ±1 history never
//! has: diffs above one that consolidate to ±1, inserts and deletes that cancel inside a time,
//! retractions and re-insertions of an unchanged row, sparse and huge times. [`BagScript`] is the
//! same for collections without a key (multiplicities above one).
//!
//! The reference model ([`state_at`], [`changes_of`], [`bag_at`]) works on any [`GenRow`] and is
//! computed from the updates alone, never from what a sink did.

use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

use super::Row;

/// A row type the generators can build: it has a primary key column `k`, and is made of a key
/// and a value.
pub trait GenRow:
    differential_dataflow::ExchangeData + Serialize + DeserializeOwned + Ord + Debug + std::hash::Hash + Send + Sync
{
    /// The primary key (column `k`).
    type Key: Clone + Ord + Debug + Send + Sync + 'static;
    /// Everything else of the row.
    type Val: Clone + Debug + Send + Sync + 'static;
    /// The row's key.
    fn key(&self) -> Self::Key;
    /// The row of `key` with `val`.
    fn make(key: &Self::Key, val: &Self::Val) -> Self;
    /// Keys to draw from.
    fn keys() -> BoxedStrategy<Self::Key>;
    /// Values to draw from.
    fn vals() -> BoxedStrategy<Self::Val>;
    /// The key read back from an encoded JSON key (`{"k": …}`).
    fn decode_key(key: &serde_json::Value) -> Self::Key;
}

impl GenRow for Row {
    type Key = u32;
    type Val = (u32, String);
    fn key(&self) -> u32 {
        self.k
    }
    fn make(key: &u32, val: &(u32, String)) -> Self {
        Row { k: *key, v: val.0, s: val.1.clone() }
    }
    fn keys() -> BoxedStrategy<u32> {
        (0u32..64).boxed()
    }
    fn vals() -> BoxedStrategy<(u32, String)> {
        // Few values, so that a key is often set to the value it already has.
        (0u32..3, prop::sample::select(vec!["", "α", "b\"q", "c\\d", "日本"]).prop_map(String::from)).boxed()
    }
    fn decode_key(key: &serde_json::Value) -> u32 {
        key["k"].as_u64().expect("key has a numeric k") as u32
    }
}

/// A row with a string key and a nullable string value: keys and values with NUL and other
/// control characters, quotes, backslashes and characters outside the BMP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SRow {
    /// The primary key.
    pub k: String,
    /// The value; `None` is JSON `null`, distinct from `""` and from `"null"`.
    pub v: Option<String>,
}

/// Strings that encoders get wrong: empty, NUL, control characters, quotes, backslashes,
/// non-BMP characters, JSON look-alikes — and a few arbitrary characters.
pub fn awkward_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", "a", "\0", "a\0b", "\n", "\r\n", "\t", "\u{1f}", "\u{7f}", "\"", "\\", "\\\"", "'", "😀", "𝄞\u{10ffff}",
            "\u{2028}", "日本", "null", "{\"k\":1}", " ",
        ])
        .prop_map(String::from),
        1 => prop::collection::vec(any::<char>(), 0..4).prop_map(|c| c.into_iter().collect()),
    ]
    .boxed()
}

impl GenRow for SRow {
    type Key = String;
    type Val = Option<String>;
    fn key(&self) -> String {
        self.k.clone()
    }
    fn make(key: &String, val: &Option<String>) -> Self {
        SRow { k: key.clone(), v: val.clone() }
    }
    fn keys() -> BoxedStrategy<String> {
        awkward_string()
    }
    fn vals() -> BoxedStrategy<Option<String>> {
        prop_oneof![1 => Just(None), 3 => awkward_string().prop_map(Some)].boxed()
    }
    fn decode_key(key: &serde_json::Value) -> String {
        key["k"].as_str().expect("key has a string k").to_string()
    }
}

/// What a step does to its key.
#[derive(Clone, Debug)]
pub enum Action<V> {
    /// The key takes this value: an insert if it had no row, an update if it had another value,
    /// and a retraction and re-insertion of the same row (no change) if it had this one.
    Set(V),
    /// The key goes away: a delete if it had a row; if not, the row with this value is inserted
    /// and retracted within the time (no change).
    Delete(V),
    /// The key's row is retracted and inserted again (no change); a key without a row gets this
    /// value inserted and retracted within the time (no change).
    Touch(V),
}

/// How a step's updates are written out.
#[derive(Clone, Debug)]
pub enum Spread<V> {
    /// Each `±1` as one update.
    Plain,
    /// Each `±1` as `±(n+1)` and `∓n` of the same row: diffs above one, consolidating to `±1`.
    Split(isize),
    /// Also `+n` and `-n` of the key's row with this value, cancelling within the time.
    Transient(V, isize),
}

/// One operation on one key at one time.
#[derive(Clone, Debug)]
pub struct Step<V> {
    /// Which of the script's keys.
    pub key: Index,
    /// What happens to it.
    pub action: Action<V>,
    /// How its updates are written.
    pub spread: Spread<V>,
}

/// One time of a script: how far after the previous time it comes, and its steps (several steps
/// on one key compose: only the key's net change counts).
#[derive(Clone, Debug)]
pub struct Slot<V> {
    /// The time is the previous time plus `1 + gap` (the first: the script's base plus `gap`).
    pub gap: u64,
    /// The steps, in order.
    pub steps: Vec<Step<V>>,
}

/// A keyed history before it becomes updates: see [`keyed_updates`].
#[derive(Clone, Debug)]
pub struct Script<K, V> {
    /// The keys, distinct.
    pub keys: Vec<K>,
    /// The first time's base.
    pub base: u64,
    /// The times, in order.
    pub slots: Vec<Slot<V>>,
}

/// Where histories start: mostly at 0, sometimes near `u64::MAX / 2`.
pub fn base_time() -> BoxedStrategy<u64> {
    prop_oneof![4 => Just(0u64), 1 => Just(u64::MAX / 2), 1 => u64::MAX / 2 - 1000..u64::MAX / 2].boxed()
}

/// Gaps between times: mostly none, sometimes a few, sometimes millions.
pub fn gap() -> BoxedStrategy<u64> {
    prop_oneof![8 => Just(0u64), 2 => 1u64..8, 1 => 1_000_000u64..5_000_000].boxed()
}

/// The times of slots with these gaps, from `base`.
pub fn times(base: u64, gaps: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = base;
    for g in gaps {
        let t = next + g;
        out.push(t);
        next = t + 1;
    }
    out
}

fn multiplier() -> BoxedStrategy<isize> {
    (1isize..4).boxed()
}

fn step<R: GenRow>() -> BoxedStrategy<Step<R::Val>> {
    let action = prop_oneof![
        5 => R::vals().prop_map(Action::Set),
        2 => R::vals().prop_map(Action::Delete),
        1 => R::vals().prop_map(Action::Touch),
    ];
    let spread = prop_oneof![
        4 => Just(Spread::Plain),
        1 => multiplier().prop_map(Spread::Split),
        1 => (R::vals(), multiplier()).prop_map(|(v, n)| Spread::Transient(v, n)),
    ];
    (any::<Index>(), action, spread).prop_map(|(key, action, spread)| Step { key, action, spread }).boxed()
}

/// Scripts of `keys` distinct keys (at least one), `slots` times and `steps` steps per time.
pub fn script<R: GenRow>(
    keys: std::ops::Range<usize>,
    slots: std::ops::Range<usize>,
    steps: std::ops::Range<usize>,
) -> BoxedStrategy<Script<R::Key, R::Val>> {
    let slot = (gap(), prop::collection::vec(step::<R>(), steps)).prop_map(|(gap, steps)| Slot { gap, steps });
    (
        prop::collection::btree_set(R::keys(), keys.start.max(1)..keys.end.max(2)),
        base_time(),
        prop::collection::vec(slot, slots),
    )
        .prop_map(|(keys, base, slots)| Script { keys: keys.into_iter().collect(), base, slots })
        .boxed()
}

impl<K, V> Script<K, V> {
    /// The time of each slot.
    pub fn times(&self) -> Vec<u64> {
        times(self.base, self.slots.iter().map(|s| s.gap))
    }
}

/// Pushes `diff` of `row` as `spread` says (a split diff as two updates).
fn push<R: Clone>(out: &mut Vec<(R, u64, isize)>, row: R, t: u64, diff: isize, split: Option<isize>) {
    match split {
        Some(n) => {
            out.push((row.clone(), t, diff * (n + 1)));
            out.push((row, t, -diff * n));
        }
        None => out.push((row, t, diff)),
    }
}

/// The updates of a script. Pure: the same script gives the same updates. The collection stays
/// keyed: after every time each key has at most one row, with count one.
pub fn keyed_updates<R: GenRow>(script: &Script<R::Key, R::Val>) -> Vec<(R, u64, isize)> {
    let mut state: BTreeMap<usize, R> = BTreeMap::new();
    let mut out = Vec::new();
    for (slot, t) in script.slots.iter().zip(script.times()) {
        for step in &slot.steps {
            let i = step.key.index(script.keys.len());
            let key = &script.keys[i];
            let old = state.get(&i).cloned();
            // (retracted, inserted, a row inserted and retracted within the time)
            let (retract, insert, transient) = match (&step.action, old) {
                (Action::Set(v), old) => (old, Some(R::make(key, v)), None),
                (Action::Delete(_), Some(old)) => (Some(old), None, None),
                (Action::Touch(_), Some(old)) => (Some(old.clone()), Some(old), None),
                (Action::Delete(v) | Action::Touch(v), None) => (None, None, Some(R::make(key, v))),
            };
            let split = match &step.spread {
                Spread::Split(n) => Some(*n),
                _ => None,
            };
            if let Some(row) = retract {
                push(&mut out, row, t, -1, split);
            }
            if let Some(row) = &insert {
                push(&mut out, row.clone(), t, 1, split);
            }
            if let Some(row) = transient {
                push(&mut out, row.clone(), t, 1, split);
                push(&mut out, row, t, -1, split);
            }
            if let Spread::Transient(v, n) = &step.spread {
                let row = R::make(key, v);
                out.push((row.clone(), t, *n));
                out.push((row, t, -*n));
            }
            match insert {
                Some(row) => state.insert(i, row),
                None => state.remove(&i),
            };
        }
    }
    out
}

/// The collection's state (key → row) after consolidating every update before `upper`. Panics if
/// the history is not keyed.
pub fn state_at<R: GenRow>(history: &[(R, u64, isize)], upper: u64) -> BTreeMap<R::Key, R> {
    let mut counts: BTreeMap<&R, isize> = BTreeMap::new();
    for (row, t, d) in history {
        if *t < upper {
            *counts.entry(row).or_default() += d;
        }
    }
    let mut state = BTreeMap::new();
    for (row, c) in counts {
        assert!(c == 0 || c == 1, "history is not keyed: {row:?} has count {c}");
        if c == 1 {
            assert!(state.insert(row.key(), row.clone()).is_none(), "two rows for key {:?}", row.key());
        }
    }
    state
}

/// The changes a keyed history implies, as `(time, key) → (before, after)`: the state before and
/// after each time, diffed. Times and keys whose rows did not change have no entry.
pub type Changes<R> = BTreeMap<(u64, <R as GenRow>::Key), (Option<R>, Option<R>)>;

/// See [`Changes`].
pub fn changes_of<R: GenRow>(history: &[(R, u64, isize)]) -> Changes<R> {
    let times: std::collections::BTreeSet<u64> = history.iter().map(|h| h.1).collect();
    let mut out = BTreeMap::new();
    for t in times {
        let (a, b) = (state_at(history, t), state_at(history, t + 1));
        let keys: std::collections::BTreeSet<&R::Key> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (x, y) = (a.get(k).cloned(), b.get(k).cloned());
            if x != y {
                out.insert((t, k.clone()), (x, y));
            }
        }
    }
    out
}

/// One time of an unkeyed history: its gap (as in [`Slot`]) and rows, each with the multiplicity
/// it gains at this time (`0..=3`) and a number of extra insertions and retractions of it that
/// cancel (`noise`).
#[derive(Clone, Debug)]
pub struct BagSlot<R> {
    /// See [`Slot::gap`].
    pub gap: u64,
    /// `(row, multiplicity, noise)`.
    pub rows: Vec<(R, u8, u8)>,
}

/// An insert-only history of a collection without a key.
#[derive(Clone, Debug)]
pub struct BagScript<R> {
    /// See [`Script::base`].
    pub base: u64,
    /// The times, in order.
    pub slots: Vec<BagSlot<R>>,
}

/// Unkeyed insert-only scripts over rows of `R` made from a few keys and values.
pub fn bag_script<R: GenRow>(
    slots: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
) -> BoxedStrategy<BagScript<R>> {
    let row = (R::keys(), R::vals()).prop_map(|(k, v)| R::make(&k, &v));
    let entry = (row, 0u8..4, prop_oneof![3 => Just(0u8), 1 => 1u8..3]);
    let slot = (gap(), prop::collection::vec(entry, rows)).prop_map(|(gap, rows)| BagSlot { gap, rows });
    (base_time(), prop::collection::vec(slot, slots)).prop_map(|(base, slots)| BagScript { base, slots }).boxed()
}

/// The updates of an unkeyed script: a multiplicity `m` with noise `n` is `+(m+n)` and `-n` of
/// the row (a multiplicity 0 with noise: `+n`, `-n`, cancelling). Pure.
pub fn bag_updates<R: Clone>(script: &BagScript<R>) -> Vec<(R, u64, isize)> {
    let mut out = Vec::new();
    for (slot, t) in script.slots.iter().zip(times(script.base, script.slots.iter().map(|s| s.gap))) {
        for (row, m, n) in &slot.rows {
            let (m, n) = (*m as isize, *n as isize);
            if m + n > 0 {
                out.push((row.clone(), t, m + n));
            }
            if n > 0 {
                out.push((row.clone(), t, -n));
            }
        }
    }
    out
}

/// The consolidated multiplicity of each row at each time (zeros dropped).
pub fn bag_at<R: Ord + Clone>(history: &[(R, u64, isize)]) -> BTreeMap<(u64, R), isize> {
    let mut out: BTreeMap<(u64, R), isize> = BTreeMap::new();
    for (row, t, d) in history {
        *out.entry((*t, row.clone())).or_default() += d;
    }
    out.retain(|_, c| *c != 0);
    out
}
