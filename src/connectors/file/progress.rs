//! Where a file sink records progress: one manifest per worker and generation,
//! `manifest-w<W>-g<G>.json` in the sink's directory, naming the committed frontier and the last
//! committed data file. The writer replaces it at each commit (a temporary file, synced, renamed:
//! the rename is the commit point); a resume, and the readers of committed output, read them back.

use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::WorkerProgress;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// A worker's commit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The sink's name.
    pub sink: String,
    /// Progress: worker, peers, generation, base and committed frontier.
    pub progress: WorkerProgress<u64>,
    /// Data files `1..=last_seq` of this worker and generation are committed.
    pub last_seq: u64,
}

/// The file name of the manifest of `worker` in `generation`.
pub(super) fn manifest_name(worker: usize, generation: u64) -> String {
    format!("manifest-w{worker}-g{generation}.json")
}

/// Every manifest directly in `dir` (none if `dir` does not exist), by generation and worker.
pub(super) fn read_manifests(dir: &Path) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("manifest-") && name.ends_with(".json") {
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Resume,
                    format!("manifest {} is damaged: {e}; restore it or write to a fresh directory", path.display()),
                )
            })?;
            out.push(m);
        }
    }
    out.sort_by_key(|m| (m.progress.generation, m.progress.worker));
    Ok(out)
}
