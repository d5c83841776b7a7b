//! Integration tests of the NATS connector against a real `nats-server -js` (`DSINK_NATS_URL`,
//! started by `scripts/services start nats`). Messages are read back with a plain async-nats
//! client and compared with the reference model of `common`.

mod common;
mod drive;

use async_nats::jetstream;
use common::{expected_changes, keyed_history, state_before, Row};
use differential_sinks::connectors::nats::{NatsConfig, KEY_HEADER, MSG_ID_HEADER, OP_HEADER, TIME_HEADER};
use differential_sinks::{CommitPolicy, Format, SinkSpec};
use drive::Drive;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn nats_url() -> String {
    common::service_env("DSINK_NATS_URL", "nats")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A unique name per test run, so reruns against the same server do not collide.
fn unique(prefix: &str) -> String {
    common::unique_name(prefix, '_')
}

/// Runs `history` into `spec` on `peers` workers until everything is committed.
fn run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) {
    if let Some(e) = Drive::new(peers).run(history, spec).first() {
        panic!("sink failed: {e}");
    }
}

/// One message read back from a stream.
#[derive(Debug)]
struct Msg {
    subject: String,
    key: Option<String>,
    op: String,
    time: u64,
    id: Option<String>,
    payload: Vec<u8>,
}

/// Reads every message of `stream` once it holds at least `min` (polling with a deadline).
async fn read_stream(js: &jetstream::Context, stream: &str, min: u64) -> Vec<Msg> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = js.get_stream(stream).await.unwrap();
    let state = loop {
        let mut s = s.clone();
        let info = s.info().await.unwrap().clone();
        if info.state.messages >= min || Instant::now() > deadline {
            break info.state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval while waiting for the count
    };
    assert!(state.messages >= min, "stream {stream} holds {} messages, expected at least {min}", state.messages);
    let mut out = Vec::new();
    // Many gets in flight at once, answers kept in sequence order.
    let mut gets = futures::StreamExt::buffered(
        futures::stream::iter((state.first_sequence..=state.last_sequence).map(|seq| s.get_raw_message(seq))),
        64,
    );
    while let Some(m) = futures::StreamExt::next(&mut gets).await {
        let m = m.unwrap();
        let h = |n: &str| m.headers.get(n).map(|v| v.as_str().to_string());
        out.push(Msg {
            subject: m.subject.to_string(),
            key: h(KEY_HEADER),
            op: h(OP_HEADER).expect("op header"),
            time: h(TIME_HEADER).expect("time header").parse().unwrap(),
            id: h(MSG_ID_HEADER),
            payload: m.payload.to_vec(),
        });
    }
    out
}

/// Checks upsert messages against the reference: each change exactly once, and the replay
/// (stream order) equals the final state.
fn check_upsert(msgs: &[Msg], history: &[(Row, u64, isize)]) {
    let mut seen = BTreeSet::new();
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    for m in msgs {
        let k = common::key_of(m.key.as_ref().expect("key header").as_bytes());
        assert!(seen.insert((m.time, k)), "the change of key {k} at time {} is in the stream twice", m.time);
        if m.payload.is_empty() {
            assert_eq!(m.op, "d");
            state.remove(&k);
        } else {
            let row = common::row_of(&m.payload);
            assert_eq!(row.k, k);
            state.insert(k, row);
        }
    }
    let expected: BTreeSet<(u64, u32)> = expected_changes(history).into_keys().collect();
    assert_eq!(seen, expected, "delivered changes differ from the reference");
    assert_eq!(state, state_before(history, u64::MAX), "replayed state differs from the reference");
}

/// Checks that every change is in `msgs` once and that, per key, the record of the highest
/// `Dsink-Time` is the reference state: after a server or connection failure, a record the failure
/// lost is published again after later ones of its key may have been stored (module docs).
fn check_changes_and_latest(msgs: &[Msg], history: &[(Row, u64, isize)]) {
    let mut seen = BTreeSet::new();
    let mut latest: BTreeMap<u32, (u64, Option<Row>)> = BTreeMap::new();
    for m in msgs {
        let k = common::key_of(m.key.as_ref().expect("key header").as_bytes());
        assert!(seen.insert((m.time, k)), "the change of key {k} at time {} is in the stream twice", m.time);
        let row = (!m.payload.is_empty()).then(|| common::row_of(&m.payload));
        if latest.get(&k).is_none_or(|(t, _)| *t < m.time) {
            latest.insert(k, (m.time, row));
        }
    }
    let expected: BTreeSet<(u64, u32)> = expected_changes(history).into_keys().collect();
    assert_eq!(seen, expected, "delivered changes differ from the reference");
    let state: BTreeMap<u32, Row> = latest.into_iter().filter_map(|(k, (_, r))| r.map(|r| (k, r))).collect();
    assert_eq!(state, state_before(history, u64::MAX), "the latest change of each key is the reference state");
}

