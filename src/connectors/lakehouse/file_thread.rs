//! A lakehouse writer's data files, written on a thread of their own: the worker encodes rows
//! into Arrow batches and hands them over; the thread encodes and compresses Parquet and writes
//! the files, so the two overlap instead of taking turns on the worker's thread.
//!
//! The thread takes each write whole, in the order given, from a queue of at most [`QUEUE`]
//! writes: a worker that runs ahead of its files waits for room, so what is in flight is bounded
//! by `QUEUE + 1` of the sink's write chunks (`write.chunk_changes`, 16 384 changes by default:
//! some 15 MB of Arrow arrays for rows of 100 bytes), never by a time or a commit. A
//! prepare waits until every write before it is in the files, then takes what the files report
//! for the committer; it can be handed over first ([`FileThread::begin_prepare`]) and waited for
//! later, so that the worker's own work overlaps the files' closing. An error of the thread is
//! the error of the worker's next write or prepare;
//! the thread stops at it, and nothing it wrote is committed. Dropping the writer lets the thread
//! finish the queued writes and joins it.

use crate::encode::arrow::ArrowChanges;
use crate::error::{Error, ErrorKind, Result};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Writes queued to the thread at most (besides the one it is writing). Deep enough that the
/// thread has work while the worker consolidates its next time, during which it hands over
/// nothing: with a queue of two, the worker and the thread mostly took turns.
pub const QUEUE: usize = 8;

/// A worker's data files: what the thread owns and drives.
pub(crate) trait DataFiles: Send + 'static {
    /// What a prepare hands the committer.
    type Prepared: Send + 'static;
    /// Writes one chunk's encoded changes.
    fn write(&mut self, changes: ArrowChanges) -> Result<()>;
    /// Closes the open files and takes what the committer needs of everything written since the
    /// last prepare.
    fn prepare(&mut self) -> Result<Self::Prepared>;
}

enum Job<P> {
    Write(ArrowChanges),
    Prepare(SyncSender<Result<P>>),
}

/// The handle of a thread writing one worker's [`DataFiles`] (see the [module docs](self)).
pub(crate) struct FileThread<F: DataFiles> {
    jobs: Option<SyncSender<Job<F::Prepared>>>,
    thread: Option<JoinHandle<Result<()>>>,
    /// The answer of a prepare handed over and not yet waited for.
    preparing: Option<Receiver<Result<F::Prepared>>>,
}

impl<F: DataFiles> FileThread<F> {
    /// Starts the thread `name`, writing `files`.
    pub(crate) fn spawn(name: String, files: F) -> Result<Self> {
        let (jobs, queue) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(files, queue))
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("cannot start the data file thread: {e}")))?;
        Ok(FileThread { jobs: Some(jobs), thread: Some(thread), preparing: None })
    }

    /// Hands one chunk's encoded changes to the thread (waiting while the queue is full).
    pub(crate) fn write(&mut self, changes: ArrowChanges) -> Result<()> {
        if changes.batches.is_empty() && changes.deleted.is_empty() {
            return Ok(());
        }
        self.send(Job::Write(changes))
    }

    /// Hands the thread a prepare of everything written so far, without waiting for it;
    /// [`prepare`](Self::prepare) takes its answer. What is written in between is the next
    /// prepare's. A prepare handed over already stands.
    pub(crate) fn begin_prepare(&mut self) -> Result<()> {
        if self.preparing.is_none() {
            let (reply, answer) = sync_channel(1);
            self.send(Job::Prepare(reply))?;
            self.preparing = Some(answer);
        }
        Ok(())
    }

    /// Waits for every write handed over so far, then prepares the files (or takes the answer
    /// of the prepare [`begin_prepare`](Self::begin_prepare) handed over).
    pub(crate) fn prepare(&mut self) -> Result<F::Prepared> {
        self.begin_prepare()?;
        match self.preparing.take().map(|answer| answer.recv()) {
            Some(Ok(prepared)) => prepared,
            _ => Err(self.failure()),
        }
    }

    fn send(&mut self, job: Job<F::Prepared>) -> Result<()> {
        match self.jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.failure()),
        }
    }

    /// Why the thread stopped (it only stops at an error, or once its handle is gone).
    fn failure(&mut self) -> Error {
        self.jobs = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(()))) => Error::new(ErrorKind::Fatal, "the data file thread stopped"),
            Some(Err(_)) => Error::new(ErrorKind::Fatal, "the data file thread panicked"),
            None => Error::new(ErrorKind::Fatal, "the data file thread stopped at an earlier error"),
        }
    }
}

