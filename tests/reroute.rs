//! A restart whose key is routed differently from the run that wrote the progress (here: the
//! same key columns in another `key.encode`, which changes every key's bytes and so the worker
//! that owns it), through the file sink on 2 workers.
//!
//! The earlier run's workers stop at different frontiers — worker 1's manifest is put back as it
//! was one commit earlier, which is what a crash between the two workers' last commits leaves.
//! Resuming with the other routing would deliver some keys' changes on workers that never had
//! them (lost or twice), so it is refused naming the routing, and writes nothing; resuming with
//! the earlier key completes exactly (reference: the last value of every key, computed from the
//! input); after that, at a common frontier, the other routing is accepted as a new generation.

#[path = "support/file_output.rs"]
mod file_output;

use differential_dataflow::input::Input;
use differential_sinks::connectors::file::FileConfig;
use differential_sinks::key::KeyEncoding;
use differential_sinks::{ErrorKind, SinkCollection, SinkSpec};
use file_output::{committed_lines, manifests};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Probe;

const SINK: &str = "reroute";
const KEYS: u64 = 40;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Row {
    k: u64,
    v: u64,
}

fn spec(dir: &Path, text_keys: bool) -> SinkSpec {
    let mut b = SinkSpec::builder(SINK, FileConfig::new(dir)).upsert().primary_key(["k"]);
    if text_keys {
        b = b.key_encoding(KeyEncoding::Text { delimiter: ",".into() });
    }
    b.build().unwrap()
}

/// The value of key `k` at time `t`.
fn value(k: u64, t: u64) -> u64 {
    k * 100 + t
}

/// Runs the sink on 2 workers over times `0..until` (every key updated at every time), stepping
/// until `until` is committed, then closing the input if `close` (else dropping the dataflow
/// with its input open). After time `snapshot_at` is
/// committed, worker 1's manifest is saved in the returned bytes. Returns each worker's error.
fn run(dir: &Path, text_keys: bool, until: u64, close: bool, snapshot_at: Option<u64>) -> (Vec<String>, Vec<u8>) {
    let spec = spec(dir, text_keys);
    let (errors, saved) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (e2, s2, dir2) = (Arc::clone(&errors), Arc::clone(&saved), dir.to_path_buf());
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let dataflow = worker.next_dataflow_index();
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).unwrap();
            let (probe, _) = out.committed.probe();
            (input, probe, out.handle)
        });
        let mut result = Ok(());
        for t in 0..until {
            for k in (0..KEYS).filter(|k| *k as usize % 2 == index) {
                if t > 0 {
                    input.remove(Row { k, v: value(k, t - 1) });
                }
                input.insert(Row { k, v: value(k, t) });
            }
            input.advance_to(t + 1);
            input.flush();
            result = handle.step_until_committed(worker, &probe, &(t + 1));
            if result.is_err() {
                break;
            }
            if snapshot_at == Some(t + 1) && index == 1 {
                let m = manifests(&dir2).into_iter().find(|(_, m)| m["progress"]["worker"] == 1).unwrap();
                *s2.lock().unwrap() = std::fs::read(m.0).unwrap();
            }
        }
        if result.is_ok() && close {
            input.close();
            while !handle.is_failed() && !probe.done() {
                worker.step();
            }
            result = handle.take_error().map_or(Ok(()), Err);
        }
        if !close {
            // Stop without ending the input, as a process that is stopped does.
            worker.drop_dataflow(dataflow);
        }
        if let Err(e) = result {
            assert_eq!(e.kind(), ErrorKind::Resume, "{e}");
            e2.lock().unwrap().push(e.to_string());
        }
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    let saved = saved.lock().unwrap().clone();
    (errors, saved)
}

/// Replays the committed upsert lines into key → value, checking that no key has two lines of
/// one time (a change delivered twice).
fn state(dir: &Path) -> BTreeMap<u64, u64> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in committed_lines(dir, SINK) {
        let row: Row = serde_json::from_value(line["value"].clone()).expect("an upsert line");
        let time = line["time"].as_u64().unwrap();
        assert!(seen.insert((row.k, time)), "key {} delivered twice at time {time}", row.k);
        out.insert(row.k, row.v);
    }
    out
}

#[test]
fn a_restart_that_routes_keys_differently_is_refused_until_a_common_frontier() {
    let dir = tempfile::tempdir().unwrap();
    // Times 0..3 committed by both workers; worker 1's manifest of frontier 2 saved on the way.
    let (errors, saved) = run(dir.path(), false, 3, false, Some(2));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!saved.is_empty());
    let path = manifests(dir.path()).into_iter().find(|(_, m)| m["progress"]["worker"] == 1).unwrap().0;
    std::fs::write(&path, &saved).unwrap();
    let before = committed_lines(dir.path(), SINK);

    // Another routing over workers stopped at different frontiers: refused by both, nothing written.
    let (errors, _) = run(dir.path(), true, 5, true, None);
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert!(e.contains("routing") && e.contains("key's columns or encoding"), "{e}");
    }
    assert_eq!(committed_lines(dir.path(), SINK), before, "a refused restart writes nothing");

    // The earlier key resumes each worker from its own frontier and finishes exactly.
    let (errors, _) = run(dir.path(), false, 5, true, None);
    assert!(errors.is_empty(), "{errors:?}");
    let want: BTreeMap<u64, u64> = (0..KEYS).map(|k| (k, value(k, 4))).collect();
    assert_eq!(state(dir.path()), want);

    // Every worker reached the end: the other routing now starts a new generation there.
    let (errors, _) = run(dir.path(), true, 5, true, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(state(dir.path()), want);
}
