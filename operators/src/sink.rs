//! The sink operator: from a collection's updates to per-key changes, commits and a committed
//! frontier.
//!
//! ```text
//!  collection (V, T, ±1)
//!        │  map: key = key_fn(&V)                      (on the producing worker; or a
//!        │                                              collection keyed there, KeyedSinkExt,
//!        │                                              its values perhaps encoded rows)
//!        │  exchange by route_hash(key)                (one worker owns each key)
//!        ▼
//!  ┌────────────────────── Sink operator (every worker) ───────────────────────┐
//!  │ drop updates at times < resume frontier (read once from the writer)       │
//!  │ buffer by time within buffer.max_bytes; past it, the largest times are    │
//!  │   sorted into runs and spilled to disk (spill.rs, buffer.rs)              │
//!  │ when the input frontier passes t: merge t's memory part and runs,         │
//!  │   consolidated, largest keys first (merge.rs); cut a chunk, group by key  │
//!  │   → changes / key violations                                              │
//!  │   writer.write(t, changes)          (times in order, chunks in key order; │
//!  │                                      ~20 ms of chunks per activation)     │
//!  │ commit cadence (changes / elapsed time / input end):                      │
//!  │   independent:  writer.commit(upper)  → emit Committed, downgrade cap     │
//!  │     pipelined:  commit only starts it; later times are written while      │
//!  │                 writer.durable() → emit Committed, downgrade cap          │
//!  │   coordinated:  writer.begin_prepare(upper); the next activation writes   │
//!  │                 on, then writer.prepare(upper) → emit Prepared to worker 0│
//!  │                 (on failure: emit Failed to worker 0, then stop)          │
//!  └───────────────┬───────────────────────────────────────┬───────────────────┘
//!                  │ committed / prepared                   │ dead letters (V, T, ±n)
//!                  ▼                                        ▼
//!     (coordinated only) Committer on worker 0:      a collection the user can sink
//!       committer.commit(all tokens, every worker's frontier) → Committed
//!       any worker's Failed, or its own error → Failed to every worker, stop
//!                  │ exchange to the addressed worker
//!                  ▼
//!     (coordinated only) on every worker: Committed → committed stream;
//!       Failed → fail this worker's handle (its sink operator stops too)
//! ```
//!
//! The committed stream's capability is held at the committed frontier, so `probe()` on it tells
//! exactly which times are durable in the target. When a writer fails, the operator records the
//! error in the [`SinkHandle`], stops delivering and releases its capabilities: the probe then
//! advances, so a caller waiting on it must check [`SinkHandle::error`] (or use
//! [`SinkHandle::step_until_committed`], which does).
//!
//! # What is guaranteed
//!
//! * **The order of a time's changes.** A time's updates are consolidated before anything else
//!   happens to them, so the changes a writer receives for a time — their order, and how a large
//!   time is split into several `write` calls — depend only on the time's consolidated changes
//!   (and the number of workers), never on how many raw updates produced them or in which order
//!   they arrived. A replay that consolidates to the same changes presents them identically, so a
//!   writer that commits inside a time may resume it by skipping the first n changes it made
//!   durable. Whether the time was held in memory or spilled to disk (and in how many runs)
//!   changes nothing of this. (Within a call, changes come in the order of their keys; calls are
//!   cut from the end of that order, so the last keys come first.)
//! * **Memory.** What a worker holds for undelivered times is bounded by its
//!   [`BufferConfig`](crate::BufferConfig) budget (as that budget counts it), whatever the size
//!   of a time: the rest is on disk in sorted runs, merged back with one buffered reader per run
//!   (at most 16 runs and the memory part: past 16, a time's smallest runs are merged into one),
//!   and a time is delivered a chunk at a time.
//!   A spill that fails stops the sink with [`OperatorError::Spill`] before the time is written.
//! * **Progress while a large time is delivered.** Delivery takes about 20 ms of chunks per
//!   activation and then yields, so other operators on the worker run in between; the time's
//!   input keeps arriving (and spilling) meanwhile.
//! * **Failures, coordinated mode.** A failure of any worker — its writer's `resume`, `write` or
//!   `prepare`, a key violation under [`ViolationPolicy::Fail`], or the committer's `resume` or
//!   `commit` — stops the sink on every worker: the failure travels along the dataflow's edges to
//!   the committer on worker 0, which commits nothing more and sends a notice to every worker at
//!   the committed frontier, before it releases that frontier. So no worker's probe passes a time
//!   the committer did not commit before that worker's handle has failed, and every worker's
//!   [`SinkHandle::step_until_committed`] returns an error: the failing worker (and, for the
//!   committer's own errors, worker 0) its own error, the others an error naming the failing
//!   worker and its message. This holds with workers in one process or in several.
//! * **Failures, independent mode.** Each worker commits for itself, so a failure stops only that
//!   worker's sink: its handle reports the error, and the other workers go on delivering and
//!   committing their own keys. Since the failed worker releases its capabilities, the others'
//!   probes then stop waiting for it — their `step_until_committed` returns `Ok` for what *they*
//!   committed. A caller must check every worker's handle.

