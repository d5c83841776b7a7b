//! The one encoder trait: a pure step from one time's per-key changes to a target's wire form.

use crate::error::Result;
use crate::key::Key;
use differential_sinks_operators::Change;

/// Turns per-key changes into what a target ships — JSON records, Avro, RowBinary, Arrow batches,
/// statement parameters — with no I/O: it can run apart from the writer (in a benchmark, or on
/// the worker that produced the changes) and its output is the same wherever it runs.
///
/// A time may be encoded in several calls (chunks; a key's changes are never split), and each call
/// continues the time's output: an output shipped chunk by chunk (a [`RecordBatch`]) is restarted
/// with its record numbering carried on, any other is appended to. On an error the changes before
/// the failing one may be in `out` and the failing one is not; the error names the key.
///
/// [`RecordBatch`]: crate::RecordBatch
pub trait ChangeEncoder<V>: 'static {
    /// What the encoding appends to; `Default` is the empty output.
    type Output: Default;

    /// Encodes `changes`, all of one `time`, into `out`.
    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut Self::Output) -> Result<()>;
}
