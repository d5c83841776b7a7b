//! Crash tests of the file sink: `dsink` killed with SIGKILL at every crash point (inside a
//! chunked time, around and inside a commit) on 2 workers, then rerun; the committed files are
//! read back by parsing manifests and data files (`tests/support/file_output.rs`), not with
//! the library's reader.

mod common;
#[path = "support/file_output.rs"]
mod file_output;

use common::crash::{self, CrashTest, Delivered, Guarantee, Readback, INDEPENDENT};
use common::Row;
use file_output::committed_lines;
use std::path::Path;

fn test(label: &'static str, dir: &Path, format: &[&str], seed: u64) -> CrashTest<'static> {
    let mut args: Vec<String> =
        ["connector=file", &format!("path={}", dir.display())].iter().map(|s| s.to_string()).collect();
    args.extend(format.iter().map(|s| s.to_string()));
    let args = args.into_iter().flat_map(|w| ["--with".to_string(), w]).collect();
    CrashTest { label, args, workers: 2, points: INDEPENDENT, guarantee: Guarantee::ExactlyOnce, seed, env: vec![] }
}

/// The upsert records committed under `dir`, as the crash harness reads a change log.
fn upsert_log(dir: &Path) -> Readback {
    Readback::Log(
        committed_lines(dir, "sink")
            .iter()
            .map(|l| Delivered {
                time: l["time"].as_u64().unwrap(),
                key: l["key"]["k"].as_u64().unwrap() as u32,
                after: serde_json::from_value(l["value"].clone()).unwrap(),
            })
            .collect(),
    )
}

#[test]
fn upsert_killed_at_every_crash_point_delivers_each_change_once() {
    let dir = crash::scratch("file-upsert");
    let history = crash::history(1);
    let t = test("file upsert", &dir, &["type=upsert", "primary_key=k"], 1);
    let read = || upsert_log(&dir);
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
        Readback::Rows(
            committed_lines(&dir, "sink").into_iter().map(|l| serde_json::from_value::<Row>(l).unwrap()).collect(),
        )
    };
    crash::run(&t, &history, &read);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a one-byte `buffer.max.bytes`, every input batch is spilled, so each crash point is
/// reached with sorted runs on disk (at `write`, inside the large first time being merged back
/// from them). Each rerun starts by removing the crashed run's spill files; the target still gets
/// every change once, and when the last run ends no spill file is left.
#[test]
fn upsert_spilling_every_batch_killed_at_every_crash_point_delivers_each_change_once() {
    let dir = crash::scratch("file-spill");
    let spill = crash::scratch("file-spill-runs");
    let history = crash::history(3);
    let spill_arg = format!("buffer.spill.dir={}", spill.display());
    let t = test("file upsert spilling", &dir, &["type=upsert", "primary_key=k", "buffer.max.bytes=1", &spill_arg], 3);
    let read = || upsert_log(&dir);
    let report = crash::run(&t, &history, &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len());
    let left: Vec<_> = walkdir(&spill);
    assert!(left.is_empty(), "spill files left after the last run: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&spill);
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
