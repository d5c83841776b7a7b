//! Crash tests of the streaming connectors — NATS JetStream, Kinesis (moto), Pulsar (pulsar-lite)
//! and Kafka (tansu, exactly-once) — with the crash harness of `tests/common/crash.rs`: `dsink`
//! killed with SIGKILL at every crash point of [`INDEPENDENT`] (inside a chunked time, before,
//! inside and after a connector's commit), then run to the end; after every run the target is
//! read back here, with plain clients, and checked against the reference of the history.
//!
//! | target | workers | guarantee | read back |
//! |---|---|---|---|
//! | NATS JetStream, upsert | 2 | exactly-once (duplicate window) | every message of the stream, `Dsink-Time` / `Dsink-Key` headers |
//! | Kinesis on moto, upsert | 1 | at-least-once, `progress.dir` | `GetRecords` of every shard, the `{time, seq, key, value}` envelope |
//! | Pulsar on pulsar-lite, upsert | 2 | at-least-once, `progress.dir` | Python `pulsar-client` reader, `dsink.time` property, partition key |
//! | Kafka on tansu, upsert | 2 | exactly-once (transactions) | rdkafka read_uncommitted; commits decided from progress records |
//!
//! Kinesis runs one worker: moto (5.x) loses records when two `PutRecords` requests reach one
//! stream at once (see `tests/kinesis.rs`), which would look like a loss of the sink's.
//!
//! **Kafka.** tansu keeps records of aborted transactions visible to read_committed consumers, and
//! a transaction the SIGKILL left open holds a read_committed reader at the last stable offset
//! until the next run aborts it. So both topics are read *uncommitted*, and which transactions
//! committed is decided here from the progress records alone, parsed from their JSON (not with the
//! library's reader). In exactly-once mode each transaction of a writer instance (`run`) ends with
//! one progress record `{sink, topic, progress, partial, run, txn}` written into that same
//! transaction, `txn` being the transaction's number within the run; its data records carry
//! `<run>.<txn>` in the `dsink.txn` header. A data record counts when a progress record of this
//! sink and topic with the same `run` and `txn` is on the broker. Records of a transaction without
//! one — left open by the kill, then aborted by the successor's `init_transactions` — are left out,
//! as would be data committed in a transaction that lacks its progress record.
//!
//! The rule takes a progress record on the broker as committed: on a broker that implements
//! read_committed that is what its visibility means. On tansu, a transaction killed after its
//! progress record reached the broker but before its `EndTxn` was processed (another worker inside
//! `commit_transaction` when the process dies) is counted — and the library's resume, reading the
//! same visible record, treats it as committed too. Its data records are all on the broker: the
//! writer waits for every record of a transaction to be acknowledged before producing the progress
//! record. (Before it did, this test lost a change in about one run of three under load: a
//! progress record overtook a data record of another partition.)

mod common;
#[path = "support/kafka_read.rs"]
mod kafka_read;

use common::crash::{self, CrashTest, Delivered, Guarantee, Readback, INDEPENDENT};
use common::{key_of, row_of, service_env, unique_name, Row};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `--with key=value` arguments.
fn with(options: &[String]) -> Vec<String> {
    options.iter().flat_map(|o| ["--with".to_string(), o.clone()]).collect()
}

/// A crash test of an upsert sink (key `k`) over every independent crash point.
fn upsert_test(
    label: &'static str,
    options: &[String],
    workers: usize,
    guarantee: Guarantee,
    seed: u64,
) -> CrashTest<'static> {
    let mut all = vec!["type=upsert".to_string(), "primary_key=k".into(), "sink.name=crash".into()];
    all.extend_from_slice(options);
    CrashTest { label, args: with(&all), workers, points: INDEPENDENT, guarantee, seed, env: vec![] }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The row of a non-empty JSON payload; `None` (a delete) for an empty one.
