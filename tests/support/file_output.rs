//! The file sink's committed output read back with plain file parsing, independent of the
//! library's own reader (`read_committed`), from the layout the file connector documents:
//!
//! ```text
//! <path>/sinks/<sink>/manifest-w<W>-g<G>.json     {"sink", "progress": {"worker", "generation", …}, "last_seq"}
//! <path>/sinks/<sink>/data/w<W>-g<G>-<seq>.jsonl  (seq zero-padded to 10 digits)
//! ```
//!
//! (and, for output of earlier versions, the same files at the top of `<path>`). A manifest
//! commits the data files `1..=last_seq` of its worker and generation next to it; any other file
//! (a crash's leftover, a commit under way) is not output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Every file under `dir`, at any depth, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The manifests under `dir`, parsed: every file named `manifest-*.json`, with its path. A
/// manifest being replaced at that moment (unreadable) is skipped.
pub fn manifests(dir: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("manifest-") && name.ends_with(".json")
        })
        .filter_map(|p| Some((p.clone(), serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?)))
        .collect()
}

/// One sink's committed lines: each manifest naming `sink` commits the data files
/// `data/w<W>-g<G>-<seq>.jsonl` next to it, `seq` in `1..=last_seq`; in (generation, worker,
/// seq) order, so each key's changes come in time order.
pub fn committed_lines(dir: &Path, sink: &str) -> Vec<serde_json::Value> {
    let mut ms: Vec<(PathBuf, serde_json::Value)> =
        manifests(dir).into_iter().filter(|(_, m)| m["sink"] == sink).collect();
    ms.sort_by_key(|(p, m)| {
        (m["progress"]["generation"].as_u64().unwrap(), m["progress"]["worker"].as_u64().unwrap(), p.clone())
    });
    let mut out = Vec::new();
    for (path, m) in ms {
        let (w, g) = (m["progress"]["worker"].as_u64().unwrap(), m["progress"]["generation"].as_u64().unwrap());
        let last = m["last_seq"].as_u64().unwrap_or_else(|| panic!("{}: no last_seq in {m}", path.display()));
        for seq in 1..=last {
            let file = path.parent().unwrap().join("data").join(format!("w{w}-g{g}-{seq:010}.jsonl"));
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{} (committed by {}): {e}", file.display(), path.display()));
            out.extend(text.lines().map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", file.display()))
            }));
        }
    }
    out
}
