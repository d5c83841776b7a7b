//! The contract between the sink operator and whatever delivers its changes.
//!
//! A [`SinkWriter`] lives on one worker and owns the keys routed to that worker. The operator
//! calls it in this order:
//!
//! 1. [`resume`](SinkWriter::resume) once, before any data: the frontier this worker already made
//!    durable in an earlier run. The operator drops every update at a time before it.
//! 2. [`write`](SinkWriter::write) once per complete time, in time order, with that time's
//!    changes. A writer may send them at once or buffer them; nothing is durable yet.
//! 3. [`commit`](SinkWriter::commit) with a frontier `upper`: everything written so far, i.e. every
//!    time before `upper`, must become durable **atomically with a record of `upper`** — that
//!    record is what `resume` reads back. Several times may share one commit.
//!
//! In coordinated mode (one commit for all workers, as a lakehouse snapshot needs) step 3 is split:
//! each worker's writer [`prepare`](CoordinatedWriter::prepare)s what it wrote into a token (say,
//! the list of data files), the tokens travel to worker 0, and a [`Committer`] there makes all of
//! them durable in one commit together with every worker's frontier.
//!
//! Writers do no timely work of their own, and the trait knows nothing of I/O: a connector with an
//! asynchronous client runs it on its own runtime and blocks (bounded) in these calls.
//!
//! [`resolve_resume`] is the shared rule for restarts with a different number of workers.

use crate::change::Change;
use crate::time::Frontier;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// Where a writer runs: its worker index and the number of workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerContext {
    /// This worker's index, `0..peers`.
    pub index: usize,
    /// The number of workers in the dataflow.
    pub peers: usize,
}

/// Delivers one worker's changes to a target system. See the [module docs](self).
pub trait SinkWriter<K, V, T>: 'static {
    /// The writer's error type; the operator's own failures convert into it.
    type Error: From<crate::OperatorError> + fmt::Display + 'static;

    /// The frontier this worker already committed in an earlier run (`Frontier::minimum()` if none).
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>, Self::Error>;

    /// Delivers the changes of one complete `time`. The writer may drain `changes`.
    fn write(&mut self, time: &T, changes: &mut Vec<Change<K, V>>) -> Result<(), Self::Error>;

    /// Makes every change written so far durable together with `upper`.
    fn commit(&mut self, upper: &Frontier<T>) -> Result<(), Self::Error>;
}

/// A writer whose commits are made for all workers at once by a [`Committer`] on worker 0.
pub trait CoordinatedWriter<K, V, T>: SinkWriter<K, V, T> {
    /// What this worker hands the committer for one frontier (e.g. the data files it wrote).
    type Prepared: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Finishes everything written so far into a token that the committer will make durable.
    /// Unlike `commit`, nothing becomes visible here.
    fn prepare(&mut self, upper: &Frontier<T>) -> Result<Self::Prepared, Self::Error>;
}

/// One worker's prepared work, as it reaches the committer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prepared<P, T> {
    /// The worker that prepared it.
    pub worker: usize,
    /// Every time of that worker before this frontier is covered.
    pub upper: Frontier<T>,
    /// The writer's token.
    pub token: P,
}

/// Makes the prepared work of all workers durable in one commit (runs on worker 0 only).
pub trait Committer<P, T>: 'static {
    /// The committer's error type.
    type Error: From<crate::OperatorError> + fmt::Display + 'static;

    /// Every worker's committed frontier from an earlier run, index = worker. Empty if none.
    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>, Self::Error>;

    /// Commits `prepared` (possibly from several workers and several frontiers each) in one
    /// atomic step, recording `frontiers`, every worker's frontier after this commit.
    fn commit(
        &mut self,
        prepared: Vec<Prepared<P, T>>,
        frontiers: &[Frontier<T>],
    ) -> Result<(), Self::Error>;
}

/// What a target recorded about one worker's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProgress<T> {
    /// The worker's index when it committed.
    pub worker: usize,
    /// The number of workers of that run.
    pub peers: usize,
    /// The frontier it committed.
    pub frontier: Frontier<T>,
}

/// The shared rule for where a worker resumes, given the progress a target recorded.
///
/// * Nothing recorded: start from the beginning.
/// * Same number of workers: keys are routed as before, so each worker resumes from its own record.
/// * A different number: keys move between workers, which is only safe if every old worker
///   committed the same frontier (they resume from it); otherwise the restart is refused, since
///   any choice would duplicate or lose some key's changes.
///
/// ```
/// use differential_sinks_operators::{resolve_resume, Frontier, WorkerProgress};
/// let rec = |worker, frontier| WorkerProgress { worker, peers: 2, frontier: Frontier::at(frontier) };
/// assert_eq!(resolve_resume::<u64>(&[rec(0, 5), rec(1, 7)], 1, 2).unwrap(), Frontier::at(7));
/// assert_eq!(resolve_resume::<u64>(&[rec(0, 7), rec(1, 7)], 0, 4).unwrap(), Frontier::at(7));
/// assert!(resolve_resume::<u64>(&[rec(0, 5), rec(1, 7)], 0, 4).is_err());
/// ```
pub fn resolve_resume<T: timely::progress::Timestamp + Ord>(
    records: &[WorkerProgress<T>],
    worker: usize,
    peers: usize,
) -> Result<Frontier<T>, crate::OperatorError> {
    let Some(first) = records.first() else {
        return Ok(Frontier::minimum());
    };
    let old_peers = first.peers;
    if records.iter().any(|r| r.peers != old_peers) {
        return Err(crate::OperatorError::ResumeConflict {
            message: "the recorded progress mixes runs with different worker counts".into(),
        });
    }
    if old_peers == peers {
        return Ok(records
            .iter()
            .find(|r| r.worker == worker)
            .map(|r| r.frontier.clone())
            .unwrap_or_else(Frontier::minimum));
    }
    let mut frontiers: Vec<_> = (0..old_peers)
        .map(|w| {
            records
                .iter()
                .find(|r| r.worker == w)
                .map(|r| r.frontier.clone())
                .unwrap_or_else(Frontier::minimum)
        })
        .collect();
    frontiers.dedup();
    if frontiers.len() == 1 {
        Ok(frontiers.pop().expect("one"))
    } else {
        Err(crate::OperatorError::ResumeConflict {
            message: format!(
                "the sink was committed by {old_peers} workers at different frontiers and is now run with {peers}; \
                 restart it with {old_peers} workers until they reach a common frontier (for example after the input ends), \
                 or write to a fresh target"
            ),
        })
    }
}
