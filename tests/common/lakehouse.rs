//! Shared pieces of the lakehouse sink tests (Delta Lake, Iceberg): insert-only histories, their
//! reference multisets, and ways to run a history through a sink — to the end, until a frontier
//! is committed, or stopped with work written but not committed.

use super::Rng;
use super::Row;
use differential_dataflow::input::Input;
use differential_sinks::{CommitPolicy, ConnectorConfig, SinkCollection, SinkSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;

/// The row schema of [`Row`] in a table.
pub const ROW_SCHEMA: &str = "k:int64!,v:int64!,s:string!";

/// Rows counted by value.
pub fn row_multiset<'a>(rows: impl IntoIterator<Item = &'a Row>) -> BTreeMap<Row, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.clone()).or_default() += 1;
    }
    m
}

/// The `rows` of a reader's JSON document, counted by value.
pub fn table_multiset(table: &Value) -> BTreeMap<Row, usize> {
    let rows: Vec<Row> = serde_json::from_value(table["rows"].clone()).expect("rows of k, v, s");
    row_multiset(&rows)
}

/// Runs `history` through the sink of `spec` on one worker, with `meanwhile` run after the sink's
/// dataflow is built (its writers and committer have read the table) and before its first step;
/// returns the error the sink stopped with, if any.
pub fn run_with_meanwhile(
    history: &[(Row, u64, isize)],
    spec: &SinkSpec,
    meanwhile: impl FnOnce() + Send + Sync + 'static,
) -> Option<differential_sinks::Error> {
    let (spec, history) = (spec.clone(), history.to_vec());
    timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            (input, out.committed.probe().0, out.handle)
        });
        meanwhile();
        for (row, t, d) in &history {
            input.update_at(row.clone(), *t, *d);
        }
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        handle.take_error()
    })
}

/// Writes `history` as a change log into `dir` (in time order) and replays it with `dsink` on 2
/// workers, with `ROW_SCHEMA` and the sink options `with`; fails the test if `dsink` fails.
pub fn run_dsink(dir: &std::path::Path, history: &[(Row, u64, isize)], with: &[String]) {
    let log = dir.join("changes.jsonl");
    let mut ordered = history.to_vec();
    ordered.sort_by_key(|(_, t, _)| *t);
    let lines: Vec<String> =
        ordered.iter().map(|(row, t, d)| serde_json::json!({"time": t, "diff": d, "row": row}).to_string()).collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"));
    cmd.args(["--input", log.to_str().unwrap(), "--workers", "2", "--schema", ROW_SCHEMA]);
    for w in with {
        cmd.args(["--with", w]);
    }
    let out = cmd.output().expect("dsink runs");
    assert!(out.status.success(), "dsink failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Rows with their times and diffs.
pub type History = Vec<(Row, u64, isize)>;

/// Rows another writer left in a table (keys 0..10, two rows for the odd ones), and the history
/// of an upsert sink over the same keys: it starts from those rows deduplicated (its first time
/// re-inserts them: it never delivered them), then deletes a third of the keys and updates a
/// third. Its first changes of those keys must replace every row the other writer left.
pub fn rows_another_writer_left() -> (History, History) {
    let old_row = |k: u32, copy: u32| Row { k, v: 1000 + copy, s: "old".into() };
    let old = (0..10u32).flat_map(|k| (0..(1 + k % 2)).map(move |copy| (old_row(k, copy), 0u64, 1isize)));
    let mut history: History = (0..10u32).map(|k| (old_row(k, 0), 0u64, 1isize)).collect();
    for k in 0..10u32 {
        match k % 3 {
            0 => history.push((old_row(k, 0), 1, -1)),
            1 => {
                history.push((old_row(k, 0), 1, -1));
                history.push((Row { k, v: 2000 + k, s: "new".into() }, 1, 1));
            }
            _ => {}
        }
    }
    (old.collect(), history)
}

/// An insert-only history: new rows at each time, some of them twice (a multiplicity the sink
/// must write as two rows).
pub fn insert_history(seed: u64, times: u64, per_time: u64) -> Vec<(Row, u64, isize)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for t in 0..times {
        for i in 0..per_time {
            let row = Row { k: rng.below(1000) as u32, v: (t * per_time + i) as u32, s: format!("r{}", rng.below(7)) };
            let copies = if rng.below(5) == 0 { 2 } else { 1 };
            out.push((row, t, copies));
        }
    }
    out
}

/// The reference: every row inserted at a time before `upto`, with its multiplicity.
pub fn expected_inserts(history: &[(Row, u64, isize)], upto: u64) -> BTreeMap<Row, usize> {
    let mut m = BTreeMap::new();
    for (row, t, d) in history {
        if *t < upto {
            assert!(*d > 0, "an insert-only history");
            *m.entry(row.clone()).or_default() += *d as usize;
        }
    }
    m
}

/// The reference for an upsert table: each key's row in the collection's state before `upper`,
/// once.
pub fn final_state(history: &[(Row, u64, isize)], upper: u64) -> BTreeMap<Row, usize> {
    super::state_before(history, upper).into_values().map(|r| (r, 1)).collect()
}

/// The records a sink writes for the times before `upto`: every inserted row of an insert-only
/// history, or one per key and time that changed (an upsert or a delete) of a keyed one.
pub fn expected_records(history: &[(Row, u64, isize)], upto: u64) -> u64 {
    if history.iter().all(|h| h.2 > 0) {
        expected_inserts(history, upto).values().sum::<usize>() as u64
    } else {
        super::expected_changes(history).keys().filter(|(t, _)| *t < upto).count() as u64
    }
}

/// An upsert sink on `k` over `connector`, committing every time: what the key index budget
/// tests run, stepped time by time, so that the times before a failure are committed.
pub fn upsert_each_time(name: &str, connector: impl Into<ConnectorConfig>) -> SinkSpec {
    SinkSpec::builder(name, connector)
        .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO })
        .upsert()
        .primary_key(["k"])
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap()
}