use crate::buffer::{Complete, TimeBuffers};
use crate::change::{changes_from_ordered, Change, Violation, ViolationPolicy};
use crate::config::SinkConfig;
use crate::finish::Finish;
use crate::handle::SinkHandle;
use crate::lag::FrontierLag;
use crate::merge::{self, Update};
use crate::route::route_hash;
use crate::spill::SpillError;
use crate::time::{Frontier, SinkTime};
use crate::worker_metrics::WorkerMetrics;
use crate::writer::{SinkWriter, WorkerContext};
use crate::OperatorError;
use differential_dataflow::collection::AsCollection;
use differential_dataflow::VecCollection;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::ExchangeData;

/// The worker operator's two capabilities: progress (committed/prepared) and dead letters.
struct Caps<T: SinkTime> {
    progress: Option<Capability<T>>,
    dead: Option<Capability<T>>,
}

impl<T: SinkTime> Caps<T> {
    fn new(caps: Vec<Capability<T>>) -> Self {
        let mut it = caps.into_iter();
        Caps { progress: it.next(), dead: it.next() }
    }
    fn clear(&mut self) {
        self.progress = None;
        self.dead = None;
    }
    fn downgrade(&mut self, f: &Frontier<T>) {
        self.downgrade_progress(f);
        self.downgrade_dead(f);
    }
    fn downgrade_progress(&mut self, f: &Frontier<T>) {
        match (f.time(), self.progress.as_mut()) {
            (Some(t), Some(c)) => c.downgrade(t),
            (None, _) => self.progress = None,
            _ => {}
        }
    }
    fn downgrade_dead(&mut self, f: &Frontier<T>) {
        match (f.time(), self.dead.as_mut()) {
            (Some(t), Some(c)) => c.downgrade(t),
            (None, _) => self.dead = None,
            _ => {}
        }
    }
}

/// A pipelined writer may have at most this many commits started and not yet durable; the
/// operator waits for the oldest before starting another.
const MAX_COMMITS_IN_FLIGHT: usize = 4;

/// How often the operator asks a pipelined writer about its open commits.
const POLL_IN_FLIGHT: Duration = Duration::from_millis(1);

/// At most about this much time goes into delivering complete times in one activation.
const DELIVERY_SLICE: Duration = Duration::from_millis(20);

/// The operator's error for a failed spill.
fn spill_error(sink: &str, e: SpillError) -> OperatorError {
    OperatorError::Spill { sink: sink.to_string(), message: e.to_string() }
}

/// The worker operator's progress output (committed or prepared rounds).
type ProgressOutput<T, O> = OutputBuilder<T, CapacityContainerBuilder<Vec<O>>>;

/// The worker operator's two output streams: progress records and dead letters.
pub(crate) type WorkerStreams<'scope, T, O, V> = (Stream<'scope, T, Vec<O>>, VecCollection<'scope, T, V, isize>);

