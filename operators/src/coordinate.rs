//! The commit protocol of coordinated sinks: one commit for all workers, made on worker 0.
//!
//! Every worker's sink operator sends a [`Round`] per finished round — its prepared work, or the
//! failure that stopped it — to the committer on worker 0, which makes all prepared work durable
//! in one commit and records every worker's frontier. Whatever stops the committer (a worker's
//! failure, or its own) becomes a [`Notice`] to every worker, so every worker's handle reports
//! an error and nothing more is committed. Everything travels on dataflow edges: it works with
//! the workers in one process or in several.

use crate::handle::{Committed, SinkHandle};
use crate::lag::FrontierLag;
use crate::time::{Frontier, SinkTime};
use crate::worker_metrics::WorkerMetrics;
use crate::writer::{Committer, Prepared};
use crate::OperatorError;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Stream;
use timely::ExchangeData;

/// What a worker sends the committer (coordinated mode).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "P: Serialize, T: Serialize",
    deserialize = "P: serde::de::DeserializeOwned, T: serde::de::DeserializeOwned"
))]
pub(crate) enum Round<P, T> {
    /// The worker's work up to a frontier, ready to commit.
    Prepared { prepared: Prepared<P, T>, changes: u64 },
    /// The worker's sink stopped with an error: no later round of it will come.
    Failed { worker: usize, message: String },
}

/// What the committer tells a worker (coordinated mode).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: serde::de::DeserializeOwned"))]
pub(crate) enum Notice<T> {
    /// A commit (sent to worker 0 only), for the committed stream.
    Committed(Committed<T>),
    /// The sink stopped because `source` (a worker, or the committer) failed with `message`
    /// (sent to every worker).
    Failed { source: String, message: String },
}

/// The error a worker's handle receives when another worker's failure stopped the coordinated sink.
fn stopped_by(sink: &str, source: &str, message: &str) -> OperatorError {
    OperatorError::PeerFailed { sink: sink.to_string(), source: source.to_string(), message: message.to_string() }
}