/// Asserts that a run stopped on a worker's key index budget: one error, naming the option.
pub fn assert_stopped_by_the_index_budget(errors: &[String]) {
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("`upsert.index.max.bytes`"), "{errors:?}");
}

/// Runs the whole history through a sink with `peers` workers, to the end of the input.
pub fn run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) {
    let errors = try_run(history, spec, peers);
    assert!(errors.is_empty(), "the sink failed: {errors:?}");
}

/// Like [`run`], returning the workers' sink errors.
pub fn try_run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) -> Vec<String> {
    let history = Arc::new(history.to_vec());
    let spec = spec.clone();
    let end = history.iter().map(|h| h.1).max().map_or(0, |t| t + 1);
    timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            let (probe, _) = out.committed.probe();
            (input, probe, out.handle)
        });
        for (i, (row, t, d)) in history.iter().enumerate() {
            if i % peers == index {
                input.update_at(row.clone(), *t, *d);
            }
        }
        input.advance_to(end);
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        handle.take_error().map(|e| format!("worker {index}: {e}"))
    })
    .expect("timely runs")
    .join()
    .into_iter()
    .filter_map(|r| r.expect("worker ran"))
    .collect()
}

/// Feeds times `0..upto` and stops (drops the dataflow) once every change is written and at least
/// one commit happened, leaving the rest written to data files but not committed. Returns the
/// number of records handed to the writers.
pub fn run_and_drop(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize, upto: u64) -> u64 {
    let handed = expected_records(history, upto);
    let history = Arc::new(history.to_vec());
    let spec = spec.clone();
    let metrics = Arc::clone(spec.metrics());
    timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let dataflow = worker.next_dataflow_index();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            (input, rows.sink(&spec).expect("sink builds").handle)
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        // One time after the other, each written before the next, so the cadence sees them apart.
        for t in 0..upto {
            for (i, (row, _, d)) in history.iter().enumerate().filter(|(_, h)| h.1 == t) {
                if i % peers == index {
                    input.update(row.clone(), *d);
                }
            }
            input.advance_to(t + 1);
            input.flush();
            let written = expected_records(&history, t + 1);
            while metrics.snapshot().records_out < written {
                assert!(!handle.is_failed() && Instant::now() < deadline, "the sink wrote time {t}");
                worker.step();
            }
        }
        loop {
            let m = metrics.snapshot();
            if m.records_out >= handed && m.commits >= 1 {
                break;
            }
            assert!(!handle.is_failed() && Instant::now() < deadline, "the sink wrote and committed");
            worker.step();
        }
        worker.drop_dataflow(dataflow);
        drop(input);
    })
    .expect("timely runs");
    handed
}

/// Feeds times `0..upto`, waits until every worker's commit covers them, and stops.
pub fn run_until(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize, upto: u64) {
    let history = Arc::new(history.to_vec());
    let spec = spec.clone();
    timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let dataflow = worker.next_dataflow_index();
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            (input, out.committed.probe().0, out.handle)
        });
        for (i, (row, t, d)) in history.iter().enumerate() {
            if *t < upto && i % peers == index {
                input.update_at(row.clone(), *t, *d);
            }
        }
        input.advance_to(upto);
        input.flush();
        handle.step_until_committed(worker, &probe, &upto).expect("the sink commits");
        worker.drop_dataflow(dataflow);
        drop(input);
    })
    .expect("timely runs");
}
