//! Property tests of the sink operator, envelopes and commit protocol against a reference model,
//! on 1, 2 and 4 workers, with random histories and random frontier advances. The target is the
//! transactional in-memory target, read back record by record.

mod common;

use common::{expected_changes, feed_time, key_of, keyed_history, row_of, state_before, Rng, Row};
use differential_dataflow::input::Input;
use differential_sinks::connectors::memory::{MemoryTarget, StoredRecord};
use differential_sinks::envelope::Op;
use differential_sinks::{CommitPolicy, ErrorKind, Format, SinkCollection, SinkSpec, ViolationPolicy};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::probe::Probe;
use timely::dataflow::operators::Inspect;

/// How a run goes: which worker count, and at which times the driver waits for commits.
#[derive(Clone, Debug)]
struct Drive {
    peers: usize,
    /// After feeding time t: 0 = move on, 1 = step a few times, 2 = wait until committed and check.
    pattern: Vec<u8>,
    max_changes: Option<u64>,
    /// Pipelined commits: each becomes durable this many polls after it started.
    pipeline: Option<u32>,
}

type Check = Arc<dyn Fn(u64) -> Result<(), String> + Send + Sync>;

/// Runs `history` into a sink of `spec` on `drive.peers` workers. At sync points worker 0 calls
/// `check(upper)` once every worker's commits reached `upper`. Returns the first sink error, and
/// the dead letters.
fn run(
    history: &[(Row, u64, isize)],
    spec: &SinkSpec,
    drive: &Drive,
    check: Option<Check>,
) -> (Option<differential_sinks::Error>, Vec<(Row, u64, isize)>) {
    let times = history.iter().map(|h| h.1 + 1).max().unwrap_or(1);
    let history = Arc::new(history.to_vec());
    let (spec, drive2) = (spec.clone(), drive.clone());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let dead = Arc::new(Mutex::new(Vec::new()));
    let (errors2, dead2) = (errors.clone(), dead.clone());
    timely::execute(timely::Config::process(drive.peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let dead = dead2.clone();
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            out.dead_letters.inner.inspect(move |u| dead.lock().unwrap().push(u.clone()));
            let (probe, _) = out.committed.probe();
            (input, probe, out.handle)
        });
        for t in 0..times {
            feed_time(&mut input, &history, t, index, peers);
            match drive2.pattern.get(t as usize).copied().unwrap_or(0) % 3 {
                1 => {
                    for _ in 0..3 {
                        worker.step();
                    }
                }
                2 => {
                    if let Err(e) = handle.step_until_committed(worker, &probe, &(t + 1)) {
                        errors2.lock().unwrap().push(e);
                        return;
                    }
                    if let (0, Some(c)) = (index, &check) {
                        c(t + 1).unwrap_or_else(|m| panic!("at frontier {}: {m}", t + 1));
                    }
                }
                _ => {}
            }
        }
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        if let Some(e) = handle.take_error() {
            errors2.lock().unwrap().push(e);
        }
    })
    .expect("timely runs");
    let e = errors.lock().unwrap().drain(..).next();
    let d = dead.lock().unwrap().clone();
    (e, d)
}

fn spec(target: &Arc<MemoryTarget>, format: Format, pk: bool, drive: &Drive) -> SinkSpec {
    target.pipeline(drive.pipeline);
    let mut b = SinkSpec::builder("props", Arc::clone(target)).format(format);
    if pk {
        b = b.primary_key(["k"]);
    }
    b.commit(CommitPolicy { max_changes: drive.max_changes, interval: Duration::ZERO }).build().unwrap()
}

/// Replays upsert records (commit order, which is time order per key) into key → row.
fn replay_upsert(records: &[StoredRecord]) -> BTreeMap<u32, Row> {
    let mut map = BTreeMap::new();
    for r in records {
        let k = key_of(&r.key);
        match &r.value {
            Some(v) => {
                let row = row_of(v);
                assert_eq!(row.k, k, "key and value disagree");
                map.insert(k, row);
            }
            None => {
                map.remove(&k);
            }
        }
    }
    map
}

