//! Throughput of the Elasticsearch sink against raw `_bulk` requests of the same documents.
//!
//! ```text
//! DSINK_ELASTICSEARCH_URL=http://127.0.0.1:59200 cargo run --release --features elasticsearch --example elasticsearch_bench -- [DOCS] [TIMES]
//! ```
//!
//! Both index the same documents with the same ids, external versions, batch size (5000 per
//! request) and concurrency (2 requests in flight) into fresh indexes: the baseline as
//! hand-built `_bulk` bodies, the sink as an upsert of a collection inserting every key once over
//! `TIMES` logical times, on one worker. Prints documents/s of each and the ratio.

use differential_sinks::connectors::elasticsearch::ElasticsearchConfig;
use differential_sinks::SinkSpec;
use std::time::Instant;

#[path = "common/bench.rs"]
mod bench;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Doc {
    id: u64,
    name: String,
    amount: u64,
    note: String,
}

fn doc(i: u64) -> Doc {
    Doc {
        id: i,
        name: format!("customer-{i}"),
        amount: i.wrapping_mul(7919) % 100_000,
        note: "lorem ipsum dolor sit amet".into(),
    }
}

fn main() {
    let url =
        std::env::var("DSINK_ELASTICSEARCH_URL").expect("set DSINK_ELASTICSEARCH_URL (scripts/services start osmem)");
    let args: Vec<String> = std::env::args().collect();
    let docs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let times: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::new();
    for i in ["bench-raw", "bench-sink"] {
        rt.block_on(http.delete(format!("{url}/{i}")).send()).unwrap();
    }

    // Baseline: the same actions, 5000 per request, 2 in flight.
    let started = Instant::now();
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut n = 0;
    for i in 0..docs {
        let d = doc(i);
        body.extend_from_slice(
            format!("{{\"index\":{{\"_index\":\"bench-raw\",\"_id\":\"{i}\",\"version\":{},\"version_type\":\"external\"}}}}\n", bench::time_of(i, docs, times))
                .as_bytes(),
        );
        serde_json::to_writer(&mut body, &d).unwrap();
        body.push(b'\n');
        n += 1;
        if n == 5000 || i + 1 == docs {
            bodies.push(std::mem::take(&mut body));
            n = 0;
        }
    }
    rt.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        let mut tasks = Vec::new();
        for b in bodies {
            let permit = sem.clone().acquire_owned().await.unwrap();
            let (http, url) = (http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/_bulk"))
                    .header("Content-Type", "application/x-ndjson")
                    .body(b)
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                assert_eq!(v["errors"], false);
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let raw_secs = started.elapsed().as_secs_f64();

    let spec = SinkSpec::builder(
        "bench",
        ElasticsearchConfig::new(&url, "bench-sink").batch(5000, 64 * 1024).concurrent_requests(2),
    )
    .upsert()
    .primary_key(["id"])
    .build()
    .unwrap();
    let sink_secs = bench::time_sink(spec, docs, times, doc);
    for i in ["bench-raw", "bench-sink"] {
        rt.block_on(http.post(format!("{url}/{i}/_refresh")).send()).unwrap();
        let c: serde_json::Value =
            serde_json::from_slice(&rt.block_on(async {
                http.get(format!("{url}/{i}/_count")).send().await.unwrap().bytes().await.unwrap()
            }))
            .unwrap();
        assert_eq!(c["count"].as_u64(), Some(docs), "{i}: {c}");
    }
    let (raw, sink) = (docs as f64 / raw_secs, docs as f64 / sink_secs);
    println!("documents: {docs}, times: {times}");
    println!("raw _bulk requests   : {raw_secs:8.3} s  {raw:12.0} docs/s");
    println!("elasticsearch sink   : {sink_secs:8.3} s  {sink:12.0} docs/s");
    println!("ratio sink / raw     : {:.2}", sink / raw);
}
