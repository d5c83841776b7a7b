//! What the lakehouse tables (Delta Lake, Iceberg) share: where a table lives on S3
//! ([`s3`]), the index of primary keys their upserts delete rows by ([`key_index`]), reading key
//! columns back from Parquet data files ([`parquet`]), the thread a worker's data files are
//! written on (`file_thread`), the format check at creation and the accounting of small data
//! files.
//!
//! ```text
//!   worker 0..n: changes ─► encode::arrow (Arrow batches, deleted keys) ─► Parquet data files
//!                upserts: KeyIndex (the keys this worker owns) ─► its delete files
//!                                                      │ prepared: data (and delete) files
//!                                                      ▼
//!   worker 0:    committer ─► one table commit
//! ```
//!
//! Rows become Arrow batches in [`crate::encode::arrow`], a pure encoder both connectors' writers
//! use. Both connectors commit coordinated: every worker writes data files, worker 0 commits
//! them all with the sink's progress in one table commit, so a change is in exactly one
//! committed table version.

pub(crate) mod file_thread;
pub mod key_index;
pub mod parquet;
pub mod s3;

pub use key_index::{FileDeletes, IndexFull, KeyIndex, DEFAULT_INDEX_MAX_BYTES};
pub use parquet::read_columns;
pub use s3::{S3Credentials, S3Options, StorageLocation};

use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{route_hash, WorkerContext};

/// Checks a lakehouse sink's format at creation: append-only, or upsert by declared key columns
/// (`target` names the connector in messages); Debezium is refused, since a table holds rows.
pub fn check_format(spec: &SinkSettings, target: &str) -> Result<()> {
    match spec.format() {
        Format::AppendOnly { .. } => Ok(()),
        Format::Upsert if spec.primary_key().is_none_or(|k| k.is_empty()) => Err(Error::config(format!(
            "option `type` = `upsert`: the {target} sink finds a key's row by the primary key's columns — declare \
             them with `primary_key` (a key function names no columns)"
        ))),
        Format::Upsert => Ok(()),
        Format::Debezium { .. } => Err(Error::config(format!(
            "option `type` = `debezium`: a table holds rows, not change events; use `type = upsert` (the {target} \
             table holds each key's latest row) or `type = append-only`"
        ))),
    }
}

/// Takes `upsert.index.max.bytes` (bytes, or with a `KiB`/`MiB`/`GiB` suffix; at least 1), the
/// budget of each worker's upsert key index, or the default.
pub(crate) fn take_index_max_bytes(opts: &mut crate::options::Options) -> Result<usize> {
    let Some(value) = opts.take("upsert.index.max.bytes") else { return Ok(DEFAULT_INDEX_MAX_BYTES) };
    match crate::options::parse_bytes("upsert.index.max.bytes", &value)? {
        0 => Err(Error::config(
            "option `upsert.index.max.bytes` is 0: give each worker's key index room for its keys (default 4 GiB)",
        )),
        bytes => Ok(bytes),
    }
}

/// Whether the sink routes a key (a table's key columns packed, as the index holds them) to
/// this worker: the test each worker reads its part of the table's keys with, the same the sink's
/// exchange makes of the key.
pub(crate) fn owned_by(ctx: WorkerContext) -> impl Fn(&[u8]) -> bool {
    let peers = ctx.peers.max(1) as u64;
    move |key: &[u8]| (route_hash(&Key::from_slice(key)) % peers) as usize == ctx.index
}

/// How many of a lakehouse commit's data files (by size) are small: below three quarters of the
/// file target size, Iceberg's default `min-file-size-bytes` for compaction. Many small files
/// slow every reader down; a longer commit cadence (`commit.interval.ms`, `commit.max_changes`)
/// or compaction fixes them. Committers record the count in the commit and, once it is
/// committed, in [`SinkMetrics::files_committed`](differential_sinks_operators::SinkMetrics) and
/// `small_files`.
pub(crate) fn small_files(sizes: impl IntoIterator<Item = u64>, target: usize) -> u64 {
    let below = (target as u64).saturating_mul(3) / 4;
    sizes.into_iter().filter(|s| *s < below).count() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_files_are_below_three_quarters_of_the_target() {
        assert_eq!(super::small_files([0, 74, 75, 100, 200], 100), 2);
    }
}
