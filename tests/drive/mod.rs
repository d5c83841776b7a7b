//! The one driver of the integration tests' timely loops: runs a change history into one or more
//! sinks on several workers and reports every worker's sink error.
//!
//! A [`Drive`] says how a run goes:
//!
//! - `peers`: the worker count (each worker feeds every `peers`-th update of each time);
//! - [`Pace`]: what a worker does after feeding each time — step once every few times, neither
//!   flush nor step (the whole history reaches the sink at the end), or wait until the time is
//!   committed and then call the [`Drive::at_commit`] hook;
//! - `stop_at`: feed only the times before it, wait until they are committed and drop the
//!   dataflow without ending the input, as a crashed process would;
//! - `deadline`: fail the test, rather than hang it, when the run takes longer.
//!
//! The sinks are built by [`Drive::run`] (one spec), [`Drive::run_many`] (several specs over the
//! same input) or [`Drive::run_with`] (any sink operator, e.g. a coordinated sink over a test
//! writer, or a key function). [`build`] only builds a sink, for the checks made at creation.
//!
//! The times fed are `0..=` the history's largest time (or `0..stop_at`, even beyond it); a time without
//! updates is fed as an empty time. A worker whose sink fails while it waits for a commit stops
//! there; otherwise it closes the input and steps until every sink is done or one failed.

#![allow(dead_code)]

use differential_dataflow::input::Input;
use differential_dataflow::VecCollection;
use differential_sinks::{Row as SinkRow, SinkCollection, SinkOutput, SinkSpec};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::probe::Probe;

/// A row the driver can feed: a sink row that timely can exchange.
pub trait DriveRow: SinkRow + differential_dataflow::Data + std::fmt::Debug + Send + Sync {}
impl<R: SinkRow + differential_dataflow::Data + std::fmt::Debug + Send + Sync> DriveRow for R {}

/// What a worker does after feeding each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Flush the input, and step the worker once after every time `t` with `t % n == 0`.
    Step(u64),
    /// Neither flush nor step: the input's frontier moves only when it is closed.
    Unflushed,
    /// Flush the input and, after every time `t` with `t % n == 0`, step until `t + 1` is
    /// committed by every worker, then call the [`Drive::at_commit`] hook.
    Commit(u64),
}

/// Where a run is when the [`Drive::at_commit`] hook is called.
#[derive(Clone, Copy, Debug)]
pub struct AtCommit {
    /// The worker calling.
    pub worker: usize,
    /// The time just committed.
    pub time: u64,
    /// The first sink's committed frontier on this worker (`None`: complete).
    pub committed: Option<u64>,
}

/// The hook called at each commit of a [`Pace::Commit`] run.
pub type AtCommitHook = Arc<dyn Fn(AtCommit) + Send + Sync>;

/// How a run goes; see the [module docs](self).
#[derive(Clone)]
pub struct Drive {
    pub peers: usize,
    pub pace: Pace,
    pub stop_at: Option<u64>,
    pub deadline: Option<Duration>,
    pub at_commit: Option<AtCommitHook>,
}

/// What a run returned: every worker's sink errors, as `(worker, error)` in worker order.
#[derive(Debug)]
pub struct Report<E> {
    pub errors: Vec<(usize, E)>,
}

impl<E: std::fmt::Display> Report<E> {
    /// The first error (of the lowest worker).
    pub fn first(self) -> Option<E> {
        self.errors.into_iter().next().map(|e| e.1)
    }
    /// The first error's message.
    pub fn first_message(self) -> Option<String> {
        self.first().map(|e| e.to_string())
    }
    /// Panics with the errors unless the run succeeded.
    pub fn expect_ok(self, what: &str) {
        if !self.errors.is_empty() {
            let all: Vec<String> = self.errors.iter().map(|(w, e)| format!("worker {w}: {e}")).collect();
            panic!("{what}: {all:?}");
        }
    }
}

impl Drive {
    /// A run on `peers` workers that steps once after every time, to the end of the input.
    pub fn new(peers: usize) -> Self {
        Drive { peers, pace: Pace::Step(1), stop_at: None, deadline: None, at_commit: None }
    }
    pub fn pace(self, pace: Pace) -> Self {
        Drive { pace, ..self }
    }
    pub fn stop_at(self, stop_at: Option<u64>) -> Self {
        Drive { stop_at, ..self }
    }
    pub fn deadline(self, deadline: Duration) -> Self {
        Drive { deadline: Some(deadline), ..self }
    }
    pub fn at_commit(self, hook: impl Fn(AtCommit) + Send + Sync + 'static) -> Self {
        Drive { at_commit: Some(Arc::new(hook)), ..self }
    }

    /// Runs `history` into the sink of `spec`.
    pub fn run<R: DriveRow>(&self, history: &[(R, u64, isize)], spec: &SinkSpec) -> Report<differential_sinks::Error> {
        self.run_many(history, std::slice::from_ref(spec))
    }

