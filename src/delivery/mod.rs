//! Shared delivery machinery every connector composes instead of rewriting:
//!
//! * [`retry`] — classify errors, retry the retriable ones with capped exponential backoff and
//!   jitter, give up with the last error after a deadline;
//! * [`bridge`] — run an asynchronous client (tokio) behind the synchronous writer contract,
//!   with a bounded queue: a worker that outruns its target blocks instead of buffering without
//!   bound, and write errors surface at the next call;
//! * [`runtime`] — the tokio runtimes connectors block on, built one way.

pub mod bridge;
pub mod retry;
pub mod runtime;

pub use bridge::{AsyncRecordWriter, Bridge};
pub use retry::{Backoff, RetryPolicy};
