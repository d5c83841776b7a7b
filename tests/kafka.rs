//! Integration tests of the Kafka sink against a real broker (tansu, started by
//! `scripts/services start kafka`), read back with a plain rdkafka consumer and compared with the
//! reference model of `tests/common`.
//!
//! The broker's address comes from `DSINK_KAFKA_BOOTSTRAP`; every test panics when it is missing.
//! The broker is tansu 0.6.0 built by `scripts/services.d/kafka.sh` with two fixes to its
//! transactions (an EndTxn route, and each EndTxn ending only its own transaction: without the
//! latter, workers ending transactions at the same moment left a partition's last stable offset
//! stuck for ever). tansu does not hide aborted transactions from read_committed consumers, so the exactly-once
//! tests count a record as committed only when a visible progress record covers its transaction
//! (see the Kafka module docs). The progress records are read from the progress topic and parsed
//! by the tests themselves (not with the library's reader). The Schema Registry is an in-test
//! double (no registry server can be installed here).
//!
//! Moved verbatim from the Kafka module docs (server quirks and how the tests account for them):
//!
//! ## What is verified, and how
//!
//! Integration tests (`tests/kafka.rs`) run against a real broker, tansu 0.6.0 (built by
//! `scripts/services.d/kafka.sh` with a patch: the release routes no EndTxn request; its EndTxn
//! also committed other transactions it "overlapped", which raced with their own commit markers and
//! left a partition's last stable offset stuck for ever; and it answered "earliest" / "latest"
//! offset queries by the order batches were stored in rather than by offset, so a reader from the
//! beginning of a partition two producers wrote could skip a batch for good — a few percent of the
//! multi-worker tests read back fewer records than the sink wrote until the broker's storage log
//! showed this), with a plain rdkafka consumer. tansu, like librdkafka's `MockCluster`, keeps
//! records of aborted transactions visible to read_committed consumers (checked: after
//! `abort_transaction`, a read_committed
//! consumer still reads them). So the exactly-once tests read **everything** on the broker
//! (read_uncommitted) and decide what was committed from the progress topic: a data record
//! counts only if its `dsink.txn` header names a transaction `<run>.<n>` for which a progress
//! record of the same run with `txn ≥ n` is visible (a run commits its transactions in order,
//! a progress record is its transaction's last write, and a run stops at its first failed
//! commit). Records of transactions aborted on drop, left open by a `SIGKILL`ed `dsink` or of a
//! fenced zombie are on the broker and are excluded by that rule, exactly as a read_committed
//! consumer of Apache Kafka excludes them; the tests assert that such records exist, and that
//! every change is among the counted records exactly once. Resume itself reads progress with
//! read_committed. On brokers that implement it (Apache Kafka, Redpanda) an aborted progress
//! record is never seen. tansu shows aborted records to read_committed readers, so a process
//! killed between writing a progress record and its transaction's commit leaves a record that a
//! resume trusts, and the transaction's records count as delivered. They are all on the broker:
//! the writer waits until every record of a transaction is acknowledged before it produces the
//! transaction's progress record.
//!
//! No Schema Registry server can be installed here, so the registry client is tested against a
//! small faithful double in the tests (`POST /subjects/{subject}/versions` → `{"id": N}`, the same
//! id for the same schema, and `GET /schemas/ids/{id}`), while the Avro records themselves go
//! through the real broker and are decoded by the schema fetched back from the double.

mod common;
mod drive;
#[path = "support/kafka_read.rs"]
mod kafka_read;
#[path = "support/registry_double.rs"]
mod registry_double;

