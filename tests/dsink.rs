//! End-to-end tests of the `dsink` binary with the file sink: a crash (SIGKILL) mid-stream and a
//! restart, a two-process timely cluster, worker-count changes and refused input. Output is read
//! back from the committed manifests and compared with the reference model.

mod common;
#[path = "support/file_output.rs"]
mod file_output;

use common::{expected_changes, keyed_history, state_before, Row};
use file_output::{committed_lines, files_under, manifests};
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
    sink_opts(dir, "orders")
}

fn sink_opts(dir: &Path, sink: &str) -> Vec<String> {
    ["connector=file", "type=upsert", "primary_key=k", &format!("sink.name={sink}"), &format!("path={}", dir.display())]
        .iter()
        .flat_map(|o| ["--with".to_string(), o.to_string()])
        .collect()
}

/// Checks the committed output of sink `orders` (read with plain file parsing, not the
/// library's reader) against the reference: every change exactly once, and the replay equals
/// the final state.
fn check_exactly_once(dir: &Path, history: &[(Row, u64, isize)]) {
    let lines = committed_lines(dir, "orders");
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

/// The largest committed frontier time in any manifest under `dir` (`None`: nothing committed
/// short of the end).
fn manifest_frontier(dir: &Path) -> Option<u64> {
    manifests(dir).iter().filter_map(|(_, m)| m["progress"]["frontier"]["time"].as_u64()).max()
}

fn has_open_file(dir: &Path) -> bool {
    files_under(dir).iter().any(|p| p.to_string_lossy().ends_with(".tmp"))
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
    assert_eq!(manifests(&out).len(), 4, "one manifest per worker of the 2 × 2 cluster");
    check_exactly_once(&out, &history);
}

/// Runs `dsink` on `log` as a cluster of 2 processes × 2 workers; each process's success and stderr.
fn run_cluster(out: &Path, log: &Path, hosts: &Path) -> Vec<(bool, String)> {
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    std::fs::write(hosts, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            dsink()
                .args(upsert_opts(out))
                .args(["--workers", "2", "--processes", "2", "--process", &p.to_string(), "--hostfile"])
                .arg(hosts)
                .arg("--input")
                .arg(log)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
        })
        .collect()
}

#[test]
fn a_bad_line_stops_every_process_of_a_cluster() {
    let (good, at) = log_with_time_12();
    let mut bad = good.clone();
    bad[at] = "not json".to_string();
    let dir = tempfile::tempdir().unwrap();
    let (out, hosts) = (dir.path().join("out"), dir.path().join("hosts"));
    let (bad_log, good_log) = (dir.path().join("bad.jsonl"), dir.path().join("good.jsonl"));
    std::fs::write(&bad_log, bad.join("\n") + "\n").unwrap();
    std::fs::write(&good_log, good.join("\n") + "\n").unwrap();
    let error = format!(":{}: not a change-log line", at + 1);
    for (ok, e) in run_cluster(&out, &bad_log, &hosts) {
        assert!(!ok && e.contains(&error), "each process stops with `{error}`, got: {e}");
    }
    let last_read = serde_json::from_str::<serde_json::Value>(&bad[at - 1]).unwrap()["time"].as_u64().unwrap();
    for f in committed_frontiers(&out, "orders") {
        assert!(
            f.is_some_and(|t| t <= last_read),
            "committed {f:?} past time {last_read}, the line before the bad one"
        );
    }
    for (ok, e) in run_cluster(&out, &good_log, &hosts) {
        assert!(ok, "the corrected rerun: {e}");
    }
    assert_delivers(&out, "orders", &good);
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
    // A row nested deeper than serde_json reads: an error naming the line, not a stack overflow.
    let deep = format!("{{\"time\":0,\"diff\":1,\"row\":{}{}}}\n", "[".repeat(200_000), "]".repeat(200_000));
    let e = run_expect_error(&ok, &deep);
    assert!(e.contains(":1: the row is not JSON: recursion limit exceeded"), "{e}");
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
    let long = format!("sink.name={}", "n".repeat(300));
    let e =
        run_expect_error(&["--with", "type=upsert", "--with", "primary_key=k", "--with", &long, "--workers", "2"], "");
    assert!(e.contains("`sink.name` is too long"), "{e}");
}

// Output read back with plain file parsing (not the library's reader), against a reference
// computed from the change log's lines alone.

