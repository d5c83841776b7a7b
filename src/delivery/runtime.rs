//! The tokio runtimes connectors run their asynchronous clients on, built one way.
//!
//! A connector's writer is synchronous (the operator calls it on a timely worker thread); it owns
//! a runtime and blocks on it. A single-threaded runtime suits clients driven one call at a time
//! (database sessions, catalog commits); a small multi-threaded one lets requests proceed while
//! the worker encodes the next batch (HTTP bulk loads). Failing to start one is an I/O error
//! that names `what` it was for.

use crate::error::{Error, Result};
use tokio::runtime::{Builder, Runtime};

/// A runtime on the calling thread, for `what` (e.g. "the Delta Lake sink").
pub fn current_thread(what: &str) -> Result<Runtime> {
    Builder::new_current_thread().enable_all().build().map_err(|e| Error::io(format!("starting {what}'s runtime"), e))
}

/// A runtime with `threads` worker threads (at least one) named `sink-<name>`, for `what`.
#[cfg(any(
    feature = "clickhouse",
    feature = "elasticsearch",
    feature = "doris",
    feature = "cassandra",
    feature = "deltalake",
    feature = "iceberg"
))]
pub fn multi_thread(threads: usize, name: &str, what: &str) -> Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(format!("sink-{name}"))
        .enable_all()
        .build()
        .map_err(|e| Error::io(format!("starting {what}'s runtime"), e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_runtime_runs_a_future() {
        let rt = super::current_thread("a test").expect("runtime");
        assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    }
}
