//! The contract between the sink operator and whatever delivers its changes.
//!
//! A [`SinkWriter`] lives on one worker and owns the keys routed to that worker. The operator
//! calls it in this order:
//!
//! 1. [`resume`](SinkWriter::resume) once, before any data: the frontier this worker already made
//!    durable in an earlier run. The operator drops every update at a time before it.
//! 2. [`write`](SinkWriter::write) for each complete time, in time order, with that time's
//!    changes — in one call, or for a large time in several consecutive calls of at most a few
//!    thousand changes each (a key's change is never split). A writer may send them at once or
//!    buffer them; nothing is durable yet. The order of a time's changes across these calls, and
//!    where the calls are cut, depend only on the time's consolidated changes: a replay whose raw
//!    updates differ but consolidate to the same changes delivers them in the same order and the
//!    same calls. A writer that makes part of a time durable (say, a bounded transaction inside
//!    a large time) may therefore resume that time by skipping the changes it already holds.
//! 3. [`commit`](SinkWriter::commit) with a frontier `upper`: everything written so far, i.e. every
//!    time before `upper`, must become durable **atomically with a record of `upper`** — that
//!    record is what `resume` reads back. Several times may share one commit.
//!
//! In coordinated mode (one commit for all workers, as a lakehouse snapshot needs) step 3 is split:
//! each worker's writer [`prepare`](CoordinatedWriter::prepare)s what it wrote into a token (say,
//! the list of data files), the tokens travel to worker 0, and a [`Committer`] there makes all of
//! them durable in one commit together with every worker's frontier.
//!
//! An error from any of these calls stops the sink on that worker. In coordinated mode it stops
//! the sink on every worker: the failure travels to the committer, which commits nothing more and
//! fails every worker's handle (the others with an error naming the failing worker and its
//! message), so no worker waits for a commit that will not come. Prepared tokens not yet committed
//! are abandoned (a restart resumes from the recorded frontiers). In independent mode the other
//! workers go on committing their own keys.
//!
//! Writers do no timely work of their own, and the trait knows nothing of I/O: a connector with an
//! asynchronous client runs it on its own runtime and blocks (bounded) in these calls.
//!
//! [`resolve_resume`] is the shared rule for restarts with a different number of workers.

use crate::change::Change;
use crate::time::Frontier;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// Where a writer runs: its worker index, the number of workers, and the run's [`Layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerContext {
    /// This worker's index, `0..peers`.
    pub index: usize,
    /// The number of workers in the dataflow.
    pub peers: usize,
    /// How this run routes keys and writes its target; recorded with every commit.
    pub layout: Layout,
}

impl WorkerContext {
    /// Worker `index` of `peers`, with the default [`Layout`].
    pub fn new(index: usize, peers: usize) -> Self {
        WorkerContext { index, peers, layout: Layout::default() }
    }
}

/// What a progress record must agree on with the current run for the run to resume from it
/// exactly: how keys were routed to workers and which version of the connector's on-target format
/// (record shapes, labels, file names) was written.
///
/// * `routing` is a fingerprint of the routing hash's version and of what a key is made of (its
///   columns and encoding, or the row itself). A run whose routing differs from the records'
///   sends some keys to other workers than before, so it is treated like a change of worker
///   count (see [`resolve_resume`]). `0` means *not recorded*: records written before layouts
///   were recorded are taken as routed like the current run, which they were, unless the
///   sink's key was changed since.
/// * `format` is the connector's format version. A record written with another format is
///   refused: the connector could not tell which of its records are already on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Layout {
    /// The routing fingerprint; `0` when not recorded.
    pub routing: u64,
    /// The connector's on-target format version.
    pub format: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { routing: 0, format: 1 }
    }
}

/// Delivers one worker's changes to a target system. See the [module docs](self).
pub trait SinkWriter<K, V, T>: 'static {
    /// The writer's error type; the operator's own failures convert into it.
    type Error: From<crate::OperatorError> + fmt::Display + 'static;

    /// The frontier this worker already committed in an earlier run (`Frontier::minimum()` if none).
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>, Self::Error>;

    /// Delivers changes of one complete `time` (all of them, or the next chunk of them). The
    /// writer may drain `changes`.
    fn write(&mut self, time: &T, changes: &mut Vec<Change<K, V>>) -> Result<(), Self::Error>;

    /// Makes every change written so far durable together with `upper` — or, for a
    /// [pipelined](Self::pipelined) writer, starts doing so.
    fn commit(&mut self, upper: &Frontier<T>) -> Result<(), Self::Error>;

    /// Whether `commit` only starts a commit. The operator then goes on writing later times while
    /// the target acknowledges earlier ones, and moves the committed frontier (the committed
    /// stream, the handle) only when [`durable`](Self::durable) reports it.
    fn pipelined(&self) -> bool {
        false
    }

    /// For a pipelined writer: the frontier of the latest started commit that is durable by now,
    /// if one finished since the last call. With `wait`, returns once every started commit is.
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>, Self::Error> {
        let _ = wait;
        Ok(None)
    }
}

