//! Failures a test injects into a [`MemoryTarget`](super::MemoryTarget): which writer call they
//! strike, whose, and when.

#[cfg(doc)]
use crate::connectors::RecordWriter;
#[cfg(doc)]
use crate::error::ErrorKind;

/// The writer call an injected [`Fault`] strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// [`RecordWriter::write`] fails and stages nothing of its batch, as a target that cannot be
    /// reached would (error kind [`ErrorKind::Retriable`]).
    Write,
    /// A commit fails and applies nothing, as a crash between write and commit would (error kind
    /// [`ErrorKind::Fatal`]).
    Commit,
    /// An *ambiguous* commit: the commit is applied — its records and its progress record — but
    /// reports an error, as a commit whose acknowledgement was lost would (error kind
    /// [`ErrorKind::Retriable`]). A restart must read the applied progress and not repeat it.
    AmbiguousCommit,
}

/// A failure for a [`MemoryTarget`](super::MemoryTarget) to inject
/// ([`MemoryTarget::inject`](super::MemoryTarget::inject)).
///
/// A fault counts the calls it matches — its [`point`](Self::point), made by its
/// [`sink`](Self::sink) (any sink if `None`) on its [`worker`](Self::worker) (any worker if
/// `None`) — from when it is injected: the first [`after`](Self::after) of them pass, the next
/// one fails, and so does every later one unless the fault was made [`once`](Self::once). For
/// pipelined writers a commit is struck when it is applied (in `durable`), not when it starts.
///
/// ```
/// use differential_sinks::connectors::memory::{Fault, FaultPoint, MemoryTarget};
/// let target = MemoryTarget::new();
/// // Worker 1's third commit is applied but reports an error; later commits go through.
/// target.inject(Fault::at(FaultPoint::AmbiguousCommit).on_worker(1).after(2).once());
/// assert_eq!(target.faults_fired(), 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The call it strikes.
    pub point: FaultPoint,
    /// Only this sink's calls (`None`: every sink's).
    pub sink: Option<String>,
    /// Only this worker's calls (`None`: every worker's).
    pub worker: Option<usize>,
    /// How many matching calls pass before the first one fails.
    pub after: u64,
    /// Whether only one call fails (otherwise every matching call from then on fails).
    pub once: bool,
}

impl Fault {
    /// Strikes every call at `point`, of every sink and worker, from the first on.
    pub fn at(point: FaultPoint) -> Self {
        Fault { point, sink: None, worker: None, after: 0, once: false }
    }
    /// Strikes only the calls of the sink called `sink`.
    pub fn on_sink(mut self, sink: &str) -> Self {
        self.sink = Some(sink.to_string());
        self
    }
    /// Strikes only the calls of worker `worker`.
    pub fn on_worker(mut self, worker: usize) -> Self {
        self.worker = Some(worker);
        self
    }
    /// Lets the first `n` matching calls pass.
    pub fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }
    /// Strikes one call only.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }
}

/// An injected fault and how many matching calls it has seen.
#[derive(Debug)]
pub(super) struct Armed {
    pub(super) fault: Fault,
    pub(super) seen: u64,
}

impl Armed {
    /// Whether this fault strikes the call (`point` by `sink` on `worker`); counts it if it
    /// matches.
    pub(super) fn strikes(&mut self, point: FaultPoint, sink: &str, worker: usize) -> bool {
        let f = &self.fault;
        if f.point != point || f.sink.as_deref().is_some_and(|s| s != sink) || f.worker.is_some_and(|w| w != worker) {
            return false;
        }
        self.seen += 1;
        self.seen > f.after && !(f.once && self.seen > f.after + 1)
    }
}
