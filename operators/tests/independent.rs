//! Independent mode (`sink_with`): each worker commits for itself, so a writer failure stops only
//! that worker's sink. The failing worker's handle reports the error; the others go on, and
//! their probes no longer wait for the failed worker (its capabilities are released).

use differential_dataflow::input::Input;
use differential_sinks_operators::{Change, Frontier, OperatorError, SinkConfig, SinkExt, SinkWriter, WorkerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::probe::Probe;

/// Every commit: the worker and its frontier.
type Commits = Arc<Mutex<Vec<(usize, Frontier<u64>)>>>;

struct Writer {
    worker: usize,
    fail_on: usize,
    committed: Commits,
}

impl SinkWriter<u64, u64, u64> for Writer {
    type Error = OperatorError;
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        self.worker = ctx.index;
        Ok(Frontier::minimum())
    }
    fn write(&mut self, _: &u64, changes: &mut Vec<Change<u64, u64>>) -> Result<(), OperatorError> {
        if self.worker == self.fail_on {
            return Err(OperatorError::ResumeConflict { message: format!("injected on worker {}", self.worker) });
        }
        changes.clear();
        Ok(())
    }
    fn commit(&mut self, upper: &Frontier<u64>) -> Result<(), OperatorError> {
        self.committed.lock().unwrap().push((self.worker, *upper));
        Ok(())
    }
}

#[test]
fn independent_failure_stops_only_the_failing_worker() {
    let committed = Arc::new(Mutex::new(Vec::new()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (c2, r2) = (Arc::clone(&committed), Arc::clone(&results));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let c3 = Arc::clone(&c2);
            let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<u64, isize>();
                let writer = Writer { worker: 0, fail_on: 1, committed: c3 };
                let out = rows.sink_with(SinkConfig::new("independent"), |v: &u64| *v, writer);
                (input, out.committed.probe().0, out.handle)
            });
            let mut outcome = Ok(());
            for t in 0..4u64 {
                for k in 0..100u64 {
                    input.update((t * 1000 + k) * 2 + index as u64, 1);
                }
                input.advance_to(t + 1);
                input.flush();
                outcome = handle.step_until_committed(worker, &probe, &(t + 1)).map_err(|e| e.to_string());
                if outcome.is_err() {
                    break;
                }
            }
            r2.lock().unwrap().push((index, outcome));
        })
        .map(|guards| guards.join());
        let _ = done.send(r.map(|results| results.into_iter().all(|r| r.is_ok())));
    });
    let ok = finished.recv_timeout(Duration::from_secs(60)).expect("a worker hangs");
    assert_eq!(ok, Ok(true), "a worker panicked");
    let mut results = results.lock().unwrap().clone();
    results.sort();
    assert_eq!(results[0], (0, Ok(())), "worker 0 commits its own keys regardless");
    assert!(results[1].1.as_ref().is_err_and(|e| e.contains("injected on worker 1")), "{results:?}");
    let committed = committed.lock().unwrap();
    assert!(committed.iter().all(|(w, _)| *w == 0), "{committed:?}");
    assert!(committed.contains(&(0, Frontier::at(4))), "{committed:?}");
}
