//! Where a file sink's files live: its directory under `path` (or, for output of earlier
//! versions, `path` itself) and the names of its data files.
//!
//! Every name here is derived from the sink's name, the worker, the generation and a sequence
//! number, and parsed back strictly: a sink never takes another sink's file for its own.

use super::progress::read_manifests;
use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// The directory under `<path>` that holds one directory per sink.
pub(super) const SINKS: &str = "sinks";

/// The longest directory name a sink may have (file systems allow 255 bytes).
const MAX_DIR_NAME: usize = 200;

/// The directory name of `sink`: the name itself where it is made of ASCII letters, digits, `_`,
/// `-` and (not first) `.`; any other byte as `%XX`. Distinct names give distinct directories.
pub(super) fn dir_name(sink: &str) -> String {
    let mut out = String::with_capacity(sink.len());
    for (i, b) in sink.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `<path>/sinks/<dir_name(sink)>`, checking that the name fits a file system.
pub(super) fn sink_dir(root: &Path, sink: &str) -> Result<PathBuf> {
    let name = dir_name(sink);
    if name.len() > MAX_DIR_NAME {
        return Err(Error::config(format!(
            "option `sink.name` is too long for the file sink: it names the directory `{SINKS}/{name}` of {} bytes \
             (at most {MAX_DIR_NAME}); choose a shorter name",
            name.len()
        )));
    }
    Ok(root.join(SINKS).join(name))
}

pub(super) fn data_name(worker: usize, generation: u64, seq: u64) -> String {
    format!("w{worker}-g{generation}-{seq:010}.jsonl")
}

/// The sequence number of a data file of `worker` and `generation` named `name`, and whether it
/// is a temporary (uncommitted) file; `None` for any other name.
pub(super) fn parse_data_name(name: &str, worker: usize, generation: u64) -> Option<(u64, bool)> {
    let rest = name.strip_prefix(&format!("w{worker}-g{generation}-"))?;
    let (digits, tmp) = match rest.strip_suffix(".jsonl.tmp") {
        Some(d) => (d, true),
        None => (rest.strip_suffix(".jsonl")?, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, tmp))
}

/// Where `sink` keeps its manifests and `data/` in `root`: its own directory, or `root` itself if
/// `root` holds its output in the single-sink layout of earlier versions (which it then goes on
/// using). Refuses a `root` whose top-level manifests name another sink too, since files of that
/// layout carry no sink name and the two would overwrite each other.
pub(super) fn base_of(root: &Path, sink: &str) -> Result<PathBuf> {
    let own = sink_dir(root, sink)?;
    let top = read_manifests(root)?;
    if !top.iter().any(|m| m.sink == sink) {
        return Ok(own);
    }
    let mut others: Vec<&str> = top.iter().filter(|m| m.sink != sink).map(|m| m.sink.as_str()).collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        return Err(Error::new(
            ErrorKind::Resume,
            format!(
                "{} holds the output of sink `{sink}` and of {} in the one-sink layout of earlier versions \
                 (manifest-w<W>-g<G>.json at the top), whose file names carry no sink name, so sink `{sink}` \
                 cannot go on writing there: move that output away, or write sink `{sink}` to a fresh `path`",
                root.display(),
                others.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if read_manifests(&own)?.iter().any(|m| m.sink == sink) {
        return Err(Error::new(
            ErrorKind::Resume,
            format!(
                "{} holds manifests of sink `{sink}` both at its top and in {}: keep one of the two sets and \
                 remove the other",
                root.display(),
                own.display()
            ),
        ));
    }
    Ok(root.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_file_names_and_distinct() {
        assert_eq!(dir_name("orders_v2-x.y"), "orders_v2-x.y");
        assert_eq!(dir_name("a/b"), "a%2Fb");
        assert_eq!(dir_name("a%2Fb"), "a%252Fb");
        assert_eq!(dir_name(".."), "%2E.");
        assert_eq!(dir_name("日"), "%E6%97%A5");
        assert!(sink_dir(Path::new("/x"), &"s".repeat(201)).is_err_and(|e| e.kind() == ErrorKind::Config));
    }

    #[test]
    fn data_names_parse_back_strictly() {
        assert_eq!(parse_data_name(&data_name(2, 3, 17), 2, 3), Some((17, false)));
        assert_eq!(parse_data_name(&format!("{}.tmp", data_name(2, 3, 17)), 2, 3), Some((17, true)));
        for other in
            ["w2-g3-.jsonl", "w2-g3-12x.jsonl", "w2-g3-w0-g0-0000000001.jsonl", "w2-g3-1.json", "w2-g30-1.jsonl"]
        {
            assert_eq!(parse_data_name(other, 2, 3), None, "{other}");
        }
        assert_eq!(parse_data_name(&data_name(12, 3, 1), 1, 3), None);
    }
}