fn after_of(payload: &[u8]) -> Option<Row> {
    (!payload.is_empty()).then(|| row_of(payload))
}

// ---------------------------------------------------------------------------------------------
// NATS JetStream

/// Every message of JetStream stream `stream`, in stream order, as delivered changes: the time
/// from `Dsink-Time`, the key from `Dsink-Key`, the row from the payload (empty: a delete).
fn read_jetstream(rt: &tokio::runtime::Runtime, url: &str, stream: &str) -> Vec<Delivered> {
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap_or_else(|e| panic!("connecting to NATS at {url}: {e}"));
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap_or_else(|e| panic!("stream {stream}: {e}"));
        let state = s.info().await.unwrap().state.clone();
        if state.messages == 0 {
            return Vec::new();
        }
        assert_eq!(state.messages, state.last_sequence - state.first_sequence + 1, "stream {stream} has gaps");
        let gets = (state.first_sequence..=state.last_sequence).map(|seq| s.get_raw_message(seq));
        let mut gets = futures::StreamExt::buffered(futures::stream::iter(gets), 64);
        let mut out = Vec::new();
        while let Some(m) = futures::StreamExt::next(&mut gets).await {
            let m = m.unwrap_or_else(|e| panic!("reading stream {stream}: {e}"));
            let header = |name: &str| {
                m.headers.get(name).unwrap_or_else(|| panic!("a message without {name}")).as_str().to_string()
            };
            out.push(Delivered {
                time: header("Dsink-Time").parse().expect("Dsink-Time is a number"),
                key: key_of(header("Dsink-Key").as_bytes()),
                after: after_of(&m.payload),
            });
        }
        out
    })
}

