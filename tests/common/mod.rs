//! Shared pieces of the integration tests: change histories and the reference model.
//!
//! The reference is computed from the history alone (consolidating updates by time), never from
//! what the sink did, so a test compares the target against an independent answer.

#![allow(dead_code)]

pub mod crash;
pub mod gen;
pub mod lakehouse;
pub mod proxy;
pub mod s3;
pub mod service;
pub mod tracked;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The value of `var`, which `scripts/services env` sets for the test server `service`. Panics
/// with how to start the server when it is missing: a test never passes without its server.
pub fn service_env(var: &str, service: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: these tests need the `{service}` test server. Run \
             `scripts/services install {service} && scripts/services start {service}`, then \
             `set -a; source $DSINK_SERVICES_DIR/env; set +a` (default DSINK_SERVICES_DIR=/tmp/dsink-services)"
        )
    })
}

/// A name unique to this process and call (`prefix`, the process id, the clock and a counter,
/// joined by `sep`), so reruns against the same server do not collide.
pub fn unique_name(prefix: &str, sep: char) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{sep}{}{sep}{}{sep}{n}", std::process::id(), nanos % 1_000_000_000_000)
}

/// The row type of the property tests: `k` is the primary key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Row {
    pub k: u32,
    pub v: u32,
    pub s: String,
}

/// A small deterministic generator (xorshift), so histories derive from a proptest seed.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A keyed change history: at each time, some keys are inserted, updated or deleted, each key at
/// most once per time (so the collection always has at most one row per key). Updates come as
/// `(row, time, diff)`; an update is a retraction and an insertion at the same time.
pub fn keyed_history(seed: u64, keys: u32, times: u64, per_time: usize) -> Vec<(Row, u64, isize)> {
    let mut rng = Rng::new(seed);
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let mut out = Vec::new();
    let mut version = 0;
    for t in 0..times {
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..per_time {
            let k = rng.below(keys as u64) as u32;
            if !touched.insert(k) {
                continue;
            }
            version += 1;
            let fresh =
                Row { k, v: version, s: ["α", "b\"q", "c\\d", "日本", ""][rng.below(5) as usize].to_string() };
            match state.get(&k).cloned() {
                None => {
                    out.push((fresh.clone(), t, 1));
                    state.insert(k, fresh);
                }
                Some(old) if rng.below(3) == 0 => {
                    out.push((old, t, -1));
                    state.remove(&k);
                }
                Some(old) => {
                    out.push((old, t, -1));
                    out.push((fresh.clone(), t, 1));
                    state.insert(k, fresh);
                }
            }
        }
    }
    out
}

/// The collection's state (key → row) after consolidating every update before `upper`
/// ([`gen::state_at`] for [`Row`]).
pub fn state_before(history: &[(Row, u64, isize)], upper: u64) -> BTreeMap<u32, Row> {
    gen::state_at(history, upper)
}

/// The changes the history implies, as `(time, key) → (before, after)`, computed by diffing the
/// state before and after each time.
pub fn expected_changes(history: &[(Row, u64, isize)]) -> BTreeMap<(u64, u32), (Option<Row>, Option<Row>)> {
    let times: std::collections::BTreeSet<u64> = history.iter().map(|h| h.1).collect();
    let mut out = BTreeMap::new();
    for t in times {
        let (a, b) = (state_before(history, t), state_before(history, t + 1));
        let keys: std::collections::BTreeSet<u32> = a.keys().chain(b.keys()).copied().collect();
        for k in keys {
            let (x, y) = (a.get(&k).cloned(), b.get(&k).cloned());
            if x != y {
                out.insert((t, k), (x, y));
            }
        }
    }
    out
}

/// The primary key `k` read back from an encoded JSON key.
pub fn key_of(key: &[u8]) -> u32 {
    let v: serde_json::Value = serde_json::from_slice(key).expect("key is JSON");
    v["k"].as_u64().expect("key has k") as u32
}

/// A row read back from JSON.
pub fn row_of(value: &[u8]) -> Row {
    serde_json::from_slice(value).expect("value is a row")
}
