//! A target that needs only a row's JSON gets each row encoded once, on the worker that produced
//! it: what crosses the exchange and is consolidated is the row's bytes, and the writer copies
//! them into its records.
//!
//! The rows here record, in their `Serialize`, which worker thread serializes them; every row is
//! inserted on a known worker. The records are checked against the state computed from the input.

use differential_dataflow::input::Input;
use differential_sinks::connectors::{CustomConnector, RecordWriter};
use differential_sinks::operators::{Frontier, WorkerContext};
use differential_sinks::{RecordBatch, SinkCollection, SinkSpec, ViolationPolicy};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Probe;

/// `(serializing thread, worker that inserted the row)` of every serialization, per test.
type Seen = Arc<Mutex<Vec<(String, usize)>>>;

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// Tests of one process take turns (they share [`SEEN`]).
static TURN: Mutex<()> = Mutex::new(());

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Tracked {
    id: u64,
    version: u64,
    /// The worker that inserted (or retracted) the row.
    origin: usize,
}

impl Serialize for Tracked {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(seen) = SEEN.lock().unwrap().as_ref() {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            seen.lock().unwrap().push((thread, self.origin));
        }
        let mut st = s.serialize_struct("Tracked", 3)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("origin", &self.origin)?;
        st.end()
    }
}

/// The latest value (`None`: a tombstone) per key of the records received.
type State = BTreeMap<String, Option<String>>;

/// Keeps the latest value per key of every record it receives.
struct Latest(Arc<Mutex<State>>);

impl RecordWriter for Latest {
    fn resume(&mut self, _: WorkerContext) -> differential_sinks::Result<Frontier<u64>> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, batch: &RecordBatch) -> differential_sinks::Result<()> {
        let mut state = self.0.lock().unwrap();
        for r in batch.iter() {
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            state.insert(String::from_utf8(r.key.to_vec()).unwrap(), value);
        }
        Ok(())
    }
    fn commit(&mut self, _: Frontier<u64>) -> differential_sinks::Result<()> {
        Ok(())
    }
}

/// Runs `rounds` upsert rounds on two workers: in round r, worker w upserts ids `w, w + 2, …`
/// below 40 to version r, retracting version r − 1 (inserted by the same worker). Every id is
/// inserted on one worker and, routed by its key, owned by either. Returns the target's state and
/// the serializations seen.
fn run(policy: ViolationPolicy, rounds: u64) -> (State, Vec<(String, usize)>) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let seen: Seen = Arc::default();
    *SEEN.lock().unwrap() = Some(seen.clone());
    let state = Arc::new(Mutex::new(BTreeMap::new()));
    let s2 = state.clone();
    let target = CustomConnector::new("latest", move |_| Ok(Box::new(Latest(s2.clone())) as Box<dyn RecordWriter>));
    let spec = SinkSpec::builder("once", target).upsert().primary_key(["id"]).violations(policy).build().unwrap();
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Tracked, isize>();
            let out = rows.sink(&spec).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        for r in 1..=rounds {
            for id in (index as u64..40).step_by(2) {
                if r > 1 {
                    input.remove(Tracked { id, version: r - 1, origin: index });
                }
                input.insert(Tracked { id, version: r, origin: index });
            }
            input.advance_to(r);
            input.flush();
            handle.step_until_committed(worker, &probe, &r).unwrap();
        }
    })
    .unwrap();
    *SEEN.lock().unwrap() = None;
    let seen = seen.lock().unwrap().clone();
    let state = state.lock().unwrap().clone();
    (state, seen)
}

/// The target's state after `rounds` rounds, computed from the input alone.
fn reference(rounds: u64) -> State {
    (0..40u64)
        .map(|id| {
            let origin = (id % 2) as usize;
            (format!(r#"{{"id":{id}}}"#), Some(format!(r#"{{"id":{id},"version":{rounds},"origin":{origin}}}"#)))
        })
        .collect()
}

#[test]
fn a_json_targets_rows_are_encoded_on_the_worker_that_produced_them() {
    let (state, seen) = run(ViolationPolicy::Fail, 3);
    assert_eq!(state, reference(3));
    assert!(!seen.is_empty());
    let elsewhere: Vec<_> = seen.iter().filter(|(thread, origin)| *thread != format!("timely:work-{origin}")).collect();
    assert!(elsewhere.is_empty(), "rows serialized away from the worker that produced them: {elsewhere:?}");
    // Once for the key, once for the JSON: never again after the exchange.
    assert_eq!(
        seen.len(),
        2 * (40 + 40 * 2 * 2),
        "serializations of 40 inserts, then 2 rounds of 40 retractions and 40 inserts"
    );
}

#[test]
fn under_the_dead_letter_policy_rows_stay_typed_and_are_delivered_alike() {
    let (state, seen) = run(ViolationPolicy::DeadLetter, 3);
    assert_eq!(state, reference(3));
    assert!(
        seen.iter().any(|(thread, origin)| *thread != format!("timely:work-{origin}")),
        "typed rows are encoded by the writer of the worker that owns their key, some of them elsewhere"
    );
}
