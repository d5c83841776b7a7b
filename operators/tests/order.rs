//! The order in which a time's changes reach the writer, and how they are split into write calls,
//! depend only on the time's consolidated changes — not on how many raw updates produced them.
//!
//! Writers that commit inside a time (Kafka's bounded transactions) skip the first n records of
//! that time on restart; a replay whose raw updates differ but consolidate to the same changes
//! must present those changes in the same order.

use differential_dataflow::input::Input;
use differential_sinks_operators::spill::SpillDir;
use differential_sinks_operators::{
    BufferConfig, Change, Frontier, MetricsSnapshot, OperatorError, SinkConfig, SinkExt, SinkMetrics, SinkWriter,
    WorkerContext,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Probe;

type Value = (u64, u64);

/// Every write call, in order: its time and the changes it carried, in the order received.
type Calls = Vec<(u64, Vec<Change<u64, Value>>)>;

struct RecordingWriter(Arc<Mutex<Calls>>);

impl SinkWriter<u64, Value, u64> for RecordingWriter {
    type Error = OperatorError;
    fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, time: &u64, changes: &mut Vec<Change<u64, Value>>) -> Result<(), OperatorError> {
        self.0.lock().unwrap().push((*time, std::mem::take(changes)));
        Ok(())
    }
    fn commit(&mut self, _: &Frontier<u64>) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Runs `updates` (value, time, diff) through a one-worker sink and returns its write calls.
fn deliver(updates: Vec<(Value, u64, isize)>, keyed: bool) -> Calls {
    deliver_with(updates, keyed, BufferConfig::default()).0
}

/// [`deliver`] with a buffer configuration; also returns the sink's counters.
fn deliver_with(updates: Vec<(Value, u64, isize)>, keyed: bool, buffer: BufferConfig) -> (Calls, MetricsSnapshot) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c2 = Arc::clone(&calls);
    let metrics = Arc::new(SinkMetrics::default());
    let m2 = Arc::clone(&metrics);
    timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new("order");
            config.keyed = keyed;
            config.buffer = buffer.clone();
            config.metrics = Arc::clone(&m2);
            let out = rows.sink_with(config, |v: &Value| v.0, RecordingWriter(c2));
            (input, out.committed.probe().0, out.handle)
        });
        let times = updates.iter().map(|u| u.1 + 1).max().unwrap_or(1);
        for t in 0..times {
            for (v, _, d) in updates.iter().filter(|u| u.1 == t) {
                input.update(*v, *d);
            }
            input.advance_to(t + 1);
            input.flush();
            handle.step_until_committed(worker, &probe, &(t + 1)).unwrap();
        }
    });
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    (calls, metrics.snapshot())
}

const KEYS: u64 = 40_000;

/// Time 0 inserts `KEYS` keys; time 1 updates every third and deletes every seventh.
fn plain() -> Vec<(Value, u64, isize)> {
    let mut u: Vec<(Value, u64, isize)> = (0..KEYS).map(|k| ((k, 0), 0, 1)).collect();
    for k in 0..KEYS {
        if k % 7 == 0 {
            u.push(((k, 0), 1, -1));
        } else if k % 3 == 0 {
            u.push(((k, 0), 1, -1));
            u.push(((k, 1), 1, 1));
        }
    }
    u
}

/// The same changes, with many updates that cancel: `+v/−v` of other values of the same keys,
/// extra copies of the real updates that cancel each other, and keys that only ever cancel.
fn noisy() -> Vec<(Value, u64, isize)> {
    let mut u = plain();
    for k in 0..KEYS {
        for t in 0..2 {
            if k % 2 == 0 {
                u.push(((k, 99), t, 1));
                u.push(((k, 99), t, -1));
            }
            if k % 5 == 0 {
                u.push(((k, t), t, -1));
                u.push(((k, t), t, 1));
            }
        }
    }
    for k in KEYS..KEYS + 9_000 {
        u.push(((k, 7), k % 2, 1));
        u.push(((k, 7), k % 2, -1));
    }
    // The raw order of the updates must not matter either.
    u.reverse();
    u
}

fn sequence(calls: &Calls) -> Vec<(u64, &Change<u64, Value>)> {
    calls.iter().flat_map(|(t, cs)| cs.iter().map(move |c| (*t, c))).collect()
}

