//! The crash harness: a sink is run as a child process (`dsink` on a change log) and killed with
//! SIGKILL at a named crash point — before a chunk of a time is written, at the start of a commit,
//! in the middle of a connector's commit, after the commit returned, around a coordinated round —
//! then rerun; after every run the target is read back and checked against the reference computed
//! from the change log alone.
//!
//! The child is built with the `crash-points` feature; `DSINK_CRASH_AT=<point>:<n>` makes it kill
//! itself (SIGKILL) the n-th time any worker passes `<point>`, after printing `dsink crash point
//! <point> #<n>` to stderr. A crash run must end by SIGKILL with that line printed: a point that is
//! never reached fails the test instead of passing it silently.
//!
//! The history starts with one large time (every key inserted, written in several chunks with a
//! small `write.chunk_changes`), so a crash at `write` #2 or later lands inside a chunked time;
//! later times insert, update and delete random keys, and every row carries a version `v` that
//! grows through the history, so a key's value tells where in its history the target is.
//!
//! What is checked, by the target's guarantee:
//!
//! * after every crash: a change log ([`Readback::Log`]) holds, per key, a prefix of the key's
//!   changes (exactly-once: no change twice; at-least-once: copies allowed, each an exact copy);
//!   a table ([`Readback::Table`]) holds each key at a state it had in the history, never older
//!   than at the previous read (no regression); appended rows ([`Readback::Rows`]) are a
//!   sub-multiset of the reference;
//! * after the final run, which is not killed: the target equals the reference — every change
//!   once in a log (at-least-once: once after deduplicating by `(time, key)`, and the copies
//!   counted), the final state in a table, every inserted row once in appended rows.

use super::{expected_changes, state_before, Rng, Row};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A crash point of the write and commit path (see `differential_sinks::operators::crash`).
pub const WRITE: &str = "write";
/// Before a worker commits (or prepares, for a coordinated sink).
pub const COMMIT_BEGIN: &str = "commit.begin";
/// Between the steps of a connector's own commit.
pub const COMMIT_MID: &str = "commit.mid";
/// After a worker's commit (or prepare) returned, before the operator reports it.
pub const COMMIT_END: &str = "commit.end";
/// Before the committer of a coordinated sink commits a round.
pub const ROUND_BEGIN: &str = "round.begin";
/// After the committer's commit returned.
pub const ROUND_END: &str = "round.end";

/// The crash points of a sink whose workers commit independently.
pub const INDEPENDENT: &[&str] = &[WRITE, COMMIT_BEGIN, COMMIT_MID, COMMIT_END];
/// The crash points of a coordinated sink (one commit per round by worker 0).
pub const COORDINATED: &[&str] = &[WRITE, COMMIT_BEGIN, COMMIT_END, ROUND_BEGIN, COMMIT_MID, ROUND_END];

/// What the target promises across a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    /// Every change exactly once.
    ExactlyOnce,
    /// Replays rewrite the same values: the same final state, and no key ever goes back.
    Idempotent,
    /// Nothing lost; copies of a change carry its identity `(time, key)`, so readers drop them.
    AtLeastOnce,
}

/// One delivered change of a log: the key's row after `time`, or `None` for a delete.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivered {
    pub time: u64,
    pub key: u32,
    pub after: Option<Row>,
}

/// What a test reads back from its target.
#[derive(Debug)]
pub enum Readback {
    /// Delivered changes, in the order a reader sees them.
    Log(Vec<Delivered>),
    /// The table's rows by key (upsert targets).
    Table(BTreeMap<u32, Row>),
    /// The rows of an append-only target.
    Rows(Vec<Row>),
}

/// A crash test: `dsink` with `args` on `workers` workers, killed once at each of `points` (at a
/// hit number from `seed`), then run to the end.
pub struct CrashTest<'a> {
    /// Names the target in messages.
    pub label: &'a str,
    /// `dsink` arguments besides `--input` and `--workers`: `--with …`, `--schema …`.
    pub args: Vec<String>,
    /// Worker threads.
    pub workers: usize,
    /// Where to crash, one run each, in this order.
    pub points: &'a [&'a str],
    /// What the target promises.
    pub guarantee: Guarantee,
    /// Seeds the history and the hit numbers.
    pub seed: u64,
    /// Extra environment for the child (e.g. server addresses).
    pub env: Vec<(String, String)>,
}

