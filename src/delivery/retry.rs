//! Retries with capped exponential backoff.
//!
//! A sequence made with a worker's counters ([`Backoff::counting`], [`retry_counted`],
//! [`retry_blocking_counted`]) adds every retried attempt to `SinkMetrics::retries` and the
//! `dsink_retries_total` counter of that sink and worker.

use crate::error::{Error, Result};
use differential_sinks_operators::WorkerMetrics;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long and how often to retry a retriable failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
        }
    }
}

/// The delays of one retry sequence.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    next: Duration,
    started: Instant,
    attempts: u32,
    seed: u64,
    counter: Option<WorkerMetrics>,
}

impl Backoff {
    /// Starts a sequence.
    pub fn new(policy: RetryPolicy) -> Self {
        let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        Backoff { next: policy.initial, policy, started: Instant::now(), attempts: 0, seed, counter: None }
    }

    /// Counts each retry this sequence allows in `metrics` (none: counts nothing).
    pub fn counting(mut self, metrics: Option<&WorkerMetrics>) -> Self {
        self.counter = metrics.cloned();
        self
    }

    /// The delay before the next attempt, or `None` once the deadline has passed.
    ///
    /// ```
    /// use differential_sinks::delivery::{Backoff, RetryPolicy};
    /// use std::time::Duration;
    /// let mut b = Backoff::new(RetryPolicy { initial: Duration::from_millis(10), max_delay: Duration::from_millis(40), deadline: Duration::from_secs(60) });
    /// let d: Vec<_> = (0..5).map(|_| b.next_delay().unwrap()).collect();
    /// assert!(d.iter().all(|d| *d <= Duration::from_millis(40)));
    /// assert!(d[4] >= Duration::from_millis(20));
    /// ```
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.started.elapsed() >= self.policy.deadline {
            return None;
        }
        self.attempts += 1;
        if let Some(m) = &self.counter {
            m.retries(1);
        }
        // Jitter: between half and all of the current step.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.next;
        let half = step / 2;
        let jitter = Duration::from_nanos(self.seed % (half.as_nanos() as u64 + 1));
        self.next = (self.next * 2).min(self.policy.max_delay);
        Some(half + jitter)
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// Runs `op` until it succeeds, fails with a non-retriable error, or the policy's deadline
/// passes (then the last error is returned, saying how often it was tried).
pub fn retry_blocking<T>(policy: &RetryPolicy, what: &str, op: impl FnMut() -> Result<T>) -> Result<T> {
    retry_blocking_counted(policy, what, None, op)
}

/// [`retry_blocking`], counting each retry in `metrics`.
pub fn retry_blocking_counted<T>(
    policy: &RetryPolicy,
    what: &str,
    metrics: Option<&WorkerMetrics>,
    mut op: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut backoff = Backoff::new(policy.clone()).counting(metrics);
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() => match backoff.next_delay() {
                Some(d) => {
                    tracing::warn!(error = %e, attempt = backoff.attempts(), delay_ms = d.as_millis() as u64, "{what}: retrying");
                    std::thread::sleep(d);
                }
                None => return Err(gave_up(e, what, backoff.attempts())),
            },
            Err(e) => return Err(e),
        }
    }
}

/// The asynchronous form of [`retry_blocking`].
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, what: &str, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_counted(policy, what, None, op).await
}

/// [`retry`], counting each retry in `metrics`.
pub async fn retry_counted<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    metrics: Option<&WorkerMetrics>,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(policy.clone()).counting(metrics);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() => match backoff.next_delay() {
                Some(d) => {
                    tracing::warn!(error = %e, attempt = backoff.attempts(), delay_ms = d.as_millis() as u64, "{what}: retrying");
                    tokio::time::sleep(d).await;
                }
                None => return Err(gave_up(e, what, backoff.attempts())),
            },
            Err(e) => return Err(e),
        }
    }
}

fn gave_up(e: Error, what: &str, attempts: u32) -> Error {
    Error::new(e.kind(), format!("{what}: still failing after {} attempts: {e}", attempts + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn retries_only_retriable() {
        let p = RetryPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let mut n = 0;
        let v = retry_blocking(&p, "op", || {
            n += 1;
            if n < 3 {
                Err(Error::new(ErrorKind::Retriable, "busy"))
            } else {
                Ok(n)
            }
        })
        .unwrap();
        assert_eq!(v, 3);
        let mut m = 0;
        let e = retry_blocking::<()>(&p, "op", || {
            m += 1;
            Err(Error::new(ErrorKind::Fatal, "denied"))
        })
        .unwrap_err();
        assert_eq!((m, e.kind()), (1, ErrorKind::Fatal));
    }

    #[test]
    fn counts_each_retry_in_the_worker_metrics() {
        let p = RetryPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let shared = std::sync::Arc::new(differential_sinks_operators::SinkMetrics::default());
        let metrics = shared.for_worker("s", 0);
        let mut n = 0;
        retry_blocking_counted(&p, "op", Some(&metrics), || {
            n += 1;
            if n < 4 {
                Err(Error::new(ErrorKind::Retriable, "busy"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        // Four attempts: the first and three retries.
        assert_eq!((n, shared.snapshot().retries), (4, 3));
    }

    #[test]
    fn gives_up_at_deadline() {
        let p = RetryPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_millis(20),
        };
        let e = retry_blocking::<()>(&p, "send", || Err(Error::new(ErrorKind::Retriable, "down"))).unwrap_err();
        assert!(e.to_string().contains("still failing after"), "{e}");
    }
}