    /// Runs `history` into a sink of each of `specs`, all fed by one input.
    pub fn run_many<R: DriveRow>(
        &self,
        history: &[(R, u64, isize)],
        specs: &[SinkSpec],
    ) -> Report<differential_sinks::Error> {
        let specs = specs.to_vec();
        self.run_with(history, move |rows: VecCollection<'_, u64, R, isize>| {
            specs.iter().map(|s| rows.clone().sink(s).expect("sink builds")).collect()
        })
    }

    /// Runs `history` into the sinks `build` makes of the input collection on each worker.
    pub fn run_with<R, E, B>(&self, history: &[(R, u64, isize)], build: B) -> Report<E>
    where
        R: DriveRow,
        E: Send + 'static,
        B: for<'s> Fn(VecCollection<'s, u64, R, isize>) -> Vec<SinkOutput<'s, u64, R, E>> + Send + Sync + 'static,
    {
        let end = history.iter().map(|h| h.1 + 1).max().unwrap_or(1);
        let last = self.stop_at.unwrap_or(end);
        let history = Arc::new(history.to_vec());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (drive, errors2) = (self.clone(), errors.clone());
        let work = move || {
            timely::execute(timely::Config::process(drive.peers), move |worker| {
                let (index, peers) = (worker.index(), worker.peers());
                let dataflow = worker.next_dataflow_index();
                let (mut input, sinks) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, rows) = scope.new_collection::<R, isize>();
                    let sinks: Vec<_> =
                        build(rows).into_iter().map(|out| (out.committed.probe().0, out.handle)).collect();
                    (input, sinks)
                });
                let fail = |e: E| errors2.lock().unwrap().push((index, e));
                for t in 0..last {
                    for (i, (row, _, d)) in history.iter().enumerate().filter(|(_, h)| h.1 == t) {
                        if i % peers == index {
                            input.update(row.clone(), *d);
                        }
                    }
                    input.advance_to(t + 1);
                    match drive.pace {
                        Pace::Unflushed => {}
                        Pace::Step(n) => {
                            input.flush();
                            if t % n.max(1) == 0 {
                                worker.step();
                            }
                        }
                        Pace::Commit(n) => {
                            input.flush();
                            if t % n.max(1) == 0 {
                                for (probe, handle) in &sinks {
                                    if let Err(e) = handle.step_until_committed(worker, probe, &(t + 1)) {
                                        fail(e);
                                        return;
                                    }
                                }
                                if let Some(hook) = &drive.at_commit {
                                    let committed = sinks.first().and_then(|s| s.1.committed().time().copied());
                                    hook(AtCommit { worker: index, time: t, committed });
                                }
                            }
                        }
                    }
                }
                if drive.stop_at.is_some() {
                    input.flush();
                    for (probe, handle) in &sinks {
                        if let Err(e) = handle.step_until_committed(worker, probe, &last) {
                            fail(e);
                        }
                    }
                    worker.drop_dataflow(dataflow);
                    return;
                }
                input.close();
                while sinks.iter().any(|(p, _)| !p.done()) && !sinks.iter().any(|(_, h)| h.is_failed()) {
                    worker.step();
                }
                for (_, handle) in &sinks {
                    if let Some(e) = handle.take_error() {
                        fail(e);
                    }
                }
            })
            .map(|guards| guards.join())
        };
        let joined = match self.deadline {
            None => work(),
            Some(deadline) => {
                // On a thread of its own, so that a hung worker fails the test at the deadline.
                let (done, finished) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = done.send(work());
                });
                match finished.recv_timeout(deadline) {
                    Ok(joined) => joined,
                    Err(e) => panic!("the dataflow did not finish within {deadline:?} ({e}): a worker hangs"),
                }
            }
        };
        match joined {
            Ok(results) => {
                for (worker, r) in results.into_iter().enumerate() {
                    if let Err(panic) = r {
                        panic!("worker {worker} panicked: {panic}");
                    }
                }
            }
            Err(e) => panic!("timely failed to start: {e}"),
        }
        let mut errors = std::mem::take(&mut *errors.lock().unwrap());
        errors.sort_by_key(|e| e.0);
        Report { errors }
    }
}

/// Runs `history` into `spec` on `peers` workers (stepping after every third time). With
/// `stop_at`, feeds only the times before it, waits until they are committed and stops without
/// ending the input (as a crashed process would); otherwise runs to the end. Returns the sink's
/// first error.
pub fn run<R: DriveRow>(
    history: &[(R, u64, isize)],
    spec: &SinkSpec,
    peers: usize,
    stop_at: Option<u64>,
) -> Option<String> {
    Drive::new(peers).pace(Pace::Step(3)).stop_at(stop_at).run(history, spec).first_message()
}

/// Builds the sink of `spec` over an input of `R` on one worker, without running it: the checks
/// a sink makes at creation.
pub fn build<R: DriveRow>(spec: &SinkSpec) -> differential_sinks::Result<()> {
    let spec = spec.clone();
    timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, rows) = scope.new_collection::<R, isize>();
            rows.sink(&spec).map(drop)
        })
    })
}
