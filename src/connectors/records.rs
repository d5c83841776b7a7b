//! The message family's writer contract: targets that receive encoded, keyed records
//! ([`RecordBatch`]) implement [`RecordWriter`]; [`EnvelopeWriter`] runs the sink's
//! [`RecordEncoder`] in front of them, so every such target gets the three formats and both key
//! encodings for free.

use super::contract::resumed_frontier;
use crate::encode::{ChangeEncoder, RecordEncoder};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::{Change, Frontier, SinkTime, SinkWriter, WorkerContext, WorkerMetrics};
use serde::Serialize;
use std::marker::PhantomData;

/// A target that receives encoded records. See [`differential_sinks_operators::writer`] for the
/// call order and what `commit` must guarantee.
pub trait RecordWriter: 'static {
    /// The frontier this worker committed in an earlier run.
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>>;
    /// Delivers records of one time: all of them, or the next chunk of them (a time's records may
    /// come in several consecutive calls; a key's records are never split).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Makes everything written durable together with `upper` — or, when
    /// [pipelined](Self::pipelined), starts doing so.
    fn commit(&mut self, upper: Frontier<u64>) -> Result<()>;
    /// Whether `commit` only starts a commit, later reported by [`durable`](Self::durable)
    /// (see [`SinkWriter::pipelined`]).
    fn pipelined(&self) -> bool {
        false
    }
    /// The frontier of the latest started commit that is durable by now, if one finished since
    /// the last call; with `wait`, returns once every started commit is.
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        let _ = wait;
        Ok(None)
    }
}

impl RecordWriter for Box<dyn RecordWriter> {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        (**self).resume(ctx)
    }
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        (**self).write(batch)
    }
    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        (**self).commit(upper)
    }
    fn pipelined(&self) -> bool {
        (**self).pipelined()
    }
    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        (**self).durable(wait)
    }
}

/// Turns per-key changes into encoded records for a [`RecordWriter`], with the sink's
/// [`RecordEncoder`] or a target's own encoder of records (`E`).
pub struct EnvelopeWriter<W, V, E = RecordEncoder<V>> {
    inner: W,
    encoder: E,
    batch: RecordBatch,
    metrics: WorkerMetrics,
    _row: PhantomData<fn(&V)>,
}

impl<W: RecordWriter, V: Serialize + 'static> EnvelopeWriter<W, V> {
    /// Wraps `inner` with `sink`'s format and encoding.
    pub fn new(sink: &SinkSettings, inner: W) -> Self {
        Self::with_encoder(sink, inner, RecordEncoder::new(sink))
    }
}

impl<W: RecordWriter, V, E: ChangeEncoder<V, Output = RecordBatch>> EnvelopeWriter<W, V, E> {
    /// Wraps `inner` with `encoder`, a target's own encoder of records.
    pub fn with_encoder(sink: &SinkSettings, inner: W, encoder: E) -> Self {
        EnvelopeWriter {
            inner,
            encoder,
            batch: RecordBatch::default(),
            metrics: sink.worker_metrics(),
            _row: PhantomData,
        }
    }

    /// Encodes `changes` of `time` into `batch` (public for benchmarks). Consecutive calls for
    /// one time number its records on (see [`RecordBatch::first`]).
    pub fn encode(&mut self, time: u64, changes: &[Change<Key, V>]) -> Result<&RecordBatch> {
        self.encoder.encode(time, changes, &mut self.batch)?;
        Ok(&self.batch)
    }
}

impl<W: RecordWriter, V: 'static, E: ChangeEncoder<V, Output = RecordBatch>, T: SinkTime> SinkWriter<Key, V, T>
    for EnvelopeWriter<W, V, E>
{
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let f = self.inner.resume(ctx)?;
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        self.encoder.encode(time.to_u64(), changes, &mut self.batch)?;
        self.inner.write(&self.batch)?;
        self.metrics.records_out(self.batch.len() as u64);
        self.metrics.bytes_out(self.batch.bytes() as u64);
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let up = upper.to_u64_frontier();
        self.inner.commit(up)
    }

    fn pipelined(&self) -> bool {
        self.inner.pipelined()
    }

    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>> {
        Ok(self.inner.durable(wait)?.and_then(Frontier::from_u64_frontier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records (time, first, len) of every batch it receives.
    struct Positions(Arc<Mutex<Vec<(u64, u64, usize)>>>);
    impl RecordWriter for Positions {
        fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>> {
            Ok(Frontier::minimum())
        }
        fn write(&mut self, batch: &RecordBatch) -> Result<()> {
            self.0.lock().expect("log").push((batch.time, batch.first, batch.len()));
            Ok(())
        }
        fn commit(&mut self, _: Frontier<u64>) -> Result<()> {
            Ok(())
        }
    }

    /// A time delivered in several calls numbers its records across them; the next time starts
    /// at 0 again.
    #[test]
    fn records_are_numbered_across_the_batches_of_a_time() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = SinkSettings::new("s");
        let mut w = EnvelopeWriter::<_, u32>::new(&sink, Positions(Arc::clone(&log)));
        let change = |v: u32| Change { key: Key::from_bytes(v.to_string().into_bytes()), before: None, after: Some(v) };
        let chunk = |range: std::ops::Range<u32>| range.map(change).collect::<Vec<_>>();
        for (t, range) in [(3u64, 0..5u32), (3, 5..12), (3, 12..13), (4, 0..2)] {
            SinkWriter::write(&mut w, &t, &mut chunk(range)).expect("write");
        }
        assert_eq!(*log.lock().expect("log"), vec![(3, 0, 5), (3, 5, 7), (3, 12, 1), (4, 0, 2)]);
    }
}
