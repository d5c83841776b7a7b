//! Integration tests of the Pulsar connector against pulsar-lite (`DSINK_PULSAR_URL`, started by
//! `scripts/services start pulsar`). Messages are read back with Python's `pulsar-client` (the
//! Rust crate's consumer cannot decode pulsar-lite 0.2's message frames) and compared with the
//! reference model of `common`.
//!
//! Server notes: pulsar-lite 0.2 does not deduplicate: a producer re-created under the same name
//! is told `last_sequence_id = -1`, and messages sent again with sequence ids it had already
//! stored are stored a second time (hence the sink's local progress store and at-least-once
//! guarantee here).

mod common;
mod drive;
#[path = "support/progress_replay.rs"]
mod progress_replay;

use common::{expected_changes, keyed_history, state_before, Row};
use differential_sinks::connectors::pulsar::{
    PulsarCompression, PulsarConfig, OP_PROPERTY, SEQ_PROPERTY, TIME_PROPERTY,
};
use differential_sinks::{CommitPolicy, SinkSpec};
use drive::Drive;
use progress_replay::{dedup_by_identity, restore_dir, snapshot_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn pulsar_url() -> String {
    common::service_env("DSINK_PULSAR_URL", "pulsar")
}

fn unique(prefix: &str) -> String {
    format!("persistent://public/default/{}", common::unique_name(prefix, '-'))
}

fn run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) {
    run_until(history, spec, peers, None)
}

/// Like [`run`]; with `stop_at`, feeds only the times before it, waits until they are
/// committed and stops without closing the input (as a process that is stopped mid-stream).
fn run_until(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize, stop_at: Option<u64>) {
    let report = Drive::new(peers).stop_at(stop_at).run(history, spec);
    if stop_at.is_some() {
        report.expect_ok("commits up to the stop");
    } else if let Some(e) = report.first() {
        panic!("sink failed: {e}");
    }
}

/// One message read back: (key, time, seq, op, payload).
type Msg = (String, u64, u64, String, Vec<u8>);

/// A reader in Python's `pulsar-client` (the Rust crate's consumer cannot decode pulsar-lite's
/// message frames): every message from the start of the topic, one JSON line each; it waits up
/// to 20 s for the first `n` and then 1 s for any extra one.
const READER: &str = r#"
import json, sys, pulsar
url, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = pulsar.Client(url)
r = c.create_reader(topic, pulsar.MessageId.earliest)
got = 0
while True:
    try:
        m = r.read_next(timeout_millis=20000 if got < n else 1000)
    except Exception:
        break
    print(json.dumps({"key": m.partition_key(), "props": m.properties(), "data": m.data().hex()}), flush=True)
    got += 1
c.close()
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn read(topic: &str, n: usize) -> Vec<Msg> {
    let msgs = read_from(&pulsar_url(), topic, n);
    assert_eq!(msgs.len(), n, "expected {n} messages in {topic} (fewer: lost; more: duplicated)");
    msgs
}