use common::{expected_changes, key_of, keyed_history, row_of, state_before, Rng, Row};
use differential_dataflow::input::Input;
use differential_sinks::connectors::kafka::{
    Delivery, KafkaConfig, KafkaWriter, Registry, RegistryConfig, TIME_HEADER, TXN_HEADER,
};
use differential_sinks::encode::avro::split_wire;
use differential_sinks::envelope::Op;
use differential_sinks::operators::{Frontier, WorkerContext};
use differential_sinks::{
    CommitPolicy, ErrorKind, Format, RecordBatch, RecordWriter, Schema, SinkCollection, SinkSpec,
};
use drive::{Drive, Pace};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use registry_double::{start_registry, Pki, RegistryState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bootstrap() -> String {
    common::service_env("DSINK_KAFKA_BOOTSTRAP", "kafka")
}

fn unique(prefix: &str) -> String {
    common::unique_name(prefix, '-')
}

/// One record read back.
#[derive(Clone, Debug)]
struct Msg {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    time: u64,
    txn: Option<String>,
}

/// Every record of `topic`, partition by partition in offset order, read to the end by a
/// read_committed consumer.
fn read_all(topic: &str) -> Vec<Msg> {
    read_isolated(topic, "read_committed")
}

/// Every record of `topic` on the broker, whether its transaction committed or not.
fn read_uncommitted(topic: &str) -> Vec<Msg> {
    read_isolated(topic, "read_uncommitted")
}

fn read_isolated(topic: &str, isolation: &str) -> Vec<Msg> {
    read_isolated_at(&bootstrap(), topic, isolation)
}

/// [`read_isolated`] from the broker at `bootstrap`.
fn read_isolated_at(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Msg> {
    read_raw(bootstrap, topic, isolation)
        .into_iter()
        .map(|r| {
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.as_ref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            Msg {
                partition: r.partition,
                key: r.key,
                value: r.value,
                time: header(TIME_HEADER).and_then(|v| v.parse().ok()).expect("every record carries dsink.time"),
                txn: header(TXN_HEADER),
            }
        })
        .collect()
}

/// One record as it is on the broker.
struct RawRecord {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Every record of `topic` on the broker at `bootstrap`, partition by partition in offset order,
/// read to the end with `isolation`.
fn read_raw(bootstrap: &str, topic: &str, isolation: &str) -> Vec<RawRecord> {
    let consumer = kafka_read::reader(bootstrap, &unique("reader"), isolation);
    let parts = kafka_read::partitions(&consumer, topic);
    let deadline = Instant::now() + Duration::from_secs(60);
    if isolation == "read_committed" {
        // A read_committed reader stops at the last stable offset, which may trail the records a
        // transaction that has just ended wrote: wait (polling, with a deadline) until it reaches
        // the high watermark a read_uncommitted client sees, so that every ended transaction is read.
        let raw: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("isolation.level", "read_uncommitted")
            .create()
            .unwrap();
        for p in &parts {
            let (_, high) = raw.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks");
            while consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks").1 < high {
                assert!(Instant::now() < deadline, "{topic} [{p}]: a transaction stayed open");
                std::thread::sleep(Duration::from_millis(20)); // poll interval while the transaction ends
            }
        }
    }
    kafka_read::read_to_end(&consumer, topic, &parts, deadline, |m| {
        let headers = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        RawRecord {
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    })
}

/// A progress record as the Kafka module docs describe it, parsed by the test from the record's
/// JSON value: `{sink, topic, progress: {worker, peers, generation, base, frontier}, partial,
/// run, txn}`, a frontier being `{complete, time}`.
#[derive(Clone, Debug)]
struct Progress {
    topic: String,
    worker: u64,
    peers: u64,
    generation: u64,
    /// The committed frontier's time; `None` for the complete frontier.
    frontier: Option<u64>,
    partial: u64,
    run: String,
    txn: u64,
}

/// The progress topic of the data topic `topic` (the documented default name).
fn progress_topic(topic: &str) -> String {
    format!("{topic}.__progress")
}

/// Every progress record visible in the progress topic of `topic` on the broker at `bootstrap`
/// (read_committed), in the order written (the topic has one partition).
fn read_progress_records_at(bootstrap: &str, topic: &str) -> Vec<Progress> {
    read_raw(bootstrap, &progress_topic(topic), "read_committed")
        .into_iter()
        .filter_map(|r| r.value)
        .map(|v| {
            let j: serde_json::Value = serde_json::from_slice(&v).expect("a progress record is JSON");
            let n = |v: &serde_json::Value, what: &str| v.as_u64().unwrap_or_else(|| panic!("{what} in {j}"));
            let f = &j["progress"]["frontier"];
            let frontier = if f["complete"].as_bool().expect("frontier.complete") {
                None
            } else {
                Some(n(&f["time"], "frontier.time"))
            };
            Progress {
                topic: j["topic"].as_str().expect("topic").to_string(),
                worker: n(&j["progress"]["worker"], "worker"),
                peers: n(&j["progress"]["peers"], "peers"),
                generation: n(&j["progress"]["generation"], "generation"),
                frontier,
                partial: n(&j["partial"], "partial"),
                run: j["run"].as_str().expect("run").to_string(),
                txn: n(&j["txn"], "txn"),
            }
        })
        .collect()
}

/// [`read_progress_records_at`] on the test broker.
fn read_progress_records(topic: &str) -> Vec<Progress> {
    let records = read_progress_records_at(&bootstrap(), topic);
    assert!(records.iter().all(|p| p.topic == topic), "progress records of another topic: {records:?}");
    records
}

/// The records covered by a visible progress record: transaction `<run>.<n>` is committed when a
/// progress record of `run` with `txn >= n` is visible.
fn committed<'a>(msgs: &'a [Msg], progress: &[Progress]) -> Vec<&'a Msg> {
    let mut max: HashMap<&str, u64> = HashMap::new();
    for p in progress {
        let e = max.entry(p.run.as_str()).or_default();
        *e = (*e).max(p.txn);
    }
    msgs.iter()
        .filter(|m| {
            let t = m.txn.as_deref().expect("exactly-once records carry dsink.txn");
            let (run, n) = t.rsplit_once('.').expect("run.n");
            max.get(run).is_some_and(|m| n.parse::<u64>().expect("n") <= *m)
        })
        .collect()
}

/// Replays upsert records in log order into key → row, checking one key stays on one partition.
fn compact<'a>(msgs: impl IntoIterator<Item = &'a Msg>) -> BTreeMap<u32, Row> {
    let mut part: HashMap<u32, i32> = HashMap::new();
    let mut map = BTreeMap::new();
    for m in msgs {
        let k = key_of(m.key.as_ref().expect("upsert records have keys"));
        assert_eq!(*part.entry(k).or_insert(m.partition), m.partition, "key {k} on two partitions");
        match &m.value {
            Some(v) => {
                let row = row_of(v);
                assert_eq!(row.k, k);
                map.insert(k, row);
            }
            None => {
                map.remove(&k);
            }
        }
    }
    map
}

fn kafka(topic: &str) -> KafkaConfig {
    KafkaConfig::new(bootstrap(), topic).create_topic(3, 1)
}