fn jetstream_spec(name: &str, stream: &str, subject: &str, bucket: &str) -> SinkSpec {
    let cfg = NatsConfig::new(nats_url(), subject)
        .jetstream(stream)
        .create_stream(Duration::from_secs(120))
        .key_suffix(true)
        .progress(differential_sinks::connectors::nats::ProgressStore::Stream(bucket.into()));
    SinkSpec::builder(name, cfg)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(50), interval: Duration::ZERO })
        .build()
        .unwrap()
}

#[test]
fn jetstream_upsert_matches_reference_and_replays_are_dropped() {
    let rt = rt();
    let _enter = rt.enter();
    let (stream, subject, bucket) = (unique("S"), unique("orders"), unique("progress"));
    let history = keyed_history(11, 60, 25, 20);
    let spec = jetstream_spec("orders", &stream, &subject, &bucket);
    run(&history, &spec, 2);
    let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
    let js = jetstream::new(client);
    let n = expected_changes(&history).len() as u64;
    let msgs = rt.block_on(read_stream(&js, &stream, n));
    assert_eq!(msgs.len() as u64, n);
    check_upsert(&msgs, &history);
    for m in &msgs {
        assert!(m.subject.starts_with(&format!("{subject}.~")), "key token in the subject: {}", m.subject);
        assert!(m.id.as_deref().unwrap().starts_with(&format!("orders|{subject}|{}|", m.time)));
    }

    // A restart that lost its progress (the crash came after the publishes, before the progress
    // record): the whole history is published again and JetStream drops every replay.
    rt.block_on(async {
        let s = js.get_stream(&bucket).await.unwrap();
        let subjects: Vec<String> =
            futures::StreamExt::collect::<Vec<_>>(s.info_with_subjects(format!("{bucket}.>")).await.unwrap())
                .await
                .into_iter()
                .map(|r| r.unwrap().0)
                .collect();
        assert_eq!(subjects.len(), 2, "one progress record per worker: {subjects:?}");
        s.purge().await.unwrap();
    });
    run(&history, &spec, 2);
    let again = rt.block_on(read_stream(&js, &stream, n));
    assert_eq!(again.len() as u64, n, "replayed messages must be dropped by the duplicate window");

    // A restart with its progress intact publishes nothing.
    run(&history, &spec, 2);
    assert_eq!(rt.block_on(read_stream(&js, &stream, n)).len() as u64, n);
}

/// A time larger than the operator's write chunk reaches the writer in several batches: every
/// unkeyed record of it must still get its own message id, or JetStream drops real records as
/// duplicates. Rows with a multiplicity above one are distinct records too.
#[test]
fn unkeyed_rows_of_one_large_time_all_arrive() {
    let rt = rt();
    let _enter = rt.enter();
    for peers in [1, 2] {
        let (stream, subject, bucket) = (unique("U"), unique("bulk"), unique("progress"));
        let mut history: Vec<(Row, u64, isize)> =
            (0..50_000u32).map(|i| (Row { k: i, v: i % 7, s: format!("r{i}") }, 0, 1)).collect();
        // Some rows twice, at a later time too.
        history.extend((0..500u32).map(|i| (Row { k: i, v: 1, s: "twice".into() }, 0, 1)));
        history.extend((0..500u32).map(|i| (Row { k: i, v: 1, s: "twice".into() }, 1, 1)));
        let cfg = NatsConfig::new(nats_url(), &subject)
            .jetstream(&stream)
            .create_stream(Duration::from_secs(120))
            .progress(differential_sinks::connectors::nats::ProgressStore::Stream(bucket));
        let spec = SinkSpec::builder("bulk", cfg).append_only(false).build().unwrap();
        run(&history, &spec, peers);
        let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
        let js = jetstream::new(client);
        let msgs = rt.block_on(read_stream(&js, &stream, history.len() as u64));
        let mut got: BTreeMap<Row, usize> = BTreeMap::new();
        for m in &msgs {
            *got.entry(serde_json::from_slice(&m.payload).unwrap()).or_default() += 1;
        }
        let mut want: BTreeMap<Row, usize> = BTreeMap::new();
        for (row, _, d) in &history {
            *want.entry(row.clone()).or_default() += *d as usize;
        }
        assert_eq!(msgs.len(), history.len(), "{peers} worker(s): every unkeyed record is in the stream once");
        assert_eq!(got, want, "{peers} worker(s): the stream holds exactly the input rows");
    }
}

