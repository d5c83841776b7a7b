//! NATS JetStream throughput: the sink (dataflow → upsert envelope → JSON → JetStream with
//! message ids, acks awaited at each commit) against the raw async-nats client publishing the same
//! pre-encoded bytes with the same headers into an identical stream, one run each, as a ratio.
//!
//! ```text
//! DSINK_NATS_URL=nats://127.0.0.1:54222 cargo run --release --features nats --example nats_bench -- [--records N] [--times T]
//! ```

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, HeaderName};
use differential_sinks::connectors::nats::{message_id, NatsConfig, KEY_HEADER, MSG_ID_HEADER, OP_HEADER, TIME_HEADER};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
#[path = "common/bench.rs"]
mod bench;

use bench::{arg, row, time_of, time_upsert_sink};

async fn fresh_stream(js: &jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![name.to_lowercase()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--records", 200_000);
    let times: u64 = arg(&args, "--times", 20);
    let url = std::env::var("DSINK_NATS_URL").expect("set DSINK_NATS_URL (scripts/services start nats)");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = rt.block_on(async_nats::connect(&url)).unwrap();
    let js = {
        let _e = rt.enter();
        jetstream::ContextBuilder::new().max_ack_inflight(8192).backpressure_on_inflight(true).build(client.clone())
    };
    let (sink_stream, raw_stream) =
        (format!("BENCH_SINK_{}", std::process::id()), format!("BENCH_RAW_{}", std::process::id()));
    rt.block_on(fresh_stream(&js, &sink_stream));
    rt.block_on(fresh_stream(&js, &raw_stream));

    // Raw client: the same keys, values and headers, pre-encoded.
    let pre: Vec<(u64, String, Vec<u8>)> = (0..n)
        .map(|i| {
            let r = row(i);
            (
                time_of(i, n, times),
                serde_json::to_string(&serde_json::json!({"id": i})).unwrap(),
                serde_json::to_vec(&r).unwrap(),
            )
        })
        .collect();
    let subject = raw_stream.to_lowercase();
    let raw_secs = rt.block_on(async {
        let start = Instant::now();
        let mut pending = VecDeque::new();
        let mut id = String::new();
        for (t, key, value) in &pre {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(OP_HEADER), "c");
            h.insert(HeaderName::from_static(TIME_HEADER), t.to_string().as_str());
            h.insert(HeaderName::from_static(KEY_HEADER), key.as_str());
            message_id(&mut id, "bench", "bench", *t, 0, key.as_bytes());
            h.insert(HeaderName::from_static(MSG_ID_HEADER), id.as_str());
            let msg = jetstream::message::PublishMessage::build().payload(value.clone().into()).headers(h);
            pending.push_back(js.send_publish(subject.clone(), msg).await.unwrap());
            while pending.len() > 4096 {
                pending.pop_front().unwrap().await.unwrap();
            }
        }
        for p in pending {
            p.await.unwrap();
        }
        start.elapsed().as_secs_f64()
    });
    drop(pre);

    // The sink.
    let cfg = NatsConfig::new(&url, sink_stream.to_lowercase()).jetstream(&sink_stream).progress(
        differential_sinks::connectors::nats::ProgressStore::Stream(format!("BENCH_PROGRESS_{}", std::process::id())),
    );
    let sink_secs = time_upsert_sink(cfg, n, times);
    let (sink_count, raw_count) = rt.block_on(async {
        let count = |name: String| {
            let js = js.clone();
            async move { js.get_stream(&name).await.unwrap().info().await.unwrap().state.messages }
        };
        (count(sink_stream.clone()).await, count(raw_stream.clone()).await)
    });
    assert_eq!((sink_count, raw_count), (n, n), "both streams hold every record once");
    rt.block_on(async {
        let _ = js.delete_stream(&sink_stream).await;
        let _ = js.delete_stream(&raw_stream).await;
        let _ = js.delete_stream(format!("BENCH_PROGRESS_{}", std::process::id())).await;
    });
    let (sink_rate, raw_rate) = (n as f64 / sink_secs, n as f64 / raw_secs);
    println!("nats jetstream, {n} records over {times} times (~110-byte JSON values, 4 headers each)");
    println!("  raw async-nats publish : {raw_rate:>10.0} records/s ({raw_secs:.2} s)");
    println!("  differential-sinks     : {sink_rate:>10.0} records/s ({sink_secs:.2} s)");
    println!("  ratio sink/raw         : {:>10.2}", sink_rate / raw_rate);
}
