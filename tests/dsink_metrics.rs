//! `dsink --metrics`: the Prometheus endpoint is scraped with a plain HTTP GET while a run is
//! still going (its input held open), and its counters are checked against what the file sink
//! committed (read back from the manifests and data files, not through the library) and against
//! the changes the input makes (computed here from the input).

#[path = "support/file_output.rs"]
mod file_output;

use file_output::manifests;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SINK: &str = "orders";

fn dsink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsink"))
}

/// A port nothing listens on right now (the OS's choice of a free ephemeral port).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One sample of the exposition: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// `GET /metrics` over a plain TCP connection; `None` while nothing answers yet.
fn scrape(port: u16) -> Option<Samples> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "the endpoint answered {head:?}");
    Some(parse(body))
}

/// Parses the Prometheus text format: `name{k="v",…} value` lines; comments skipped.
fn parse(body: &str) -> Samples {
    let mut out = Samples::new();
    for line in body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = inner
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        out.entry(name.to_string()).or_default().push((labels, value));
    }
    out
}

/// The value of `name` for sink `orders` and `worker` (0 when the series is absent).
fn value(samples: &Samples, name: &str, worker: u64) -> f64 {
    let w = worker.to_string();
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(l, _)| l.get("sink").map(String::as_str) == Some(SINK) && l.get("worker") == Some(&w))
        .map(|(_, v)| *v)
        .sum()
}

/// Per worker: (committed frontier time, last committed data file, committed lines), read from
/// the manifests and the data files they name.
fn committed_by_worker(dir: &Path) -> BTreeMap<u64, (Option<u64>, u64, u64)> {
    let mut out = BTreeMap::new();
    for (path, m) in manifests(dir).into_iter().filter(|(_, m)| m["sink"] == SINK) {
        let w = m["progress"]["worker"].as_u64().unwrap();
        let g = m["progress"]["generation"].as_u64().unwrap();
        let last = m["last_seq"].as_u64().unwrap();
        let mut lines = 0;
        for seq in 1..=last {
            let file = path.parent().unwrap().join("data").join(format!("w{w}-g{g}-{seq:010}.jsonl"));
            lines += std::fs::read_to_string(&file).unwrap().lines().count() as u64;
        }
        out.insert(w, (m["progress"]["frontier"]["time"].as_u64(), last, lines));
    }
    out
}

fn line(time: u64, diff: i64, k: u64, v: u64) -> String {
    serde_json::json!({"time": time, "diff": diff, "row": {"k": k, "v": v}}).to_string()
}

/// Times 0..=5, each changing many keys (so both workers get some at every time): 32 inserts at
/// time 0; at time t ≥ 1, updates of keys t..t+16 and deletes of keys 16+t-1 (inserted at 0,
/// untouched since). Returns the lines and the number of changes they make.
fn input() -> (Vec<String>, u64) {
    let mut lines = Vec::new();
    let mut value: BTreeMap<u64, u64> = BTreeMap::new();
    let mut changes = 0;
    for k in 0..32 {
        lines.push(line(0, 1, k, 0));
        value.insert(k, 0);
        changes += 1;
    }
    for t in 1..=5u64 {
        for k in t..t + 8 {
            let old = value[&k];
            lines.push(line(t, -1, k, old));
            lines.push(line(t, 1, k, old + 1));
            value.insert(k, old + 1);
            changes += 1;
        }
        let gone = 16 + t;
        lines.push(line(t, -1, gone, value.remove(&gone).unwrap()));
        changes += 1;
    }
    (lines, changes)
}

/// Polls until `done` (at most a minute); fails early if `child` exits.
fn poll_until<R>(child: &mut Child, what: &str, mut done: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = done() {
            return r;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dsink exited ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5)); // polling interval while waiting for the condition
    }
}

#[test]
fn the_endpoint_serves_counters_during_a_run_that_match_the_committed_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let port = free_port();
    let (lines, changes) = input();
    let mut child = dsink()
        .args(["--workers", "2", "--commit-each-time", "--step-every", "1", "--progress", "never", "--json"])
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .args(["--with", "connector=file", "--with", "type=upsert", "--with", "primary_key=k"])
        .args(["--with", &format!("sink.name={SINK}"), "--with", &format!("path={}", out.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Times 0..=5, then one line of time 6: the run commits everything before 6 and waits for
    // more input, holding time 6 open.
    stdin.write_all((lines.join("\n") + "\n" + &line(6, 1, 100, 0) + "\n").as_bytes()).unwrap();
    stdin.flush().unwrap();

    poll_until(&mut child, "both workers committed the times before 6", || {
        let c = committed_by_worker(&out);
        (c.len() == 2 && c.values().all(|(f, _, _)| *f == Some(6))).then_some(())
    });
    let committed = committed_by_worker(&out);
    assert_eq!(committed.values().map(|(_, _, n)| n).sum::<u64>(), changes, "the file output holds every change");
    // The counters are recorded right after each commit returns: poll until they catch up.
    let samples = poll_until(&mut child, "the endpoint shows the committed output", || {
        let s = scrape(port)?;
        committed
            .iter()
            .all(|(w, (_, files, lines))| {
                value(&s, "dsink_records_out_total", *w) == *lines as f64
                    && value(&s, "dsink_commits_total", *w) == *files as f64
            })
            .then_some(s)
    });
    assert!(child.try_wait().unwrap().is_none(), "the run is still going while scraped");
    for (w, (_, files, lines)) in &committed {
        let w = *w;
        assert!(*lines > 0 && *files == 6, "worker {w}: every time has changes for it, one commit each");
        assert_eq!(value(&samples, "dsink_changes_out_total", w), *lines as f64, "worker {w}: a change per line");
        assert!(value(&samples, "dsink_records_out_bytes_total", w) > 0.0, "worker {w}: bytes out counted");
        assert_eq!(value(&samples, "dsink_commit_seconds_count", w), *files as f64, "worker {w}: a latency per commit");
        assert_eq!(value(&samples, "dsink_frontier_lag", w), 0.0, "worker {w}: committed up to the input frontier");
        assert_eq!(value(&samples, "dsink_errors_total", w), 0.0);
        assert_eq!(value(&samples, "dsink_key_violations_total", w), 0.0);
    }
    let updates_in = value(&samples, "dsink_updates_in_total", 0) + value(&samples, "dsink_updates_in_total", 1);
    assert!(
        updates_in >= lines.len() as f64 && updates_in <= lines.len() as f64 + 1.0,
        "{updates_in} updates in, {} lines before time 6",
        lines.len()
    );
    let buckets = samples.get("dsink_commit_seconds_bucket").map_or(0, Vec::len);
    assert!(buckets > 2, "commit latency is a histogram with buckets ({buckets} bucket samples)");

    // The end of the input commits time 6; the summary agrees with the endpoint's totals.
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "dsink failed: {}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["records_out"], changes + 1);
    assert_eq!(summary["commits"].as_u64().unwrap(), 14, "6 commits per worker, then one each at the end");
}

#[test]
fn a_metrics_address_in_use_is_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let o = dsink()
        .args(["--metrics", &addr.to_string(), "--progress", "never"])
        .args(["--with", "connector=file", "--with", "type=append-only"])
        .args(["--with", &format!("path={}", dir.path().display())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("--metrics {addr}")), "{err}");
}