/// Per-worker state of the sink operator between activations.
struct WorkerState<K, V, T, O> {
    resume: Frontier<T>,
    /// Updates before this time contradict the declared start of the input.
    input_start: Option<T>,
    /// Updates of times not yet delivered, by time, within the memory budget.
    buffers: TimeBuffers<K, V, T>,
    /// The complete time being delivered, across activations.
    delivering: Option<Complete<K, V, T>>,
    /// The updates of the chunk being cut.
    chunk: Vec<Update<K, V>>,
    /// Every time before this has been written.
    written: Frontier<T>,
    /// Every time before this is finished (committed or prepared; for a pipelined writer,
    /// committed means started).
    finished: Frontier<T>,
    /// Commits a pipelined writer started and has not yet reported durable, oldest first, with
    /// when each started.
    in_flight: VecDeque<(Frontier<T>, O, Instant)>,
    /// A coordinated worker's prepare handed to its writer ([`Finish::begin`]) and finished in
    /// the next activation, after that activation's delivery: its frontier, its changes, and
    /// the time its start took.
    preparing: Option<(Frontier<T>, u64, Duration)>,
    changes_since_finish: u64,
    last_finish: Instant,
    changes: Vec<Change<K, V>>,
    violations: Vec<Violation<K, V>>,
    failed: bool,
    /// What to send downstream about this worker's failure before releasing the capabilities.
    report: Option<O>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn worker_operator<'scope, T, V, K, W, F>(
    keyed: VecCollection<'scope, T, (K, V), isize>,
    config: &SinkConfig,
    mut writer: W,
    mut finisher: F,
    handle: SinkHandle<T, W::Error>,
    metrics: WorkerMetrics,
    lag: Option<FrontierLag>,
) -> WorkerStreams<'scope, T, F::Out, V>
where
    T: SinkTime,
    V: ExchangeData + Ord + Clone,
    K: ExchangeData + Ord + Hash + Clone + Debug,
    W: SinkWriter<K, V, T>,
    F: Finish<K, V, T, W> + 'static,
{
    let scope = keyed.inner.scope();
    let ctx = WorkerContext { index: scope.index(), peers: scope.peers(), layout: config.layout };

    let mut builder = OperatorBuilder::new(format!("Sink({})", config.name), scope);
    let mut input = builder.new_input(keyed.inner, Exchange::new(|u: &((K, V), T, isize)| route_hash(&u.0 .0)));
    let (out0, stream0) = builder.new_output::<Vec<F::Out>>();
    let (out1, stream1) = builder.new_output::<Vec<(V, T, isize)>>();
    let mut out0 = OutputBuilder::from(out0);
    let mut out1 = OutputBuilder::from(out1);
    let activator = scope.activator_for(builder.operator_info().address);

    let policy = config.commit.clone();
    let pipelined = F::DURABLE && finisher.pipelined(&writer);
    let violations_policy = config.violations;
    let keyed = config.keyed;
    let write_chunk = config.write_chunk.max(1);
    let input_starts_at = config.input_starts_at.and_then(T::from_u64);
    let name = config.name.clone();
    let buffer = config.buffer.clone();

    builder.build(move |caps| {
        let mut caps = Caps::new(caps);
        let mut st = WorkerState {
            resume: Frontier::minimum(),
            input_start: None,
            buffers: TimeBuffers::new(buffer.max_bytes, &buffer.spill_dir, &name, ctx.index),
            delivering: None,
            chunk: Vec::new(),
            written: Frontier::minimum(),
            finished: Frontier::minimum(),
            in_flight: VecDeque::new(),
            preparing: None,
            changes_since_finish: 0,
            last_finish: Instant::now(),
            changes: Vec::new(),
            violations: Vec::new(),
            failed: false,
            report: None,
        };
        // A failure elsewhere (coordinated: another worker's, reported by the committer) stops
        // this operator too.
        handle.wake_on_failure(activator.clone());
        // Spill files a crashed run of this sink left behind go first.
        let cleaned = st.buffers.clean_stale().map_err(|e| spill_error(&name, e).into());
        let resumed = cleaned.and_then(|()| writer.resume(ctx)).and_then(|f| match input_starts_at {
            // An input restored from a snapshot at time s folds every change before s into s:
            // if s lies beyond the committed frontier, delivered and undelivered changes mix.
            Some(s) if f > Frontier::minimum() && Frontier::at(s) > f => Err(OperatorError::ResumeGap {
                sink: name.clone(),
                committed: format!("{f:?}"),
                input_starts: format!("{:?}", Frontier::at(s)),
            }
            .into()),
            _ => Ok(f),
        });
        st.input_start = input_starts_at;
        match resumed {
            Ok(f) => {
                st.resume = f;
                st.written = f;
                st.finished = f;
                if F::DURABLE {
                    handle.set_committed(f);
                    if let Some(lag) = &lag {
                        lag.committed(&f);
                    }
                }
                caps.downgrade(&f);
            }
            Err(e) => {
                tracing::error!(sink = %name, worker = ctx.index, error = %e, "sink failed to read its committed frontier");
                st.failed = true;
                // Outputs cannot be sent from here: keep the capabilities until the first
                // activation has reported the failure.
                st.report = F::failed(ctx.index, e.to_string());
                handle.fail(e);
                metrics.error();
                activator.activate();
            }
        }

        // Stops this operator: reports its failure downstream (coordinated: to the committer)
        // while it still holds a capability, then releases them all.
        let stop = |st: &mut WorkerState<K, V, T, F::Out>, caps: &mut Caps<T>, out0: &mut ProgressOutput<T, F::Out>| {
            if let (Some(report), Some(cap)) = (st.report.take(), caps.progress.as_ref()) {
                out0.activate().session(cap).give(report);
            }
            st.failed = true;
            st.buffers.clear();
            st.delivering = None;
            st.in_flight.clear();
            caps.clear();
        };

        move |frontiers| {
            let frontier = Frontier::from_antichain(frontiers[0].frontier());
            if !st.failed && handle.stopped() {
                // Stopped from outside this operator: nothing to report.
                st.failed = true;
            }
            if st.failed {
                stop(&mut st, &mut caps, &mut out0);
                input.for_each(|_, data| data.clear());
                return;
            }
            let fail = |st: &mut WorkerState<K, V, T, F::Out>,
                        caps: &mut Caps<T>,
                        out0: &mut ProgressOutput<T, F::Out>,
                        e: W::Error| {
                tracing::error!(sink = %name, worker = ctx.index, error = %e, "sink stopped");
                st.report = F::failed(ctx.index, e.to_string());
                handle.fail(e);
                metrics.error();
                stop(st, caps, out0);
            };

            // Stash input by time, dropping what an earlier run committed.
            let (mut received, mut dropped) = (0u64, 0u64);
            let mut early = None;
            let (input_start, resume) = (st.input_start, st.resume);
            input.for_each(|_cap, data| {
                received += data.len() as u64;
                dropped += st.buffers.absorb(data, |t| {
                    if input_start.is_some_and(|s| *t < s) {
                        early = Some(*t);
                    }
                    !resume.is_beyond(t)
                });
            });
            if let (Some(t), Some(s)) = (early, st.input_start) {
                let e = OperatorError::ResumeConflict {
                    message: format!("sink `{name}`: the input was declared to start at {s:?} but has an update at {t:?}"),
                };
                fail(&mut st, &mut caps, &mut out0, e.into());
                return;
            }
            metrics.updates_in(received);
            metrics.updates_already_committed(dropped);
            if st.buffers.over_budget() {
                match st.buffers.spill() {
                    Ok(spilled) => {
                        metrics.spilled_updates(spilled.updates);
                        metrics.spilled_bytes(spilled.bytes);
                    }
                    Err(e) => {
                        fail(&mut st, &mut caps, &mut out0, spill_error(&name, e).into());
                        return;
                    }
                }
            }

            // Write every complete time, in order, a chunk at a time; a large time is spread over
            // several activations, so that other operators (and this worker's progress) move on.
            let slice = Instant::now();
            loop {
                if st.delivering.is_none() {
                    match st.buffers.take_complete(&frontier) {
                        Ok(Some(complete)) => st.delivering = Some(complete),
                        Ok(None) => break,
                        Err(e) => {
                            fail(&mut st, &mut caps, &mut out0, spill_error(&name, e).into());
                            return;
                        }
                    }
                }
                let Some(d) = st.delivering.as_mut() else { break };
                let t = d.time;
                // Chunks are taken from the end of the time's consolidated updates, so neither
                // the changes nor a writer's encoded batch ever hold the whole time at once.
                let cut = if keyed {
                    merge::keyed_chunk(&mut d.merge, write_chunk, &mut st.chunk).map(|()| {
                        changes_from_ordered(&mut st.chunk, 0, &mut st.changes, &mut st.violations);
                    })
                } else {
                    merge::unkeyed_chunk(&mut d.merge, write_chunk, &mut st.chunk, &mut st.changes)
                };
                let done = cut.and_then(|()| d.merge.is_done());
                let done = match done {
                    Ok(done) => done,
                    Err(e) => {
                        fail(&mut st, &mut caps, &mut out0, spill_error(&name, e).into());
                        return;
                    }
                };
                if !st.violations.is_empty() {
                    let n = st.violations.len() as u64;
                    match violations_policy {
                        ViolationPolicy::Fail => {
                            metrics.violations_failed(n);
                            let v = &st.violations[0];
                            let e = OperatorError::KeyViolation {
                                sink: name.clone(),
                                time: format!("{t:?}"),
                                detail: v.to_string(),
                            };
                            fail(&mut st, &mut caps, &mut out0, e.into());
                            return;
                        }
                        ViolationPolicy::Skip => {
                            metrics.violations_skipped(n);
                            for v in st.violations.drain(..) {
                                tracing::warn!(sink = %name, time = ?t, "skipped: {v}");
                            }
                        }
                        ViolationPolicy::DeadLetter => {
                            metrics.violations_dead_lettered(n);
                            let cap =
                                caps.dead.as_ref().expect("dead-letter capability held while running").delayed(&t);
                            let mut out = out1.activate();
                            let mut session = out.session(&cap);
                            for v in st.violations.drain(..) {
                                for (value, diff) in v.updates {
                                    session.give((value, t, diff));
                                }
                            }
                        }
                    }
                }
                let n = st.changes.len() as u64;
                if n > 0 {
                    crate::crash_point("write");
                    if let Err(e) = writer.write(&t, &mut st.changes) {
                        fail(&mut st, &mut caps, &mut out0, e);
                        return;
                    }
                    st.changes.clear();
                    metrics.changes_out(n);
                    st.changes_since_finish += n;
                }
                if done {
                    if let Some(d) = st.delivering.take() {
                        st.buffers.release(d);
                    }
                }
                if slice.elapsed() >= DELIVERY_SLICE {
                    // More later: let the rest of the dataflow run.
                    activator.activate();
                    break;
                }
            }
            // Every time before the one being delivered (or the first complete one left) is
            // written.
            let written = match (&st.delivering, st.buffers.first_complete(&frontier)) {
                (Some(d), _) => Frontier::at(d.time),
                (None, Some(t)) => Frontier::at(t),
                (None, None) => frontier,
            };
            if written > st.written {
                st.written = written;
                caps.downgrade_dead(&written);
            }

            // Finish the prepare begun in the previous activation: the files closed while this
            // activation delivered the next round's changes.
            if let Some((upper, changes, began)) = st.preparing.take() {
                let span = tracing::info_span!("prepare", sink = %name, worker = ctx.index, upper = ?upper, changes);
                let started = Instant::now();
                let finished = span.in_scope(|| finisher.finish_round(&mut writer, &upper, changes, ctx.index));
                match finished {
                    Ok(out) => {
                        let mut o = out0.activate();
                        o.session(caps.progress.as_ref().expect("progress capability held while running")).give(out);
                        drop(o);
                        metrics.prepare_took(began + started.elapsed());
                        caps.downgrade_progress(&upper);
                    }
                    Err(e) => {
                        fail(&mut st, &mut caps, &mut out0, e);
                        return;
                    }
                }
            }

            // Commit (or prepare) per the cadence.
            if st.written > st.finished {
                let due = st.written.is_complete()
                    || policy.max_changes.is_some_and(|m| st.changes_since_finish >= m)
                    || st.last_finish.elapsed() >= policy.interval;
                if due {
                    let upper = st.written;
                    let changes = st.changes_since_finish;
                    let span = if F::DURABLE {
                        tracing::info_span!("commit", sink = %name, worker = ctx.index, upper = ?upper, changes)
                    } else {
                        tracing::info_span!("prepare", sink = %name, worker = ctx.index, upper = ?upper, changes)
                    };
                    let started = Instant::now();
                    if !F::DURABLE {
                        // A coordinated worker hands its writer the prepare and finishes it in
                        // the next activation, so that its files close while it delivers on.
                        if let Err(e) = span.in_scope(|| finisher.begin(&mut writer, &upper)) {
                            fail(&mut st, &mut caps, &mut out0, e);
                            return;
                        }
                        st.preparing = Some((upper, changes, started.elapsed()));
                        st.finished = upper;
                        st.changes_since_finish = 0;
                        st.last_finish = Instant::now();
                        activator.activate();
                        return;
                    }
                    let finished = span.in_scope(|| finisher.finish_round(&mut writer, &upper, changes, ctx.index));
                    match finished {
                        Ok(out) if pipelined => st.in_flight.push_back((upper, out, started)),
                        Ok(out) => {
                            let mut o = out0.activate();
                            o.session(caps.progress.as_ref().expect("progress capability held while running")).give(out);
                            drop(o);
                            metrics.commit_took(started.elapsed());
                            metrics.commits(1);
                            handle.set_committed(upper);
                            if let Some(lag) = &lag {
                                lag.committed(&upper);
                            }
                            caps.downgrade_progress(&upper);
                        }
                        Err(e) => {
                            fail(&mut st, &mut caps, &mut out0, e);
                            return;
                        }
                    }
                    st.finished = upper;
                    st.changes_since_finish = 0;
                    st.last_finish = Instant::now();
                } else {
                    activator.activate_after(policy.interval.saturating_sub(st.last_finish.elapsed()));
                }
            }

            // A pipelined writer's commits become durable while later times are written: move the
            // committed frontier as they do, waiting only at the end or when too many are open.
            if !st.in_flight.is_empty() {
                let wait = st.in_flight.len() > MAX_COMMITS_IN_FLIGHT || st.finished.is_complete();
                match finisher.durable(&mut writer, wait) {
                    Ok(Some(durable)) => {
                        let mut o = out0.activate();
                        let mut session =
                            o.session(caps.progress.as_ref().expect("progress capability held while running"));
                        let mut commits = 0;
                        while st.in_flight.front().is_some_and(|(upper, _, _)| *upper <= durable) {
                            let (upper, out, started) = st.in_flight.pop_front().expect("checked");
                            tracing::debug!(sink = %name, worker = ctx.index, upper = ?upper, "commit durable");
                            metrics.commit_took(started.elapsed());
                            session.give(out);
                            commits += 1;
                        }
                        drop(session);
                        drop(o);
                        metrics.commits(commits);
                        handle.set_committed(durable);
                        if let Some(lag) = &lag {
                            lag.committed(&durable);
                        }
                        caps.downgrade_progress(&durable);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        fail(&mut st, &mut caps, &mut out0, e);
                        return;
                    }
                }
                if !st.in_flight.is_empty() {
                    activator.activate_after(POLL_IN_FLIGHT);
                }
            }
            if let Some(lag) = &lag {
                lag.input(&frontier);
            }
            // Done once everything is written (none of it still being delivered) and finished.
            if st.written.is_complete() && st.written == st.finished && st.in_flight.is_empty() && st.preparing.is_none()
            {
                caps.clear();
            }
        }
    });

    (stream0, stream1.as_collection())
}