/// NATS JetStream, exactly-once within the duplicate window: every replay after a crash carries
/// the same `Nats-Msg-Id`, so the stream holds each change once after every run.
#[test]
fn nats_jetstream_upsert_killed_at_every_crash_point_holds_each_change_once() {
    let url = service_env("DSINK_NATS_URL", "nats");
    let (stream, subject, progress) =
        (unique_name("CRASH", '_'), unique_name("crash", '_'), unique_name("CRASHP", '_'));
    let options = [
        "connector=nats".to_string(),
        format!("server_url={url}"),
        format!("subject={subject}"),
        format!("stream={stream}"),
        "stream.create=true".into(),
        // Far longer than the test: every replay falls inside the window.
        "stream.duplicate_window.ms=600000".into(),
        format!("progress.stream={progress}"),
    ];
    let test = upsert_test("nats jetstream upsert", &options, 2, Guarantee::ExactlyOnce, 11);
    let rt = rt();
    let read = || Readback::Log(read_jetstream(&rt, &url, &stream));
    let report = crash::run(&test, &crash::history(11), &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len(), "{report:?}");
    println!("nats: crashes {:?}", report.crashes);
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        let _ = js.delete_stream(&stream).await;
        let _ = js.delete_stream(&progress).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Kinesis (moto)

mod kinesis {
    use super::*;
    use base64::Engine as _;
    use differential_sinks::connectors::kinesis::{KinesisClient, KinesisConfig};
    use serde_json::{json, Value};

    pub fn client(endpoint: &str, stream: &str) -> KinesisClient {
        let config =
            KinesisConfig::new(stream, "us-east-1", Some(endpoint.to_string())).credentials("testing", "testing");
        KinesisClient::new(&config).unwrap()
    }

    async fn call(client: &KinesisClient, action: &str, body: Value) -> Value {
        client.call(action, body.to_string().into_bytes()).await.unwrap_or_else(|e| panic!("Kinesis {action}: {e}"))
    }

    /// Creates `stream` with `shards` shards and waits (polling, with a deadline) until it is
    /// active.
    pub fn create(rt: &tokio::runtime::Runtime, client: &KinesisClient, stream: &str, shards: u32) {
        rt.block_on(async {
            call(client, "CreateStream", json!({"StreamName": stream, "ShardCount": shards})).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let d = call(client, "DescribeStreamSummary", json!({"StreamName": stream})).await;
                if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                    return;
                }
                assert!(Instant::now() < deadline, "stream {stream} never became active");
                tokio::time::sleep(Duration::from_millis(50)).await; // poll interval while waiting for ACTIVE
            }
        })
    }

    /// Every record of every shard of `stream`, shard by shard in sequence order (a key stays
    /// on one shard), as delivered changes read from the `{time, seq, op, key, value}` envelope.
    pub fn read(rt: &tokio::runtime::Runtime, client: &KinesisClient, stream: &str) -> Vec<Delivered> {
        rt.block_on(async {
            let shards = call(client, "ListShards", json!({"StreamName": stream})).await;
            let mut out = Vec::new();
            for shard in shards["Shards"].as_array().expect("Shards") {
                let id = shard["ShardId"].as_str().expect("ShardId");
                let it = call(
                    client,
                    "GetShardIterator",
                    json!({"StreamName": stream, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"}),
                )
                .await;
                let mut iterator = it["ShardIterator"].as_str().map(str::to_string);
                while let Some(i) = iterator {
                    let r = call(client, "GetRecords", json!({"ShardIterator": i, "Limit": 10000})).await;
                    let records = r["Records"].as_array().expect("Records");
                    for rec in records {
                        let data = base64::engine::general_purpose::STANDARD
                            .decode(rec["Data"].as_str().expect("Data"))
                            .expect("Data is base64");
                        let v: Value = serde_json::from_slice(&data).expect("the record is a JSON envelope");
                        assert_eq!(v["seq"], 0, "an upsert writes one record per key and time: {v}");
                        out.push(Delivered {
                            time: v["time"].as_u64().expect("time"),
                            key: v["key"]["k"].as_u64().expect("key.k") as u32,
                            after: serde_json::from_value(v["value"].clone()).expect("value is a row or null"),
                        });
                    }
                    if records.is_empty() {
                        break;
                    }
                    iterator = r["NextShardIterator"].as_str().map(str::to_string);
                }
            }
            out
        })
    }
}

/// Kinesis on moto, at-least-once with a local `progress.dir`: nothing is lost, and a replay
/// after a crash stores exact copies that readers drop by `(key, time, seq)`.
#[test]
fn kinesis_upsert_killed_at_every_crash_point_loses_nothing() {
    let endpoint = service_env("DSINK_MOTO_URL", "moto");
    let stream = unique_name("crash", '-');
    let progress_dir = crash::scratch("kinesis-progress");
    let client = kinesis::client(&endpoint, &stream);
    let rt = rt();
    kinesis::create(&rt, &client, &stream, 2);
    let options = [
        "connector=kinesis".to_string(),
        format!("stream={stream}"),
        "aws.region=us-east-1".into(),
        format!("endpoint={endpoint}"),
        "aws.credentials.access_key_id=testing".into(),
        "aws.credentials.secret_access_key=testing".into(),
        format!("progress.dir={}", progress_dir.display()),
    ];
    let test = upsert_test("kinesis upsert", &options, 1, Guarantee::AtLeastOnce, 12);
    let read = || Readback::Log(kinesis::read(&rt, &client, &stream));
    let report = crash::run(&test, &crash::history(12), &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len(), "{report:?}");
    println!("kinesis: crashes {:?}, duplicates {}", report.crashes, report.duplicates);
    let _ = std::fs::remove_dir_all(&progress_dir);
}

// ---------------------------------------------------------------------------------------------
// Pulsar (pulsar-lite)

/// A reader in Python's `pulsar-client` (the Rust crate's consumer cannot decode pulsar-lite's
/// frames): every message from the start of the topic, one JSON line each, reading while
/// `has_message_available` says more are stored. pulsar-lite cannot tell the last message id of
/// a topic without messages (`UnknownError`); then one read with a deadline confirms it is empty.
const PULSAR_READER: &str = r#"
import json, sys, pulsar
url, topic = sys.argv[1], sys.argv[2]
c = pulsar.Client(url)
r = c.create_reader(topic, pulsar.MessageId.earliest)
def emit(m):
    print(json.dumps({"key": m.partition_key(), "props": m.properties(), "data": m.data().hex()}), flush=True)
try:
    more = r.has_message_available()
except Exception:
    try:
        emit(r.read_next(timeout_millis=1500))
        more = r.has_message_available()
    except Exception:
        more = False
while more:
    emit(r.read_next(timeout_millis=20000))
    more = r.has_message_available()
c.close()
"#;

/// Every message of Pulsar topic `topic`, in topic order, as delivered changes: the time from
/// `dsink.time`, the key from the partition key, the row from the payload (empty: a delete).
fn read_pulsar(python: &str, url: &str, topic: &str) -> Vec<Delivered> {
    let out = std::process::Command::new(python)
        .args(["-c", PULSAR_READER, url, topic])
        .output()
        .unwrap_or_else(|e| panic!("running the Python reader {python}: {e}"));
    assert!(out.status.success(), "the Python reader failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let unhex = |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('{')) // the client library logs on stdout too
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["props"]["dsink.seq"], "0", "an upsert writes one record per key and time: {v}");
            let data: Vec<u8> = unhex(v["data"].as_str().unwrap());
            Delivered {
                time: v["props"]["dsink.time"].as_str().expect("dsink.time").parse().unwrap(),
                key: key_of(v["key"].as_str().expect("partition key").as_bytes()),
                after: after_of(&data),
            }
        })
        .collect()
}