impl<F: DataFiles> Drop for FileThread<F> {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: writes jobs in order until its handle is dropped or a write fails.
fn run<F: DataFiles>(mut files: F, queue: Receiver<Job<F::Prepared>>) -> Result<()> {
    for job in queue {
        match job {
            Job::Write(changes) => files.write(changes)?,
            Job::Prepare(reply) => {
                let prepared = files.prepare();
                let failed = prepared.is_err();
                // The worker waits for the answer; if it is gone, so is the sink.
                let _ = reply.send(prepared);
                if failed {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch};
    use std::sync::{Arc, Mutex};

    /// Files that record what they are given, and fail the write of a batch of `fail_at` rows.
    struct Recorded {
        log: Arc<Mutex<Vec<String>>>,
        fail_at: usize,
    }

    impl DataFiles for Recorded {
        type Prepared = Vec<String>;
        fn write(&mut self, changes: ArrowChanges) -> Result<()> {
            let rows = changes.rows() as usize;
            if rows == self.fail_at {
                return Err(Error::encode(format!("a batch of {rows} rows")));
            }
            self.log.lock().unwrap().push(format!("write {rows} deleting {}", changes.deleted.len()));
            Ok(())
        }
        fn prepare(&mut self) -> Result<Vec<String>> {
            Ok(std::mem::take(&mut *self.log.lock().unwrap()))
        }
    }

    fn batch(rows: i64) -> ArrowChanges {
        let b = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from_iter_values(0..rows)) as _)]).unwrap();
        let mut deleted = crate::encode::arrow::PackedKeys::default();
        deleted.push(&[1]);
        ArrowChanges { batches: vec![b], deleted }
    }

    #[test]
    fn writes_arrive_in_order_before_the_prepare() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut t = FileThread::spawn("files".into(), Recorded { log, fail_at: usize::MAX }).unwrap();
        for n in 1..=20 {
            t.write(batch(n)).unwrap();
        }
        t.write(ArrowChanges::default()).unwrap();
        let done = t.prepare().unwrap();
        assert_eq!(done, (1..=20).map(|n| format!("write {n} deleting 1")).collect::<Vec<_>>());
        assert!(t.prepare().unwrap().is_empty());
    }

    /// A prepare handed over first covers the writes before it, and only those (a write after
    /// it is the next round's); handing it over twice is one prepare.
    #[test]
    fn a_prepare_handed_over_first_is_the_one_taken() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut t = FileThread::spawn("files".into(), Recorded { log, fail_at: usize::MAX }).unwrap();
        t.write(batch(1)).unwrap();
        t.write(batch(2)).unwrap();
        t.begin_prepare().unwrap();
        t.begin_prepare().unwrap();
        // Written after the prepare was handed over: the next round's.
        t.write(batch(3)).unwrap();
        assert_eq!(t.prepare().unwrap(), vec!["write 1 deleting 1", "write 2 deleting 1"]);
        t.write(batch(4)).unwrap();
        t.begin_prepare().unwrap();
        assert_eq!(t.prepare().unwrap(), vec!["write 3 deleting 1", "write 4 deleting 1"]);
        assert!(t.prepare().unwrap().is_empty());
    }

    #[test]
    fn a_write_error_is_the_next_calls_error_and_the_thread_stops() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut t = FileThread::spawn("files".into(), Recorded { log, fail_at: 3 }).unwrap();
        t.write(batch(3)).unwrap();
        // The failed write's error comes back from a later call, whichever it is.
        let mut err = None;
        for n in 4..10 {
            if let Err(e) = t.write(batch(n)) {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => e,
            None => t.prepare().unwrap_err(),
        };
        assert_eq!(err.to_string(), Error::encode("a batch of 3 rows").to_string());
        assert!(t.prepare().is_err());
    }
}