/// Every message of `topic` on the broker at `url`, waiting for at least `n`.
fn read_from(url: &str, topic: &str, n: usize) -> Vec<Msg> {
    let python = std::env::var("DSINK_PULSAR_PYTHON").unwrap_or_else(|_| {
        panic!("DSINK_PULSAR_PYTHON is not set: install and start with `scripts/services install pulsar && scripts/services start pulsar` and source $DSINK_SERVICES_DIR/env")
    });
    let out = std::process::Command::new(python)
        .args(["-c", READER, url, topic, &n.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("the Python reader runs");
    assert!(out.status.success(), "the Python reader failed");
    let msgs: Vec<Msg> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{')) // the client library logs on stdout too
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let p = &v["props"];
            (
                v["key"].as_str().unwrap().to_string(),
                p[TIME_PROPERTY].as_str().unwrap().parse().unwrap(),
                p[SEQ_PROPERTY].as_str().unwrap().parse().unwrap(),
                p[OP_PROPERTY].as_str().unwrap().to_string(),
                unhex(v["data"].as_str().unwrap()),
            )
        })
        .collect();
    msgs
}

fn check(msgs: &[Msg], history: &[(Row, u64, isize)]) {
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (key, time, seq, op, payload) in msgs {
        let k = common::key_of(key.as_bytes());
        assert!(seen.insert((*time, k)), "change of key {k} at {time} twice");
        if let Some(p) = last.insert(k, (*time, *seq)) {
            assert!(p < (*time, *seq), "key {k} out of order");
        }
        if payload.is_empty() {
            assert_eq!(op, "d");
            state.remove(&k);
        } else {
            state.insert(k, common::row_of(payload));
        }
    }
    assert_eq!(seen, expected_changes(history).into_keys().collect::<BTreeSet<_>>());
    assert_eq!(state, state_before(history, u64::MAX));
}

#[test]
fn upsert_batched_and_compressed_matches_reference() {
    let topic = unique("orders");
    let history = keyed_history(21, 50, 20, 25);
    let cfg =
        PulsarConfig::new(pulsar_url(), &topic).batching(64, Some(128 * 1024)).compression(PulsarCompression::Lz4);
    let spec = SinkSpec::builder("orders", cfg)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(40), interval: Duration::ZERO })
        .build()
        .unwrap();
    run(&history, &spec, 2);
    let msgs = read(&topic, expected_changes(&history).len());
    check(&msgs, &history);
}

#[test]
fn restart_with_progress_dir_adds_only_the_rest() {
    let topic = unique("resume");
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(4, 30, 12, 10);
    let mut o = differential_sinks::Options::parse_pairs(["connector=pulsar", "type=upsert", "primary_key=k"]).unwrap();
    o.set("service.url", pulsar_url())
        .set("topic", topic.as_str())
        .set("progress.dir", dir.path().display().to_string());
    let spec = SinkSpec::from_options(o).unwrap();
    run_until(&history, &spec, 1, Some(6));
    run(&history, &spec, 1);
    let msgs = read(&topic, expected_changes(&history).len());
    check(&msgs, &history);
}

/// A private pulsar-lite (started by `scripts/services` on its own port and RocksDB directory)
/// is killed with SIGKILL mid-stream and restarted on its data: the sink rides through, or stops
/// with an error and a rerun finishes. At-least-once: records may be stored twice, and a reader
/// that keeps, per key, the record of the highest `(time, seq)` (module docs) sees every change
/// and ends in the reference state.
#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_nothing() {
    use common::service::{free_ports, PrivateService};
    let python = std::env::var("DSINK_PULSAR_PYTHON").expect("DSINK_PULSAR_PYTHON (scripts/services env pulsar)");
    let venv = std::path::Path::new(&python).parent().unwrap().parent().unwrap().to_path_buf();
    let [port, metrics] = free_ports::<2>();
    let broker = PrivateService::start(
        "pulsar",
        &[("DSINK_PULSAR_PORT", port.to_string()), ("DSINK_PULSAR_METRICS_PORT", metrics.to_string())],
        Some(venv),
    );
    let url = format!("pulsar://127.0.0.1:{port}");
    let topic = unique("crash");
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(50, 2_000, 30, 400);
    let cfg = PulsarConfig::new(&url, &topic).progress_dir(dir.path());
    let spec = SinkSpec::builder("crash", cfg)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(500), interval: Duration::ZERO })
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (h2, s2) = (history.clone(), spec.clone());
    std::thread::spawn(move || tx.send(drive::run(&h2, &s2, 1, None)).unwrap());
    // Kill once a commit recorded progress (some of the history is stored).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(dir.path()).unwrap().next().is_none() {
        assert!(std::time::Instant::now() < deadline, "the sink never committed");
        std::thread::sleep(Duration::from_millis(5)); // poll interval while waiting for the condition
    }
    assert!(rx.try_recv().is_err(), "the kill came before the sink finished");
    broker.kill_and_restart();
    let first = rx.recv_timeout(Duration::from_secs(120)).expect("the sink neither finished nor failed within 120 s");
    eprintln!("{}", first.as_ref().map_or("rode through".to_string(), |e| format!("stopped: {e}")));
    if let Some(e) = first {
        assert_eq!(drive::run(&history, &spec, 1, None), None, "the rerun after `{e}` completes");
    }
    let msgs = read_from(&url, &topic, expected_changes(&history).len());
    let (_, dropped) = check_with_reader_dedup(&msgs, &history);
    eprintln!("{} messages, {dropped} of them duplicates the reader dropped", msgs.len());
}

