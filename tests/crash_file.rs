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

#[test]
fn upsert_killed_at_every_crash_point_delivers_each_change_once() {
    let dir = crash::scratch("file-upsert");
    let history = crash::history(1);
    let t = test("file upsert", &dir, &["type=upsert", "primary_key=k"], 1);
    let read = || {
        Readback::Log(
            committed_lines(&dir, "sink")
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
        Readback::Rows(
            committed_lines(&dir, "sink").into_iter().map(|l| serde_json::from_value::<Row>(l).unwrap()).collect(),
        )
    };
    crash::run(&t, &history, &read);
    let _ = std::fs::remove_dir_all(&dir);
}
