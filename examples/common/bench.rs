//! Shared pieces of the benchmark harnesses: the row, argument parsing, the time of each update,
//! and the timed run of a sink over the same rows.

#![allow(dead_code)]

use differential_dataflow::input::Input;
use differential_sinks::{CommitPolicy, ConnectorConfig, Row as SinkRow, SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;

/// About 100 bytes of JSON.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Row {
    pub id: u64,
    pub name: String,
    pub amount: i64,
    pub note: String,
}

pub fn row(i: u64) -> Row {
    Row {
        id: i,
        name: format!("customer-{:08}", i % 50_000_000),
        amount: (i * 7919 % 100_000) as i64,
        note: format!("{:040x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    }
}

pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The logical time of update `i` of `n` spread over `times` times.
pub fn time_of(i: u64, n: u64, times: u64) -> u64 {
    i * times / n
}

/// Runs `n` upserts of `row(i)` over `times` times through an upsert sink keyed by `id` into
/// `connector`, on one worker, committing at every time; returns the seconds until all is committed.
pub fn time_upsert_sink(connector: impl Into<ConnectorConfig>, n: u64, times: u64) -> f64 {
    let spec = SinkSpec::builder("bench", connector)
        .upsert()
        .primary_key(["id"])
        .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO })
        .build()
        .unwrap();
    time_sink(spec, n, times, row)
}

/// Inserts `make(i)` for `i` in `0..n`, spread over `times` logical times, into a collection
/// delivered through `spec` on one worker (dataflow, consolidation, encoding and commits all
/// timed); returns the seconds until every time is committed. Panics if the sink fails.
pub fn time_sink<R: SinkRow + std::fmt::Debug>(spec: SinkSpec, n: u64, times: u64, make: fn(u64) -> R) -> f64 {
    time_sink_on(spec, n, times, make, 1)
}

/// [`time_sink`] on `workers` workers, worker `w` inserting the rows `i` with `i % workers == w`.
pub fn time_sink_on<R: SinkRow + std::fmt::Debug>(
    spec: SinkSpec,
    n: u64,
    times: u64,
    make: fn(u64) -> R,
    workers: usize,
) -> f64 {
    let start = Instant::now();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<R, isize>();
            let out = rows.sink(&spec).unwrap();
            (input, out.committed.probe().0, out.handle)
        });
        for i in (index..n).step_by(peers as usize) {
            let t = time_of(i, n, times);
            if t > *input.time() {
                input.advance_to(t);
                input.flush();
                worker.step();
            }
            input.insert(make(i));
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        if let Some(e) = handle.take_error() {
            panic!("sink failed: {e}");
        }
    })
    .unwrap();
    start.elapsed().as_secs_f64()
}
