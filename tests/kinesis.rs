//! Integration tests of the Kinesis connector against moto's Kinesis (`DSINK_MOTO_URL`, started
//! by `scripts/services start moto`). Records are read back with signed `GetRecords` calls and
//! compared with the reference model of `common`.
//!
//! moto (5.x) loses records when two `PutRecords` requests reach one stream at once: two
//! threads putting 34 × 500 records each stored 33,502 of 34,000 (all answered as stored). Tests
//! whose record counts must be exact over many records therefore run one worker.
//!
//! Partial failures are injected by a small HTTP proxy between the sink and moto: it refuses some
//! entries of each `PutRecords` request with `ProvisionedThroughputExceededException` (those
//! entries are *not* forwarded, as a real refusal stores nothing), and throttles one whole
//! request; everything else goes to moto unchanged.

mod common;
mod drive;
#[path = "support/progress_replay.rs"]
mod progress_replay;

use base64::Engine as _;
use common::{expected_changes, keyed_history, state_before, Row};
use differential_sinks::connectors::kinesis::{KinesisClient, KinesisConfig};
use differential_sinks::{CommitPolicy, SinkSpec};
use drive::Drive;
use progress_replay::{dedup_by_identity, restore_dir, snapshot_dir};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn moto_url() -> String {
    common::service_env("DSINK_MOTO_URL", "moto")
}

fn unique(prefix: &str) -> String {
    common::unique_name(prefix, '-')
}

fn config(endpoint: &str, stream: &str) -> KinesisConfig {
    KinesisConfig::new(stream, "us-east-1", Some(endpoint.to_string())).credentials("testing", "testing")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Creates a stream with `shards` shards on moto and waits until it is active.
fn create_stream(rt: &tokio::runtime::Runtime, stream: &str, shards: u32) -> KinesisClient {
    let client = KinesisClient::new(&config(&moto_url(), stream)).unwrap();
    rt.block_on(async {
        let body = json!({"StreamName": stream, "ShardCount": shards}).to_string().into_bytes();
        client.call("CreateStream", body).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = client
                .call("DescribeStreamSummary", json!({"StreamName": stream}).to_string().into_bytes())
                .await
                .unwrap();
            if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                break;
            }
            assert!(Instant::now() < deadline, "stream {stream} never became active");
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval while waiting for ACTIVE
        }
    });
    client
}

