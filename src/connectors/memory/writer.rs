//! The in-memory target (committed records and each sink's progress records, kept together) and
//! its per-worker writers.

use super::fault::{Armed, Fault, FaultPoint};
use crate::connectors::RecordWriter;
use crate::envelope::Op;
use crate::error::{Error, ErrorKind, Result};
use crate::record::RecordBatch;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerProgress};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// A committed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The sink that wrote it (its name).
    pub sink: String,
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
    /// Each sink's progress records, by sink name.
    progress: BTreeMap<String, Vec<WorkerProgress<u64>>>,
    commits: u64,
    faults: Vec<Armed>,
    fired: u64,
    /// Pipelined commits: a started commit becomes durable after this many polls.
    pipeline: Option<u32>,
}

impl State {
    /// Whether an injected fault strikes this call (`point` by `sink` on `worker`); counts it.
    fn strike(&mut self, point: FaultPoint, sink: &str, worker: usize) -> bool {
        // Every matching fault counts the call, so no short-circuit.
        let mut struck = false;
        for armed in &mut self.faults {
            struck |= armed.strikes(point, sink, worker);
        }
        if struck {
            self.fired += 1;
        }
        struck
    }
}

/// A transactional in-memory target shared by all workers of a process.
///
/// Several sinks may write to one target: each sink's records carry its name, and each sink
/// resumes from its own progress records only.
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

    /// A writer for one worker of the sink called `sink`.
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

    /// Every committed record of every sink, in commit order.
    pub fn records(&self) -> Vec<StoredRecord> {
        self.state.lock().expect("state").records.clone()
    }

    /// The committed records of the sink called `sink`, in commit order.
    pub fn records_of(&self, sink: &str) -> Vec<StoredRecord> {
        self.state.lock().expect("state").records.iter().filter(|r| r.sink == sink).cloned().collect()
    }

    /// The progress each worker committed, of every sink (in the order of the sinks' names; see
    /// [`progress_of`](Self::progress_of) for one sink's).
    pub fn progress(&self) -> Vec<WorkerProgress<u64>> {
        self.state.lock().expect("state").progress.values().flatten().cloned().collect()
    }

    /// The progress each worker of the sink called `sink` committed: what its `resume` reads.
    pub fn progress_of(&self, sink: &str) -> Vec<WorkerProgress<u64>> {
        self.state.lock().expect("state").progress.get(sink).cloned().unwrap_or_default()
    }

    /// The number of applied commits (an ambiguous commit was applied, so it counts).
    pub fn commits(&self) -> u64 {
        self.state.lock().expect("state").commits
    }

    /// Makes every commit after the next `n` fail (as a crash between write and commit would):
    /// `inject(Fault::at(FaultPoint::Commit).after(n))`.
    pub fn fail_commit_after(&self, n: u64) {
        self.inject(Fault::at(FaultPoint::Commit).after(n));
    }

    /// Injects `fault`, in addition to those injected before (until [`heal`](Self::heal)).
    pub fn inject(&self, fault: Fault) {
        self.state.lock().expect("state").faults.push(Armed { fault, seen: 0 });
    }

    /// How many calls injected faults have failed so far, over the target's life ([`heal`](Self::heal)
    /// does not reset it): a test tells from it whether a fault it injected actually fired.
    pub fn faults_fired(&self) -> u64 {
        self.state.lock().expect("state").fired
    }

    /// Makes this target's writers pipelined: a commit only starts, and becomes durable (applied)
    /// after `polls` more calls of `durable` — as a target acknowledging asynchronously would.
    pub fn pipeline(&self, polls: Option<u32>) {
        self.state.lock().expect("state").pipeline = polls;
    }

    /// Stops injecting failures: removes every injected fault.
    pub fn heal(&self) {
        self.state.lock().expect("state").faults.clear();
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
        if s.strike(FaultPoint::Commit, &self.sink, ctx.index) {
            return Err(Error::new(
                ErrorKind::Fatal,
                format!("sink `{}`: injected commit failure on worker {}", self.sink, ctx.index),
            ));
        }
        let ambiguous = s.strike(FaultPoint::AmbiguousCommit, &self.sink, ctx.index);
        s.records.append(&mut records);
        let record: WorkerProgress<u64> = point.record(ctx, upper);
        let progress = s.progress.entry(self.sink.clone()).or_default();
        progress.retain(|p| !(p.generation == record.generation && p.worker == record.worker));
        progress.push(record);
        s.commits += 1;
        if ambiguous {
            return Err(Error::new(
                ErrorKind::Retriable,
                format!(
                    "sink `{}`: injected ambiguous commit on worker {} (applied, reported as failed)",
                    self.sink, ctx.index
                ),
            ));
        }
        Ok(())
    }
}

impl RecordWriter for MemoryWriter {
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        self.ctx = Some(ctx);
        let s = self.target.state.lock().expect("state");
        let progress = s.progress.get(&self.sink).map_or(&[][..], Vec::as_slice);
        let point = resolve_resume(progress, ctx)?;
        let frontier = point.frontier;
        self.resume = Some(point);
        Ok(frontier)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let worker = self.ctx.map_or(0, |c| c.index);
        if self.target.state.lock().expect("state").strike(FaultPoint::Write, &self.sink, worker) {
            return Err(Error::new(
                ErrorKind::Retriable,
                format!("sink `{}`: injected write failure on worker {worker}", self.sink),
            ));
        }
        self.staged.extend(batch.iter().map(|r| StoredRecord {
            sink: self.sink.clone(),
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
