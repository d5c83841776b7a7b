//! A worker's view of a sink: what it committed, and the error that stopped it.
//!
//! The sink operators update the handle as they commit or fail; the caller reads it, and
//! [`SinkHandle::step_until_committed`] steps a worker until a frontier is committed or the
//! sink failed. See [`crate::sink`] for what a failure means on the other workers.

use crate::time::{Frontier, SinkTime};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use timely::scheduling::Activator;

/// A record of one commit on the committed stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed<T> {
    /// The worker that committed (the coordinator is worker 0).
    pub worker: usize,
    /// Every time before this frontier is durable (for that worker; for all, when coordinated).
    pub upper: Frontier<T>,
    /// Changes made durable by this commit.
    pub changes: u64,
}

struct HandleState<T, E> {
    committed: Frontier<T>,
    error: Option<E>,
    /// Set by the first failure and never reset (unlike `error`, which the caller may take).
    stopped: bool,
    /// This worker's sink operators, woken on a failure so that they stop and release their
    /// capabilities.
    wake: Vec<Activator>,
}

/// This worker's view of a sink: its committed frontier and the error that stopped it, if any.
pub struct SinkHandle<T, E> {
    state: Rc<RefCell<HandleState<T, E>>>,
}

impl<T, E> Clone for SinkHandle<T, E> {
    fn clone(&self) -> Self {
        SinkHandle { state: Rc::clone(&self.state) }
    }
}

impl<T: SinkTime, E> SinkHandle<T, E> {
    pub(crate) fn new() -> Self {
        SinkHandle {
            state: Rc::new(RefCell::new(HandleState {
                committed: Frontier::minimum(),
                error: None,
                stopped: false,
                wake: Vec::new(),
            })),
        }
    }
    /// The frontier this worker (or, coordinated, the coordinator) has committed.
    pub fn committed(&self) -> Frontier<T> {
        self.state.borrow().committed
    }
    /// True once the sink stopped with an error.
    pub fn is_failed(&self) -> bool {
        self.state.borrow().error.is_some()
    }
    /// Takes the error that stopped the sink on this worker.
    pub fn take_error(&self) -> Option<E> {
        self.state.borrow_mut().error.take()
    }
    /// Runs `f` on the error, if any.
    pub fn error<R>(&self, f: impl FnOnce(&E) -> R) -> Option<R> {
        self.state.borrow().error.as_ref().map(f)
    }
    /// Records the error that stops the sink on this worker; later errors are dropped.
    pub(crate) fn fail(&self, e: E) {
        let mut s = self.state.borrow_mut();
        if !s.stopped {
            s.stopped = true;
            s.error = Some(e);
            for a in s.wake.drain(..) {
                a.activate();
            }
        }
    }
    /// True once the sink stopped on this worker, even after the error was taken.
    pub(crate) fn stopped(&self) -> bool {
        self.state.borrow().stopped
    }
    /// Has `activator` activated when the sink stops.
    pub(crate) fn wake_on_failure(&self, activator: Activator) {
        self.state.borrow_mut().wake.push(activator);
    }
    pub(crate) fn set_committed(&self, f: Frontier<T>) {
        self.state.borrow_mut().committed = f;
    }

    /// Steps `worker` until the probe shows every time before `upper` committed by all workers,
    /// or this worker's sink failed (its error is returned). In coordinated mode a failure on any
    /// worker fails every worker's sink, so every worker returns an error; in independent mode
    /// a failed worker stops counting, so the others return `Ok` for what they committed (see the
    /// [module docs](self)).
    pub fn step_until_committed(
        &self,
        worker: &mut timely::worker::Worker,
        probe: &timely::dataflow::ProbeHandle<T>,
        upper: &T,
    ) -> Result<(), E> {
        while probe.less_than(upper) && !self.is_failed() {
            worker.step();
        }
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
