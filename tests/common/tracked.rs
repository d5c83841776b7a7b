//! Rows that record where they are serialized, to check that a sink encodes each row once, on the
//! worker that produced it ([`run`]), and the state the table must end in ([`reference`]).

use super::Row;
use differential_dataflow::input::Input;
use differential_sinks::{SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use timely::dataflow::operators::probe::Probe;

/// `(serializing thread, worker that inserted the row)` of every serialization while [`run`]
/// records them.
static SEEN: Mutex<Option<Vec<(String, usize)>>> = Mutex::new(None);

/// Runs of one process take turns (they share [`SEEN`]).
static TURN: Mutex<()> = Mutex::new(());

/// A `(k, v, s)` row whose fields serialize in the opposite order, recording in its `Serialize`
/// which thread serializes it. `v` is `2 × round + the worker that inserted it`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Tracked {
    s: String,
    v: u32,
    k: u32,
}

impl Serialize for Tracked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        if let Some(seen) = SEEN.lock().unwrap().as_mut() {
            seen.push((std::thread::current().name().unwrap_or("?").to_string(), (self.v % 2) as usize));
        }
        let mut st = s.serialize_struct("Tracked", 3)?;
        st.serialize_field("s", &self.s)?;
        st.serialize_field("v", &self.v)?;
        st.serialize_field("k", &self.k)?;
        st.end()
    }
}

/// Keys `0..KEYS`: worker `w` of two inserts those with `k % 2 == w`.
pub const KEYS: u32 = 40;

/// Runs `rounds` upsert rounds through `spec` (keyed by `k`) on two workers: in round r, worker w
/// upserts keys `w, w + 2, …` to `v = 2r + w`, retracting its row of round r − 1. Every key is
/// inserted on one worker and, routed by its key, owned by either. Returns the serializations.
pub fn run(spec: SinkSpec, rounds: u32) -> Vec<(String, usize)> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    *SEEN.lock().unwrap() = Some(Vec::new());
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index() as u32;
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Tracked, isize>();
            let out = rows.sink(&spec).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        let row = |k: u32, r: u32| Tracked { s: format!("round {r}"), v: 2 * r + index, k };
        for r in 1..=rounds {
            for k in (index..KEYS).step_by(2) {
                if r > 1 {
                    input.remove(row(k, r - 1));
                }
                input.insert(row(k, r));
            }
            input.advance_to(r as u64);
            input.flush();
            handle.step_until_committed(worker, &probe, &(r as u64)).unwrap();
        }
    })
    .unwrap();
    SEEN.lock().unwrap().take().unwrap_or_default()
}

/// Checks that every serialization [`run`] saw happened on the worker that inserted the row, and
/// exactly twice per update (its key and its row), never after the exchange.
pub fn assert_encoded_once(seen: &[(String, usize)], rounds: u32) {
    let elsewhere: Vec<_> = seen.iter().filter(|(thread, origin)| *thread != format!("timely:work-{origin}")).collect();
    assert!(elsewhere.is_empty(), "rows serialized away from the worker that produced them: {elsewhere:?}");
    let updates = KEYS + (rounds - 1) * 2 * KEYS;
    assert_eq!(seen.len(), 2 * updates as usize, "a key and a row per update");
}

/// The rows the table holds after [`run`]'s `rounds`, computed from the input alone, by `k`.
pub fn reference(rounds: u32) -> Vec<Row> {
    (0..KEYS).map(|k| Row { k, v: 2 * rounds + k % 2, s: format!("round {rounds}") }).collect()
}
