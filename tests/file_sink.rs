//! The file sink's writer on its own: sinks sharing a directory, runs fencing each other, and
//! directories written by earlier versions. Output is read back with plain file parsing
//! (`committed_in`, and `support/file_output.rs` across a whole directory); where the library's
//! reader is used, it is what is tested and its answer is compared with that plain reading.

#[path = "support/file_output.rs"]
mod file_output;

use differential_sinks::connectors::file::{read_committed, read_committed_sink, sinks, FileConfig, FileWriter};
use differential_sinks::envelope::Op;
use differential_sinks::operators::WorkerContext;
use differential_sinks::{ErrorKind, Frontier, RecordBatch, RecordWriter, SinkSpec};
use std::path::{Path, PathBuf};

fn spec(dir: &Path, sink: &str) -> SinkSpec {
    SinkSpec::builder(sink, FileConfig::new(dir)).upsert().primary_key(["k"]).build().unwrap()
}

fn ctx(index: usize, peers: usize) -> WorkerContext {
    WorkerContext::new(index, peers)
}

fn writer(dir: &Path, sink: &str, index: usize, peers: usize) -> FileWriter {
    FileWriter::open(&FileConfig::new(dir), &spec(dir, sink), ctx(index, peers)).unwrap()
}

/// A batch at `time` upserting each key of `keys` to `{"k":k,"t":time}`.
fn batch(time: u64, keys: &[u64]) -> RecordBatch {
    let mut b = RecordBatch::new(time);
    for k in keys {
        let value = format!("{{\"k\":{k},\"t\":{time}}}");
        b.push(
            format!("{{\"k\":{k}}}").as_bytes(),
            Some(|out: &mut Vec<u8>| {
                out.extend_from_slice(value.as_bytes());
                Ok(())
            }),
            Op::Create,
        )
        .unwrap();
    }
    b
}

