//! The readers of a file sink's committed output: the sinks a directory holds, and the lines their
//! manifests name — never a crash's leftovers or a commit under way.

use super::layout::{data_name, sink_dir, SINKS};
use super::progress::{read_manifests, Manifest};
use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// `sink`'s manifests in `root` with the directory each one's `data/` is in: its own directory
/// and, for output written by earlier versions (one sink per directory, at the top), `root`.
fn manifests_of(root: &Path, sink: &str) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut out: Vec<(PathBuf, Manifest)> =
        read_manifests(root)?.into_iter().filter(|m| m.sink == sink).map(|m| (root.to_path_buf(), m)).collect();
    let own = sink_dir(root, sink)?;
    out.extend(read_manifests(&own)?.into_iter().filter(|m| m.sink == sink).map(|m| (own.clone(), m)));
    Ok(out)
}

/// The names of the sinks with committed output in a file sink directory, sorted.
pub fn sinks(dir: impl AsRef<Path>) -> Result<Vec<String>> {
    let root = dir.as_ref();
    let mut names: Vec<String> = read_manifests(root)?.into_iter().map(|m| m.sink).collect();
    let all = root.join(SINKS);
    match fs::read_dir(&all) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("listing {}", all.display()), e))?;
                names.extend(read_manifests(&entry.path())?.into_iter().map(|m| m.sink));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("listing {}", all.display()), e)),
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The committed lines of the one sink in a file sink directory (none if it holds no output);
/// see [`read_committed_sink`]. A directory holding several sinks' output is refused: read each
/// with [`read_committed_sink`].
pub fn read_committed(dir: impl AsRef<Path>) -> Result<Vec<serde_json::Value>> {
    let root = dir.as_ref();
    match sinks(root)?.as_slice() {
        [] => Ok(Vec::new()),
        [one] => read_committed_sink(root, one),
        several => Err(Error::config(format!(
            "{} holds the output of {} sinks ({}): read one with read_committed_sink(dir, name)",
            root.display(),
            several.len(),
            several.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The committed lines of sink `sink` in a file sink directory, in an order that keeps each key's
/// changes in time order (generation, then worker, then commit). Files its manifests do not name
/// (a crash's leftovers, a commit under way) are not read.
pub fn read_committed_sink(dir: impl AsRef<Path>, sink: &str) -> Result<Vec<serde_json::Value>> {
    let mut manifests = manifests_of(dir.as_ref(), sink)?;
    manifests.sort_by_key(|(_, m)| (m.progress.generation, m.progress.worker));
    let mut out = Vec::new();
    for (base, m) in manifests {
        for seq in 1..=m.last_seq {
            let path = base.join("data").join(data_name(m.progress.worker, m.progress.generation, seq));
            let f =
                File::open(&path).map_err(|e| Error::io(format!("opening committed file {}", path.display()), e))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                out.push(
                    serde_json::from_str(&line)
                        .map_err(|e| Error::encode(format!("{}: bad line: {e}", path.display())))?,
                );
            }
        }
    }
    Ok(out)
}