/// Runs `history` into the sink on `peers` workers to the end of the input, neither flushing
/// nor stepping between times; the first error.
fn run(history: &[(Row, u64, isize)], spec: &SinkSpec, peers: usize) -> Option<differential_sinks::Error> {
    Drive::new(peers).pace(Pace::Unflushed).run(history, spec).first()
}

#[test]
fn upsert_compacts_to_the_final_state() {
    for (seed, peers, delivery) in [
        (1u64, 1usize, Delivery::ExactlyOnce),
        (2, 2, Delivery::ExactlyOnce),
        (3, 4, Delivery::AtLeastOnce),
        (4, 2, Delivery::AtLeastOnce),
    ] {
        let history = keyed_history(seed, 40, 8, 25);
        let topic = unique("upsert");
        let spec =
            SinkSpec::builder("upsert", kafka(&topic).delivery(delivery)).upsert().primary_key(["k"]).build().unwrap();
        assert!(run(&history, &spec, peers).is_none());
        let msgs = read_all(&topic);
        assert_eq!(compact(&msgs), state_before(&history, u64::MAX), "seed {seed}");
        // Each change once, tagged with its time; a key's records in time order.
        let expected = expected_changes(&history);
        assert_eq!(msgs.len(), expected.len());
        let mut last: HashMap<u32, u64> = HashMap::new();
        for m in &msgs {
            let k = key_of(m.key.as_ref().unwrap());
            assert!(expected.contains_key(&(m.time, k)));
            let prev = last.insert(k, m.time);
            assert!(prev.is_none_or(|p| p < m.time), "key {k} out of time order");
        }
        let parts: BTreeSet<i32> = msgs.iter().map(|m| m.partition).collect();
        assert!(parts.len() > 1, "keys spread over the 3 partitions");
    }
}

#[test]
fn debezium_events_replay_to_the_state() {
    let history = keyed_history(9, 30, 7, 20);
    let topic = unique("debezium");
    let spec = SinkSpec::builder("dbz", kafka(&topic))
        .format(Format::Debezium { tombstone_after_delete: true })
        .primary_key(["k"])
        .build()
        .unwrap();
    assert!(run(&history, &spec, 2).is_none());
    let mut state: BTreeMap<u32, Row> = BTreeMap::new();
    let (mut deletes, mut tombstones) = (0, 0);
    for m in read_all(&topic) {
        let k = key_of(m.key.as_ref().unwrap());
        let Some(v) = &m.value else {
            tombstones += 1;
            continue;
        };
        let ev: serde_json::Value = serde_json::from_slice(v).unwrap();
        let before = state.get(&k).map(|r| serde_json::to_value(r).unwrap()).unwrap_or(serde_json::Value::Null);
        assert_eq!(ev["before"], before, "before is the previous after");
        assert_eq!(ev["source"]["ts"].as_u64(), Some(m.time));
        match ev["op"].as_str().unwrap() {
            "d" => {
                deletes += 1;
                state.remove(&k);
            }
            _ => {
                state.insert(k, serde_json::from_value(ev["after"].clone()).unwrap());
            }
        }
    }
    assert_eq!(tombstones, deletes);
    assert!(deletes > 0);
    assert_eq!(state, state_before(&history, u64::MAX));
}