/// `(time, k)` of every line of the data files that the manifests in `dir` (itself, not below it)
/// commit, read with plain file parsing.
fn committed_in(dir: &Path, sink: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("manifest-") && name.ends_with(".json")) {
            continue;
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        if m["sink"] != sink {
            continue;
        }
        let (w, g) = (&m["progress"]["worker"], &m["progress"]["generation"]);
        for seq in 1..=m["last_seq"].as_u64().unwrap() {
            let file = dir.join("data").join(format!("w{w}-g{g}-{seq:010}.jsonl"));
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                out.push((v["time"].as_u64().unwrap(), v["key"]["k"].as_u64().unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The single directory below `<dir>/sinks`.
fn only_sink_dir(dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("sinks")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[test]
fn a_second_writer_of_a_running_sink_is_refused_before_it_touches_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = writer(dir.path(), "orders", 0, 1);
    assert_eq!(first.resume(ctx(0, 1)).unwrap(), Frontier::minimum());
    first.write(&batch(0, &[1, 2])).unwrap();
    // The first writer has an uncommitted file open: a second run's resume used to remove it.
    let data = only_sink_dir(dir.path()).join("data");
    let open: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(open.len(), 1, "{open:?}");
    for (index, peers) in [(0, 1), (0, 2), (1, 2)] {
        let e = writer(dir.path(), "orders", index, peers).resume(ctx(index, peers)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
        assert!(e.message().contains("another run of sink `orders` holds"), "{e}");
        assert!(e.message().contains(&dir.path().display().to_string()), "{e}");
    }
    let still: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(still, open, "the refused writers touched the running one's files");
    first.commit(Frontier::at(1)).unwrap();
    first.write(&batch(1, &[2, 3])).unwrap();
    first.commit(Frontier::complete()).unwrap();
    drop(first);
    // Once the first run ended, the next one resumes where it stopped.
    let mut next = writer(dir.path(), "orders", 0, 1);
    assert_eq!(next.resume(ctx(0, 1)).unwrap(), Frontier::complete());
    assert_eq!(committed_in(&only_sink_dir(dir.path()), "orders"), [(0, 1), (0, 2), (1, 2), (1, 3)]);
}

#[test]
fn sinks_sharing_a_directory_keep_their_files_apart() {
    let dir = tempfile::tempdir().unwrap();
    // Names that are no file names as they are, and names that only differ once written out.
    let names = ["orders", "orders/v2", "..", ".hidden", "a%2Fb", "a/b", "日本"];
    let mut writers: Vec<FileWriter> = names.iter().map(|n| writer(dir.path(), n, 0, 1)).collect();
    for (i, w) in writers.iter_mut().enumerate() {
        w.resume(ctx(0, 1)).unwrap();
        w.write(&batch(0, &[i as u64])).unwrap();
    }
    for w in &mut writers {
        w.commit(Frontier::complete()).unwrap();
    }
    drop(writers);
    let mut dirs: Vec<String> = std::fs::read_dir(dir.path().join("sinks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), names.len(), "one directory per sink: {dirs:?}");
    assert!(dirs.iter().all(|d| !d.starts_with('.') && !d.contains('/')), "{dirs:?}");
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(sinks(dir.path()).unwrap(), expected);
    for (i, n) in names.iter().enumerate() {
        // Each sink's own output, found by the name its manifests record, and nothing else.
        let lines = file_output::committed_lines(dir.path(), n);
        let want = serde_json::json!({"time": 0, "key": {"k": i}, "value": {"k": i, "t": 0}});
        assert_eq!(lines, [want], "sink `{n}`");
        // The library's reader of one sink agrees.
        assert_eq!(read_committed_sink(dir.path(), n).unwrap(), lines, "read_committed_sink of sink `{n}`");
    }
    let e = read_committed(dir.path()).unwrap_err();
    assert!(e.message().contains("read_committed_sink"), "{e}");
}

/// Writes `sink`'s output for `worker` in the one-sink layout of earlier versions: a manifest at
/// the top of `dir` committing `committed` data files (each holding one line) up to `frontier`.
fn write_old_layout(dir: &Path, sink: &str, worker: usize, committed: u64, frontier: u64) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for seq in 1..=committed {
        let line = format!("{{\"time\":{},\"key\":{{\"k\":{seq}}},\"value\":{{\"k\":{seq}}}}}\n", seq - 1);
        std::fs::write(dir.join("data").join(format!("w{worker}-g0-{seq:010}.jsonl")), line).unwrap();
    }
    let manifest = serde_json::json!({
        "sink": sink,
        "progress": {"worker": worker, "peers": 1, "generation": 0,
                     "base": {"complete": false, "time": 0}, "frontier": {"complete": false, "time": frontier}},
        "last_seq": committed,
    });
    std::fs::write(dir.join(format!("manifest-w{worker}-g0.json")), manifest.to_string()).unwrap();
}

#[test]
fn output_of_earlier_versions_is_read_and_its_sink_goes_on_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    write_old_layout(dir.path(), "orders", 0, 2, 2);
    // A crash's leftover: a data file past the manifest.
    std::fs::write(dir.path().join("data/w0-g0-0000000003.jsonl"), "{}\n").unwrap();
    let mut w = writer(dir.path(), "orders", 0, 1);
    assert_eq!(w.resume(ctx(0, 1)).unwrap(), Frontier::at(2));
    assert!(!dir.path().join("data/w0-g0-0000000003.jsonl").exists(), "the leftover is removed");
    w.write(&batch(2, &[3])).unwrap();
    w.commit(Frontier::complete()).unwrap();
    drop(w);
    assert_eq!(committed_in(dir.path(), "orders"), [(0, 1), (1, 2), (2, 3)]);
    let lines = file_output::committed_lines(dir.path(), "orders");
    let want: Vec<serde_json::Value> = [(0, 1), (1, 2)]
        .iter()
        .map(|(t, k)| serde_json::json!({"time": t, "key": {"k": k}, "value": {"k": k}}))
        .chain([serde_json::json!({"time": 2, "key": {"k": 3}, "value": {"k": 3, "t": 2}})])
        .collect();
    assert_eq!(lines, want, "the old layout's lines, then the new commit's");
    // The library's reader reads the old layout the same.
    assert_eq!(read_committed(dir.path()).unwrap(), lines);
    // Another sink written there gets a directory of its own, and leaves the first one's alone.
    let mut other = writer(dir.path(), "other", 0, 1);
    other.resume(ctx(0, 1)).unwrap();
    other.write(&batch(0, &[9])).unwrap();
    other.commit(Frontier::complete()).unwrap();
    drop(other);
    assert_eq!(committed_in(dir.path(), "orders"), [(0, 1), (1, 2), (2, 3)]);
    assert_eq!(committed_in(&dir.path().join("sinks/other"), "other"), [(0, 9)]);
    assert_eq!(sinks(dir.path()).unwrap(), ["orders", "other"]);
    assert_eq!(file_output::committed_lines(dir.path(), "orders"), want, "the other sink left it alone");
    assert_eq!(
        file_output::committed_lines(dir.path(), "other"),
        [serde_json::json!({"time": 0, "key": {"k": 9}, "value": {"k": 9, "t": 0}})]
    );
    assert_eq!(read_committed_sink(dir.path(), "orders").unwrap(), want);
}

#[test]
fn a_top_level_holding_two_sinks_of_earlier_versions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_old_layout(dir.path(), "a", 0, 1, 1);
    write_old_layout(dir.path(), "b", 1, 1, 1);
    let e = writer(dir.path(), "a", 0, 1).resume(ctx(0, 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Resume, "{e}");
    assert!(e.message().contains("sink `a` and of `b`"), "{e}");
    // Nothing was touched.
    assert_eq!(committed_in(dir.path(), "a"), [(0, 1)]);
    assert_eq!(committed_in(dir.path(), "b"), [(0, 1)]);
}
