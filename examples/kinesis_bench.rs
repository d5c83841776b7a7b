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
use differential_sinks::connectors::kinesis::{KinesisClient, KinesisConfig};
use serde_json::json;
use std::time::{Duration, Instant};
#[path = "common/bench.rs"]
mod bench;

use bench::{arg, row, time_of, time_upsert_sink};

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

    let sink_secs = time_upsert_sink(cfg(&sink_stream), n, times);
    for s in [&sink_stream, &raw_stream] {
        let _ = rt.block_on(client.call("DeleteStream", json!({"StreamName": s}).to_string().into_bytes()));
    }
    let (sink_rate, raw_rate) = (n as f64 / sink_secs, n as f64 / raw_secs);
    println!("kinesis PutRecords at {endpoint}, {n} records over {times} times (~190-byte data envelopes)");
    println!("  raw signed PutRecords  : {raw_rate:>10.0} records/s ({raw_secs:.2} s)");
    println!("  differential-sinks     : {sink_rate:>10.0} records/s ({sink_secs:.2} s)");
    println!("  ratio sink/raw         : {:>10.2}", sink_rate / raw_rate);
}
