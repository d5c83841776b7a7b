//! An in-memory target for tests and benchmarks (`test-utils` feature, `connector = memory`).
//!
//! It behaves like a transactional target: records written by a worker stay invisible until that
//! worker commits, and a commit stores the worker's frontier atomically with its records, which
//! `resume` reads back. Dropping a writer without committing loses what it wrote since its last
//! commit, as a crashed process would. Several sinks (by name) may share a target: each resumes
//! from its own progress records.
//!
//! Failures can be injected ([`MemoryTarget::inject`] a [`Fault`]): a failing `write`, a failing
//! commit, or an *ambiguous* commit that is applied but reports an error — for every worker or one
//! worker only, after a number of calls, once or from then on. [`MemoryTarget::faults_fired`]
//! counts the calls they failed, so a test can tell that its fault really happened.
//! ([`MemoryTarget::fail_commit_after`] and [`MemoryTarget::heal`] are the older shorthands.)
//!
//! Targets are found by name (`memory.name`), so an options map or `dsink` can reach one that a
//! test created.
//!
//! ```text
//!  worker w ── EnvelopeWriter (JSON records) ──► MemoryWriter: staged records
//!                                                  │ commit: records + progress record, at once
//!                                                  ▼
//!                                   MemoryTarget (records, progress per sink; faults)
//! ```
//!
//! Guarantee: exactly-once — a commit stores records and frontier together, and a restart
//! (a new writer on the same target) resumes from the sink's progress records.
//!
//! | option | meaning |
//! |---|---|
//! | `memory.name` | the target's name (default `default`) |
//!
//! Files: `config.rs` (options), `fault.rs` (injected failures), `writer.rs` (the target, which
//! also keeps the progress records, and its writers).

mod config;
mod fault;
mod writer;

pub use config::MemoryConfig;
pub use fault::{Fault, FaultPoint};
pub use writer::{MemoryTarget, MemoryWriter, StoredRecord};

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::encode::RecordEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for MemoryConfig {
    const NAME: &'static str = "memory";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = RecordEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        MemoryConfig::parse(opts)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<RecordEncoder<V>> {
        Ok(RecordEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(EnvelopeWriter::new(sink, self.target().writer(sink.name()))))
    }
}