/// `sink`'s committed frontiers, one per manifest: `None` is the complete frontier.
fn committed_frontiers(dir: &Path, sink: &str) -> Vec<Option<u64>> {
    manifests(dir)
        .into_iter()
        .filter(|(_, m)| m["sink"] == sink)
        .map(|(_, m)| {
            let f = &m["progress"]["frontier"];
            if f["complete"].as_bool().unwrap() {
                None
            } else {
                Some(f["time"].as_u64().unwrap())
            }
        })
        .collect()
}

/// Upsert changes keyed by `(time, k)`: the key's row after that time, null once deleted.
type Changes = BTreeMap<(u64, u64), serde_json::Value>;

/// The changes a change log calls for, from its lines alone: at each time, every key whose rows
/// changed, with its row after that time.
fn reference(lines: &[String]) -> Changes {
    let mut updates: BTreeMap<u64, BTreeMap<(u64, String), i64>> = BTreeMap::new(); // time → (k, row) → diff
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let (t, k) = (v["time"].as_u64().unwrap(), v["row"]["k"].as_u64().unwrap());
        *updates.entry(t).or_default().entry((k, v["row"].to_string())).or_default() += v["diff"].as_i64().unwrap();
    }
    let mut state: BTreeMap<u64, BTreeMap<String, i64>> = BTreeMap::new(); // k → row → count
    let mut out = Changes::new();
    for (t, at) in updates {
        let mut touched = BTreeSet::new();
        for ((k, row), d) in at.into_iter().filter(|(_, d)| *d != 0) {
            *state.entry(k).or_default().entry(row).or_default() += d;
            touched.insert(k);
        }
        for k in touched {
            let rows: Vec<&String> = state[&k].iter().filter(|(_, c)| **c != 0).map(|(r, _)| r).collect();
            assert!(rows.len() <= 1 && state[&k].values().all(|c| *c == 0 || *c == 1), "the log is not keyed at {k}");
            let after = rows.first().map_or(serde_json::Value::Null, |r| serde_json::from_str(r).unwrap());
            out.insert((t, k), after);
        }
    }
    out
}

/// The changes delivered in `lines` (upsert output), each `(time, key)` at most once.
fn delivered(lines: &[serde_json::Value]) -> Changes {
    let mut out = Changes::new();
    for l in lines {
        let key = (l["time"].as_u64().unwrap(), l["key"]["k"].as_u64().unwrap());
        assert!(
            out.insert(key, l["value"].clone()).is_none(),
            "the change of key {} at time {} is delivered twice",
            key.1,
            key.0
        );
    }
    out
}

fn assert_delivers(dir: &Path, sink: &str, log: &[String]) {
    let (got, want) = (delivered(&committed_lines(dir, sink)), reference(log));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).take(5).collect();
    assert!(
        got == want,
        "sink `{sink}`: {} changes delivered, {} expected; missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
}

/// Waits (polling the directory, at most a minute) until `done`; fails early if `child` exits.
fn wait_until(child: &mut std::process::Child, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dsink exited ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5)); // polling interval while waiting for the condition
    }
}