/// Two sinks of one name into two streams of one server: each has its own progress (scoped by
/// its target), so the second delivers everything instead of resuming from the first's frontier.
#[test]
fn two_sinks_of_one_name_into_two_streams_are_independent() {
    let rt = rt();
    let _enter = rt.enter();
    let bucket = unique("progress");
    let history = keyed_history(23, 40, 10, 12);
    let n = expected_changes(&history).len() as u64;
    let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
    let js = jetstream::new(client);
    for _ in 0..2 {
        let (stream, subject) = (unique("T"), unique("same"));
        run(&history, &jetstream_spec("sink", &stream, &subject, &bucket), 2);
        let msgs = rt.block_on(read_stream(&js, &stream, n));
        assert_eq!(msgs.len() as u64, n, "stream {stream}: every change once");
        check_upsert(&msgs, &history);
    }
}

#[test]
fn debezium_with_tombstones_on_jetstream() {
    let rt = rt();
    let _enter = rt.enter();
    let (stream, subject, bucket) = (unique("D"), unique("cdc"), unique("progress"));
    let history = keyed_history(5, 30, 15, 10);
    let cfg = NatsConfig::new(nats_url(), &subject)
        .jetstream(&stream)
        .create_stream(Duration::from_secs(60))
        .progress(differential_sinks::connectors::nats::ProgressStore::Stream(bucket));
    let spec = SinkSpec::builder("cdc", cfg)
        .format(Format::Debezium { tombstone_after_delete: true })
        .primary_key(["k"])
        .build()
        .unwrap();
    run(&history, &spec, 1);
    let changes = expected_changes(&history);
    let deletes = changes.values().filter(|(_, after)| after.is_none()).count() as u64;
    let n = changes.len() as u64 + deletes;
    let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
    let msgs = rt.block_on(read_stream(&jetstream::new(client), &stream, n));
    assert_eq!(msgs.len() as u64, n, "one event per change plus a tombstone per delete");
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let ids: BTreeSet<&str> = msgs.iter().map(|m| m.id.as_deref().unwrap()).collect();
    assert_eq!(ids.len(), msgs.len(), "message ids are unique (the tombstone has its own)");
    for m in &msgs {
        let k = common::key_of(m.key.as_ref().unwrap().as_bytes());
        if m.payload.is_empty() {
            assert!(!state.contains_key(&k), "a tombstone follows the delete of its key");
            continue;
        }
        let ev: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(ev["op"].as_str().unwrap(), m.op);
        if ev["after"].is_null() {
            state.remove(&k);
        } else {
            state.insert(k, serde_json::from_value(ev["after"].clone()).unwrap());
        }
    }
    assert_eq!(state, state_before(&history, u64::MAX));
}

/// Core NATS is at-most-once (module docs), but in a run without faults every message arrives
/// exactly once: the subscriber collects every message (duplicates kept) up to an end marker the
/// test publishes after the run — the sink's commit flushes (the server has processed every
/// message before it returns), so the marker is delivered after all of them — and the multiset
/// of rows must equal the input's.
#[test]
fn core_nats_append_only_reaches_a_subscriber() {
    let rt = rt();
    let _enter = rt.enter();
    let subject = unique("core");
    let history: Vec<(Row, u64, isize)> =
        (0..200u32).map(|i| (Row { k: i, v: i * 2, s: format!("r{i}") }, (i / 20) as u64, 1)).collect();
    let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
    let mut sub = rt.block_on(client.subscribe(subject.clone())).unwrap();
    rt.block_on(client.flush()).unwrap();
    let spec = SinkSpec::builder("core", NatsConfig::new(nats_url(), &subject)).append_only(false).build().unwrap();
    run(&history, &spec, 2);
    const END: &str = "end-of-test";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(END, "1");
    rt.block_on(client.publish_with_headers(subject.clone(), headers, "".into())).unwrap();
    rt.block_on(client.flush()).unwrap();
    let got: Vec<Row> = rt.block_on(async {
        let mut got = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut sub))
                .await
                .unwrap_or_else(|_| panic!("the end marker within 10 s ({} messages before it)", got.len()))
                .unwrap();
            let headers = m.headers.as_ref().expect("headers");
            if headers.get(END).is_some() {
                break;
            }
            assert!(headers.get(KEY_HEADER).is_none(), "no key without primary_key");
            got.push(serde_json::from_slice(&m.payload).unwrap());
        }
        got
    });
    let mut counts: BTreeMap<&Row, usize> = BTreeMap::new();
    for row in &got {
        *counts.entry(row).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows delivered more than once (row, count): {twice:?}");
    assert_eq!(got.len(), history.len(), "every message exactly once");
    let mut got = got;
    got.sort();
    let mut want: Vec<Row> = history.iter().map(|h| h.0.clone()).collect();
    want.sort();
    assert_eq!(got, want, "the subscriber's multiset of rows is the input's");
}

