//! Throughput of the ClickHouse sink against a raw RowBinary insert of the same rows.
//!
//! ```text
//! DSINK_CLICKHOUSE_URL=http://127.0.0.1:58123 cargo run --release --features clickhouse --example clickhouse_bench -- [ROWS] [TIMES] [WORKERS]
//! ```
//!
//! Both write the same rows `(k, v, s)` plus the version and delete columns into a fresh
//! `ReplacingMergeTree(ver)` table: the baselines as hand-encoded RowBinary, one request at a
//! time, in blocks of the sink's default size (500 000 rows) and in one block per time (as many
//! inserts as the sink has commits, so ClickHouse's cost per insert is in both); the sink as an
//! upsert of a collection that inserts every key once, over `TIMES` logical times, on `WORKERS`
//! workers (default 1) — dataflow, consolidation, encoding and commit included. The sink runs
//! twice, the two passes taking turns going first: as it is (rows encoded as RowBinary where they
//! are produced), and with typed rows encoded by the writer (the dead-letter policy keeps rows
//! typed, since dead letters are the rows themselves). Prints rows/s of each and their ratios to
//! the baselines.

use differential_sinks::connectors::clickhouse::ClickHouseConfig;
use differential_sinks::encode::rowbinary::put_leb128;
use differential_sinks::{SinkSpec, ViolationPolicy};
use std::time::Instant;

#[path = "common/bench.rs"]
mod bench;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Row {
    k: u64,
    v: u64,
    s: String,
}

fn row(i: u64) -> Row {
    Row { k: i, v: i.wrapping_mul(7919) % 100_000, s: format!("customer-{i}-abcdefghijklmnop") }
}

fn query(rt: &tokio::runtime::Runtime, http: &reqwest::Client, url: &str, sql: &str, body: Vec<u8>) {
    rt.block_on(async {
        // Statements without data travel in the body; inserts name themselves in the URL.
        let r = if body.is_empty() {
            http.post(format!("{url}/")).body(sql.to_string())
        } else {
            http.post(reqwest::Url::parse_with_params(&format!("{url}/"), &[("query", sql)]).unwrap()).body(body)
        };
        let r = r.send().await.expect("ClickHouse answers");
        let s = r.status();
        let t = r.text().await.unwrap();
        assert!(s.is_success(), "`{sql}`: {t}");
    });
}

fn main() {
    let url =
        std::env::var("DSINK_CLICKHOUSE_URL").expect("set DSINK_CLICKHOUSE_URL (scripts/services start clickhouse)");
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let times: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10).max(1);
    let workers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let ddl = "(k UInt64, v UInt64, s String, ver UInt64, del UInt8) ENGINE = ReplacingMergeTree(ver) ORDER BY k";
    for t in ["bench_raw", "bench_raw_per_time", "bench_sink", "bench_typed"] {
        query(&rt, &http, &url, &format!("DROP TABLE IF EXISTS default.{t}"), vec![]);
        query(&rt, &http, &url, &format!("CREATE TABLE default.{t} {ddl}"), vec![]);
    }

    // Baselines: RowBinary, one request at a time, in blocks of 500 000 rows, and in one insert
    // per time (as many requests as the sink has commits, the rows of a commit in one block).
    let raw_secs = raw_insert(&rt, &http, &url, "bench_raw", rows, times, (0..rows).step_by(500_000));
    let per_time = (0..times).map(|t| (t * rows).div_ceil(times)).filter(|&i| i < rows);
    let per_time_secs = raw_insert(&rt, &http, &url, "bench_raw_per_time", rows, times, per_time);

    // The sink, with rows encoded where they are produced, then with typed rows.
    let sink = |table: &str, policy: ViolationPolicy| {
        let spec = SinkSpec::builder(
            format!("bench-{}-{}", std::process::id(), started_nanos()),
            ClickHouseConfig::new(&url, "default", table).delete_column("del"),
        )
        .upsert()
        .primary_key(["k"])
        .violations(policy)
        .build()
        .unwrap();
        bench::time_sink_on(spec, rows, times, row, workers)
    };
    // The two passes take turns going first from run to run (by the process id's parity), so that
    // neither always runs on a server warmed up, or slowed down, by the other.
    let typed_first = std::process::id() % 2 == 1;
    let typed_before = typed_first.then(|| sink("bench_typed", ViolationPolicy::DeadLetter));
    let sink_secs = sink("bench_sink", ViolationPolicy::Fail);
    let typed_secs = typed_before.unwrap_or_else(|| sink("bench_typed", ViolationPolicy::DeadLetter));
    let count = |t: &str| {
        rt.block_on(async {
            let sql = format!("SELECT count() FROM default.{t}");
            http.post(format!("{url}/")).body(sql).send().await.unwrap().text().await.unwrap().trim().to_string()
        })
    };
    for t in ["bench_raw", "bench_raw_per_time", "bench_sink", "bench_typed"] {
        assert_eq!(count(t), rows.to_string(), "rows in {t}");
    }
    let rate = |secs: f64| rows as f64 / secs;
    let raw = rate(raw_secs);
    println!(
        "rows: {rows}, times: {times}, workers: {workers}, {} sink pass first",
        if typed_first { "typed" } else { "encoded" }
    );
    let raw_per_time = rate(per_time_secs);
    println!("raw RowBinary insert : {raw_secs:8.3} s  {raw:12.0} rows/s");
    println!("  one insert per time: {per_time_secs:8.3} s  {raw_per_time:12.0} rows/s");
    println!("clickhouse sink      : {sink_secs:8.3} s  {:12.0} rows/s", rate(sink_secs));
    println!("  typed rows         : {typed_secs:8.3} s  {:12.0} rows/s", rate(typed_secs));
    println!("ratio sink / raw     : {:.2}", rate(sink_secs) / raw);
    println!("ratio typed / raw    : {:.2}", rate(typed_secs) / raw);
    println!("ratio sink / raw, one insert per time: {:.2}", rate(sink_secs) / raw_per_time);
}

/// Inserts rows `0..rows` as hand-encoded RowBinary into `table`, one request per block; a block
/// starts at each of `starts`. Returns the seconds taken, building the rows included (as the
/// sink's clock includes making its rows).
fn raw_insert(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    url: &str,
    table: &str,
    rows: u64,
    times: u64,
    starts: impl Iterator<Item = u64>,
) -> f64 {
    let mut starts: Vec<u64> = starts.collect();
    starts.push(rows);
    let started = Instant::now();
    for block in starts.windows(2) {
        let mut body = Vec::with_capacity(((block[1] - block[0]) * 60) as usize);
        for j in block[0]..block[1] {
            let r = row(j);
            body.extend_from_slice(&r.k.to_le_bytes());
            body.extend_from_slice(&r.v.to_le_bytes());
            put_leb128(&mut body, r.s.len() as u64);
            body.extend_from_slice(r.s.as_bytes());
            body.extend_from_slice(&(j * times / rows).to_le_bytes());
            body.push(0);
        }
        query(rt, http, url, &format!("INSERT INTO default.{table} FORMAT RowBinary"), body);
    }
    started.elapsed().as_secs_f64()
}

/// A fresh sink name per run: the progress table remembers earlier runs of a sink.
fn started_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}
