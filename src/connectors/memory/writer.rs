//! The in-memory target and its per-worker writers.

use crate::connectors::RecordWriter;
use crate::envelope::Op;
use crate::error::{Error, ErrorKind, Result};
use crate::record::RecordBatch;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerProgress};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// A committed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The worker that wrote it.
    pub worker: usize,
    /// Its logical time.
    pub time: u64,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded value (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// The operation.
    pub op: Op,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<StoredRecord>,
    progress: Vec<WorkerProgress<u64>>,
    commits: u64,
    fail_after: Option<u64>,
    /// Pipelined commits: a started commit becomes durable after this many polls.
    pipeline: Option<u32>,
}

/// A transactional in-memory target shared by all workers of a process.
#[derive(Debug, Default)]
pub struct MemoryTarget {
    state: Mutex<State>,
}

fn registry() -> &'static Mutex<HashMap<String, Arc<MemoryTarget>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<MemoryTarget>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl MemoryTarget {
    /// A fresh, unnamed target.
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryTarget::default())
    }

    /// The target called `name` in this process, created on first use.
    pub fn named(name: &str) -> Arc<Self> {
        Arc::clone(registry().lock().expect("registry").entry(name.to_string()).or_default())
    }

    /// A writer for one worker.
    pub fn writer(self: &Arc<Self>, sink: &str) -> MemoryWriter {
        let pipeline = self.state.lock().expect("state").pipeline;
        MemoryWriter {
            target: Arc::clone(self),
            sink: sink.to_string(),
            ctx: None,
            resume: None,
            staged: Vec::new(),
            pipeline,
            open: VecDeque::new(),
        }
    }

    /// Every committed record, in commit order.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.state.lock().expect("state").records.clone()
    }

    /// The progress each worker committed.
    pub fn progress(&self) -> Vec<WorkerProgress<u64>> {
        self.state.lock().expect("state").progress.clone()
    }

    /// The number of successful commits.
    pub fn commits(&self) -> u64 {
        self.state.lock().expect("state").commits
    }

    /// Makes every commit after the next `n` fail (as a crash between write and commit would).
    pub fn fail_commit_after(&self, n: u64) {
        let mut s = self.state.lock().expect("state");
        s.fail_after = Some(s.commits + n);
    }

    /// Makes this target's writers pipelined: a commit only starts, and becomes durable (applied)
    /// after `polls` more calls of `durable` — as a target acknowledging asynchronously would.
    pub fn pipeline(&self, polls: Option<u32>) {
        self.state.lock().expect("state").pipeline = polls;
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        self.state.lock().expect("state").fail_after = None;
    }
}

/// One worker's writer into a [`MemoryTarget`].
#[derive(Debug)]
pub struct MemoryWriter {
    target: Arc<MemoryTarget>,
    sink: String,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    staged: Vec<StoredRecord>,
    pipeline: Option<u32>,
    /// Pipelined commits started and not yet applied: frontier, records, polls left.
    open: VecDeque<(Frontier<u64>, Vec<StoredRecord>, u32)>,
}

impl MemoryWriter {
    /// Applies one commit to the target, or fails as injected.
    fn apply(&self, upper: Frontier<u64>, mut records: Vec<StoredRecord>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let mut s = self.target.state.lock().expect("state");
        if s.fail_after.is_some_and(|n| s.commits >= n) {
            return Err(Error::new(ErrorKind::Fatal, format!("sink `{}`: injected commit failure", self.sink)));
        }
        s.records.append(&mut records);
        let record: WorkerProgress<u64> = point.record(ctx, upper);
        s.progress.retain(|p| !(p.generation == record.generation && p.worker == record.worker));
        s.progress.push(record);
        s.commits += 1;
        Ok(())
    }
}

impl RecordWriter for MemoryWriter {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        self.ctx = Some(ctx);
        let s = self.target.state.lock().expect("state");
        let point = resolve_resume(&s.progress, ctx)?;
        let frontier = point.frontier;
        self.resume = Some(point);
        Ok(frontier)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let worker = self.ctx.map_or(0, |c| c.index);
        self.staged.extend(batch.iter().map(|r| StoredRecord {
            worker,
            time: batch.time,
            key: r.key.to_vec(),
            value: r.value.map(<[u8]>::to_vec),
            op: r.op,
        }));
        Ok(())
    }

    fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        let records = std::mem::take(&mut self.staged);
        match self.pipeline {
            Some(polls) => {
                self.open.push_back((upper, records, polls));
                Ok(())
            }
            None => self.apply(upper, records),
        }
    }

    fn pipelined(&self) -> bool {
        self.pipeline.is_some()
    }

    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<u64>>> {
        let mut done = None;
        while let Some((upper, _, polls)) = self.open.front_mut() {
            if *polls > 0 && !wait {
                *polls -= 1;
                break;
            }
            let upper = *upper;
            let (_, records, _) = self.open.pop_front().expect("checked");
            self.apply(upper, records)?;
            done = Some(upper);
        }
        Ok(done)
    }
}
