//! The order in which a time's changes reach the writer, and how they are split into write calls,
//! depend only on the time's consolidated changes — not on how many raw updates produced them.
//!
//! Writers that commit inside a time (Kafka's bounded transactions) skip the first n records of
//! that time on restart; a replay whose raw updates differ but consolidate to the same changes
//! must present those changes in the same order.

use differential_dataflow::input::Input;
use differential_sinks_operators::{Change, Frontier, OperatorError, SinkConfig, SinkExt, SinkWriter, WorkerContext};
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
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c2 = Arc::clone(&calls);
    timely::execute_directly(move |worker| {
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new("order");
            config.keyed = keyed;
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
    calls
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
