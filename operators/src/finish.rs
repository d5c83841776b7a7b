//! How a worker of the sink operator finishes a round: an independent worker commits its own
//! writes ([`Independent`]); a coordinated worker prepares them and sends the token to the
//! committer on worker 0 ([`Coordinated`]). The operator in [`crate::sink`] is generic over this.

use crate::coordinate::Round;
use crate::handle::Committed;
use crate::time::{Frontier, SinkTime};
use crate::writer::{CoordinatedWriter, Prepared, SinkWriter};
use timely::ExchangeData;

/// How a worker finishes a round: commit itself, or prepare for the coordinator.
pub(crate) trait Finish<K, V, T, W: SinkWriter<K, V, T>> {
    type Out: ExchangeData + Clone;
    /// Starts finishing the round up to `upper` without waiting, where the writer can
    /// ([`CoordinatedWriter::begin_prepare`]); [`finish`](Self::finish) follows.
    fn begin(&mut self, _writer: &mut W, _upper: &Frontier<T>) -> Result<(), W::Error> {
        Ok(())
    }
    fn finish(
        &mut self,
        writer: &mut W,
        upper: &Frontier<T>,
        changes: u64,
        worker: usize,
    ) -> Result<Self::Out, W::Error>;
    /// [`finish`](Self::finish) between the `commit.begin` and `commit.end` crash points.
    fn finish_round(
        &mut self,
        writer: &mut W,
        upper: &Frontier<T>,
        changes: u64,
        worker: usize,
    ) -> Result<Self::Out, W::Error> {
        crate::crash_point("commit.begin");
        let finished = self.finish(writer, upper, changes, worker);
        if finished.is_ok() {
            crate::crash_point("commit.end");
        }
        finished
    }
    /// True when finishing makes the data durable (the handle's committed frontier moves).
    const DURABLE: bool;
    /// True when a finished round becomes durable later, as `durable` reports.
    fn pipelined(&self, _writer: &W) -> bool {
        false
    }
    /// The latest finished frontier that is durable by now (pipelined only).
    fn durable(&mut self, _writer: &mut W, _wait: bool) -> Result<Option<Frontier<T>>, W::Error> {
        Ok(None)
    }
    /// What a worker whose sink stopped with `message` sends downstream, if anything.
    fn failed(_worker: usize, _message: String) -> Option<Self::Out> {
        None
    }
}

pub(crate) struct Independent;
impl<K, V, T: SinkTime, W: SinkWriter<K, V, T>> Finish<K, V, T, W> for Independent {
    type Out = Committed<T>;
    const DURABLE: bool = true;
    fn finish(
        &mut self,
        writer: &mut W,
        upper: &Frontier<T>,
        changes: u64,
        worker: usize,
    ) -> Result<Committed<T>, W::Error> {
        writer.commit(upper)?;
        Ok(Committed { worker, upper: *upper, changes })
    }
    fn pipelined(&self, writer: &W) -> bool {
        writer.pipelined()
    }
    fn durable(&mut self, writer: &mut W, wait: bool) -> Result<Option<Frontier<T>>, W::Error> {
        writer.durable(wait)
    }
}

pub(crate) struct Coordinated;
impl<K, V, T: SinkTime, W: CoordinatedWriter<K, V, T>> Finish<K, V, T, W> for Coordinated {
    type Out = Round<W::Prepared, T>;
    const DURABLE: bool = false;
    fn begin(&mut self, writer: &mut W, upper: &Frontier<T>) -> Result<(), W::Error> {
        writer.begin_prepare(upper)
    }
    fn finish(
        &mut self,
        writer: &mut W,
        upper: &Frontier<T>,
        changes: u64,
        worker: usize,
    ) -> Result<Self::Out, W::Error> {
        let token = writer.prepare(upper)?;
        Ok(Round::Prepared { prepared: Prepared { worker, upper: *upper, token }, changes })
    }
    /// The coordinator must hear of the failure: it fails the sink on every worker.
    fn failed(worker: usize, message: String) -> Option<Self::Out> {
        Some(Round::Failed { worker, message })
    }
}
