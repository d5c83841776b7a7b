//! A driver shared by the integration tests of the table and index sinks: runs a change history
//! into a sink on several workers, to the end or up to a time (then stops as a crashed process
//! would, without ending the input).

#![allow(dead_code)]

use differential_dataflow::input::Input;
use differential_sinks::{Row as SinkRow, SinkCollection, SinkSpec};
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Probe;

/// Runs `history` into `spec` on `peers` workers. With `stop_at`, feeds only the times before it,
/// waits until they are committed and stops without ending the input (as a crashed process
/// would); otherwise runs to the end. Returns the sink's first error.
pub fn run<R: SinkRow + differential_dataflow::Data + std::fmt::Debug + Send + Sync>(
    history: &[(R, u64, isize)],
    spec: &SinkSpec,
    peers: usize,
    stop_at: Option<u64>,
) -> Option<String> {
    let end = history.iter().map(|h| h.1 + 1).max().unwrap_or(1);
    let history = Arc::new(history.to_vec());
    let spec = spec.clone();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let errors2 = errors.clone();
    timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<R, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            (input, out.committed.probe().0, out.handle)
        });
        let last = stop_at.unwrap_or(end);
        for t in 0..last {
            for (i, (row, _, d)) in history.iter().enumerate().filter(|(_, h)| h.1 == t) {
                if i % peers == index {
                    input.update(row.clone(), *d);
                }
            }
            input.advance_to(t + 1);
            input.flush();
            if t % 3 == 0 {
                worker.step();
            }
        }
        if stop_at.is_some() {
            if let Err(e) = handle.step_until_committed(worker, &probe, &last) {
                errors2.lock().unwrap().push(e.to_string());
            }
            let df = worker.installed_dataflows()[0];
            worker.drop_dataflow(df);
            return;
        }
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        if let Some(e) = handle.take_error() {
            errors2.lock().unwrap().push(e.to_string());
        }
    })
    .expect("timely runs");
    let e = errors.lock().unwrap().first().cloned();
    e
}