/// What an at-least-once reader sees: every change, and per key the record of the highest
/// `(time, seq)` is the reference state (a record may be stored twice after a failure). Also
/// a reader that drops every record whose `(key, time, seq)` it has seen (module docs) keeps
/// every change exactly once. Returns what that reader kept and how many records it dropped.
fn check_with_reader_dedup(msgs: &[Msg], history: &[(Row, u64, isize)]) -> (Vec<Msg>, usize) {
    let mut seen = BTreeSet::new();
    let mut latest: BTreeMap<u32, ((u64, u64), Vec<u8>)> = BTreeMap::new();
    for (key, time, seq, _, payload) in msgs {
        let k = common::key_of(key.as_bytes());
        seen.insert((*time, k));
        if latest.get(&k).is_none_or(|(t, _)| *t < (*time, *seq)) {
            latest.insert(k, ((*time, *seq), payload.clone()));
        }
    }
    assert_eq!(seen, expected_changes(history).into_keys().collect::<BTreeSet<_>>(), "every change");
    let state: BTreeMap<u32, Row> =
        latest.into_iter().filter(|(_, (_, p))| !p.is_empty()).map(|(k, (_, p))| (k, common::row_of(&p))).collect();
    assert_eq!(state, state_before(history, u64::MAX), "{} messages", msgs.len());
    // The first message of each `(key, time, seq)`; the copies must agree on op and payload.
    let (kept, dropped) = dedup_by_identity(msgs, |m| (m.0.as_str(), m.1, m.2), |m| (&m.3, &m.4));
    let mut once: Vec<(u64, u32)> = kept.iter().map(|m| (m.1, common::key_of(m.0.as_bytes()))).collect();
    once.sort();
    let want: Vec<(u64, u32)> = expected_changes(history).into_keys().collect();
    assert_eq!(once, want, "deduplicated by (key, time, seq): every change exactly once");
    (kept, dropped)
}

/// At-least-once, with real duplicates: a run to the end, then the progress file put back as it
/// was at time 4 — what a crash leaves when it comes after the later messages were stored but
/// before their progress was recorded — and a rerun, which sends every change from time 4 on
/// again. The topic then holds those changes twice, and a reader deduplicating by
/// `(key, dsink.time, dsink.seq)` (module docs) gets exactly the reference.
#[test]
fn a_replay_after_lost_progress_is_deduplicated_by_readers() {
    let topic = unique("replay");
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(6, 30, 12, 10);
    let cfg = PulsarConfig::new(pulsar_url(), &topic).progress_dir(dir.path());
    let spec = SinkSpec::builder("replay", cfg)
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(20), interval: Duration::ZERO })
        .build()
        .unwrap();
    run_until(&history, &spec, 2, Some(4));
    let progress_at_4 = snapshot_dir(dir.path());
    assert_eq!(progress_at_4.len(), 2, "one progress file per worker: {:?}", progress_at_4.keys());
    run(&history, &spec, 2);
    let expected = expected_changes(&history);
    check(&read(&topic, expected.len()), &history);

    restore_dir(dir.path(), &progress_at_4);
    run(&history, &spec, 2);
    let replayed = expected.keys().filter(|(t, _)| *t >= 4).count();
    let raw = read_from(&pulsar_url(), &topic, expected.len() + replayed);
    assert!(
        raw.len() > expected.len(),
        "the topic holds duplicates ({} messages, {} changes)",
        raw.len(),
        expected.len()
    );
    assert_eq!(raw.len(), expected.len() + replayed, "every change from time 4 on is in the topic twice");
    let (kept, dropped) = check_with_reader_dedup(&raw, &history);
    assert_eq!(dropped, replayed, "the replay's messages are recognised as duplicates");
    // Nothing was lost before the crash here, so what the reader keeps is also in order per key.
    check(&kept, &history);
}
