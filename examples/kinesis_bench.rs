//! Kinesis throughput: the sink (dataflow → upsert envelope → JSON data envelope → signed
//! PutRecords of up to 500 records) against the same client sending the same pre-encoded
//! PutRecords requests in sequence, one run each, as a ratio.
//!
//! ```text
//! DSINK_MOTO_URL=http://127.0.0.1:55000 cargo run --release --features kinesis --example kinesis_bench -- [--records N] [--times T] [--endpoint URL]
//! ```
//!
//! Against moto the figures measure moto (a Python server) more than either client; the ratio
//! still shows what the sink adds on the client side.

use base64::Engine as _;
use differential_dataflow::input::Input;
use differential_sinks::connectors::kinesis::{KinesisClient, KinesisConfig};
use differential_sinks::{CommitPolicy, SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
    amount: i64,
    note: String,
}

fn row(i: u64) -> Row {
    Row {
        id: i,
        name: format!("customer-{:08}", i % 50_000_000),
        amount: (i * 7919 % 100_000) as i64,
        note: format!("{:040x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn time_of(i: u64, n: u64, times: u64) -> u64 {
    i * times / n
}

fn create(rt: &tokio::runtime::Runtime, client: &KinesisClient, stream: &str) {
    rt.block_on(async {
        client
            .call("CreateStream", json!({"StreamName": stream, "ShardCount": 4}).to_string().into_bytes())
            .await
            .unwrap();
        loop {
            let d = client
                .call("DescribeStreamSummary", json!({"StreamName": stream}).to_string().into_bytes())
                .await
                .unwrap();
            if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval while waiting for ACTIVE
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--records", 20_000);
    let times: u64 = arg(&args, "--times", 10);
    let endpoint: String = arg(
        &args,
        "--endpoint",
        std::env::var("DSINK_MOTO_URL").expect("set DSINK_MOTO_URL (scripts/services start moto) or --endpoint"),
    );
    let (sink_stream, raw_stream) =
        (format!("bench-sink-{}", std::process::id()), format!("bench-raw-{}", std::process::id()));
    let cfg = |s: &str| KinesisConfig::new(s, "us-east-1", Some(endpoint.clone())).credentials("testing", "testing");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = KinesisClient::new(&cfg(&raw_stream)).unwrap();
    create(&rt, &client, &sink_stream);
    create(&rt, &client, &raw_stream);

    // Raw: the same data envelopes and partition keys, pre-encoded into 500-record requests.
    let mut bodies = Vec::new();
    let mut records = Vec::new();
    for i in 0..n {
        let key = json!({"id": i}).to_string();
        let data = format!(
            r#"{{"time":{},"seq":0,"op":"c","key":{key},"value":{}}}"#,
            time_of(i, n, times),
            serde_json::to_string(&row(i)).unwrap()
        );
        records.push(json!({"PartitionKey": key, "Data": base64::engine::general_purpose::STANDARD.encode(data)}));
        if records.len() == 500 || i + 1 == n {
            bodies.push(
                json!({"StreamName": raw_stream, "Records": std::mem::take(&mut records)}).to_string().into_bytes(),
            );
        }
    }
    let raw_secs = rt.block_on(async {
        let start = Instant::now();
        for b in bodies {
            let v = client.call("PutRecords", b).await.unwrap();
            assert_eq!(v["FailedRecordCount"], 0);
        }
        start.elapsed().as_secs_f64()
    });

    let spec = SinkSpec::builder("bench", cfg(&sink_stream))
        .upsert()
        .primary_key(["id"])
        .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO })
        .build()
        .unwrap();
    let start = Instant::now();
    timely::execute(timely::Config::process(1), move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = rows.sink(&spec).unwrap();
            (input, out.committed.probe().0)
        });
        for i in 0..n {
            let t = time_of(i, n, times);
            if t > *input.time() {
                input.advance_to(t);
                input.flush();
                worker.step();
            }
            input.insert(row(i));
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let sink_secs = start.elapsed().as_secs_f64();
    for s in [&sink_stream, &raw_stream] {
        let _ = rt.block_on(client.call("DeleteStream", json!({"StreamName": s}).to_string().into_bytes()));
    }
    let (sink_rate, raw_rate) = (n as f64 / sink_secs, n as f64 / raw_secs);
    println!("kinesis PutRecords at {endpoint}, {n} records over {times} times (~190-byte data envelopes)");
    println!("  raw signed PutRecords  : {raw_rate:>10.0} records/s ({raw_secs:.2} s)");
    println!("  differential-sinks     : {sink_rate:>10.0} records/s ({sink_secs:.2} s)");
    println!("  ratio sink/raw         : {:>10.2}", sink_rate / raw_rate);
}