/// The committer (worker 0): commits the workers' prepared rounds, and turns any worker's failure
/// (or its own) into a notice for every worker. Its capability, held at the committed frontier,
/// is what the probe waits on; notices are sent at it before it is released.
pub(crate) fn committer_operator<'scope, T, P, C, MC, E>(
    prepared: Stream<'scope, T, Vec<Round<P, T>>>,
    name: &str,
    metrics: WorkerMetrics,
    lag: Option<FrontierLag>,
    make_committer: MC,
    handle: SinkHandle<T, E>,
) -> Stream<'scope, T, Vec<(usize, Notice<T>)>>
where
    T: SinkTime,
    P: ExchangeData + Clone,
    E: From<OperatorError> + std::fmt::Display + 'static,
    C: Committer<P, T, Error = E>,
    MC: FnOnce() -> Result<C, E> + 'static,
{
    let scope = prepared.scope();
    let (index, peers) = (scope.index(), scope.peers());
    let mut builder = OperatorBuilder::new(format!("SinkCommit({name})"), scope);
    let mut input = builder.new_input(prepared, Exchange::new(|_: &Round<P, T>| 0));
    let (out, stream) = builder.new_output::<Vec<(usize, Notice<T>)>>();
    let mut out = OutputBuilder::from(out);
    let activator = scope.activator_for(builder.operator_info().address);
    let name = name.to_string();

    builder.build(move |caps| {
        let mut cap = caps.into_iter().next();
        let mut committer = None;
        let mut frontiers: Vec<Frontier<T>> = vec![Frontier::minimum(); peers];
        // A failure to announce to every worker: who failed, and its error.
        let mut failure: Option<(String, String)> = None;
        let fail = {
            let (name, metrics) = (name.clone(), metrics.clone());
            move |handle: &SinkHandle<T, E>, e: E| {
                tracing::error!(sink = %name, error = %e, "sink coordinator stopped");
                metrics.error();
                let message = e.to_string();
                handle.fail(e);
                ("the committer on worker 0".to_string(), message)
            }
        };
        if index != 0 {
            // Only worker 0 commits; the probe sees its capability through progress tracking.
            cap = None;
        } else {
            match make_committer().and_then(|mut c| c.resume(peers).map(|f| (c, f))) {
                Ok((c, recorded)) => {
                    if !recorded.is_empty() {
                        frontiers = recorded;
                    }
                    let min = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
                    handle.set_committed(min);
                    if let Some(lag) = &lag {
                        lag.committed(&min);
                    }
                    match min.time() {
                        Some(t) => cap.as_mut().expect("fresh").downgrade(t),
                        None => cap = None,
                    }
                    committer = Some(c);
                }
                Err(e) => {
                    // Outputs cannot be sent from here: announce it in the first activation.
                    failure = Some(fail(&handle, e));
                    activator.activate();
                }
            }
        }
        let mut pending: Vec<Prepared<P, T>> = Vec::new();
        let mut pending_changes = 0u64;

        move |frontiers_in| {
            let input_frontier = Frontier::from_antichain(frontiers_in[0].frontier());
            input.for_each(|_, data| {
                for round in data.drain(..) {
                    match round {
                        Round::Prepared { prepared, changes } => {
                            pending_changes += changes;
                            pending.push(prepared);
                        }
                        Round::Failed { worker, message } => {
                            if committer.is_some() && failure.is_none() {
                                failure = Some((format!("worker {worker}"), message));
                            }
                        }
                    }
                }
            });
            // Commit, unless some worker failed: then nothing more is committed.
            if let (Some(c), None) = (committer.as_mut(), &failure) {
                let all_present = (0..peers).all(|w| pending.iter().any(|p| p.worker == w));
                if !pending.is_empty()
                    && (all_present
                        || input_frontier.is_complete()
                        || input_frontier > frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum))
                {
                    let mut next = frontiers.clone();
                    for p in &pending {
                        next[p.worker] = next[p.worker].max(p.upper);
                    }
                    let batch = std::mem::take(&mut pending);
                    let span = tracing::info_span!(
                        "commit",
                        sink = %name,
                        worker = index,
                        upper = ?next.iter().min(),
                        prepared = batch.len(),
                        changes = pending_changes
                    );
                    let started = Instant::now();
                    let committed = span.in_scope(|| {
                        crate::crash_point("round.begin");
                        let committed = c.commit(batch, &next);
                        if committed.is_ok() {
                            crate::crash_point("round.end");
                        }
                        committed
                    });
                    match committed {
                        Ok(()) => {
                            frontiers = next;
                            metrics.commit_took(started.elapsed());
                            metrics.commits(1);
                            let min = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
                            handle.set_committed(min);
                            if let Some(lag) = &lag {
                                lag.committed(&min);
                            }
                            if let Some(cap_ref) = cap.as_mut() {
                                let record = Committed { worker: 0, upper: min, changes: pending_changes };
                                out.activate().session(&*cap_ref).give((0, Notice::Committed(record)));
                                pending_changes = 0;
                                match min.time() {
                                    Some(t) => cap_ref.downgrade(t),
                                    None => cap = None,
                                }
                            }
                        }
                        Err(e) => failure = Some(fail(&handle, e)),
                    }
                }
            }
            if let Some((source, message)) = failure.take() {
                // Tell every worker, at the committed frontier: no worker's probe can pass it
                // before that worker has read the notice and failed its handle.
                if let Some(cap_ref) = cap.as_ref() {
                    let mut o = out.activate();
                    let mut session = o.session(cap_ref);
                    for w in 0..peers {
                        session.give((w, Notice::Failed { source: source.clone(), message: message.clone() }));
                    }
                }
                cap = None;
                committer = None;
            }
            if committer.is_none() || (input_frontier.is_complete() && pending.is_empty()) {
                pending.clear();
                cap = None;
            }
        }
    });
    stream
}

/// Every worker: passes the committer's commit records on as the committed stream, and fails
/// this worker's handle when the committer announces a failure.
pub(crate) fn notice_operator<'scope, T, E>(
    notices: Stream<'scope, T, Vec<(usize, Notice<T>)>>,
    name: &str,
    handle: SinkHandle<T, E>,
) -> Stream<'scope, T, Vec<Committed<T>>>
where
    T: SinkTime,
    E: From<OperatorError> + std::fmt::Display + 'static,
{
    let scope = notices.scope();
    let index = scope.index();
    let mut builder = OperatorBuilder::new(format!("SinkCommitted({name})"), scope);
    let mut input = builder.new_input(notices, Exchange::new(|n: &(usize, Notice<T>)| n.0 as u64));
    let (out, stream) = builder.new_output::<Vec<Committed<T>>>();
    let mut out = OutputBuilder::from(out);
    let name = name.to_string();

    builder.build(move |caps| {
        drop(caps);
        move |_frontiers| {
            input.for_each(|cap, data| {
                let mut o = out.activate();
                let mut session = o.session(&cap);
                for (_, notice) in data.drain(..) {
                    match notice {
                        Notice::Committed(record) => session.give(record),
                        // The failing worker's handle already holds its own error.
                        Notice::Failed { source, message } => {
                            if !handle.stopped() {
                                let e = stopped_by(&name, &source, &message);
                                tracing::error!(sink = %name, worker = index, error = %e, "sink stopped");
                                handle.fail(e.into());
                            }
                        }
                    }
                }
            });
        }
    });
    stream
}