/// Pulsar on pulsar-lite, at-least-once with a local `progress.dir` (pulsar-lite does not
/// deduplicate): nothing is lost; replays are exact copies, identified by `(key, time, seq)`.
#[test]
fn pulsar_upsert_killed_at_every_crash_point_loses_nothing() {
    let url = service_env("DSINK_PULSAR_URL", "pulsar");
    let python = service_env("DSINK_PULSAR_PYTHON", "pulsar");
    let topic = format!("persistent://public/default/{}", unique_name("crash", '-'));
    let progress_dir = crash::scratch("pulsar-progress");
    let options = [
        "connector=pulsar".to_string(),
        format!("service.url={url}"),
        format!("topic={topic}"),
        format!("progress.dir={}", progress_dir.display()),
    ];
    let test = upsert_test("pulsar upsert", &options, 2, Guarantee::AtLeastOnce, 13);
    let read = || Readback::Log(read_pulsar(&python, &url, &topic));
    let report = crash::run(&test, &crash::history(13), &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len(), "{report:?}");
    println!("pulsar: crashes {:?}, duplicates {}", report.crashes, report.duplicates);
    let _ = std::fs::remove_dir_all(&progress_dir);
}

// ---------------------------------------------------------------------------------------------
// Kafka (tansu), exactly-once

mod kafka {
    use super::*;
    use rdkafka::message::{Headers, Message};

    /// One record as stored on the broker.
    pub struct Record {
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(String, Vec<u8>)>,
    }

    impl Record {
        fn header(&self, name: &str) -> Option<String> {
            self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        }
    }

    /// Every record of `topic` on the broker — committed, open or aborted (read_uncommitted) —
    /// partition by partition in offset order.
    pub fn read_uncommitted(bootstrap: &str, topic: &str) -> Vec<Record> {
        let consumer = kafka_read::reader(bootstrap, &unique_name("crash-reader", '-'), "read_uncommitted");
        let partitions = kafka_read::partitions(&consumer, topic);
        let deadline = Instant::now() + Duration::from_secs(60);
        kafka_read::read_to_end(&consumer, topic, &partitions, deadline, |m| {
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            Record { key: m.key().map(<[u8]>::to_vec), value: m.payload().map(<[u8]>::to_vec), headers }
        })
    }

