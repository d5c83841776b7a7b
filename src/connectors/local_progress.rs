//! Progress records in a local directory, for targets that cannot store them (Kinesis, Pulsar).
//!
//! Each worker keeps one small JSON file per generation, `<connector>-<sink token>-<scope>-w<worker>-g<generation>.json`,
//! where the scope is [`scope_id`] of the sink's name and its target (stream, topic): two sinks of
//! one name into two targets never read each other's progress, even in one directory.
//!
//! A record is written to a temporary file, synced, renamed over the old one, and the directory
//! is synced: after a crash the file holds either the old record or the new one, never a torn
//! one, and a rename that returned survives a power loss.

use crate::error::{Error, ErrorKind, Result};
use crate::stable_hash::scope_id;
use differential_sinks_operators::WorkerProgress;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One sink's progress files in a directory.
#[derive(Clone, Debug)]
pub struct LocalProgress {
    dir: PathBuf,
    prefix: String,
    connector: &'static str,
}

impl LocalProgress {
    /// The progress of sink `sink` of `connector` writing to `target`, kept in `dir`.
    pub fn new(dir: &Path, connector: &'static str, sink: &str, target: &str) -> Self {
        let token: String =
            sink.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        LocalProgress {
            dir: dir.to_path_buf(),
            prefix: format!("{connector}-{token}-{}-", scope_id(sink, target)),
            connector,
        }
    }

    fn file(&self, worker: usize, generation: u64) -> PathBuf {
        self.dir.join(format!("{}w{worker}-g{generation}.json", self.prefix))
    }

    /// Every record this sink holds in the directory (creating the directory if missing).
    pub fn read(&self) -> Result<Vec<WorkerProgress<u64>>> {
        let dir = &self.dir;
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating `progress.dir` {}", dir.display()), e))?;
        let mut records = Vec::new();
        let entries =
            fs::read_dir(dir).map_err(|e| Error::io(format!("listing `progress.dir` {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing `progress.dir` {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(&self.prefix) && name.ends_with(".json")) {
                continue;
            }
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            records.push(serde_json::from_slice::<WorkerProgress<u64>>(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Resume,
                    format!(
                        "{}: progress file {} is damaged ({e}); remove this sink's files there to start over",
                        self.connector,
                        path.display()
                    ),
                )
            })?);
        }
        Ok(records)
    }

    /// Records `rec` durably (see the module docs), in the directory [`read`](Self::read) made.
    pub fn write(&self, rec: &WorkerProgress<u64>) -> Result<()> {
        let path = self.file(rec.worker, rec.generation);
        let tmp = path.with_extension("tmp");
        let io = |what: &str, e| Error::io(format!("{what} progress in {}", path.display()), e);
        let bytes =
            serde_json::to_vec(rec).map_err(|e| Error::new(ErrorKind::Fatal, format!("encoding progress: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| io("recording", e))?;
        f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| io("syncing", e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io("recording", e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the directory of", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_sinks_operators::Frontier;

    fn rec(worker: usize, f: u64) -> WorkerProgress<u64> {
        WorkerProgress {
            worker,
            peers: 2,
            generation: 0,
            base: Frontier::minimum(),
            frontier: Frontier::at(f),
            layout: Default::default(),
        }
    }

    #[test]
    fn records_are_scoped_by_sink_and_target() {
        let dir = std::env::temp_dir().join(format!("dsink-local-progress-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = LocalProgress::new(&dir, "kinesis", "orders", "stream-a");
        let b = LocalProgress::new(&dir, "kinesis", "orders", "stream-b");
        assert!(a.read().unwrap().is_empty(), "a first run finds nothing (and creates the directory)");
        a.write(&rec(0, 5)).unwrap();
        a.write(&rec(0, 7)).unwrap();
        a.write(&rec(1, 6)).unwrap();
        let mut got = a.read().unwrap();
        got.sort_by_key(|r| r.worker);
        assert_eq!(got, vec![rec(0, 7), rec(1, 6)]);
        assert!(b.read().unwrap().is_empty(), "another target's sink of the same name sees nothing");
        fs::write(dir.join(format!("{}w0-g0.json", b.prefix)), b"{").unwrap();
        let e = b.read().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Resume, "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