fn drive_strategy() -> impl Strategy<Value = Drive> {
    (
        prop_oneof![Just(1usize), Just(2), Just(4)],
        prop::collection::vec(0u8..3, 0..16),
        prop::option::of(1u64..8),
        prop::option::of(0u32..4),
    )
        .prop_map(|(peers, pattern, max_changes, pipeline)| Drive { peers, pattern, max_changes, pipeline })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn upsert_replays_to_the_state_at_every_committed_frontier(
        seed in any::<u64>(), keys in 1u32..24, times in 1u64..12, per_time in 0usize..10, drive in drive_strategy()
    ) {
        let history = keyed_history(seed, keys, times, per_time);
        let target = MemoryTarget::new();
        let s = spec(&target, Format::Upsert, true, &drive);
        let (t2, h2) = (target.clone(), history.clone());
        let check: Check = Arc::new(move |upper| {
            let got = replay_upsert(&t2.records());
            let want = state_before(&h2, upper);
            if got == want { Ok(()) } else { Err(format!("target {got:?} != reference {want:?}")) }
        });
        let (err, _) = run(&history, &s, &drive, Some(check));
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert_eq!(replay_upsert(&target.records()), state_before(&history, u64::MAX));
        // Every change exactly once: one record per (time, key) that changed, none for the rest.
        let mut seen = BTreeMap::new();
        for r in target.records() {
            prop_assert!(seen.insert((r.time, key_of(&r.key)), r.op).is_none(), "duplicate record");
        }
        let expected = expected_changes(&history);
        prop_assert_eq!(seen.len(), expected.len());
        for ((t, k), (before, after)) in &expected {
            let op = seen.get(&(*t, *k)).copied();
            let want = match (before, after) { (None, Some(_)) => Op::Create, (Some(_), Some(_)) => Op::Update, _ => Op::Delete };
            prop_assert_eq!(op, Some(want));
        }
    }

    #[test]
    fn debezium_before_is_the_previous_after(
        seed in any::<u64>(), keys in 1u32..16, times in 1u64..10, per_time in 0usize..8, drive in drive_strategy(),
        tombstones in any::<bool>()
    ) {
        let history = keyed_history(seed, keys, times, per_time);
        let target = MemoryTarget::new();
        let s = spec(&target, Format::Debezium { tombstone_after_delete: tombstones }, true, &drive);
        let (err, _) = run(&history, &s, &drive, None);
        prop_assert!(err.is_none(), "{err:?}");
        let mut last: BTreeMap<u32, Option<serde_json::Value>> = BTreeMap::new();
        let mut deletes = 0;
        let mut tomb = 0;
        for r in target.records() {
            let k = key_of(&r.key);
            let Some(v) = &r.value else { tomb += 1; continue };
            let ev: serde_json::Value = serde_json::from_slice(v).unwrap();
            let prev = last.get(&k).cloned().flatten().unwrap_or(serde_json::Value::Null);
            prop_assert_eq!(&ev["before"], &prev, "key {}", k);
            let op = ev["op"].as_str().unwrap();
            prop_assert_eq!(op, match (ev["before"].is_null(), ev["after"].is_null()) { (true, false) => "c", (false, false) => "u", _ => "d" });
            prop_assert_eq!(ev["source"]["ts"].as_u64(), Some(r.time));
            if op == "d" { deletes += 1; }
            last.insert(k, if ev["after"].is_null() { None } else { Some(ev["after"].clone()) });
        }
        prop_assert_eq!(tomb, if tombstones { deletes } else { 0 });
        let state: BTreeMap<u32, Row> = last.into_iter().filter_map(|(k, v)| v.map(|v| (k, serde_json::from_value(v).unwrap()))).collect();
        prop_assert_eq!(state, state_before(&history, u64::MAX));
    }

    #[test]
    fn append_only_emits_exactly_the_inserts(seed in any::<u64>(), n in 0usize..60, drive in drive_strategy()) {
        // Insert-only history, with duplicates: without a key, each copy is its own record.
        let mut rng = Rng::new(seed);
        let history: Vec<(Row, u64, isize)> = (0..n).map(|_| (Row { k: rng.below(8) as u32, v: rng.below(3) as u32, s: String::new() }, rng.below(6), 1)).collect();
        let target = MemoryTarget::new();
        let (err, _) = run(&history, &spec(&target, Format::AppendOnly { force: false }, false, &drive), &drive, None);
        prop_assert!(err.is_none(), "{err:?}");
        let mut got: Vec<(u64, Row)> = target.records().iter().map(|r| (r.time, row_of(r.value.as_ref().unwrap()))).collect();
        let mut want: Vec<(u64, Row)> = history.iter().map(|(r, t, _)| (*t, r.clone())).collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
        prop_assert!(target.records().iter().all(|r| r.key.is_empty() && r.op == Op::Create));
    }

    #[test]
    fn forced_append_only_turns_updates_into_inserts(
        seed in any::<u64>(), keys in 1u32..12, times in 1u64..8, per_time in 1usize..8, drive in drive_strategy()
    ) {
        let history = keyed_history(seed, keys, times, per_time);
        let target = MemoryTarget::new();
        let (err, _) = run(&history, &spec(&target, Format::AppendOnly { force: true }, true, &drive), &drive, None);
        prop_assert!(err.is_none(), "{err:?}");
        let mut got: Vec<(u64, Row)> = target.records().iter().map(|r| (r.time, row_of(r.value.as_ref().unwrap()))).collect();
        let mut want: Vec<(u64, Row)> = expected_changes(&history).into_iter().filter_map(|((t, _), (_, after))| after.map(|a| (t, a))).collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn restart_after_a_failed_commit_delivers_each_change_once(
        seed in any::<u64>(), keys in 1u32..16, times in 2u64..10, per_time in 1usize..8, fail_after in 0u64..6, drive in drive_strategy()
    ) {
        let history = keyed_history(seed, keys, times, per_time);
        let target = MemoryTarget::new();
        let s = spec(&target, Format::Upsert, true, &drive);
        target.fail_commit_after(fail_after);
        let (first, _) = run(&history, &s, &drive, None);
        target.heal();
        let (second, _) = run(&history, &s, &drive, None);
        prop_assert!(second.is_none(), "restart failed: {second:?}");
        if let Some(e) = first { prop_assert_eq!(e.kind(), ErrorKind::Fatal); }
        let mut seen = std::collections::BTreeSet::new();
        for r in target.records() {
            prop_assert!(seen.insert((r.time, key_of(&r.key))), "change at time {} of key {} delivered twice", r.time, key_of(&r.key));
        }
        prop_assert_eq!(seen.len(), expected_changes(&history).len());
        prop_assert_eq!(replay_upsert(&target.records()), state_before(&history, u64::MAX));
    }
}

fn violating_history() -> (Vec<(Row, u64, isize)>, u32) {
    let mut history = keyed_history(7, 10, 5, 6);
    // Key 99 is inserted twice at the last time: a primary-key violation.
    for v in [1, 2] {
        history.push((Row { k: 99, v, s: "dup".into() }, 4, 1));
    }
    (history, 99)
}

#[test]
fn key_violation_fails_by_default() {
    let (history, _) = violating_history();
    let target = MemoryTarget::new();
    let drive = Drive { peers: 2, pattern: vec![], max_changes: None, pipeline: None };
    let (err, _) = run(&history, &spec(&target, Format::Upsert, true, &drive), &drive, None);
    let err = err.expect("the sink must fail");
    assert_eq!(err.kind(), ErrorKind::KeyViolation);
    assert!(err.to_string().contains("{\"k\":99}") && err.to_string().contains("2 insertion"), "{err}");
    assert!(target.records().iter().all(|r| key_of(&r.key) != 99), "the violating key is never delivered");
    // The failed worker committed nothing of the violating time (other workers may have).
    let past_violation = target.progress().iter().filter(|p| p.frontier.is_beyond(&4)).count();
    assert!(past_violation < 2, "one worker stopped before committing time 4: {:?}", target.progress());
}

#[test]
fn key_violation_skip_and_dead_letter() {
    let (history, bad) = violating_history();
    let clean: Vec<_> = history.iter().filter(|h| h.0.k != bad).cloned().collect();
    for (policy, peers) in
        [(ViolationPolicy::Skip, 1), (ViolationPolicy::DeadLetter, 2), (ViolationPolicy::DeadLetter, 4)]
    {
        let target = MemoryTarget::new();
        let drive = Drive { peers, pattern: vec![2; 5], max_changes: None, pipeline: None };
        let s = SinkSpec::builder("v", target.clone()).upsert().primary_key(["k"]).violations(policy).build().unwrap();
        let metrics = s.metrics().clone();
        let (err, dead) = run(&history, &s, &drive, None);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(replay_upsert(&target.records()), state_before(&clean, u64::MAX), "{policy:?}");
        let m = metrics.snapshot();
        match policy {
            ViolationPolicy::Skip => {
                assert_eq!(m.violations_skipped, 1);
                assert!(dead.is_empty());
            }
            _ => {
                assert_eq!(m.violations_dead_lettered, 1);
                let mut dead = dead;
                dead.sort();
                let mut want: Vec<_> = history.iter().filter(|h| h.0.k == bad).cloned().collect();
                want.sort();
                assert_eq!(dead, want);
            }
        }
    }
}

#[test]
fn append_only_refuses_retractions_unless_forced() {
    let history = keyed_history(3, 5, 4, 5);
    assert!(history.iter().any(|h| h.2 < 0), "the history must retract something");
    let target = MemoryTarget::new();
    let drive = Drive { peers: 2, pattern: vec![], max_changes: None, pipeline: None };
    let (err, _) = run(&history, &spec(&target, Format::AppendOnly { force: false }, true, &drive), &drive, None);
    let err = err.expect("refused");
    assert_eq!(err.kind(), ErrorKind::AppendOnly);
    assert!(err.to_string().contains("force_append_only"), "{err}");
}

#[test]
fn restart_with_another_worker_count_is_refused_or_exact() {
    let history = keyed_history(11, 20, 6, 8);
    // Finished run on 2 workers: every worker reached the same (complete) frontier, so 4 may resume.
    let target = MemoryTarget::new();
    let two = Drive { peers: 2, pattern: vec![2; 6], max_changes: None, pipeline: None };
    let four = Drive { peers: 4, pattern: vec![2; 6], max_changes: None, pipeline: None };
    let s = spec(&target, Format::Upsert, true, &two);
    assert!(run(&history, &s, &two, None).0.is_none());
    let before = target.records().len();
    assert!(run(&history, &s, &four, None).0.is_none());
    assert_eq!(target.records().len(), before, "nothing is delivered twice");

    // A run that stopped with workers at different frontiers cannot be resumed on 4 workers.
    let target = MemoryTarget::new();
    let s = spec(&target, Format::Upsert, true, &two);
    target.fail_commit_after(3);
    let (e, _) = run(&history, &s, &two, None);
    assert!(e.is_some());
    target.heal();
    let progress = target.progress();
    let distinct: std::collections::BTreeSet<_> = progress.iter().map(|p| p.frontier).collect();
    if distinct.len() > 1 {
        let (e, _) = run(&history, &s, &four, None);
        let e = e.expect("refused");
        assert_eq!(e.kind(), ErrorKind::Resume);
        assert!(e.to_string().contains("restart it with 2 workers"), "{e}");
    }
    // Resuming with the original count completes exactly.
    assert!(run(&history, &s, &two, None).0.is_none());
    assert_eq!(replay_upsert(&target.records()), state_before(&history, u64::MAX));
}

#[test]
fn input_starting_beyond_the_committed_frontier_is_refused() {
    let history = keyed_history(21, 10, 6, 5);
    let target = MemoryTarget::new();
    let drive = Drive { peers: 1, pattern: vec![2; 6], max_changes: None, pipeline: None };
    let s = spec(&target, Format::Upsert, true, &drive);
    // Commit up to frontier 3 only (times 0..3), leaving the sink open.
    let early: Vec<_> = history.iter().filter(|h| h.1 < 3).cloned().collect();
    let s2 = s.clone();
    timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&s2).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        for (row, t, d) in early {
            input.advance_to(t);
            input.update(row, d);
        }
        input.advance_to(3);
        input.flush();
        handle.step_until_committed(worker, &probe, &3).unwrap();
        let index = worker.installed_dataflows()[0];
        worker.drop_dataflow(index);
    });
    assert_eq!(target.progress()[0].frontier, differential_sinks::Frontier::at(3));
    // A second run over an input restored from a snapshot at time 5 cannot tell delivered from
    // undelivered changes: refused at start.
    let s3 = SinkSpec::builder("props", target.clone()).upsert().primary_key(["k"]).input_starts_at(5).build().unwrap();
    let err = timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&s3).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        input.advance_to(5);
        input.insert(Row { k: 1, v: 1, s: String::new() });
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        handle.take_error()
    });
    let err = err.expect("refused");
    assert_eq!(err.kind(), ErrorKind::Resume);
    assert!(err.to_string().contains("input starts at [5]"), "{err}");
    // Declared at or before the committed frontier, the same restart is fine.
    let s4 = SinkSpec::builder("props", target.clone()).upsert().primary_key(["k"]).input_starts_at(3).build().unwrap();
    let ok = timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&s4).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        input.advance_to(3);
        input.insert(Row { k: 100, v: 1, s: String::new() });
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        handle.take_error()
    });
    assert!(ok.is_none(), "{ok:?}");
}

#[test]
fn a_large_time_is_delivered_in_chunks_exactly() {
    // 40 000 inserts at time 0, then 40 000 updates and some deletes at time 1: both times are
    // larger than one write chunk.
    let mut history = Vec::new();
    for k in 0..40_000u32 {
        history.push((Row { k, v: 0, s: "x".into() }, 0, 1));
    }
    for k in 0..40_000u32 {
        history.push((Row { k, v: 0, s: "x".into() }, 1, -1));
        if k % 10 != 0 {
            history.push((Row { k, v: 1, s: "y".into() }, 1, 1));
        }
    }
    for format in [Format::Upsert, Format::Debezium { tombstone_after_delete: false }] {
        let target = MemoryTarget::new();
        let drive = Drive { peers: 2, pattern: vec![2, 2], max_changes: None, pipeline: None };
        let (err, _) = run(&history, &spec(&target, format.clone(), true, &drive), &drive, None);
        assert!(err.is_none(), "{err:?}");
        let records = target.records();
        assert_eq!(records.len(), 80_000, "{format:?}: one record per change");
        if format == Format::Upsert {
            assert_eq!(replay_upsert(&records), state_before(&history, u64::MAX));
        }
    }
}
