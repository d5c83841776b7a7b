//! End-to-end tests of the `dsink` binary with the file sink: a crash (SIGKILL) mid-stream and a
//! restart, a two-process timely cluster, worker-count changes and refused input. Output is read
//! back from the committed manifests and compared with the reference model.

mod common;

use common::{expected_changes, keyed_history, state_before, Row};
use differential_sinks::connectors::file::read_committed;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dsink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsink"))
}

fn log_lines(history: &[(Row, u64, isize)]) -> Vec<String> {
    history.iter().map(|(row, t, d)| serde_json::json!({"time": t, "diff": d, "row": row}).to_string()).collect()
}

fn write_log(path: &Path, history: &[(Row, u64, isize)]) {
    std::fs::write(path, log_lines(history).join("\n") + "\n").unwrap();
}

fn upsert_opts(dir: &Path) -> Vec<String> {
    ["--with", "connector=file", "--with", "type=upsert", "--with", "primary_key=k", "--with", "sink.name=orders"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--with".to_string(), format!("path={}", dir.display())])
        .collect()
}

/// Checks the committed output against the reference: every change exactly once, and the
/// replay equals the final state.
fn check_exactly_once(dir: &Path, history: &[(Row, u64, isize)]) {
    let lines = read_committed(dir).unwrap();
    let mut seen = BTreeSet::new();
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    for l in &lines {
        let (t, k) = (l["time"].as_u64().unwrap(), l["key"]["k"].as_u64().unwrap() as u32);
        assert!(seen.insert((t, k)), "the change of key {k} at time {t} is in the output twice");
        if l["value"].is_null() {
            state.remove(&k);
        } else {
            state.insert(k, serde_json::from_value(l["value"].clone()).unwrap());
        }
    }
    let expected: BTreeSet<(u64, u32)> = expected_changes(history).into_keys().collect();
    assert_eq!(seen, expected, "delivered changes differ from the reference");
    assert_eq!(state, state_before(history, u64::MAX));
}

fn manifest_frontier(dir: &Path) -> Option<u64> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        if e.file_name().to_string_lossy().starts_with("manifest-") {
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            if let Some(t) = m["progress"]["frontier"]["time"].as_u64() {
                best = best.max(Some(t));
            }
        }
    }
    best
}

fn has_open_file(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("data"))
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
        .unwrap_or(false)
}

#[test]
fn killed_mid_stream_then_restarted_delivers_each_change_once() {
    let history = keyed_history(42, 40, 60, 12);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("log.jsonl");
    write_log(&log, &history);

    // First run: fed slowly through a pipe, committing every 10 changes; killed once it has
    // committed something and holds written-but-uncommitted data.
    let mut child = dsink()
        .args(upsert_opts(&out))
        .args(["--with", "commit.max_changes=10", "--with", "commit.interval.ms=3600000", "--workers", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = log_lines(&history);
    let mut killed = false;
    for t in 0..60u64 {
        for (line, h) in lines.iter().zip(&history) {
            if h.1 == t {
                writeln!(stdin, "{line}").unwrap();
            }
        }
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if manifest_frontier(&out).is_some_and(|f| f >= 2) && has_open_file(&out) {
                child.kill().unwrap();
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5)); // polling interval while waiting for the condition
        }
        if killed {
            break;
        }
    }
    assert!(killed, "the first run never reached a state with commits and an open file");
    let _ = child.wait();
    let committed = manifest_frontier(&out).unwrap();
    assert!(committed < 60, "the first run must stop mid-stream");

    // Second run over the whole log.
    let status = dsink().args(upsert_opts(&out)).args(["--workers", "2", "--input"]).arg(&log).status().unwrap();
    assert!(status.success());
    assert!(!has_open_file(&out), "leftovers of the crash are removed");
    check_exactly_once(&out, &history);
}

#[test]
fn two_process_cluster_delivers_correctly() {
    let history = keyed_history(7, 200, 20, 60);
    let dir = tempfile::tempdir().unwrap();
    let (out, log, hosts) = (dir.path().join("out"), dir.path().join("log.jsonl"), dir.path().join("hosts"));
    write_log(&log, &history);
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    std::fs::write(&hosts, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            dsink()
                .args(upsert_opts(&out))
                .args(["--workers", "2", "--processes", "2", "--process", &p.to_string(), "--hostfile"])
                .arg(&hosts)
                .arg("--input")
                .arg(&log)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a cluster process failed");
    }
    let manifests = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("manifest-"))
        .count();
    assert_eq!(manifests, 4, "one manifest per worker of the 2 × 2 cluster");
    check_exactly_once(&out, &history);
}

#[test]
fn rerun_with_more_workers_after_completion_adds_nothing() {
    let history = keyed_history(9, 50, 10, 20);
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out"), dir.path().join("log.jsonl"));
    write_log(&log, &history);
    for workers in ["2", "3"] {
        let status =
            dsink().args(upsert_opts(&out)).args(["--workers", workers, "--input"]).arg(&log).status().unwrap();
        assert!(status.success());
    }
    check_exactly_once(&out, &history);
}

/// Runs dsink on `input` (stdin) writing into a fresh directory, expecting failure.
fn run_expect_error(args: &[&str], input: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dsink()
        .args(args)
        .arg("--with")
        .arg(format!("path={}", dir.path().display()))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "dsink should fail for {args:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn bad_options_and_input_are_refused_clearly() {
    let e = run_expect_error(&["--with", "type=upsert"], "");
    assert!(e.contains("primary_key"), "{e}");
    let e = run_expect_error(&["--with", "type=upsrt"], "");
    assert!(e.contains("`type` = `upsrt`"), "{e}");
    let e = run_expect_error(&["--with", "type=append-only", "--with", "force_append_only=yes"], "");
    assert!(e.contains("force_append_only"), "{e}");
    let e = run_expect_error(&["--with", "connector=nosuch", "--with", "type=upsert"], "");
    assert!(e.contains("not available in this build"), "{e}");
    let ok = ["--with", "type=upsert", "--with", "primary_key=k"];
    let e =
        run_expect_error(&ok, "{\"time\":2,\"diff\":1,\"row\":{\"k\":1}}\n{\"time\":1,\"diff\":1,\"row\":{\"k\":2}}\n");
    assert!(e.contains(":2: time 1 goes back"), "{e}");
    let e = run_expect_error(&ok, "{\"time\":0,\"diff\":1,\"row\":{\"k\":1}}\nnot json\n");
    assert!(e.contains(":2: not a change-log line"), "{e}");
    let mut typed = ok.to_vec();
    typed.extend(["--schema", "k:int64!,name:string"]);
    let e = run_expect_error(&typed, "{\"time\":0,\"diff\":1,\"row\":{\"k\":\"x\"}}\n");
    assert!(e.contains("column `k` should be int64"), "{e}");
    let e = run_expect_error(
        &ok,
        "{\"time\":0,\"diff\":1,\"row\":{\"k\":1,\"v\":1}}\n{\"time\":0,\"diff\":1,\"row\":{\"k\":1,\"v\":2}}\n",
    );
    assert!(e.contains("primary key violation"), "{e}");
    let e = run_expect_error(&ok, "{\"time\":0,\"diff\":1,\"row\":{\"v\":1}}\n");
    assert!(e.contains("no primary key column `k`"), "{e}");
}