    /// The transactions `(run, txn)` that wrote a progress record of sink `sink` into topic
    /// `topic`'s progress topic: the committed ones (see the module docs).
    pub fn committed_transactions(progress: &[Record], sink: &str, topic: &str) -> HashSet<(String, u64)> {
        let mut out = HashSet::new();
        for r in progress {
            let value = r.value.as_deref().expect("a progress record has a value");
            let v: serde_json::Value = serde_json::from_slice(value).expect("a progress record is JSON");
            if v["sink"] != sink || v["topic"] != topic {
                continue;
            }
            let run = v["run"].as_str().unwrap_or_else(|| panic!("progress record without run: {v}"));
            let txn = v["txn"].as_u64().unwrap_or_else(|| panic!("progress record without txn: {v}"));
            assert!(v["progress"]["worker"].is_u64() && v["partial"].is_u64(), "not a progress record: {v}");
            out.insert((run.to_string(), txn));
        }
        out
    }

    /// The data records of committed transactions, in log order, as delivered changes; and how
    /// many records on the broker were left out (transactions without their progress record).
    pub fn read(bootstrap: &str, topic: &str, progress_topic: &str, sink: &str) -> (Vec<Delivered>, usize) {
        let committed = committed_transactions(&read_uncommitted(bootstrap, progress_topic), sink, topic);
        let mut left_out = 0;
        let mut out = Vec::new();
        for r in read_uncommitted(bootstrap, topic) {
            let txn = r.header("dsink.txn").expect("an exactly-once record carries dsink.txn");
            let (run, n) = txn.rsplit_once('.').unwrap_or_else(|| panic!("dsink.txn {txn} is not <run>.<n>"));
            if !committed.contains(&(run.to_string(), n.parse().expect("the transaction number"))) {
                left_out += 1;
                continue;
            }
            out.push(Delivered {
                time: r.header("dsink.time").expect("dsink.time").parse().expect("dsink.time is a number"),
                key: key_of(r.key.as_deref().expect("an upsert record has a key")),
                after: r.value.as_deref().map(row_of),
            });
        }
        (out, left_out)
    }
}

/// Kafka on tansu, exactly-once: the records of committed transactions (decided from the progress
/// records, see the module docs) hold each change once after every crash and every change once
/// at the end. Transactions are bounded at 20 records, so the large first time is committed in
/// parts and a restart inside it resumes from a partial commit.
#[test]
fn kafka_exactly_once_upsert_killed_at_every_crash_point_commits_each_change_once() {
    let bootstrap = service_env("DSINK_KAFKA_BOOTSTRAP", "kafka");
    let topic = unique_name("crash", '-');
    let progress_topic = format!("{topic}.__progress");
    let options = [
        "connector=kafka".to_string(),
        format!("topic={topic}"),
        format!("properties.bootstrap.server={bootstrap}"),
        "sink.delivery=exactly-once".into(),
        "topic.create=true".into(),
        "topic.partitions=3".into(),
        "transaction.max.records=20".into(),
        // Records leave at once, so a crash more often leaves records of an open transaction on
        // the broker for the reader to leave out (how many is printed; it depends on timing).
        "properties.linger.ms=0".into(),
    ];
    let test = upsert_test("kafka exactly-once upsert", &options, 2, Guarantee::ExactlyOnce, 14);
    let left_out = std::cell::Cell::new(0);
    let read = || {
        let (log, n) = kafka::read(&bootstrap, &topic, &progress_topic, "crash");
        left_out.set(left_out.get().max(n));
        Readback::Log(log)
    };
    let report = crash::run(&test, &crash::history(14), &read);
    assert_eq!(report.crashes.len(), INDEPENDENT.len(), "{report:?}");
    println!("kafka: crashes {:?}, records of uncommitted transactions left out {}", report.crashes, left_out.get());
}