#[test]
fn append_only_emits_exactly_the_inserts() {
    let mut rng = Rng::new(5);
    let history: Vec<(Row, u64, isize)> = (0..80)
        .map(|_| (Row { k: rng.below(10) as u32, v: rng.below(3) as u32, s: String::new() }, rng.below(6), 1))
        .collect();
    let topic = unique("append");
    let spec = SinkSpec::builder("ao", kafka(&topic)).append_only(false).build().unwrap();
    assert!(run(&history, &spec, 2).is_none());
    let msgs = read_all(&topic);
    let mut got: Vec<(u64, Row)> = msgs
        .iter()
        .map(|m| {
            assert!(m.key.is_none(), "no key without a primary key");
            (m.time, row_of(m.value.as_ref().unwrap()))
        })
        .collect();
    let mut want: Vec<(u64, Row)> = history.iter().map(|(r, t, _)| (*t, r.clone())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_missing_topic_is_refused_naming_the_option() {
    let topic = unique("missing");
    let spec =
        SinkSpec::builder("m", KafkaConfig::new(bootstrap(), &topic)).upsert().primary_key(["k"]).build().unwrap();
    let ctx = WorkerContext::new(0, 1);
    let cfg = KafkaConfig::new(bootstrap(), &topic);
    let err = KafkaWriter::open(&cfg, &spec, ctx).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains(&topic) && err.to_string().contains("topic.create = true"), "{err}");
}

fn batch(time: u64, keys: std::ops::Range<u32>) -> RecordBatch {
    batch_of(time, keys, "x")
}

/// A batch at `time` upserting each key `k` of `keys` to `{k, v: time, s}`.
fn batch_of(time: u64, keys: std::ops::Range<u32>, s: &str) -> RecordBatch {
    let mut b = RecordBatch::new(time);
    for k in keys {
        let row = Row { k, v: time as u32, s: s.into() };
        b.push(
            format!("{{\"k\":{k}}}").as_bytes(),
            Some(|o: &mut Vec<u8>| {
                serde_json::to_writer(o, &row).unwrap();
                Ok(())
            }),
            Op::Create,
        )
        .unwrap();
    }
    b
}

#[test]
fn a_zombie_is_fenced() {
    let topic = unique("zombie");
    let cfg = kafka(&topic);
    let spec = SinkSpec::builder("zombie", cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
    let ctx = WorkerContext::new(0, 1);
    let mut old = KafkaWriter::open(&cfg, &spec, ctx).unwrap();
    assert_eq!(old.resume(ctx).unwrap(), Frontier::at(0));
    old.write(&batch(0, 0..3)).unwrap();
    old.commit(Frontier::at(1)).unwrap();
    old.write(&batch(1, 0..3)).unwrap(); // left open

    let mut new = KafkaWriter::open(&cfg, &spec, ctx).unwrap();
    assert_eq!(new.resume(ctx).unwrap(), Frontier::at(1));
    let err = old.commit(Frontier::at(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert!(err.to_string().contains("transactional id"), "{err}");
    // The new writer's rows of time 1 differ from the zombie's, so the check below tells whose
    // records count.
    new.write(&batch_of(1, 0..3, "new")).unwrap();
    new.commit(Frontier::at(2)).unwrap();
    drop((old, new));

    let msgs = read_uncommitted(&topic);
    let ok = committed(&msgs, &read_progress_records(&topic));
    let mut got: Vec<(u64, u32, Option<Row>)> =
        ok.iter().map(|m| (m.time, key_of(m.key.as_ref().unwrap()), m.value.as_deref().map(row_of))).collect();
    got.sort();
    let want: Vec<(u64, u32, Option<Row>)> = (0..3)
        .map(|k| (0, k, Some(Row { k, v: 0, s: "x".into() })))
        .chain((0..3).map(|k| (1, k, Some(Row { k, v: 1, s: "new".into() }))))
        .collect();
    assert_eq!(got, want, "the records of time 0 and the new writer's of time 1, each once; none of the zombie's");
}

#[test]
fn a_time_split_over_batches_and_transactions_resumes_exactly() {
    let topic = unique("split");
    let cfg = kafka(&topic).max_transaction(4, 1 << 20);
    let spec = SinkSpec::builder("split", cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
    let ctx = WorkerContext::new(0, 1);
    // Time 0 arrives in three batches (13 records): early commits after records 4, 8 and 12.
    let chunks = [batch(0, 0..5), batch(0, 5..10), batch(0, 10..13)];
    let mut first = KafkaWriter::open(&cfg, &spec, ctx).unwrap();
    assert_eq!(first.resume(ctx).unwrap(), Frontier::at(0));
    for c in &chunks {
        first.write(c).unwrap();
    }
    first.write(&batch(1, 0..2)).unwrap();
    // Stop with record 13 of time 0 and two records of time 1 in the open transaction; wait until
    // they are on the broker so the abort leaves them there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_uncommitted(&topic).len() < 15 {
        assert!(Instant::now() < deadline, "records did not reach the broker");
    }
    drop(first);
    let progress = read_progress_records(&topic);
    let last = progress.last().unwrap();
    assert_eq!((last.frontier, last.partial), (Some(0), 12), "{last:?}");

    let mut second = KafkaWriter::open(&cfg, &spec, ctx).unwrap();
    assert_eq!(second.resume(ctx).unwrap(), Frontier::at(0));
    for c in &chunks {
        second.write(c).unwrap();
    }
    second.write(&batch(1, 0..2)).unwrap();
    second.commit(Frontier::at(2)).unwrap();
    drop(second);

    let msgs = read_uncommitted(&topic);
    assert_eq!(msgs.len(), 13 + 2 + 1 + 2, "the aborted records stay on the broker");
    let ok = committed(&msgs, &read_progress_records(&topic));
    let got: Vec<(u64, u32)> = ok.iter().map(|m| (m.time, key_of(m.key.as_ref().unwrap()))).collect();
    let want: Vec<(u64, u32)> = (0..13).map(|k| (0, k)).chain((0..2).map(|k| (1, k))).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "each record once: {got:?}");
}

#[test]
fn a_record_too_large_stops_the_sink_as_fatal() {
    let topic = unique("large");
    let cfg = kafka(&topic).property("message.max.bytes", "2000");
    let spec = SinkSpec::builder("large", cfg).upsert().primary_key(["k"]).build().unwrap();
    let history = vec![(Row { k: 1, v: 1, s: "x".repeat(5000) }, 0, 1)];
    let err = run(&history, &spec, 1).expect("refused");
    assert_eq!(err.kind(), ErrorKind::Fatal, "{err}");
    assert!(err.to_string().contains("message.max.bytes"), "{err}");
}

/// Runs the times before `upto` of `history` with a spec whose transactions are bounded and
/// whose operator does not commit by itself, until every record was handed to the writers and
/// reached the broker (several early commits done, the last transaction open), then drops the
/// dataflow (which aborts the open transactions). Returns the records handed over.
fn run_and_drop(history: &[(Row, u64, isize)], spec: &SinkSpec, topic: &str, peers: usize, upto: u64) -> u64 {
    let expected_records = expected_changes(history).keys().filter(|(t, _)| *t < upto).count() as u64;
    let history = Arc::new(history.to_vec());
    let spec = spec.clone();
    let metrics = Arc::clone(spec.metrics());
    let topic = topic.to_string();
    // A loop of its own: it stops once the writers' metrics and the broker hold every record.
    timely::execute(timely::Config::process(peers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let dataflow = worker.next_dataflow_index();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).expect("sink builds");
            (input, out.handle)
        });
        for t in 0..upto {
            for (i, (row, _, d)) in history.iter().enumerate().filter(|(_, h)| h.1 == t) {
                if i % peers == index {
                    input.update(row.clone(), *d);
                }
            }
            input.advance_to(t + 1);
        }
        input.flush();
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.snapshot().records_out < expected_records && !handle.is_failed() {
            assert!(Instant::now() < deadline, "the writers did not receive every record");
            worker.step();
        }
        assert!(!handle.is_failed());
        // Wait until the open transactions' records are on the broker, not only in the client.
        while (read_uncommitted(&topic).len() as u64) < expected_records {
            assert!(Instant::now() < deadline, "the records did not reach the broker");
        }
        worker.drop_dataflow(dataflow);
        drop(input);
    })
    .expect("timely runs");
    expected_records
}