/// A `dsink` run fed through stdin: `first` is written, then, once the sink has committed every
/// time before `committed`, `rest`.
fn run_in_two_parts(args: &[String], out: &Path, first: &[String], committed: u64, rest: &[String]) -> (bool, String) {
    let mut child =
        dsink().args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all((first.join("\n") + "\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until(&mut child, &format!("it committed the times before {committed}"), || {
        manifest_frontier(out).is_some_and(|f| f >= committed)
    });
    // dsink may stop (on a bad line) before reading everything: a broken pipe is expected then.
    let _ = stdin.write_all((rest.join("\n") + "\n").as_bytes());
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn two_sinks_in_one_directory_keep_their_output_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (a, b) = ("orders", "orders by day/v2"); // the second name is no file name as it is
    let logs: Vec<(Vec<String>, std::path::PathBuf)> = [21, 22]
        .into_iter()
        .map(|seed| {
            let lines = log_lines(&keyed_history(seed, 30, 12, 8));
            let path = dir.path().join(format!("{seed}.jsonl"));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            (lines, path)
        })
        .collect();
    // As reported: `a`, then `b` into the same directory.
    for ((_, log), (sink, workers)) in logs.iter().zip([(a, "2"), (b, "1")]) {
        let o = dsink().args(sink_opts(&out, sink)).args(["--workers", workers, "--input"]).arg(log).output().unwrap();
        assert!(o.status.success(), "sink `{sink}`: {}", String::from_utf8_lossy(&o.stderr));
    }
    // Then both again at once: different sinks do not fence each other, and reruns add nothing.
    let children: Vec<_> = logs
        .iter()
        .zip([a, b])
        .map(|((_, log), sink)| {
            dsink()
                .args(sink_opts(&out, sink))
                .args(["--workers", "2", "--input"])
                .arg(log)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for ((lines, _), sink) in logs.iter().zip([a, b]) {
        assert_delivers(&out, sink, lines);
        assert!(committed_frontiers(&out, sink).iter().all(Option::is_none), "sink `{sink}` is not complete");
    }
}

#[test]
fn a_second_run_of_a_sink_while_one_is_running_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = (dir.path().join("out"), dir.path().join("log.jsonl"));
    let history = keyed_history(11, 40, 20, 10);
    let lines = log_lines(&history);
    write_log(&log, &history);
    let split = history.iter().position(|h| h.1 == 10).unwrap();
    // The first run is fed through stdin and kept waiting with the times before 9 committed.
    let mut first = dsink()
        .args(upsert_opts(&out))
        .args(["--workers", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all((lines[..split].join("\n") + "\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until(&mut first, "the first run committed", || manifest_frontier(&out).is_some_and(|f| f >= 9));
    for workers in ["2", "3", "1"] {
        let o = dsink().args(upsert_opts(&out)).args(["--workers", workers, "--input"]).arg(&log).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "a second run on {workers} workers must be refused while the first runs: {e}");
        assert!(e.contains("another run of sink `orders`") && e.contains(&out.display().to_string()), "{e}");
    }
    stdin.write_all((lines[split..].join("\n") + "\n").as_bytes()).unwrap();
    drop(stdin);
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "the first run: {}", String::from_utf8_lossy(&o.stderr));
    assert_delivers(&out, "orders", &lines);
}

/// Runs `dsink` on `bad` (with a bad line at `at`), expecting it to stop with `error` and a
/// committed frontier no later than the line before it; then reruns it on `good` and checks that
/// every change is delivered exactly once. `in_two_parts`: feed through stdin and wait until the
/// times before the given one are committed before feeding the bad line.
fn stop_then_rerun(workers: &str, bad: &[String], at: usize, error: &str, good: &[String], in_two_parts: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (out, bad_log, good_log) =
        (dir.path().join("out"), dir.path().join("bad.jsonl"), dir.path().join("good.jsonl"));
    std::fs::write(&bad_log, bad.join("\n") + "\n").unwrap();
    std::fs::write(&good_log, good.join("\n") + "\n").unwrap();
    let mut args = upsert_opts(&out);
    args.extend(["--workers".to_string(), workers.to_string()]);
    let (ok, e) = match in_two_parts {
        Some(committed) => {
            let split = good.iter().position(|l| l.contains(&format!("\"time\":{}", committed + 1))).unwrap();
            assert!(split <= at);
            run_in_two_parts(&args, &out, &bad[..split], committed, &bad[split..])
        }
        None => {
            let o = dsink().args(&args).arg("--input").arg(&bad_log).output().unwrap();
            (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
        }
    };
    assert!(!ok && e.contains(error), "expected `{error}`, got: {e}");
    let last_read: u64 = if at == 0 {
        0
    } else {
        serde_json::from_str::<serde_json::Value>(&bad[at - 1]).unwrap()["time"].as_u64().unwrap()
    };
    for f in committed_frontiers(&out, "orders") {
        assert!(
            f.is_some_and(|t| t <= last_read),
            "committed {f:?} past time {last_read}, the line before the bad one"
        );
    }
    if let Some(committed) = in_two_parts {
        assert!(manifest_frontier(&out).is_some_and(|f| f >= committed), "what was committed before stays committed");
    }
    let o = dsink().args(&args).arg("--input").arg(&good_log).output().unwrap();
    assert!(o.status.success(), "the corrected rerun: {}", String::from_utf8_lossy(&o.stderr));
    assert_delivers(&out, "orders", good);
}

/// A log of 20 times and the index of its first line at time 12.
fn log_with_time_12() -> (Vec<String>, usize) {
    let history = keyed_history(5, 30, 20, 8);
    let at = history.iter().position(|h| h.1 == 12).unwrap();
    (log_lines(&history), at)
}

#[test]
fn a_malformed_line_stops_dsink_before_its_time_and_a_corrected_rerun_delivers_the_rest() {
    // As reported: the second of three lines at time 0 is malformed.
    let good: Vec<String> =
        (1..=3).map(|k| format!("{{\"time\":0,\"diff\":1,\"row\":{{\"k\":{k},\"v\":{k},\"s\":\"x\"}}}}")).collect();
    let mut bad = good.clone();
    bad[1] = "{\"time\":0,\"diff\":1,\"row\":{\"k\":2,".to_string();
    stop_then_rerun("1", &bad, 1, ":2: not a change-log line", &good, None);

    let (good, at) = log_with_time_12();
    let mut bad = good.clone();
    bad[at] = bad[at].replace("\"row\"", "\"rows\"");
    let error = format!(":{}: not a change-log line", at + 1);
    stop_then_rerun("2", &bad, at, &error, &good, None);
    stop_then_rerun("2", &bad, at, &error, &good, Some(9));
}

#[test]
fn a_line_whose_time_goes_back_stops_dsink_before_its_time_and_a_corrected_rerun_delivers_the_rest() {
    let (good, at) = log_with_time_12();
    let mut bad = good.clone();
    bad[at] = bad[at].replace("\"time\":12", "\"time\":3");
    let error = format!(":{}: time 3 goes back", at + 1);
    stop_then_rerun("2", &bad, at, &error, &good, None);
    stop_then_rerun("1", &bad, at, &error, &good, Some(9));
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes; 0 once it has exited.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Replays `log` into sink `orders` under `out` on 2 workers with the extra options `with`;
/// returns dsink's JSON summary and the largest peak RSS read from `/proc` while it ran (read
/// every 10 ms: `VmHWM` is a high-water mark, so only the last moments before exit can escape).
fn replay_measured(log: &Path, out: &Path, with: &[String]) -> (serde_json::Value, u64) {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = dsink();
    cmd.arg("--input").arg(log).args(sink_opts(out, "orders")).args([
        "--workers",
        "2",
        "--progress",
        "never",
        "--json",
    ]);
    for w in with {
        cmd.args(["--with", w]);
    }
    let stdout = tempfile::NamedTempFile::new().unwrap();
    let mut child =
        cmd.stdout(stdout.reopen().unwrap()).stderr(stderr.reopen().unwrap()).spawn().expect("starting dsink");
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = std::fs::read_to_string(stderr.path()).unwrap();
    assert!(status.success(), "dsink failed: {err}");
    let summary = serde_json::from_str(std::fs::read_to_string(stdout.path()).unwrap().trim()).unwrap();
    (summary, peak)
}

/// Memory is bounded by `buffer.max.bytes`, not by the size of a time: a single-time snapshot
/// many times the budget goes through `dsink` on 2 workers with its updates spilled to disk and
/// merged back, and the committed output equals the snapshot (each key once, with its row).
/// Peak RSS is compared with the same snapshot held in memory (a budget that never spills): the
/// spilling run must stay far under it, and under a generous absolute bound. Rows are large
/// (4 kB) so that the snapshot dominates what the process holds.
#[test]
fn a_snapshot_many_times_the_buffer_is_spilled_and_delivered_exactly_in_bounded_memory() {
    const ROWS: u32 = 80_000;
    let history: Vec<(Row, u64, isize)> =
        (0..ROWS).map(|k| (Row { k, v: k.wrapping_mul(2_654_435_761), s: format!("{k:0>4000}") }, 0, 1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("snapshot.jsonl");
    write_log(&log, &history);
    let spill = dir.path().join("spill");
    // Both runs hand the writer 1000 changes a call, so the writer's batch is the same size.
    let chunk = "write.chunk_changes=1000".to_string();

    let held = dir.path().join("held");
    let (_, held_peak) = replay_measured(&log, &held, &["buffer.max.bytes=4GiB".to_string(), chunk.clone()]);
    let out = dir.path().join("out");
    let budget = 4u64 << 20;
    let (summary, peak) = replay_measured(
        &log,
        &out,
        &[format!("buffer.max.bytes={budget}"), format!("buffer.spill.dir={}", spill.display()), chunk],
    );
    eprintln!("peak RSS: {} MB spilling, {} MB held in memory; {summary}", peak >> 20, held_peak >> 20);
    // Most of the snapshot went through disk (the last batches of each worker may stay in memory).
    assert!(summary["spilled_updates"].as_u64().unwrap() >= u64::from(ROWS) / 2, "{summary}");
    check_exactly_once(&out, &history);
    assert!(
        peak < held_peak / 2,
        "spilling peaked at {} MB, holding the snapshot at {} MB",
        peak >> 20,
        held_peak >> 20
    );
    assert!(peak < 200 << 20, "spilling peaked at {} MB", peak >> 20);
    assert!(std::fs::read_dir(&spill)
        .unwrap()
        .flatten()
        .all(|d| std::fs::read_dir(d.path()).unwrap().next().is_none()));
}