/// What a crash test saw.
#[derive(Debug, Default)]
pub struct Report {
    /// `(point, n)` of every crash that happened.
    pub crashes: Vec<(String, u64)>,
    /// Copies seen in an at-least-once log (removed by deduplication).
    pub duplicates: usize,
}

/// Keys inserted at time 0 (written in chunks of [`CHUNK`]).
pub const KEYS: u32 = 120;
/// The `write.chunk_changes` the harness adds to the sink's options.
pub const CHUNK: usize = 25;
/// Times after the first.
pub const TIMES: u64 = 24;

/// The crash tests' history: all [`KEYS`] keys inserted at time 0, then at each of [`TIMES`] later
/// times some keys inserted, updated or deleted (each key at most once a time); `v` grows through
/// the history.
pub fn history(seed: u64) -> Vec<(Row, u64, isize)> {
    let mut rng = Rng::new(seed ^ extra_seed());
    let strings = ["α", "b\"q", "c\\d", "日本", "", "tab\there", "line\nbreak"];
    let mut version = 0u32;
    let mut fresh = |k: u32, rng: &mut Rng| {
        version += 1;
        Row { k, v: version, s: strings[rng.below(strings.len() as u64) as usize].to_string() }
    };
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let mut out = Vec::new();
    for k in 0..KEYS {
        let row = fresh(k, &mut rng);
        out.push((row.clone(), 0, 1));
        state.insert(k, row);
    }
    for t in 1..=TIMES {
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..12 {
            let k = rng.below(KEYS as u64 + 10) as u32;
            if !touched.insert(k) {
                continue;
            }
            match state.get(&k).cloned() {
                None => {
                    let row = fresh(k, &mut rng);
                    out.push((row.clone(), t, 1));
                    state.insert(k, row);
                }
                Some(old) if rng.below(4) == 0 => {
                    out.push((old, t, -1));
                    state.remove(&k);
                }
                Some(old) => {
                    let row = fresh(k, &mut rng);
                    out.push((old, t, -1));
                    out.push((row.clone(), t, 1));
                    state.insert(k, row);
                }
            }
        }
    }
    out
}

/// An insert-only history for append-only targets: [`KEYS`] rows at time 0, then a few new rows
/// at each later time.
pub fn insert_history(seed: u64) -> Vec<(Row, u64, isize)> {
    let mut rng = Rng::new(seed ^ extra_seed());
    let mut out = Vec::new();
    let mut v = 0u32;
    for t in 0..=TIMES {
        let n = if t == 0 { KEYS } else { 1 + rng.below(8) as u32 };
        for _ in 0..n {
            v += 1;
            out.push((Row { k: v, v, s: format!("r{}", rng.below(5)) }, t, 1));
        }
    }
    out
}