#[test]
fn exactly_once_across_a_stop_with_a_transaction_open() {
    for (seed, peers) in [(21u64, 1usize), (22, 2)] {
        let history = keyed_history(seed, 60, 10, 40);
        let topic = unique("eos");
        let cfg = kafka(&topic).max_transaction(7, 1 << 20);
        let stopped = SinkSpec::builder("eos", cfg.clone())
            .upsert()
            .primary_key(["k"])
            .commit(CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) })
            .build()
            .unwrap();
        let handed = run_and_drop(&history, &stopped, &topic, peers, 8);
        let before = committed(&read_uncommitted(&topic), &read_progress_records(&topic)).len() as u64;
        assert!(
            before > 0 && before < handed,
            "the stop came after some commits ({before}) and before all {handed} records"
        );
        let spec = SinkSpec::builder("eos", cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
        let metrics = Arc::clone(spec.metrics());
        assert!(run(&history, &spec, peers).is_none());
        assert!(metrics.snapshot().updates_already_committed > 0);

        // Read everything on the broker, aborted transactions included, and keep what committed.
        let msgs = read_uncommitted(&topic);
        let progress = read_progress_records(&topic);
        assert!(progress.iter().any(|p| p.partial > 0), "a time was split");
        let ok = committed(&msgs, &progress);
        assert!(ok.len() < msgs.len(), "the aborted transaction's records are on the broker and are not counted");
        let mut seen = BTreeSet::new();
        for m in &ok {
            let k = key_of(m.key.as_ref().unwrap());
            assert!(seen.insert((m.time, k)), "change of key {k} at {} committed twice", m.time);
        }
        let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
        assert_eq!(seen, expected, "every change exactly once (seed {seed})");
        assert_eq!(compact(ok), state_before(&history, u64::MAX));
    }
}