#[test]
fn options_reach_nats_and_are_checked() {
    let mut o = differential_sinks::Options::parse_pairs([
        "connector=nats",
        "type=upsert",
        "primary_key=k",
        "subject=a.b",
        "stream=S1",
        "subject.key_suffix=true",
    ])
    .unwrap();
    o.set("server_url", nats_url());
    let spec = SinkSpec::from_options(o).unwrap();
    assert_eq!(spec.connector().name(), "nats");
    let e = SinkSpec::from_options(
        differential_sinks::Options::parse_pairs([
            "connector=nats",
            "type=append-only",
            "subject=a",
            "server_url=nats://x",
            "subject.key_suffix=true",
        ])
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("key_suffix"), "{e}");
}

/// The built `dsink` binary, killed mid-stream (SIGKILL) after it committed some progress and
/// published more, then run again over the whole log: the stream holds every change once.
#[test]
fn dsink_killed_mid_stream_then_restarted_leaves_no_duplicates() {
    let rt = rt();
    let _enter = rt.enter();
    let (stream, subject, bucket) = (unique("K"), unique("kill"), unique("progress"));
    let history = keyed_history(42, 40, 60, 12);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let lines: Vec<String> =
        history.iter().map(|(row, t, d)| serde_json::json!({"time": t, "diff": d, "row": row}).to_string()).collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let args: Vec<String> = [
        "connector=nats".to_string(),
        "type=upsert".into(),
        "primary_key=k".into(),
        "sink.name=kill".into(),
        format!("server_url={}", nats_url()),
        format!("subject={subject}"),
        format!("stream={stream}"),
        "stream.create=true".into(),
        format!("progress.stream={bucket}"),
    ]
    .into_iter()
    .flat_map(|kv| ["--with".to_string(), kv])
    .collect();
    let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
    let js = jetstream::new(client);
    let committed = |js: &jetstream::Context| -> Option<u64> {
        rt.block_on(async {
            let s = js.get_stream(&bucket).await.ok()?;
            let subjects =
                futures::StreamExt::collect::<Vec<_>>(s.info_with_subjects(format!("{bucket}.>")).await.ok()?).await;
            let mut best = None;
            for (subject, _) in subjects.into_iter().flatten() {
                let m = s.get_last_raw_message_by_subject(&subject).await.ok()?;
                let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
                best = best.max(v["frontier"]["time"].as_u64());
            }
            best
        })
    };
    let messages = |js: &jetstream::Context| -> u64 {
        rt.block_on(async {
            match js.get_stream(&stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            }
        })
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(&args)
        .args(["--with", "commit.max_changes=40", "--with", "commit.interval.ms=3600000", "--workers", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut killed = false;
    'feed: for t in 0..60u64 {
        for (line, h) in lines.iter().zip(&history) {
            if h.1 == t {
                writeln!(stdin, "{line}").unwrap();
            }
        }
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let c = committed(&js);
            // Kill once something is committed and more than that was published.
            if c.is_some_and(|f| f >= 3) {
                let upto = expected_changes(&history).keys().filter(|(time, _)| *time < c.unwrap()).count() as u64;
                if messages(&js) > upto {
                    child.kill().unwrap();
                    killed = true;
                    break 'feed;
                }
            }
            std::thread::sleep(Duration::from_millis(5)); // poll interval while waiting for the condition
        }
    }
    assert!(killed, "the first run never reached a state with commits and uncommitted publishes");
    let _ = child.wait();
    let before = messages(&js);
    let first_commit = committed(&js).unwrap();
    assert!(first_commit < 60, "the first run must stop mid-stream");

    let status = Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(&args)
        .args(["--workers", "2", "--input"])
        .arg(&log)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let n = expected_changes(&history).len() as u64;
    let msgs = rt.block_on(read_stream(&js, &stream, n));
    assert_eq!(msgs.len() as u64, n, "{before} messages after the kill; the restart must add only the missing ones");
    check_upsert(&msgs, &history);
}

/// A private nats-server (JetStream, its own port and store directory), so a test can kill and
/// restart it without touching the shared server.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateNats {
    fn start(dir: &std::path::Path, port: Option<u16>) -> PrivateNats {
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/services install nats)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the private nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20)); // poll interval while the server starts
        }
        PrivateNats { child, port, dir: dir.to_path_buf() }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new server on the same port and store.
    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let again = PrivateNats::start(&self.dir, Some(self.port));
        *self = again;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server is killed (SIGKILL) mid-stream, once part of the history is in the stream, and
