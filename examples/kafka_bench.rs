//! Throughput of the Kafka sink against a raw rdkafka producer sending the same bytes.
//!
//! ```text
//! cargo run --release --features kafka --example kafka_bench -- [--updates 1000000] [--times 100]
//!     [--partitions 4] [--workers 1] [--bootstrap 127.0.0.1:59092]
//! ```
//!
//! For each delivery mode (at-least-once, exactly-once) it runs, against the same broker:
//!
//! * **raw**: one rdkafka `ThreadedProducer` (idempotent; transactional for exactly-once) sending
//!   pre-encoded upsert records — key `{"id":N}`, the row's JSON as value (~100 bytes), the same
//!   `dsink.time` header — waiting for every acknowledgement (at-least-once) or committing a
//!   transaction (exactly-once) after each logical time, as the sink does with its default cadence;
//! * **sink**: a timely dataflow feeding the same rows, as `(row, time, +1)` updates, into an
//!   upsert JSON Kafka sink keyed by `id` — routing, consolidation, key extraction, encoding,
//!   producing and a commit (with its progress record) per time included.
//!
//! Each run writes a fresh topic. It prints messages/s, MB/s (keys + values) and the sink/raw
//! ratio per mode. It also prints the cost per row of the Avro path the sink takes with
//! `encode = avro` (parse the envelope's JSON, write Avro by the derived schema).