fn check(keyed: bool) {
    let (a, b) = (deliver(plain(), keyed), deliver(noisy(), keyed));
    // The time is large enough to be delivered in several calls.
    assert!(a.iter().filter(|c| c.0 == 0).count() > 1, "{} calls", a.len());
    let (sa, sb) = (sequence(&a), sequence(&b));
    let expected = if keyed {
        // Time 0: every key inserted; time 1: deletes and updates.
        KEYS as usize + (0..KEYS).filter(|k| k % 7 == 0 || k % 3 == 0).count()
    } else {
        // An update is a delete and an insert.
        KEYS as usize
            + (0..KEYS).filter(|k| k % 7 == 0).count()
            + 2 * (0..KEYS).filter(|k| k % 7 != 0 && k % 3 == 0).count()
    };
    assert_eq!(sa.len(), expected);
    let first_difference = sa.iter().zip(&sb).position(|(x, y)| x != y);
    assert_eq!(first_difference, None, "the changes arrive in another order ({} vs {} changes)", sa.len(), sb.len());
    assert_eq!(sa.len(), sb.len());
    let sizes = |c: &Calls| c.iter().map(|(t, cs)| (*t, cs.len())).collect::<Vec<_>>();
    assert_eq!(sizes(&a), sizes(&b), "the changes are split into other write calls");
}

#[test]
fn keyed_order_depends_only_on_consolidated_changes() {
    check(true);
}

#[test]
fn unkeyed_order_depends_only_on_consolidated_changes() {
    check(false);
}

/// A row of an unkeyed sink with a huge multiplicity is delivered as that many records, at most
/// a write chunk (16,384) at a time: the operator never holds them all at once.
#[test]
fn a_huge_unkeyed_multiplicity_is_delivered_in_bounded_chunks() {
    let n: isize = 1_000_000;
    let calls = deliver(vec![((1, 1), 0, n), ((2, 2), 0, 3), ((3, 3), 0, -2)], false);
    let largest = calls.iter().map(|(_, c)| c.len()).max().unwrap();
    assert!(largest <= 16 * 1024, "a write call carried {largest} changes");
    let count = |pred: &dyn Fn(&Change<u64, Value>) -> bool| {
        calls.iter().flat_map(|(_, c)| c.iter()).filter(|c| pred(c)).count() as isize
    };
    assert_eq!(count(&|c| c.after == Some((1, 1))), n);
    assert_eq!(count(&|c| c.after == Some((2, 2))), 3);
    assert_eq!(count(&|c| c.before == Some((3, 3))), 2);
}

