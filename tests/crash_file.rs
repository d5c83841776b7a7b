//! Crash tests of the file sink: `dsink` killed with SIGKILL at every crash point (inside a
//! chunked time, around and inside a commit) on 2 workers, then rerun; the committed files are
//! read back by parsing manifests and data files here, not with the library's reader.

mod common;

use common::crash::{self, CrashTest, Delivered, Guarantee, Readback, INDEPENDENT};
use common::Row;
use std::path::{Path, PathBuf};

/// The manifests under `dir` (files `manifest-*.json` at any depth), parsed, with their folder.
fn manifests(dir: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                todo.push(p);
            } else if name.starts_with("manifest-") && name.ends_with(".json") {
                let m = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                out.push((p.parent().unwrap().to_path_buf(), m));
            }
        }
    }
    out
}

/// Every committed line: a manifest of worker `w`, generation `g` commits the data files
/// `data/w<w>-g<g>-<seq>.jsonl` for `seq` in `1..=last_seq`.
fn committed_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (folder, m) in manifests(dir) {
        let (w, g) = (m["progress"]["worker"].as_u64().unwrap(), m["progress"]["generation"].as_u64().unwrap());
        for seq in 1..=m["last_seq"].as_u64().unwrap() {
            let file = folder.join("data").join(format!("w{w}-g{g}-{seq:010}.jsonl"));
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            out.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
        }
    }
    out
}

fn test(label: &'static str, dir: &Path, format: &[&str], seed: u64) -> CrashTest<'static> {
    let mut args: Vec<String> =
        ["connector=file", &format!("path={}", dir.display())].iter().map(|s| s.to_string()).collect();
    args.extend(format.iter().map(|s| s.to_string()));
    let args = args.into_iter().flat_map(|w| ["--with".to_string(), w]).collect();
    CrashTest { label, args, workers: 2, points: INDEPENDENT, guarantee: Guarantee::ExactlyOnce, seed, env: vec![] }
}

#[test]
fn upsert_killed_at_every_crash_point_delivers_each_change_once() {
    let dir = crash::scratch("file-upsert");
    let history = crash::history(1);
    let t = test("file upsert", &dir, &["type=upsert", "primary_key=k"], 1);
    let read = || {
        Readback::Log(
            committed_lines(&dir)
                .iter()
                .map(|l| Delivered {
                    time: l["time"].as_u64().unwrap(),
                    key: l["key"]["k"].as_u64().unwrap() as u32,
                    after: serde_json::from_value(l["value"].clone()).unwrap(),
                })
                .collect(),
        )
    };
    let report = crash::run(&t, &history, &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn append_only_killed_at_every_crash_point_writes_each_row_once() {
    let dir = crash::scratch("file-append");
    let history = crash::insert_history(2);
    let t = test("file append-only", &dir, &["type=append-only"], 2);
    let read = || {
        Readback::Rows(committed_lines(&dir).into_iter().map(|l| serde_json::from_value::<Row>(l).unwrap()).collect())
    };
    crash::run(&t, &history, &read);
    let _ = std::fs::remove_dir_all(&dir);
}
