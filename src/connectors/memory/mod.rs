//! An in-memory target for tests and benchmarks (`test-utils` feature, `connector = memory`).
//!
//! It behaves like a transactional target: records written by a worker stay invisible until that
//! worker commits, and a commit stores the worker's frontier atomically with its records, which
//! `resume` reads back. Dropping a writer without committing loses what it wrote since its last
//! commit, as a crashed process would. Failures can be injected ([`MemoryTarget::fail_commit_after`]).
//!
//! Targets are found by name (`memory.name`), so an options map or `dsink` can reach one that a
//! test created.

mod config;
mod writer;

pub use config::MemoryConfig;
pub use writer::{MemoryTarget, MemoryWriter, StoredRecord};