use differential_dataflow::input::Input;
use differential_sinks::connectors::kafka::{Delivery, KafkaConfig, TIME_HEADER};
use differential_sinks::{SinkCollection, SinkSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct BenchRow {
    id: u64,
    name: String,
    amount: u64,
    note: String,
}

struct Args {
    updates: u64,
    times: u64,
    partitions: i32,
    workers: usize,
    bootstrap: String,
}

fn args() -> Args {
    let mut a = Args {
        updates: 1_000_000,
        times: 100,
        partitions: 4,
        workers: 1,
        bootstrap: std::env::var("DSINK_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:59092".into()),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let val = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--updates" => a.updates = val.parse().expect("--updates N"),
            "--times" => a.times = val.parse().expect("--times N"),
            "--partitions" => a.partitions = val.parse().expect("--partitions N"),
            "--workers" => a.workers = val.parse().expect("--workers N"),
            "--bootstrap" => a.bootstrap = val,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn rows(n: u64) -> Vec<BenchRow> {
    (0..n)
        .map(|id| BenchRow {
            id,
            name: format!("customer-{id}"),
            amount: (id * 7919) % 100_000,
            note: format!("{:016x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(3)[..40].to_string(),
        })
        .collect()
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt
        .block_on(
            admin.create_topics([&NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new()),
        )
        .expect("create topic");
    for x in r {
        x.expect("topic created");
    }
}

struct Outcome {
    records: u64,
    bytes: u64,
    secs: f64,
}

impl Outcome {
    fn msgs_per_sec(&self) -> f64 {
        self.records as f64 / self.secs
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

fn raw(a: &Args, data: &[BenchRow], delivery: Delivery, run: &str) -> Outcome {
    let topic = format!("bench-raw-{run}");
    create_topic(&a.bootstrap, &topic, a.partitions);
    // Pre-encode exactly what the sink sends.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> =
        data.iter().map(|r| (format!("{{\"id\":{}}}", r.id).into_bytes(), serde_json::to_vec(r).unwrap())).collect();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.bootstrap).set("enable.idempotence", "true").set("partitioner", "murmur2_random");
    let eos = delivery == Delivery::ExactlyOnce;
    if eos {
        c.set("transactional.id", format!("bench-raw-{run}"));
    }
    let p: ThreadedProducer<DefaultProducerContext> = c.create().expect("producer");
    let timeout = Duration::from_secs(60);
    if eos {
        p.init_transactions(timeout).expect("init");
    }
    let per_time = (data.len() as u64).div_ceil(a.times).max(1) as usize;
    let started = Instant::now();
    let mut bytes = 0u64;
    for (t, chunk) in encoded.chunks(per_time).enumerate() {
        let time = t.to_string();
        if eos {
            p.begin_transaction().expect("begin");
        }
        for (k, v) in chunk {
            bytes += (k.len() + v.len()) as u64;
            let h =
                OwnedHeaders::new_with_capacity(1).insert(Header { key: TIME_HEADER, value: Some(time.as_bytes()) });
            let mut rec = BaseRecord::<[u8], [u8]>::to(&topic).key(k).payload(v).headers(h);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        p.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
        }
        if eos {
            p.commit_transaction(timeout).expect("commit");
        } else {
            // Wait for the acknowledgements in 1 ms steps (rdkafka's `flush` polls in 100 ms steps).
            while p.in_flight_count() > 0 {
                p.poll(Duration::from_millis(1));
            }
        }
    }
    Outcome { records: encoded.len() as u64, bytes, secs: started.elapsed().as_secs_f64() }
}

fn sink(a: &Args, data: &[BenchRow], delivery: Delivery, run: &str) -> Outcome {
    let topic = format!("bench-sink-{run}");
    let cfg = KafkaConfig::new(a.bootstrap.clone(), &topic).delivery(delivery).create_topic(a.partitions, 1);
    let spec = SinkSpec::builder(format!("bench-{run}"), cfg).upsert().primary_key(["id"]).build().unwrap();
    let metrics = spec.metrics().clone();
    let data = std::sync::Arc::new(data.to_vec());
    let per_time = (data.len() as u64).div_ceil(a.times).max(1) as usize;
    let started = Instant::now();
    timely::execute(timely::Config::process(a.workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<BenchRow, isize>();
            let out = rows.sink(&spec).expect("sink");
            let (probe, _) = out.committed.probe();
            (input, probe, out.handle)
        });
        for (t, chunk) in data.chunks(per_time).enumerate() {
            for (i, r) in chunk.iter().enumerate() {
                if i % peers == index {
                    input.insert(r.clone());
                }
            }
            input.advance_to(t as u64 + 1);
            input.flush();
            worker.step();
        }
        input.close();
        while !probe.done() {
            worker.step();
            if let Some(e) = handle.take_error() {
                panic!("sink failed: {e}");
            }
        }
    })
    .expect("timely");
    let m = metrics.snapshot();
    Outcome { records: m.records_out, bytes: m.bytes_out, secs: started.elapsed().as_secs_f64() }
}

/// Nanoseconds per row of JSON encoding, and of writing Avro from that JSON.
fn avro_cost(data: &[BenchRow]) -> (f64, f64) {
    use differential_sinks::encode::avro::{row_schema, wire_header};
    let schema: differential_sinks::Schema = "id:int64!,name:string!,amount:int64!,note:string!".parse().unwrap();
    let avro = row_schema("bench_value", &schema);
    let n = data.len().min(200_000);
    let mut json = Vec::with_capacity(256);
    let started = Instant::now();
    let mut total = 0usize;
    for r in &data[..n] {
        json.clear();
        serde_json::to_writer(&mut json, r).unwrap();
        total += json.len();
    }
    let json_ns = started.elapsed().as_nanos() as f64 / n as f64;
    let encoded: Vec<Vec<u8>> = data[..n].iter().map(|r| serde_json::to_vec(r).unwrap()).collect();
    let mut out = Vec::with_capacity(256);
    let started = Instant::now();
    for j in &encoded {
        out.clear();
        wire_header(1, &mut out);
        avro.encode_json(j, &mut out).unwrap();
        total += out.len();
    }
    let avro_ns = started.elapsed().as_nanos() as f64 / n as f64;
    assert!(total > 0);
    (json_ns, avro_ns)
}

fn main() {
    let a = args();
    let data = rows(a.updates);
    let (json_ns, avro_ns) = avro_cost(&data);
    println!("encoding per row: JSON {json_ns:.0} ns; Avro from that JSON (streamed) {avro_ns:.0} ns");
    let avg = data.iter().map(|r| serde_json::to_vec(r).unwrap().len()).sum::<usize>() as f64 / data.len() as f64;
    println!(
        "{} upserts (~{avg:.0}-byte JSON rows), {} times, {} partitions, {} worker(s), broker {}",
        a.updates, a.times, a.partitions, a.workers, a.bootstrap
    );
    println!("{:<15} {:<5} {:>12} {:>9} {:>8}", "mode", "who", "messages/s", "MB/s", "seconds");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    for (delivery, target) in [(Delivery::AtLeastOnce, 0.8), (Delivery::ExactlyOnce, 0.7)] {
        let run = format!("{}-{stamp}", delivery.name());
        let r = raw(&a, &data, delivery, &run);
        let s = sink(&a, &data, delivery, &run);
        assert_eq!(s.records, r.records, "both sent every record");
        for (who, o) in [("raw", &r), ("sink", &s)] {
            println!(
                "{:<15} {:<5} {:>12.0} {:>9.1} {:>8.2}",
                delivery.name(),
                who,
                o.msgs_per_sec(),
                o.mb_per_sec(),
                o.secs
            );
        }
        println!(
            "{:<15} ratio sink/raw {:.2} (target ≥ {target})",
            delivery.name(),
            s.msgs_per_sec() / r.msgs_per_sec()
        );
    }
}