/// A scratch spill directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dsink-order-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Spilling changes nothing a writer sees: with a budget so small that every input batch is
/// spilled (and a time's many runs are merged into fewer), the write calls — their times,
/// changes, order and sizes — are those of a run held in memory. The spill files are gone after.
#[test]
fn spilling_every_batch_delivers_exactly_what_memory_does() {
    for keyed in [true, false] {
        let dir = scratch(&format!("tiny-{keyed}"));
        let tiny = BufferConfig { max_bytes: 1, spill_dir: dir.clone() };
        let (memory, m0) = deliver_with(noisy(), keyed, BufferConfig::default());
        let (spilled, m1) = deliver_with(noisy(), keyed, tiny);
        assert_eq!(m0.spilled_updates, 0, "the default budget holds this in memory");
        // Consolidated runs: at least the first time's inserts went to disk.
        assert!(m1.spilled_updates >= KEYS, "spilled only {} updates", m1.spilled_updates);
        assert!(memory == spilled, "keyed {keyed}: the write calls differ once spilled");
        let left: Vec<_> = walk(&dir);
        assert!(left.is_empty(), "spill files left behind: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A huge multiplicity cut across spilled runs is still delivered in bounded chunks, exactly.
#[test]
fn a_spilled_huge_multiplicity_is_delivered_exactly() {
    let dir = scratch("huge");
    let updates = vec![((1, 1), 0, 100_000), ((1, 1), 0, 1), ((2, 2), 0, 3), ((2, 2), 0, -2), ((3, 3), 0, -2)];
    let (memory, _) = deliver_with(updates.clone(), false, BufferConfig::default());
    let (spilled, _) = deliver_with(updates, false, BufferConfig { max_bytes: 1, spill_dir: dir.clone() });
    assert!(memory == spilled);
    assert_eq!(memory.iter().map(|c| c.1.len()).sum::<usize>(), 100_001 + 1 + 2);
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Spill files a crashed run left behind are removed when the sink starts again; a spill
/// directory that cannot be written fails the sink with a typed error naming the option, and
/// nothing is committed.
#[test]
fn stale_spill_files_are_removed_and_an_unwritable_spill_dir_fails_cleanly() {
    let dir = scratch("stale");
    let stale = SpillDir::sink_root(&dir, "order").join("w0-1-0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("run-0.bin"), vec![0u8; 4096]).unwrap();
    let (calls, _) = deliver_with(plain(), true, BufferConfig { max_bytes: 1, spill_dir: dir.clone() });
    assert!(!calls.is_empty());
    assert!(!stale.exists(), "the crashed run's spill files are still there");
    let _ = std::fs::remove_dir_all(&dir);

    // A file where the directory should be.
    let file = scratch("unwritable");
    std::fs::write(&file, b"not a directory").unwrap();
    let commits = Arc::new(Mutex::new(0usize));
    let c2 = Arc::clone(&commits);
    let f2 = file.clone();
    let error = timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new("order");
            config.buffer = BufferConfig { max_bytes: 1, spill_dir: f2.join("spill") };
            let out = rows.sink_with(config, |v: &Value| v.0, CountingWriter(c2));
            (input, out.committed.probe().0, out.handle)
        });
        for k in 0..1000u64 {
            input.insert((k, 0));
        }
        input.advance_to(1);
        input.flush();
        handle.step_until_committed(worker, &probe, &1).unwrap_err()
    });
    let message = error.to_string();
    assert!(matches!(error, OperatorError::Spill { .. }), "{error:?}");
    assert!(message.contains("buffer.spill.dir") && message.contains(&file.display().to_string()), "{message}");
    assert_eq!(*commits.lock().unwrap(), 0, "a commit was made after the spill failed");
    let _ = std::fs::remove_file(&file);
}

/// Counts commits; refuses nothing.
struct CountingWriter(Arc<Mutex<usize>>);

impl SinkWriter<u64, Value, u64> for CountingWriter {
    type Error = OperatorError;
    fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, _: &u64, changes: &mut Vec<Change<u64, Value>>) -> Result<(), OperatorError> {
        changes.clear();
        Ok(())
    }
    fn commit(&mut self, _: &Frontier<u64>) -> Result<(), OperatorError> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

/// A time too large for one activation is delivered over several: the committed probe finishes
/// only after the whole time is written and committed, even when the input has already ended
/// (the operator must not release its capabilities while it is still delivering).
#[test]
fn a_time_delivered_over_many_activations_is_committed_before_the_probe_finishes() {
    let (delivered, commits) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(0usize)));
    let (d2, c2) = (Arc::clone(&delivered), Arc::clone(&commits));
    timely::execute_directly(move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new("order");
            config.write_chunk = 1; // many chunks: far more than one activation's worth
            let out = rows.sink_with(config, |v: &Value| v.0, SlowCountingWriter { changes: d2, commits: c2 });
            (input, out.committed.probe().0)
        });
        for k in 0..3000u64 {
            input.insert((k, 0));
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    });
    assert_eq!(*delivered.lock().unwrap(), 3000, "the probe finished before the time was delivered");
    assert_eq!(*commits.lock().unwrap(), 1);
}

/// Counts changes and commits, taking a little time per write so that a time of many chunks
/// spans several activations.
struct SlowCountingWriter {
    changes: Arc<Mutex<usize>>,
    commits: Arc<Mutex<usize>>,
}

impl SinkWriter<u64, Value, u64> for SlowCountingWriter {
    type Error = OperatorError;
    fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, _: &u64, changes: &mut Vec<Change<u64, Value>>) -> Result<(), OperatorError> {
        // Spends real time so the operator's delivery slice runs out (this is the work, not a
        // wait for anything).
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_micros(50) {
            std::hint::spin_loop();
        }
        *self.changes.lock().unwrap() += changes.len();
        changes.clear();
        Ok(())
    }
    fn commit(&mut self, _: &Frontier<u64>) -> Result<(), OperatorError> {
        *self.commits.lock().unwrap() += 1;
        Ok(())
    }
}
