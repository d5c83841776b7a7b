//! Pulsar throughput: the sink (dataflow → upsert envelope → JSON → producer with batching,
//! receipts awaited at each commit) against a raw `pulsar` producer with the same options
//! sending the same pre-encoded payloads, properties and partition keys, one run each.
//!
//! ```text
//! DSINK_PULSAR_URL=pulsar://127.0.0.1:56650 cargo run --release --features pulsar --example pulsar_bench -- [--records N] [--times T] [--batch B]
//! ```

use differential_sinks::connectors::pulsar::{PulsarConfig, OP_PROPERTY, SEQ_PROPERTY, TIME_PROPERTY};
use pulsar::producer::Message;
use pulsar::{ProducerOptions, Pulsar, TokioExecutor};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
#[path = "common/bench.rs"]
mod bench;

use bench::{arg, row, time_of, time_upsert_sink};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--records", 200_000);
    let times: u64 = arg(&args, "--times", 20);
    let batch: u32 = arg(&args, "--batch", 1000);
    let url = std::env::var("DSINK_PULSAR_URL").expect("set DSINK_PULSAR_URL (scripts/services start pulsar)");
    let pid = std::process::id();
    let (sink_topic, raw_topic) = (
        format!("persistent://public/default/bench-sink-{pid}"),
        format!("persistent://public/default/bench-raw-{pid}"),
    );

    let pre: Vec<(String, String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                time_of(i, n, times).to_string(),
                serde_json::json!({"id": i}).to_string(),
                serde_json::to_vec(&row(i)).unwrap(),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let raw_secs = rt.block_on(async {
        let client = Pulsar::builder(url.clone(), TokioExecutor).build().await.unwrap();
        let options = ProducerOptions { batch_size: Some(batch), block_queue_if_full: true, ..Default::default() };
        let mut producer = client.producer().with_topic(&raw_topic).with_options(options).build().await.unwrap();
        let start = Instant::now();
        let mut pending = VecDeque::new();
        for (t, key, value) in pre {
            let mut properties = HashMap::with_capacity(4);
            properties.insert(TIME_PROPERTY.to_string(), t);
            properties.insert(SEQ_PROPERTY.to_string(), "0".to_string());
            properties.insert(OP_PROPERTY.to_string(), "c".to_string());
            let msg = Message { payload: value, properties, partition_key: Some(key), ..Default::default() };
            pending.push_back(producer.send_non_blocking(msg).await.unwrap());
            if pending.len() >= 16_384 {
                producer.send_batch().await.unwrap();
                while pending.len() > 8192 {
                    pending.pop_front().unwrap().await.unwrap();
                }
            }
        }
        producer.send_batch().await.unwrap();
        for p in pending {
            p.await.unwrap();
        }
        start.elapsed().as_secs_f64()
    });

    let sink_secs = time_upsert_sink(PulsarConfig::new(&url, &sink_topic).batching(batch, None), n, times);
    let (sink_rate, raw_rate) = (n as f64 / sink_secs, n as f64 / raw_secs);
    println!("pulsar at {url}, {n} records over {times} times, batches of {batch} (~110-byte JSON values)");
    println!("  raw pulsar producer    : {raw_rate:>10.0} records/s ({raw_secs:.2} s)");
    println!("  differential-sinks     : {sink_rate:>10.0} records/s ({sink_secs:.2} s)");
    println!("  ratio sink/raw         : {:>10.2}", sink_rate / raw_rate);
}