/// restarted on the same store: the sink rides through by reconnecting and publishing again
/// under the same message ids, or stops with an error and a rerun finishes; the stream then
/// holds every change exactly once.
#[test]
fn a_server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let rt = rt();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let mut server = PrivateNats::start(dir.path(), None);
    let (stream, subject, bucket) = (unique("R"), unique("restart"), unique("progress"));
    let history = keyed_history(46, 3_000, 30, 500);
    let n = expected_changes(&history).len() as u64;
    let cfg = NatsConfig::new(server.url(), &subject)
        .jetstream(&stream)
        .create_stream(Duration::from_secs(600))
        .progress(differential_sinks::connectors::nats::ProgressStore::Stream(bucket));
    let spec = SinkSpec::builder("restart", cfg)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(500), interval: Duration::ZERO })
        .build()
        .unwrap();
    let (h2, s2) = (history.clone(), spec.clone());
    let first = std::thread::spawn(move || drive::run(&h2, &s2, 2, None));
    let messages = |url: String| -> u64 {
        rt.block_on(async {
            let Ok(c) = async_nats::connect(url).await else { return 0 };
            match jetstream::new(c).get_stream(&stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(server.url()) < n / 4 {
        assert!(Instant::now() < deadline, "the sink never published a quarter of the history");
        std::thread::sleep(Duration::from_millis(5)); // poll interval while waiting for the condition
    }
    let before_kill = messages(server.url());
    assert!(before_kill < n, "the kill came before the end ({before_kill} of {n})");
    server.kill_and_restart();
    let first = first.join().unwrap();
    eprintln!("{}", first.as_ref().map_or("rode through".to_string(), |e| format!("stopped: {e}")));
    if let Some(e) = first {
        assert_eq!(drive::run(&history, &spec, 2, None), None, "the rerun after `{e}` completes");
    }
    let client = rt.block_on(async_nats::connect(server.url())).unwrap();
    let msgs = rt.block_on(read_stream(&jetstream::new(client), &stream, n));
    assert_eq!(msgs.len() as u64, n, "every change once");
    check_changes_and_latest(&msgs, &history);
}

/// Connections to the server cut mid-stream through a proxy (every connection, once a number of
/// bytes went upstream; three points across a run): the client reconnects, the writer republishes
/// what was not acknowledged under the same message ids, and the stream holds every change once.
#[test]
fn connections_cut_mid_stream_lose_and_duplicate_nothing() {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let rt = rt();
    let _enter = rt.enter();
    let proxy = FaultProxy::start(nats_url().trim_start_matches("nats://"));
    let history = keyed_history(51, 1_500, 20, 300);
    let n = expected_changes(&history).len() as u64;
    let streams: Vec<(String, String, String)> =
        (0..=3).map(|_| (unique("C"), unique("cut"), unique("progress"))).collect();
    run_with_faults(
        &proxy,
        &[Fault::CutAt(0.01), Fault::CutAt(0.3), Fault::CutAt(0.7)],
        |i| {
            let (stream, subject, bucket) = &streams[i];
            let cfg = NatsConfig::new(format!("nats://{}", proxy.addr()), subject)
                .jetstream(stream)
                .create_stream(Duration::from_secs(600))
                .progress(differential_sinks::connectors::nats::ProgressStore::Stream(bucket.clone()));
            let spec = SinkSpec::builder(format!("cut-{i}"), cfg)
                .upsert()
                .primary_key(["k"])
                .commit(CommitPolicy { max_changes: Some(300), interval: Duration::ZERO })
                .build()
                .unwrap();
            drive::run(&history, &spec, 2, None)
        },
        |i| {
            let client = rt.block_on(async_nats::connect(nats_url())).unwrap();
            let msgs = rt.block_on(read_stream(&jetstream::new(client), &streams[i].0, n));
            assert_eq!(msgs.len() as u64, n, "stream {i}: every change once");
            check_changes_and_latest(&msgs, &history);
        },
    );
}
