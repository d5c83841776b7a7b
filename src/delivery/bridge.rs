//! Runs an asynchronous writer behind the synchronous [`RecordWriter`] contract.
//!
//! The timely worker must not await, and an async client must not block its runtime. A
//! [`Bridge`] owns a thread with a single-threaded tokio runtime that runs the
//! [`AsyncRecordWriter`]. Batches travel there over a bounded channel: `write` returns as soon as
//! the batch is queued (so encoding overlaps with sending), and blocks when `capacity` batches
//! are already waiting — memory stays bounded and the dataflow slows to the target's pace.
//! `commit` and `resume` wait for their answer. A write that failed is reported by the next call.

use crate::connectors::RecordWriter;
use crate::error::{Error, ErrorKind, Result};
use crate::record::RecordBatch;
use crossbeam_channel::{bounded, Receiver, Sender};
use differential_sinks_operators::{Frontier, WorkerContext};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A writer with an asynchronous client.
pub trait AsyncRecordWriter: Send + 'static {
    /// See [`RecordWriter::resume`].
    fn resume(&mut self, ctx: WorkerContext) -> impl Future<Output = Result<Frontier<u64>>>;
    /// See [`RecordWriter::write`].
    fn write(&mut self, batch: RecordBatch) -> impl Future<Output = Result<()>>;
    /// See [`RecordWriter::commit`].
    fn commit(&mut self, upper: Frontier<u64>) -> impl Future<Output = Result<()>>;
}

enum Command {
    Resume(WorkerContext, Sender<Result<Frontier<u64>>>),
    Write(RecordBatch),
    Commit(Frontier<u64>, Sender<Result<()>>),
}

/// A [`RecordWriter`] that drives an [`AsyncRecordWriter`] on its own runtime thread.
pub struct Bridge {
    commands: Option<Sender<Command>>,
    recycled: Receiver<RecordBatch>,
    failure: Arc<Mutex<Option<Error>>>,
    thread: Option<JoinHandle<()>>,
    name: String,
}

impl Bridge {
    /// Starts `writer` on a thread named after the sink; at most `capacity` batches wait.
    pub fn spawn<A: AsyncRecordWriter>(name: &str, capacity: usize, mut writer: A) -> Result<Self> {
        let (tx, rx) = bounded::<Command>(capacity.max(1));
        let (recycle_tx, recycle_rx) = bounded::<RecordBatch>(capacity.max(1) + 1);
        let failure = Arc::new(Mutex::new(None));
        let fail = Arc::clone(&failure);
        let runtime = super::runtime::current_thread("the sink's async client")?;
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut failed = false;
                    while let Ok(cmd) = rx.recv() {
                        match cmd {
                            Command::Resume(ctx, reply) => {
                                let _ = reply.send(writer.resume(ctx).await);
                            }
                            Command::Write(batch) => {
                                if failed {
                                    continue;
                                }
                                let mut spare = RecordBatch::default();
                                spare.clone_from(&batch);
                                if let Err(e) = writer.write(batch).await {
                                    failed = true;
                                    *fail.lock().expect("failure slot") = Some(e);
                                } else {
                                    spare.reset(0);
                                    let _ = recycle_tx.try_send(spare);
                                }
                            }
                            Command::Commit(upper, reply) => {
                                let r = if failed {
                                    Err(fail
                                        .lock()
                                        .expect("failure slot")
                                        .take()
                                        .unwrap_or_else(|| Error::new(ErrorKind::Fatal, "an earlier write failed")))
                                } else {
                                    writer.commit(upper).await
                                };
                                let _ = reply.send(r);
                            }
                        }
                    }
                })
            })
            .map_err(|e| Error::io("starting the sink's delivery thread", e))?;
        Ok(Bridge { commands: Some(tx), recycled: recycle_rx, failure, thread: Some(thread), name: name.to_string() })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.commands
            .as_ref()
            .expect("open until dropped")
            .send(cmd)
            .map_err(|_| Error::new(ErrorKind::Fatal, format!("sink `{}`: the delivery thread stopped", self.name)))
    }

    fn check(&self) -> Result<()> {
        match self.failure.lock().expect("failure slot").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn call<R>(&self, make: impl FnOnce(Sender<Result<R>>) -> Command) -> Result<R> {
        let (tx, rx) = bounded(1);
        self.send(make(tx))?;
        rx.recv()
            .map_err(|_| Error::new(ErrorKind::Fatal, format!("sink `{}`: the delivery thread stopped", self.name)))?
    }
}

impl RecordWriter for Bridge {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        self.call(|tx| Command::Resume(ctx, tx))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check()?;
        // Reuse a batch the delivery thread is done with, to keep allocation off the hot path.
        let mut owned = self.recycled.try_recv().unwrap_or_default();
        owned.clone_from(batch);
        self.send(Command::Write(owned))
    }

    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        self.check()?;
        self.call(|tx| Command::Commit(upper, tx))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Op;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Slow {
        seen: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Semaphore>,
        fail_at: Option<usize>,
    }

    impl AsyncRecordWriter for Slow {
        async fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>> {
            Ok(Frontier::at(0))
        }
        async fn write(&mut self, batch: RecordBatch) -> Result<()> {
            self.gate.acquire().await.expect("open").forget();
            let n = self.seen.fetch_add(batch.len(), Ordering::SeqCst) + batch.len();
            if self.fail_at.is_some_and(|f| n >= f) {
                return Err(Error::new(ErrorKind::Fatal, "target refused"));
            }
            Ok(())
        }
        async fn commit(&mut self, _: Frontier<u64>) -> Result<()> {
            Ok(())
        }
    }

    fn batch() -> RecordBatch {
        let mut b = RecordBatch::new(1);
        b.push(
            b"k",
            Some(|o: &mut Vec<u8>| {
                o.extend_from_slice(b"v");
                Ok(())
            }),
            Op::Create,
        )
        .unwrap();
        b
    }

    #[test]
    fn backpressure_blocks_at_capacity() {
        let seen = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut bridge = Bridge::spawn("t", 2, Slow { seen: seen.clone(), gate: gate.clone(), fail_at: None }).unwrap();
        bridge.resume(WorkerContext::new(0, 1)).unwrap();
        let (done_tx, done_rx) = bounded(16);
        let b = batch();
        let h = std::thread::spawn(move || {
            for i in 0..6 {
                bridge.write(&b).unwrap();
                done_tx.send(i).unwrap();
            }
            bridge.commit(Frontier::at(2)).unwrap();
            bridge
        });
        // With the target stalled, one batch is in the writer and two wait: the fourth write blocks.
        let mut accepted = 0;
        while done_rx.recv_timeout(std::time::Duration::from_millis(300)).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, 3, "writes beyond the bound must block");
        gate.add_permits(100);
        let _bridge = h.join().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn write_failure_surfaces_at_commit() {
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let mut bridge =
            Bridge::spawn("t", 4, Slow { seen: Arc::new(AtomicUsize::new(0)), gate, fail_at: Some(2) }).unwrap();
        bridge.resume(WorkerContext::new(0, 1)).unwrap();
        let b = batch();
        for _ in 0..3 {
            let _ = bridge.write(&b);
        }
        let e = bridge.commit(Frontier::at(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert!(e.to_string().contains("target refused"));
    }
}