impl<K, V, T, W: SinkWriter<K, V, T> + ?Sized> SinkWriter<K, V, T> for Box<W> {
    type Error = W::Error;
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>, Self::Error> {
        (**self).resume(ctx)
    }
    fn write(&mut self, time: &T, changes: &mut Vec<Change<K, V>>) -> Result<(), Self::Error> {
        (**self).write(time, changes)
    }
    fn commit(&mut self, upper: &Frontier<T>) -> Result<(), Self::Error> {
        (**self).commit(upper)
    }
    fn pipelined(&self) -> bool {
        (**self).pipelined()
    }
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>, Self::Error> {
        (**self).durable(wait)
    }
}

/// A writer whose commits are made for all workers at once by a [`Committer`] on worker 0.
pub trait CoordinatedWriter<K, V, T>: SinkWriter<K, V, T> {
    /// What this worker hands the committer for one frontier (e.g. the data files it wrote).
    type Prepared: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Starts preparing everything written so far, without waiting: a writer whose files are
    /// written by a thread of its own hands that thread the prepare here, and
    /// [`prepare`](Self::prepare), called next with the same `upper`, waits for its answer.
    /// Between the two the operator may write changes of times at or after `upper`: they belong
    /// to the next prepare, and writing them overlaps the files' closing. The default does
    /// nothing, and `prepare` then covers what was written before it, as always.
    fn begin_prepare(&mut self, _upper: &Frontier<T>) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Finishes everything written so far into a token that the committer will make durable.
    /// Unlike `commit`, nothing becomes visible here.
    fn prepare(&mut self, upper: &Frontier<T>) -> Result<Self::Prepared, Self::Error>;
}

impl<K, V, T, W: CoordinatedWriter<K, V, T> + ?Sized> CoordinatedWriter<K, V, T> for Box<W> {
    type Prepared = W::Prepared;
    fn begin_prepare(&mut self, upper: &Frontier<T>) -> Result<(), Self::Error> {
        (**self).begin_prepare(upper)
    }
    fn prepare(&mut self, upper: &Frontier<T>) -> Result<Self::Prepared, Self::Error> {
        (**self).prepare(upper)
    }
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
    fn commit(&mut self, prepared: Vec<Prepared<P, T>>, frontiers: &[Frontier<T>]) -> Result<(), Self::Error>;
}

impl<P, T, C: Committer<P, T> + ?Sized> Committer<P, T> for Box<C> {
    type Error = C::Error;
    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>, Self::Error> {
        (**self).resume(peers)
    }
    fn commit(&mut self, prepared: Vec<Prepared<P, T>>, frontiers: &[Frontier<T>]) -> Result<(), Self::Error> {
        (**self).commit(prepared, frontiers)
    }
}

/// What a target recorded about one worker's progress.
///
/// A *generation* is a run of the sink with a fixed number of workers; a restart with another
/// worker count starts the next generation from a `base` frontier that every worker of the
/// previous generation had reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProgress<T> {
    /// The worker's index when it committed.
    pub worker: usize,
    /// The number of workers of that generation.
    pub peers: usize,
    /// The generation.
    pub generation: u64,
    /// The frontier the generation started from.
    pub base: Frontier<T>,
    /// The frontier this worker committed.
    pub frontier: Frontier<T>,
    /// How the run that wrote this record routed keys and wrote its target (the default when
    /// read from a record written before layouts were recorded).
    #[serde(default)]
    pub layout: Layout,
}

/// Where a worker resumes, and what it must record with its commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint<T> {
    /// Drop updates before this frontier.
    pub frontier: Frontier<T>,
    /// The generation this run belongs to.
    pub generation: u64,
    /// The frontier this generation started from.
    pub base: Frontier<T>,
    /// True when this run starts a new generation because keys move between workers (another
    /// worker count or another routing): a writer that made part of a time durable must then
    /// refuse to resume, since the time's changes are now spread differently.
    pub rerouted: bool,
}

impl<T: timely::progress::Timestamp + Ord + Clone> ResumePoint<T> {
    /// The progress record for a commit of `frontier` by `ctx`'s worker.
    pub fn record(&self, ctx: WorkerContext, frontier: Frontier<T>) -> WorkerProgress<T> {
        WorkerProgress {
            worker: ctx.index,
            peers: ctx.peers,
            generation: self.generation,
            base: self.base.clone(),
            frontier,
            layout: ctx.layout,
        }
    }
}

/// True if a record of layout `theirs` routed keys as a run of layout `ours` does (`0`: not
/// recorded, taken as the same).
fn routed_alike(theirs: &Layout, ours: &Layout) -> bool {
    theirs.routing == 0 || ours.routing == 0 || theirs.routing == ours.routing
}

/// True if a run as `ctx` says would route keys to other workers than the latest generation of
/// `records` did (another worker count or another routing). A writer that made part of a time
/// durable refuses such a restart before [`resolve_resume`], naming the split time.
pub fn reroutes<T>(records: &[WorkerProgress<T>], ctx: WorkerContext) -> bool {
    let Some(generation) = records.iter().map(|r| r.generation).max() else { return false };
    records
        .iter()
        .filter(|r| r.generation == generation)
        .any(|r| r.peers != ctx.peers || !routed_alike(&r.layout, &ctx.layout))
}