/// Every record of every shard, in shard order: (shard, partition key, data envelope).
fn read_all(rt: &tokio::runtime::Runtime, client: &KinesisClient, stream: &str) -> Vec<(String, String, Value)> {
    rt.block_on(async {
        let shards = client.call("ListShards", json!({"StreamName": stream}).to_string().into_bytes()).await.unwrap();
        let mut out = Vec::new();
        for s in shards["Shards"].as_array().unwrap() {
            let id = s["ShardId"].as_str().unwrap().to_string();
            let it = client
                .call(
                    "GetShardIterator",
                    json!({"StreamName": stream, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"})
                        .to_string()
                        .into_bytes(),
                )
                .await
                .unwrap();
            let mut iter = it["ShardIterator"].as_str().map(str::to_string);
            while let Some(i) = iter {
                let r = client
                    .call("GetRecords", json!({"ShardIterator": i, "Limit": 10000}).to_string().into_bytes())
                    .await
                    .unwrap();
                let recs = r["Records"].as_array().unwrap();
                for rec in recs {
                    let data = base64::engine::general_purpose::STANDARD.decode(rec["Data"].as_str().unwrap()).unwrap();
                    out.push((
                        id.clone(),
                        rec["PartitionKey"].as_str().unwrap().to_string(),
                        serde_json::from_slice(&data).unwrap(),
                    ));
                }
                if recs.is_empty() {
                    break;
                }
                iter = r["NextShardIterator"].as_str().map(str::to_string);
            }
        }
        out
    })
}

/// Runs `history` into `spec` on `peers` workers; returns the sink's error, if any.
fn run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) -> Option<String> {
    run_until(history, spec, peers, None)
}

/// Like [`run`]; with `stop_at`, feeds only the times before it, waits until they are
/// committed and stops without closing the input (as a process that is stopped mid-stream).
fn run_until(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize, stop_at: Option<u64>) -> Option<String> {
    let report = Drive::new(peers).stop_at(stop_at).run(history, spec);
    if stop_at.is_some() {
        report.expect_ok("commits up to the stop");
        return None;
    }
    report.first_message()
}

/// What the proxy did.
#[derive(Default)]
struct Injected {
    refused_entries: AtomicU64,
    throttled_requests: AtomicU64,
    put_requests: AtomicU64,
}

/// A fault-injecting HTTP/1.1 proxy in front of moto; returns its URL.
fn start_proxy(rt: &tokio::runtime::Runtime, upstream: String, stats: Arc<Injected>) -> String {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let http = reqwest::Client::new();
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    rt.spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (http, upstream, stats, seen) = (http.clone(), upstream.clone(), stats.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request: headers, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        let mut chunk = [0u8; 65536];
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize =
                        headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 65536];
                        let n = sock.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "client closed mid-request");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    let target = headers.iter().find(|(k, _)| k == "x-amz-target").map(|(_, v)| v.clone()).unwrap_or_default();
                    let (status, answer) = if target.ends_with(".PutRecords") {
                        let n = stats.put_requests.fetch_add(1, Ordering::Relaxed);
                        if n == 2 {
                            stats.throttled_requests.fetch_add(1, Ordering::Relaxed);
                            (400, json!({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded (injected)"}).to_string().into_bytes())
                        } else {
                            let req: Value = serde_json::from_slice(&body).unwrap();
                            let recs = req["Records"].as_array().unwrap();
                            // Refuse every third entry the first time its data is seen.
                            let refused: Vec<bool> = recs
                                .iter()
                                .enumerate()
                                .map(|(i, r)| i % 3 == 1 && seen.lock().unwrap().insert(r["Data"].as_str().unwrap().to_string()))
                                .collect();
                            let forward: Vec<Value> =
                                recs.iter().zip(&refused).filter(|(_, f)| !**f).map(|(r, _)| r.clone()).collect();
                            let mut results = Vec::new();
                            let mut failed = 0;
                            let mut stored = if forward.is_empty() {
                                Vec::new()
                            } else {
                                let fwd = json!({"StreamName": req["StreamName"], "Records": forward});
                                let v = send(&http, &upstream, &headers, fwd.to_string().into_bytes()).await.1;
                                let v: Value = serde_json::from_slice(&v).unwrap();
                                assert_eq!(v["FailedRecordCount"], 0, "moto refused: {v}");
                                v["Records"].as_array().unwrap().clone()
                            }
                            .into_iter();
                            for r in &refused {
                                if *r {
                                    failed += 1;
                                    results.push(json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"}));
                                } else {
                                    results.push(stored.next().unwrap());
                                }
                            }
                            stats.refused_entries.fetch_add(failed, Ordering::Relaxed);
                            (200, json!({"FailedRecordCount": failed, "Records": results}).to_string().into_bytes())
                        }
                    } else {
                        send(&http, &upstream, &headers, body).await
                    };
                    let reason = if status == 200 { "OK" } else { "Bad Request" };
                    let head = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if sock.write_all(head.as_bytes()).await.is_err() || sock.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

async fn send(http: &reqwest::Client, upstream: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut req = http.post(upstream);
    for (k, v) in headers {
        if matches!(k.as_str(), "content-type" | "x-amz-target" | "authorization" | "x-amz-date") {
            req = req.header(k, v);
        }
    }
    let resp = req.body(body).send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// Replays envelopes in shard order, checking each key's records are in (time, seq) order,
/// and returns (key → row, the set of (time, key) changes).
fn replay(records: &[(String, String, Value)]) -> (BTreeMap<u32, Row>, BTreeSet<(u64, u32)>) {
    let mut state = BTreeMap::new();
    let mut changes = BTreeSet::new();
    let mut last: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (_, pk, env) in records {
        let k = env["key"]["k"].as_u64().unwrap() as u32;
        assert_eq!(pk, &env["key"].to_string(), "the partition key is the encoded key");
        let ts = (env["time"].as_u64().unwrap(), env["seq"].as_u64().unwrap());
        if let Some(prev) = last.insert(k, ts) {
            assert!(prev < ts, "key {k}: record {ts:?} after {prev:?} (duplicate or out of order)");
        }
        assert!(changes.insert((ts.0, k)), "change of key {k} at {} twice", ts.0);
        if env["value"].is_null() {
            state.remove(&k);
        } else {
            state.insert(k, serde_json::from_value(env["value"].clone()).unwrap());
        }
    }
    (state, changes)
}

#[test]
fn upsert_through_partial_failures_loses_nothing() {
    let rt = rt();
    let stream = unique("orders");
    let client = create_stream(&rt, &stream, 2);
    let injected = Arc::new(Injected::default());
    let proxy = start_proxy(&rt, moto_url(), injected.clone());
    let history = keyed_history(3, 80, 20, 30);
    let spec = SinkSpec::builder("orders", config(&proxy, &stream))
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes: Some(100), interval: Duration::ZERO })
        .build()
        .unwrap();
    assert_eq!(run(&history, &spec, 2), None);
    assert!(injected.refused_entries.load(Ordering::Relaxed) > 10, "the proxy refused entries");
    assert_eq!(injected.throttled_requests.load(Ordering::Relaxed), 1, "the proxy throttled a request");
    let records = read_all(&rt, &client, &stream);
    let (state, changes) = replay(&records);
    let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
    assert_eq!(records.len(), expected.len(), "every change once: none lost, none duplicated");
    assert_eq!(changes, expected);
    assert_eq!(state, state_before(&history, u64::MAX));
}

#[test]
fn restart_with_progress_dir_resumes_and_readers_can_dedup() {
    let rt = rt();
    let stream = unique("resume");
    let client = create_stream(&rt, &stream, 1);
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(8, 30, 12, 10);
    let spec = |h: &str| {
        let mut o = differential_sinks::Options::parse_pairs([
            "connector=kinesis",
            "type=upsert",
            "primary_key=k",
            "aws.region=us-east-1",
            "aws.credentials.access_key_id=testing",
            "aws.credentials.secret_access_key=testing",
        ])
        .unwrap();
        o.set("endpoint", h).set("stream", stream.as_str()).set("progress.dir", dir.path().display().to_string());
        SinkSpec::from_options(o).unwrap()
    };
    // First run: the times before 3, then (a restart) those before 6, then all of it. Each
    // restart adds only what follows the recorded progress.
    assert_eq!(run_until(&history, &spec(&moto_url()), 1, Some(3)), None);
    let progress_at_3 = snapshot_dir(dir.path());
    assert!(!progress_at_3.is_empty(), "the first run recorded its progress");
    let before_3: Vec<_> = history.iter().filter(|h| h.1 < 3).cloned().collect();
    assert_eq!(read_all(&rt, &client, &stream).len(), expected_changes(&before_3).len());
    assert_eq!(run_until(&history, &spec(&moto_url()), 1, Some(6)), None);
    let half: Vec<_> = history.iter().filter(|h| h.1 < 6).cloned().collect();
    let n_half = read_all(&rt, &client, &stream).len();
    assert_eq!(n_half, expected_changes(&half).len());
    assert_eq!(run(&history, &spec(&moto_url()), 1), None);
    let records = read_all(&rt, &client, &stream);
    let (state, changes) = replay(&records);
    let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
    assert_eq!(records.len(), expected.len(), "the restarts added only the rest");
    assert_eq!(changes, expected);
    assert_eq!(state, state_before(&history, u64::MAX));

    // At-least-once: a crash after the records of times 3.. were stored but before their progress
    // was recorded. The progress file is put back as it was at 3, and the rerun replays 3.. again.
    restore_dir(dir.path(), &progress_at_3);
    assert_eq!(run(&history, &spec(&moto_url()), 1), None);
    let raw = read_all(&rt, &client, &stream);
    let replayed = expected.iter().filter(|(t, _)| *t >= 3).count();
    assert!(
        raw.len() > expected.len(),
        "the stream holds duplicates ({} records, {} changes)",
        raw.len(),
        expected.len()
    );
    assert_eq!(raw.len(), expected.len() + replayed, "every change of the times from 3 on is in the stream twice");
    // A reader deduplicating by (key, time, seq) gets exactly the reference: every change once,
    // in order per key, ending in the final state.
    let (kept, dropped) = dedup_by_identity(
        &raw,
        |(_, _, env)| (env["key"].to_string(), env["time"].as_u64().unwrap(), env["seq"].as_u64().unwrap()),
        |(_, partition_key, env)| (partition_key, env),
    );
    assert_eq!(dropped, replayed, "the replay's records are recognised as duplicates");
    assert_eq!(kept.len(), expected.len());
    let (state, changes) = replay(&kept);
    assert_eq!(changes, expected, "deduplicated changes");
    assert_eq!(state, state_before(&history, u64::MAX), "deduplicated state");
    // And one that keeps, per key, the record of the highest (time, seq) ends in the same state.
    let mut latest: BTreeMap<u32, ((u64, u64), Option<Row>)> = BTreeMap::new();
    for (_, _, env) in &raw {
        let k = env["key"]["k"].as_u64().unwrap() as u32;
        let ts = (env["time"].as_u64().unwrap(), env["seq"].as_u64().unwrap());
        let row = (!env["value"].is_null()).then(|| serde_json::from_value(env["value"].clone()).unwrap());
        if latest.get(&k).is_none_or(|(t, _)| *t < ts) {
            latest.insert(k, (ts, row));
        }
    }
    let state: BTreeMap<u32, Row> = latest.into_iter().filter_map(|(k, (_, r))| r.map(|r| (k, r))).collect();
    assert_eq!(state, state_before(&history, u64::MAX), "the highest-(time, seq) reader's state");
}

/// Unkeyed records of a time larger than the operator's write chunk (16,384 changes per call)
/// carry `(worker, peers, time, seq)` unique across the whole time, as the module docs promise
/// readers who deduplicate on them: deduplicating drops nothing. One worker (see the header on
/// moto's concurrent puts); the NATS test covers two.
#[test]
fn unkeyed_records_of_a_large_time_are_numbered_across_batches() {
    let rt = rt();
    {
        let peers = 1;
        let stream = unique("bulk");
        let client = create_stream(&rt, &stream, 2);
        let history: Vec<(Row, u64, isize)> =
            (0..34_000u32).map(|i| (Row { k: i, v: 1, s: String::new() }, 0, 1)).collect();
        let spec = SinkSpec::builder("bulk", config(&moto_url(), &stream)).append_only(false).build().unwrap();
        assert_eq!(run(&history, &spec, peers), None);
        let records = read_all(&rt, &client, &stream);
        assert_eq!(records.len(), history.len(), "{peers} worker(s)");
        let ids: HashSet<(u64, u64, u64, u64)> = records
            .iter()
            .map(|(_, _, d)| {
                let n = |f: &str| d[f].as_u64().unwrap_or_else(|| panic!("field {f} in {d}"));
                (n("worker"), n("peers"), n("time"), n("seq"))
            })
            .collect();
        assert_eq!(ids.len(), history.len(), "{peers} worker(s): (worker, peers, time, seq) identifies each record");
        let rows: BTreeSet<u32> = records.iter().map(|(_, _, d)| d["value"]["k"].as_u64().unwrap() as u32).collect();
        assert_eq!(rows.len(), history.len(), "{peers} worker(s): every row once");
    }
}

/// Two sinks of one name into two streams share one `progress.dir`: each keeps its own
/// progress, so the second delivers everything instead of resuming from the first's frontier.
#[test]
fn two_sinks_of_one_name_share_a_progress_dir_apart() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(21, 30, 8, 10);
    for _ in 0..2 {
        let stream = unique("same");
        let client = create_stream(&rt, &stream, 1);
        let spec = SinkSpec::builder("same", config(&moto_url(), &stream).progress_dir(dir.path()))
            .upsert()
            .primary_key(["k"])
            .build()
            .unwrap();
        assert_eq!(run(&history, &spec, 2), None);
        let (state, changes) = replay(&read_all(&rt, &client, &stream));
        assert_eq!(changes, expected_changes(&history).into_keys().collect::<BTreeSet<_>>(), "stream {stream}");
        assert_eq!(state, state_before(&history, u64::MAX));
    }
}

#[test]
fn oversized_record_is_refused_naming_its_key() {
    let rt = rt();
    let stream = unique("big");
    create_stream(&rt, &stream, 1);
    let history = vec![
        (Row { k: 1, v: 1, s: "small".into() }, 0, 1),
        (Row { k: 77, v: 2, s: "x".repeat(1024 * 1024 + 10) }, 0, 1),
    ];
    let spec = SinkSpec::builder("big", config(&moto_url(), &stream)).upsert().primary_key(["k"]).build().unwrap();
    let e = run(&history, &spec, 1).expect("the sink must fail");
    assert!(e.contains(r#"{"k":77}"#) && e.contains("1 MiB"), "{e}");
}

/// Connections to Kinesis cut mid-request (a `PutRecords` body cut off, or its answer lost
/// with the records stored): the sink rides through by retrying, or stops with an error and a
/// rerun finishes. At-least-once: a retried request may store records twice, and a reader
/// that keeps, per key, the record of the highest `(time, seq)` — as the module docs say — ends
/// in the reference state with every change seen.
#[test]
fn connections_cut_mid_request_lose_nothing_and_readers_dedup() {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let rt = rt();
    let proxy = FaultProxy::start(moto_url().trim_start_matches("http://").trim_end_matches('/'));
    let history = keyed_history(47, 400, 12, 80);
    let streams: Vec<(String, KinesisClient)> = (0..=2)
        .map(|_| {
            let stream = unique("cut");
            let client = create_stream(&rt, &stream, 2);
            (stream, client)
        })
        .collect();
    run_with_faults(
        &proxy,
        &[Fault::CutAt(0.4), Fault::LoseAnswerTo(b"Kinesis_20131202.PutRecords")],
        |i| {
            let spec =
                SinkSpec::builder(format!("cut-{i}"), config(&format!("http://{}", proxy.addr()), &streams[i].0))
                    .upsert()
                    .primary_key(["k"])
                    .commit(CommitPolicy { max_changes: Some(100), interval: Duration::ZERO })
                    .build()
                    .unwrap();
            run(&history, &spec, 1)
        },
        |i| {
            let records = read_all(&rt, &streams[i].1, &streams[i].0);
            let mut changes = BTreeSet::new();
            let mut latest: BTreeMap<u32, ((u64, u64), Option<Row>)> = BTreeMap::new();
            for (_, _, env) in &records {
                let k = env["key"]["k"].as_u64().unwrap() as u32;
                let ts = (env["time"].as_u64().unwrap(), env["seq"].as_u64().unwrap());
                changes.insert((ts.0, k));
                let row = (!env["value"].is_null()).then(|| serde_json::from_value(env["value"].clone()).unwrap());
                if latest.get(&k).is_none_or(|(t, _)| *t < ts) {
                    latest.insert(k, (ts, row));
                }
            }
            assert_eq!(changes, expected_changes(&history).into_keys().collect::<BTreeSet<_>>(), "stream {i}");
            let state: BTreeMap<u32, Row> = latest.into_iter().filter_map(|(k, (_, r))| r.map(|r| (k, r))).collect();
            assert_eq!(state, state_before(&history, u64::MAX), "stream {i}: the reader's state");
        },
    );
}