/// `DSINK_CRASH_SEED` (default 0), mixed into every seed: other histories and crash sequences for
/// long runs, e.g. `for s in $(seq 1 50); do DSINK_CRASH_SEED=$s cargo nextest run --all-features
/// --test crash_tables; done`.
pub fn extra_seed() -> u64 {
    std::env::var("DSINK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Writes `history` as a `dsink` change log.
pub fn write_log(path: &Path, history: &[(Row, u64, isize)]) {
    let mut f = std::fs::File::create(path).expect("creating the change log");
    for (row, t, d) in history {
        let line = serde_json::json!({"time": t, "diff": d, "row": row});
        writeln!(f, "{line}").expect("writing the change log");
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(super::unique_name(&format!("dsink-crash-{label}"), '-'));
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// Runs the crash test on `history`, reading the target back with `read` after every run.
pub fn run(test: &CrashTest<'_>, history: &[(Row, u64, isize)], read: &dyn Fn() -> Readback) -> Report {
    let dir = scratch(test.label);
    let log = dir.join("changes.jsonl");
    write_log(&log, history);
    let mut rng = Rng::new(test.seed ^ extra_seed() ^ 0x5eed);
    eprintln!("{}: seed {}, DSINK_CRASH_SEED={}", test.label, test.seed, extra_seed());
    let mut report = Report::default();
    let mut model = Model::new(history, test.guarantee);
    for point in test.points {
        // At `write`, hit #2 to #4: inside time 0, after some of its chunks were written. Commit
        // points are passed about once a time per worker (rounds once a time), so a crash lands
        // a few times into what the run had left, and the runs together reach late times too.
        let n = match *point {
            WRITE => 2 + rng.below(3),
            ROUND_BEGIN | ROUND_END => 1 + rng.below(4),
            _ => 1 + rng.below(6),
        };
        let (status, stderr) = dsink(test, &log, Some((point, n)));
        let line = format!("dsink crash point {point} #{n}");
        assert!(
            status.signal() == Some(SIGKILL) && stderr.contains(&line),
            "{}: the run armed to crash at {point} #{n} did not die there (status {status:?}); stderr:\n{stderr}",
            test.label
        );
        eprintln!("{}: crashed at {point} #{n}", test.label);
        report.crashes.push((point.to_string(), n));
        model.check_partial(&read(), &format!("{}: after a crash at {point} #{n}", test.label));
    }
    let (status, stderr) = dsink(test, &log, None);
    assert!(status.success(), "{}: the final run failed ({status:?}):\n{stderr}", test.label);
    eprintln!("{}: final run: {}", test.label, stderr.trim());
    report.duplicates = model.check_final(&read(), test.label);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// The signal a crash point sends.
const SIGKILL: i32 = 9;

/// Runs `dsink` on `log` to its end, or until it kills itself at `crash`.
fn dsink(test: &CrashTest<'_>, log: &Path, crash: Option<(&str, u64)>) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsink"));
    cmd.arg("--input").arg(log).arg("--workers").arg(test.workers.to_string()).arg("--progress").arg("never");
    // One commit per time, so every run passes each crash point many times.
    cmd.arg("--commit-each-time");
    cmd.args(&test.args).arg("--with").arg(format!("write.chunk_changes={CHUNK}"));
    cmd.envs(test.env.iter().map(|(k, v)| (k, v)));
    cmd.env_remove("DSINK_CRASH_AT");
    if let Some((point, n)) = crash {
        cmd.env("DSINK_CRASH_AT", format!("{point}:{n}"));
    }
    let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("running dsink");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The reference, and what earlier reads saw.
struct Model {
    guarantee: Guarantee,
    /// Each key's changes in time order: `(time, after)`.
    changes: BTreeMap<u32, Vec<(u64, Option<Row>)>>,
    final_state: BTreeMap<u32, Row>,
    inserted: BTreeMap<Row, usize>,
    /// For tables: how far into its changes each key was seen last.
    seen: BTreeMap<u32, usize>,
}

impl Model {
    fn new(history: &[(Row, u64, isize)], guarantee: Guarantee) -> Model {
        let mut changes: BTreeMap<u32, Vec<(u64, Option<Row>)>> = BTreeMap::new();
        for ((t, k), (_, after)) in expected_changes(history) {
            changes.entry(k).or_default().push((t, after));
        }
        let mut inserted = BTreeMap::new();
        for (row, _, d) in history.iter().filter(|h| h.2 > 0) {
            *inserted.entry(row.clone()).or_default() += *d as usize;
        }
        Model { guarantee, changes, final_state: state_before(history, u64::MAX), inserted, seen: BTreeMap::new() }
    }

    /// Per key, the delivered changes (deduplicated by `(time, key)` for at-least-once), checked
    /// to be a prefix of the key's changes. Returns them and the number of copies dropped.
    fn log_prefixes(&self, log: &[Delivered], when: &str) -> (BTreeMap<u32, usize>, usize) {
        let mut by_key: BTreeMap<u32, Vec<&Delivered>> = BTreeMap::new();
        for d in log {
            by_key.entry(d.key).or_default().push(d);
        }
        let mut lengths = BTreeMap::new();
        let mut copies = 0;
        for (k, got) in by_key {
            let want = self.changes.get(&k).map(Vec::as_slice).unwrap_or_default();
            let mut distinct: Vec<&Delivered> = Vec::new();
            for d in got {
                match distinct.iter().find(|e| e.time == d.time) {
                    Some(e) => {
                        assert!(
                            self.guarantee == Guarantee::AtLeastOnce,
                            "{when}: key {k}'s change at time {} delivered twice",
                            d.time
                        );
                        assert_eq!(*e, d, "{when}: two different records for key {k} at time {}", d.time);
                        copies += 1;
                    }
                    None => distinct.push(d),
                }
            }
            distinct.sort_by_key(|d| d.time);
            assert!(
                distinct.len() <= want.len(),
                "{when}: key {k} has {} delivered changes, the history {}",
                distinct.len(),
                want.len()
            );
            for (i, d) in distinct.iter().enumerate() {
                assert_eq!(
                    (d.time, &d.after),
                    (want[i].0, &want[i].1),
                    "{when}: key {k}'s delivered change #{i} is not its change #{i} (a change lost, or out of order)"
                );
            }
            lengths.insert(k, distinct.len());
        }
        (lengths, copies)
    }

    /// The table holds every key at a state of its history, not older than the last read.
    fn table_states(&mut self, table: &BTreeMap<u32, Row>, when: &str) {
        let keys: std::collections::BTreeSet<u32> = table.keys().chain(self.changes.keys()).copied().collect();
        for k in keys {
            let have = table.get(&k);
            let want = self.changes.get(&k).map(Vec::as_slice).unwrap_or_default();
            let from = self.seen.get(&k).copied().unwrap_or(0);
            // State index i: after the key's first i changes (0: before any, absent).
            let state = |i: usize| if i == 0 { None } else { want[i - 1].1.as_ref() };
            let found = (from..=want.len()).find(|&i| state(i) == have);
            match found {
                Some(i) => {
                    self.seen.insert(k, i);
                }
                None => {
                    let older = (0..from).any(|i| state(i) == have);
                    panic!(
                        "{when}: key {k} holds {have:?}, {}",
                        if older {
                            "a state older than an earlier read saw (a regression)"
                        } else {
                            "which it never had in the history"
                        }
                    );
                }
            }
        }
    }

    fn check_partial(&mut self, got: &Readback, when: &str) {
        match got {
            Readback::Log(log) => {
                self.log_prefixes(log, when);
            }
            Readback::Table(table) => self.table_states(table, when),
            Readback::Rows(rows) => {
                let mut have: BTreeMap<&Row, usize> = BTreeMap::new();
                for r in rows {
                    *have.entry(r).or_default() += 1;
                }
                for (r, n) in have {
                    let want = self.inserted.get(r).copied().unwrap_or(0);
                    assert!(
                        n <= want || self.guarantee == Guarantee::AtLeastOnce && want > 0,
                        "{when}: row {r:?} appears {n} times, inserted {want} times"
                    );
                }
            }
        }
    }

    /// Checks the final read; returns the copies an at-least-once log held.
    fn check_final(&mut self, got: &Readback, label: &str) -> usize {
        let when = format!("{label}: after the final run");
        match got {
            Readback::Log(log) => {
                let (lengths, copies) = self.log_prefixes(log, &when);
                for (k, want) in &self.changes {
                    assert_eq!(lengths.get(k).copied().unwrap_or(0), want.len(), "{when}: key {k} is missing changes");
                }
                copies
            }
            Readback::Table(table) => {
                self.table_states(table, &when);
                assert_eq!(table, &self.final_state, "{when}: the table is not the final state");
                0
            }
            Readback::Rows(rows) => {
                let mut have: BTreeMap<Row, usize> = BTreeMap::new();
                for r in rows {
                    *have.entry(r.clone()).or_default() += 1;
                }
                if self.guarantee == Guarantee::AtLeastOnce {
                    let copies = rows.len() - have.len();
                    let distinct: BTreeMap<Row, usize> = have.into_keys().map(|r| (r, 1)).collect();
                    assert_eq!(distinct, self.inserted, "{when}: rows lost");
                    copies
                } else {
                    assert_eq!(have, self.inserted, "{when}: the rows are not every insert once");
                    0
                }
            }
        }
    }
}