/// The shared rule for where a worker resumes, given the progress records a target holds.
///
/// * Nothing recorded: start from the beginning, generation 0.
/// * A record of the latest generation written with another on-target format
///   ([`Layout::format`]): refused, naming both versions.
/// * The latest generation had as many workers as now and routed keys the same way
///   ([`Layout::routing`]): each worker resumes from its own record (or the generation's base, if
///   it never committed).
/// * A different number of workers, or another routing: keys move between workers, which is only
///   safe if every worker of the latest generation reached the same frontier; the new generation
///   starts there ([`ResumePoint::rerouted`]). Otherwise the restart is refused, since any choice
///   would duplicate or lose some key's changes.
///
/// ```
/// use differential_sinks_operators::{resolve_resume, Frontier, Layout, WorkerContext, WorkerProgress};
/// let rec = |worker, f| WorkerProgress {
///     worker, peers: 2, generation: 0, base: Frontier::minimum(), frontier: Frontier::at(f), layout: Layout::default(),
/// };
/// let ctx = WorkerContext::new;
/// assert_eq!(resolve_resume::<u64>(&[rec(0, 5), rec(1, 7)], ctx(1, 2)).unwrap().frontier, Frontier::at(7));
/// let grown = resolve_resume::<u64>(&[rec(0, 7), rec(1, 7)], ctx(0, 4)).unwrap();
/// assert_eq!((grown.frontier, grown.generation, grown.rerouted), (Frontier::at(7), 1, true));
/// assert!(resolve_resume::<u64>(&[rec(0, 5), rec(1, 7)], ctx(0, 4)).is_err());
/// ```
pub fn resolve_resume<T: timely::progress::Timestamp + Ord + Clone>(
    records: &[WorkerProgress<T>],
    ctx: WorkerContext,
) -> Result<ResumePoint<T>, crate::OperatorError> {
    let Some(generation) = records.iter().map(|r| r.generation).max() else {
        return Ok(ResumePoint {
            frontier: Frontier::minimum(),
            generation: 0,
            base: Frontier::minimum(),
            rerouted: false,
        });
    };
    let latest: Vec<&WorkerProgress<T>> = records.iter().filter(|r| r.generation == generation).collect();
    let (old_peers, base) = (latest[0].peers, latest[0].base.clone());
    if latest.iter().any(|r| r.peers != old_peers || r.base != base) {
        return Err(crate::OperatorError::ResumeConflict {
            message: format!(
                "the progress records of generation {generation} disagree on the worker count or base frontier"
            ),
        });
    }
    if let Some(r) = latest.iter().find(|r| r.layout.format != ctx.layout.format) {
        let (theirs, ours) = (r.layout.format, ctx.layout.format);
        let what = if theirs > ours { "a newer" } else { "an older" };
        return Err(crate::OperatorError::ResumeConflict {
            message: format!(
                "worker {} committed with on-target format {theirs}, written by {what} version of the sink; this version \
                 writes format {ours} and cannot tell which of those records are already on the target: finish the input \
                 with the version that wrote them, or write to a fresh target",
                r.worker
            ),
        });
    }
    let routed_alike = |r: &&WorkerProgress<T>| routed_alike(&r.layout, &ctx.layout);
    let of =
        |w: usize| latest.iter().find(|r| r.worker == w).map(|r| r.frontier.clone()).unwrap_or_else(|| base.clone());
    let rerouted_by = latest.iter().find(|r| !routed_alike(r));
    if old_peers == ctx.peers && rerouted_by.is_none() {
        return Ok(ResumePoint { frontier: of(ctx.index), generation, base, rerouted: false });
    }
    let mut frontiers: Vec<Frontier<T>> = (0..old_peers).map(of).collect();
    frontiers.sort();
    frontiers.dedup();
    if frontiers.len() == 1 {
        let f = frontiers.pop().expect("one");
        return Ok(ResumePoint { frontier: f.clone(), generation: generation + 1, base: f, rerouted: true });
    }
    let listed = frontiers.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
    let message = match rerouted_by {
        Some(r) if old_peers == ctx.peers => format!(
            "the sink's workers committed at different frontiers ({listed}) with another routing of keys to workers \
             (routing {:016x}, now {:016x}: the key's columns or encoding, or the routing hash, changed), so this run \
             would send some keys to other workers than the ones that delivered them; restart it with the earlier \
             key settings (or the version that wrote them) until the workers reach a common frontier (for example \
             after the input ends), or write to a fresh target",
            r.layout.routing, ctx.layout.routing
        ),
        _ => format!(
            "the sink was committed by {old_peers} workers at different frontiers ({listed}) and is now run with {}; \
             restart it with {old_peers} workers until they reach a common frontier (for example after the input ends), \
             or write to a fresh target",
            ctx.peers
        ),
    };
    Err(crate::OperatorError::ResumeConflict { message })
}