#[test]
fn at_least_once_resumes_from_the_last_acknowledged_commit() {
    // At-least-once commits are pipelined: a frontier is durable once the broker acknowledged
    // every record before it, and only then is its progress record written. A run that stops
    // after its commit of time 6 became durable, restarted over the whole history, starts there.
    for peers in [1usize, 2] {
        let history = keyed_history(41 + peers as u64, 50, 12, 30);
        let topic = unique("alo");
        let cfg = kafka(&topic).delivery(Delivery::AtLeastOnce);
        let spec = || SinkSpec::builder("alo", cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
        let first: Vec<_> = history.iter().filter(|h| h.1 < 6).cloned().collect();
        common::lakehouse::run_until(&first, &spec(), peers, 6);
        // Each worker's latest progress record (the topic keeps them in the order written).
        let mut latest = BTreeMap::new();
        for p in read_progress_records(&topic) {
            latest.insert(p.worker, p.frontier);
        }
        assert_eq!(latest.len(), peers, "every worker recorded its progress");
        assert!(latest.values().all(|f| *f == Some(6)), "{latest:?}");
        let before = read_all(&topic).len();
        assert_eq!(before, expected_changes(&first).len(), "what was durable at 6 is on the topic");

        let spec = spec();
        let metrics = Arc::clone(spec.metrics());
        assert!(run(&history, &spec, peers).is_none());
        assert!(metrics.snapshot().updates_already_committed > 0, "the restart skipped what was acknowledged");
        let msgs = read_all(&topic);
        let mut seen = BTreeSet::new();
        for m in &msgs {
            let k = key_of(m.key.as_ref().unwrap());
            assert!(seen.insert((m.time, k)), "change of key {k} at {} delivered twice", m.time);
        }
        let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
        assert_eq!(seen, expected, "every change once ({peers} workers)");
        assert_eq!(compact(&msgs), state_before(&history, u64::MAX));
    }
}

#[test]
fn resume_with_another_worker_count() {
    let history = keyed_history(31, 50, 12, 30);
    let topic = unique("rescale");
    let cfg = kafka(&topic);
    let spec = || SinkSpec::builder("rescale", cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
    // 3 workers deliver times 0..6 and commit them; then 2 workers resume from 6, fencing the
    // third worker's transactional id.
    let first: Vec<_> = history.iter().filter(|h| h.1 < 6).cloned().collect();
    common::lakehouse::run_until(&first, &spec(), 3, 6);
    if let Some(e) = run(&history, &spec(), 2) {
        panic!("the resume with 2 workers failed: {e}");
    }
    let msgs = read_uncommitted(&topic);
    let ok = committed(&msgs, &read_progress_records(&topic));
    let mut seen = BTreeSet::new();
    for m in &ok {
        assert!(seen.insert((m.time, key_of(m.key.as_ref().unwrap()))));
    }
    let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
    assert_eq!(seen, expected);
    let progress = read_progress_records(&topic);
    assert!(progress.iter().any(|p| p.generation == 1 && p.peers == 2));
}

// ---------------------------------------------------------------------------------------------
// Avro, against an in-test Schema Registry double.

/// Named types of a schema (a record is defined once and referred to by name after).
fn names(schema: &serde_json::Value, named: &mut HashMap<String, serde_json::Value>) {
    match schema {
        serde_json::Value::Array(bs) => bs.iter().for_each(|b| names(b, named)),
        serde_json::Value::Object(o) if o["type"] == "record" => {
            named.insert(o["name"].as_str().unwrap().to_string(), schema.clone());
            for f in o["fields"].as_array().unwrap() {
                names(&f["type"], named);
            }
        }
        _ => {}
    }
}

/// An Avro decoder written from the specification, driven by the schema JSON the registry holds
/// (independent of the sink's encoder).
fn decode(
    schema: &serde_json::Value,
    named: &mut HashMap<String, serde_json::Value>,
    input: &mut &[u8],
) -> serde_json::Value {
    use serde_json::Value;
    fn long(input: &mut &[u8]) -> i64 {
        let (mut z, mut shift) = (0u64, 0);
        loop {
            let b = input[0];
            *input = &input[1..];
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (z >> 1) as i64 ^ -((z & 1) as i64)
    }
    match schema {
        Value::String(t) => match t.as_str() {
            "null" => Value::Null,
            "boolean" => {
                let b = input[0] != 0;
                *input = &input[1..];
                Value::Bool(b)
            }
            "int" | "long" => Value::from(long(input)),
            "string" | "bytes" => {
                let n = long(input) as usize;
                let s = String::from_utf8_lossy(&input[..n]).into_owned();
                *input = &input[n..];
                Value::String(s)
            }
            other => {
                let s = named.get(other).cloned().unwrap_or_else(|| panic!("unknown type {other}"));
                decode(&s, named, input)
            }
        },
        Value::Array(branches) => {
            let i = long(input) as usize;
            decode(&branches[i], named, input)
        }
        Value::Object(o) => match o["type"].as_str() {
            Some("record") => {
                named.insert(o["name"].as_str().unwrap().to_string(), schema.clone());
                let mut m = serde_json::Map::new();
                for f in o["fields"].as_array().unwrap() {
                    m.insert(f["name"].as_str().unwrap().to_string(), decode(&f["type"], named, input));
                }
                Value::Object(m)
            }
            _ => decode(&o["type"], named, input),
        },
        other => panic!("unexpected schema {other}"),
    }
}

#[test]
fn avro_upsert_and_debezium_in_the_confluent_wire_format() {
    let (url, registry_state) = start_registry(None, None);
    avro_delivery_is_framed_by_the_registered_ids(&RegistryConfig::new(url), &registry_state);
}

/// The sink registers through `registry` (a double whose state is `registry_state`) and every
/// record on the broker carries the ids the double handed out, decoding (by the schemas fetched
/// back from the double) to the reference state.
fn avro_delivery_is_framed_by_the_registered_ids(registry_cfg: &RegistryConfig, registry_state: &Mutex<RegistryState>) {
    let schema: Schema = "k:int64!,v:int64!,s:string!".parse().unwrap();
    let history = keyed_history(41, 25, 6, 15);
    let registry = Registry::new(registry_cfg, Duration::from_secs(5)).unwrap();
    for debezium in [false, true] {
        let topic = unique(if debezium { "avro-dbz" } else { "avro" });
        let mut cfg = kafka(&topic).avro(registry_cfg.url.clone());
        cfg.registry = Some(registry_cfg.clone());
        let mut b = SinkSpec::builder("avro", cfg).primary_key(["k"]).schema(schema.clone());
        b = if debezium { b.debezium() } else { b.upsert() };
        assert!(run(&history, &b.build().unwrap(), 2).is_none());
        let subjects = registry_state.lock().unwrap().subjects.clone();
        let key_id = subjects[&format!("{topic}-key")][0];
        let value_id = subjects[&format!("{topic}-value")][0];
        let key_schema = registry.schema(key_id).unwrap();
        let value_schema = registry.schema(value_id).unwrap();
        let mut state: BTreeMap<u32, Row> = BTreeMap::new();
        for m in read_all(&topic) {
            let (kid, mut kd) = split_wire(m.key.as_ref().unwrap()).unwrap();
            assert_eq!(kid, key_id);
            let mut named = HashMap::new();
            names(&key_schema, &mut named);
            names(&value_schema, &mut named);
            let key = decode(&key_schema, &mut named, &mut kd);
            assert!(kd.is_empty());
            let k = key["k"].as_u64().unwrap() as u32;
            let Some(v) = &m.value else {
                state.remove(&k);
                continue;
            };
            let (vid, mut vd) = split_wire(v).unwrap();
            assert_eq!(vid, value_id);
            let value = decode(&value_schema, &mut named, &mut vd);
            assert!(vd.is_empty(), "the whole datum is consumed");
            let after = if debezium {
                assert_eq!(value["source"]["ts"].as_u64(), Some(m.time));
                value["after"].clone()
            } else {
                value
            };
            if after.is_null() {
                state.remove(&k);
            } else {
                state.insert(k, serde_json::from_value(after).unwrap());
            }
        }
        assert_eq!(state, state_before(&history, u64::MAX), "debezium: {debezium}");
    }
}

/// The same Avro delivery with the registry behind HTTPS (a throwaway CA given by
/// `schema.registry.ssl.root.cert`, a certificate for 127.0.0.1) and basic auth: every request
/// carried the credentials, and the records carry the ids registered over TLS.
#[test]
fn avro_through_an_https_registry_with_basic_auth() {
    let pki = Pki::new("registry test CA");
    let dir = tempfile::tempdir().unwrap();
    // "Basic " + base64("ann:s3cret pw"), written out.
    let expected_auth = "Basic YW5uOnMzY3JldCBwdw==";
    let (url, registry_state) = start_registry(Some(pki.server(&["127.0.0.1"])), Some(expected_auth.into()));
    assert!(url.starts_with("https://"));
    let mut opts = differential_sinks::Options::parse_pairs([
        "topic=t".to_string(),
        format!("properties.bootstrap.server={}", bootstrap()),
        "encode=avro".into(),
        format!("schema.registry={url}"),
        "schema.registry.username=ann".into(),
        "schema.registry.password=s3cret pw".into(),
        format!("schema.registry.ssl.root.cert={}", pki.ca_file(dir.path(), "ca.pem").display()),
    ])
    .unwrap();
    let differential_sinks::connectors::ConnectorConfig::Kafka(parsed) =
        differential_sinks::connectors::ConnectorConfig::from_options("kafka", &mut opts).unwrap()
    else {
        panic!("a kafka config")
    };
    let registry_cfg = parsed.registry.clone().unwrap();
    avro_delivery_is_framed_by_the_registered_ids(&registry_cfg, &registry_state);
    let seen = registry_state.lock().unwrap().auth_seen.clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|a| a.as_deref() == Some(expected_auth)), "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// The dsink binary.

/// The sum of the high watermarks of `topic`'s partitions (0 while it does not exist).
fn total_offsets(topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("isolation.level", "read_uncommitted")
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let Some(t) = md.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
        return 0;
    };
    t.partitions().iter().map(|p| c.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).map_or(0, |(_, h)| h)).sum()
}

fn write_log(history: &[(Row, u64, isize)]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let mut sorted = history.to_vec();
    sorted.sort_by_key(|h| h.1);
    for (row, t, d) in sorted {
        writeln!(f, "{}", serde_json::json!({"time": t, "diff": d, "row": row})).unwrap();
    }
    f.flush().unwrap();
    f
}

fn dsink(log: &std::path::Path, topic: &str, extra: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"));
    c.arg("--input").arg(log).args(["--progress", "never"]);
    for w in [
        "connector=kafka".to_string(),
        format!("topic={topic}"),
        format!("properties.bootstrap.server={}", bootstrap()),
        "type=upsert".into(),
        "primary_key=k".into(),
        "topic.create=true".into(),
        "topic.partitions=2".into(),
        "sink.name=cli".into(),
    ] {
        c.arg("--with").arg(w);
    }
    for e in extra {
        c.arg(e);
    }
    c
}

#[test]
fn dsink_delivers_into_kafka() {
    let history = keyed_history(51, 30, 5, 20);
    let log = write_log(&history);
    let topic = unique("cli");
    let out = dsink(log.path(), &topic, &["--workers", "2"]).output().unwrap();
    assert!(out.status.success(), "dsink failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(compact(&read_all(&topic)), state_before(&history, u64::MAX));
}

#[test]
fn dsink_killed_mid_transaction_then_rerun_delivers_each_change_once() {
    let history = keyed_history(61, 5000, 80, 2500);
    let log = write_log(&history);
    let topic = unique("cli-kill");
    let extra = ["--workers", "2", "--with", "transaction.max.records=20000", "--with", "commit.interval.ms=3600000"];
    let mut child = dsink(log.path(), &topic, &extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (with a deadline) until a transaction reached its progress record, and more data was
    // sent after it; then kill. A live run keeps transactions open, so the broker is read
    // uncommitted here.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut data_at_first_commit = None;
    loop {
        assert!(Instant::now() < deadline, "no commit showed up in the progress topic");
        assert!(child.try_wait().unwrap().is_none(), "dsink ended before it could be killed");
        let written = |t: &str| total_offsets(t);
        match data_at_first_commit {
            None if written(&progress_topic(&topic)) > 0 => {
                data_at_first_commit = Some(written(&topic));
            }
            // Beyond what the first transaction may still have had in flight: records of a
            // transaction that is open (the next commit needs 20000 records per worker).
            Some(n) if written(&topic) >= n + 3000 => break,
            _ => {}
        }
    }
    child.kill().unwrap(); // SIGKILL: the open transaction is neither committed nor aborted
    child.wait().unwrap();

    let out = dsink(log.path(), &topic, &extra[..2]).args(["--json"]).output().unwrap();
    assert!(out.status.success(), "rerun failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["updates_already_committed"].as_u64().unwrap() > 0, "{summary}");

    let msgs = read_uncommitted(&topic);
    let progress = read_progress_records(&topic);
    let ok = committed(&msgs, &progress);
    assert!(ok.len() < msgs.len(), "the killed transactions left records on the broker, and they are not counted");
    let mut seen = BTreeSet::new();
    for m in &ok {
        let k = key_of(m.key.as_ref().unwrap());
        assert!(seen.insert((m.time, k)), "change of key {k} at {} committed twice", m.time);
    }
    let expected: BTreeSet<(u64, u32)> = expected_changes(&history).into_keys().collect();
    assert_eq!(
        seen.len(),
        expected.len(),
        "committed changes: missing {:?}, unexpected {:?} ({} records on the broker, {} progress records)",
        expected.difference(&seen).take(5).collect::<Vec<_>>(),
        seen.difference(&expected).take(5).collect::<Vec<_>>(),
        msgs.len(),
        progress.len()
    );
    assert_eq!(seen, expected);
    assert_eq!(compact(ok), state_before(&history, u64::MAX));
}

/// A restart inside a time skips the records of that time its early commits covered, so a time's
/// record order must depend on its consolidated changes only. The first run stops inside one
/// large time (40,000 keys, several write chunks, bounded transactions); the rerun feeds the same
/// changes with many extra updates that cancel (pairs on the same and other keys, keys that only
/// cancel), as a differential operator may produce on another run. Every change is committed once.
#[test]
fn a_replay_with_cancelling_updates_resumes_inside_a_time_exactly() {
    let keys = 40_000u32;
    let history: Vec<(Row, u64, isize)> = (0..keys).map(|k| (Row { k, v: k, s: "a".into() }, 0, 1)).collect();
    let mut noisy = history.clone();
    let mut rng = Rng::new(53);
    for _ in 0..15_000 {
        let k = rng.below(u64::from(keys) + 5_000) as u32;
        let extra = Row { k, v: 7, s: "cancelled".into() };
        noisy.push((extra.clone(), 0, 1));
        noisy.push((extra, 0, -1));
    }
    let topic = unique("cancel");
    let cfg = kafka(&topic).max_transaction(6_000, 64 << 20);
    let spec = |cfg: &KafkaConfig| {
        SinkSpec::builder("cancel", cfg.clone())
            .upsert()
            .primary_key(["k"])
            .commit(CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) })
            .build()
            .unwrap()
    };
    let handed = run_and_drop(&history, &spec(&cfg), &topic, 1, 1);
    let progress = read_progress_records(&topic);
    assert!(progress.iter().any(|p| p.partial > 0), "the first run committed inside time 0");
    let before = committed(&read_uncommitted(&topic), &progress).len() as u64;
    assert!(before > 0 && before < handed, "stopped inside the time ({before} of {handed} committed)");
    assert!(run(&noisy, &spec(&cfg), 1).is_none());
    let msgs = read_uncommitted(&topic);
    let ok = committed(&msgs, &read_progress_records(&topic));
    let mut seen = BTreeSet::new();
    for m in &ok {
        let k = key_of(m.key.as_ref().unwrap());
        assert!(seen.insert((m.time, k)), "change of key {k} at {} committed twice", m.time);
    }
    assert_eq!(seen, expected_changes(&history).into_keys().collect::<BTreeSet<_>>(), "every change once");
    assert_eq!(compact(ok), state_before(&history, u64::MAX));
}

/// A private broker (started by `scripts/services` on its own port) that advertises a proxy in
/// front of it, so every connection of the sink goes through the proxy; the proxy cuts them all
/// once a number of bytes went upstream — inside produce requests, transaction markers or
/// progress records — at points spread over a whole run (measured by a first run without a cut).
/// The sink rides through, or stops and a rerun finishes; the committed records hold every change
/// exactly once.
#[test]
fn connections_cut_mid_transaction_commit_every_change_once() {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    use common::service::{free_port, PrivateService};
    // The broker's port, and a proxy on another one in front of it.
    let (port, proxy) = loop {
        let port = free_port();
        let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"));
        if !proxy.addr().ends_with(&format!(":{port}")) {
            break (port, proxy);
        }
    };
    let advertised = proxy.addr().rsplit_once(':').unwrap().1.to_string();
    let _broker = PrivateService::start(
        "kafka",
        &[("DSINK_KAFKA_PORT", port.to_string()), ("DSINK_KAFKA_ADVERTISED_PORT", advertised)],
        None,
    );
    let history = keyed_history(54, 500, 20, 120);
    let topics: Vec<String> = (0..=3).map(|_| unique("cut")).collect();
    let cfg = |i: usize| KafkaConfig::new(proxy.addr(), &topics[i]).create_topic(3, 1).max_transaction(200, 1 << 20);
    run_with_faults(
        &proxy,
        &[Fault::CutAt(0.1), Fault::CutAt(0.5), Fault::CutAt(0.9)],
        |i| {
            let spec = SinkSpec::builder(format!("cut-{i}"), cfg(i))
                .upsert()
                .primary_key(["k"])
                .commit(CommitPolicy { max_changes: Some(300), interval: Duration::ZERO })
                .build()
                .unwrap();
            run(&history, &spec, 2).map(|e| e.to_string())
        },
        |i| {
            let msgs = read_isolated_at(&proxy.addr(), &topics[i], "read_uncommitted");
            let ok = committed(&msgs, &read_progress_records_at(&proxy.addr(), &topics[i]));
            let mut seen = BTreeSet::new();
            for m in &ok {
                let k = key_of(m.key.as_ref().unwrap());
                assert!(seen.insert((m.time, k)), "topic {i}: change of key {k} at {} committed twice", m.time);
            }
            assert_eq!(
                seen,
                expected_changes(&history).into_keys().collect::<BTreeSet<_>>(),
                "topic {i}: every change"
            );
            assert_eq!(compact(ok), state_before(&history, u64::MAX), "topic {i}");
        },
    );
}
