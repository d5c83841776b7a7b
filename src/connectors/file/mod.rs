//! The `file` connector: JSON lines in a directory — the embedded default.
//!
//! # Layout
//!
//! ```text
//! <path>/sinks/<sink>/manifest-w<W>-g<G>.json      one per worker and generation: the commit record
//! <path>/sinks/<sink>/data/w<W>-g<G>-<seq>.jsonl    one file per commit that had records
//! <path>/sinks/<sink>/.lock-w<W>-of-<N>             worker W's lock (a run on N workers)
//! ```
//!
//! Each sink keeps its files in its own directory, named after `sink.name` (letters, digits, `_`,
//! `-` and a `.` that is not first are kept, any other byte is written `%XX`), so any number of
//! sinks can share one `path`, one after the other or at the same time, and none touches another's
//! files. A manifest also records its sink's name, and only manifests naming the sink are resumed
//! from or read back.
//!
//! An append-only sink writes each row as one JSON line. Upsert and Debezium sinks write
//! `{"time":t,"key":K,"value":V}` (`value` null for a tombstone), `K` being the encoded key (a JSON
//! string when keys are encoded as text).
//!
//! Directories written by earlier versions hold one sink's manifests and `data/` at the top of
//! `path`. They are still read, and that sink goes on writing there; another sink written to such
//! a directory gets its own `sinks/<sink>/`. A top level that holds manifests of two sinks (which
//! earlier versions let one sink overwrite) is refused with [`ErrorKind::Resume`](crate::ErrorKind)
//! rather than written.
//!
//! # Commit protocol
//!
//! A worker writes a commit's records to `data/…jsonl.tmp`, flushes and syncs it, renames it into
//! place, and then replaces its manifest (written to a temporary file, synced, renamed: the
//! rename is the commit point). A manifest names the committed frontier and the last committed
//! file sequence number; data files beyond it are leftovers of a crash and are deleted when the
//! worker resumes, so a crash at any point neither loses nor duplicates a change. Readers take
//! the files the manifests name ([`read_committed_sink`], [`read_committed`]) and nothing else.
//!
//! A restart with another worker count starts a new generation (see
//! [`resolve_resume`](differential_sinks_operators::resolve_resume)); earlier generations'
//! manifests stay, as their files remain part of the output.
//!
//! # One run at a time
//!
//! When a worker's writer resumes, before it reads or removes anything, it takes an exclusive OS
//! file lock (`flock` on Unix) on its `.lock-w<W>-of-<N>` and keeps it until the writer is dropped;
//! the operating system releases it if the process dies. The workers of a run never fence each
//! other (in one process or across a cluster's processes). A second run of the same sink into the
//! same `path` while one is running — on as many workers or on another number — fails on every
//! worker with [`ErrorKind::Fenced`](crate::ErrorKind) ("another run of sink `X` holds DIR")
//! before it touches a file; the running one is unaffected. The locks are advisory: they fence
//! runs of this library, not other programs writing into the directory, and need a file system
//! that implements them (one that refuses them is reported as an I/O error).
//!
//! # Files
//!
//! `config.rs` (options), `layout.rs` (the sink's directory and data file names), `progress.rs`
//! (manifests), `lock.rs` (the run lock), `writer.rs` (data files and the commit protocol),
//! `read.rs` (readers of committed output).
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `path` | the directory (created if missing) — required; several sinks may share it |
//! | `file.fsync` | `true` (default) to sync files, manifests and directories at each commit |

mod config;
mod layout;
mod lock;
mod progress;
mod read;
mod writer;

pub use config::FileConfig;
pub use progress::Manifest;
pub use read::{read_committed, read_committed_sink, sinks};
pub use writer::FileWriter;

use crate::connectors::{Connector, EnvelopeWriter, Writers};
use crate::encode::RecordEncoder;
use crate::error::Result;
use crate::options::Options;
use crate::row::Row;
use crate::settings::SinkSettings;
use differential_sinks_operators::{SinkTime, WorkerContext};

impl Connector for FileConfig {
    const NAME: &'static str = "file";
    const ENCODED_ROWS: bool = true;
    type Table = ();
    type Encoder<V: Row> = RecordEncoder<V>;

    fn from_options(opts: &mut Options) -> Result<Self> {
        FileConfig::parse(opts)
    }

    fn encoder<V: Row>(&self, sink: &SinkSettings, _table: &()) -> Result<RecordEncoder<V>> {
        Ok(RecordEncoder::new(sink))
    }

    fn open<V: Row, T: SinkTime>(&self, sink: &SinkSettings, ctx: WorkerContext) -> Result<Writers<V, T>> {
        let _ = ctx;
        Ok(Writers::independent(EnvelopeWriter::new(sink, FileWriter::open(self, sink, ctx)?)))
    }
}
