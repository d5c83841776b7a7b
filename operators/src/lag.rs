//! The `dsink_frontier_lag` gauge of one sink on one worker: how far, in logical time, the
//! committed frontier trails the sink's input frontier.
//!
//! The worker operator reports the input frontier on every activation and the committed frontier
//! whenever it moves; in coordinated mode the committer on worker 0 reports the committed
//! frontier (every worker's minimum) into worker 0's gauge, which it shares with worker 0's
//! operator (same thread), and the other workers keep no gauge. The gauge is input minus
//! committed as `u64` times ([`SinkTime::to_u64`]); 0 once both are complete; left as it was
//! while the input is complete and the committed frontier is not yet.

use crate::time::{Frontier, SinkTime};
use crate::worker_metrics::WorkerMetrics;
use metrics::Gauge;
use std::cell::Cell;
use std::rc::Rc;

/// The last input and committed frontiers seen (`None`: complete), and the gauge they set.
#[derive(Clone)]
pub(crate) struct FrontierLag {
    frontiers: Rc<Cell<(Option<u64>, Option<u64>)>>,
    gauge: Gauge,
}

impl FrontierLag {
    /// Registers the gauge of `metrics`' sink and worker (only where the lag is tracked).
    pub(crate) fn new(metrics: &WorkerMetrics) -> Self {
        let labels = [("sink", metrics.sink.to_string()), ("worker", metrics.worker().to_string())];
        let gauge = metrics::gauge!(crate::worker_metrics::FRONTIER_LAG, &labels);
        FrontierLag { frontiers: Rc::new(Cell::new((Some(0), Some(0)))), gauge }
    }

    /// The sink's input frontier moved (or may have).
    pub(crate) fn input<T: SinkTime>(&self, f: &Frontier<T>) {
        let (_, committed) = self.frontiers.get();
        self.publish((f.to_u64(), committed));
    }

    /// The committed frontier moved.
    pub(crate) fn committed<T: SinkTime>(&self, f: &Frontier<T>) {
        let (input, _) = self.frontiers.get();
        self.publish((input, f.to_u64()));
    }

    fn publish(&self, frontiers: (Option<u64>, Option<u64>)) {
        self.frontiers.set(frontiers);
        match frontiers {
            (Some(input), Some(committed)) => self.gauge.set(input.saturating_sub(committed) as f64),
            (_, None) => self.gauge.set(0.0),
            (None, Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SinkMetrics;
    use std::sync::Arc;

    #[test]
    fn lag_follows_both_frontiers() {
        // No recorder installed: the gauge is a no-op, the state is what is checked.
        let lag = FrontierLag::new(&Arc::new(SinkMetrics::default()).for_worker("s", 0));
        lag.input(&Frontier::at(7u64));
        assert_eq!(lag.frontiers.get(), (Some(7), Some(0)));
        lag.committed(&Frontier::at(5u64));
        assert_eq!(lag.frontiers.get(), (Some(7), Some(5)));
        lag.input(&Frontier::<u64>::complete());
        lag.committed(&Frontier::<u64>::complete());
        assert_eq!(lag.frontiers.get(), (None, None));
    }
}
