//! The `file` connector: JSON lines in a directory — the embedded default.
//!
//! # Layout
//!
//! ```text
//! <path>/manifest-w<W>-g<G>.json      one per worker and generation: the commit record
//! <path>/data/w<W>-g<G>-<seq>.jsonl    one file per commit that had records
//! ```
//!
//! An append-only sink writes each row as one JSON line. Upsert and Debezium sinks write
//! `{"time":t,"key":K,"value":V}` (`value` null for a tombstone), `K` being the encoded key (a JSON
//! string when keys are encoded as text).
//!
//! # Commit protocol
//!
//! A worker writes a commit's records to `data/…jsonl.tmp`, flushes and syncs it, renames it into
//! place, and then replaces its manifest (written to a temporary file, synced, renamed: the
//! rename is the commit point). A manifest names the committed frontier and the last committed
//! file sequence number; data files beyond it are leftovers of a crash and are deleted when the
//! worker resumes, so a crash at any point neither loses nor duplicates a change. Readers take
//! the files the manifests name ([`read_committed`]) and nothing else.
//!
//! A restart with another worker count starts a new generation (see
//! [`resolve_resume`](differential_sinks_operators::resolve_resume)); earlier generations'
//! manifests stay, as their files remain part of the output.
//!
//! # Options
//!
//! | option | meaning |
//! |---|---|
//! | `path` | the directory (created if missing) — required |
//! | `file.fsync` | `true` (default) to sync files and manifests at each commit |

mod config;
mod writer;

pub use config::FileConfig;
pub use writer::{read_committed, FileWriter, Manifest};
