//! End-to-end throughput: updates/s through the sink operator, the upsert envelope and JSON
//! encoding into an in-memory writer, next to raw `serde_json` encoding of the same rows in the
//! same process, as a ratio.
//!
//! ```text
//! cargo run --release --example throughput -- [--updates N] [--times T] [--workers W,...] [--writer null|memory] [--snapshot]
//! ```
//!
//! `--writer null` keeps only counts and a checksum of the encoded records (the sink's own cost);
//! `memory` stores every record in the transactional in-memory target (adds two allocations per
//! record). `--snapshot` puts every update at one time (a large initial snapshot) and reports the
//! process's peak memory.

use differential_dataflow::input::Input;
use differential_sinks::connectors::memory::MemoryTarget;
use differential_sinks::connectors::{ConnectorConfig, RecordWriter};
use differential_sinks::operators::{Frontier, WorkerContext};
use differential_sinks::{RecordBatch, SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
    amount: i64,
    note: String,
}

fn row(i: u64) -> Row {
    // About 100 bytes of JSON.
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

/// Baseline: serde_json encoding of the same rows, one thread.
fn raw_encode(n: u64) -> (f64, u64) {
    let rows: Vec<Row> = (0..n).map(row).collect();
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut bytes = 0u64;
    for r in &rows {
        serde_json::to_writer(&mut buf, r).unwrap();
        if buf.len() > (1 << 20) - 512 {
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    bytes += buf.len() as u64;
    (n as f64 / start.elapsed().as_secs_f64(), bytes)
}

/// A writer that keeps counts and a checksum of what it receives.
struct NullWriter(Arc<AtomicU64>);
impl RecordWriter for NullWriter {
    fn resume(&mut self, _: WorkerContext) -> differential_sinks::Result<Frontier<u64>> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, batch: &RecordBatch) -> differential_sinks::Result<()> {
        let sum: u64 = batch
            .iter()
            .map(|r| r.key.len() as u64 + r.value.map_or(0, |v| v.len() as u64 + v[v.len() / 2] as u64))
            .sum();
        self.0.fetch_add(sum, Ordering::Relaxed);
        Ok(())
    }
    fn commit(&mut self, _: Frontier<u64>) -> differential_sinks::Result<()> {
        Ok(())
    }
}

fn run_sink(n: u64, times: u64, workers: usize, writer: &str) -> f64 {
    let checksum = Arc::new(AtomicU64::new(0));
    let target = MemoryTarget::new();
    let (writer, c2, t2) = (writer.to_string(), checksum.clone(), target.clone());
    let barrier = Arc::new(std::sync::Barrier::new(workers));
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (b2, s2) = (barrier.clone(), started.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let spec = SinkSpec::builder("bench", t2.clone()).upsert().primary_key(["id"]).build().unwrap();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = match writer.as_str() {
                "null" => {
                    use differential_sinks::operators::SinkExt;
                    let cols = differential_sinks::key::KeyColumns::new(vec!["id".into()], Default::default()).unwrap();
                    let w = differential_sinks::connectors::EnvelopeWriter::new(&spec, NullWriter(c2.clone()));
                    rows.sink_with(
                        differential_sinks::operators::SinkConfig::new("bench"),
                        move |r: &Row| cols.extract(r),
                        w,
                    )
                }
                _ => rows.sink(&spec).unwrap(),
            };
            let (probe, _) = out.committed.probe();
            (input, probe)
        });
        // Rows are made before the clock starts, so both sides measure encoding of ready rows.
        let per_time = n.div_ceil(times);
        let mut mine: Vec<Vec<Row>> = (0..times)
            .map(|t| {
                (t * per_time..((t + 1) * per_time).min(n)).filter(|i| *i as usize % peers == index).map(row).collect()
            })
            .collect();
        b2.wait();
        s2.lock().unwrap().get_or_insert_with(Instant::now);
        for (t, rows) in mine.iter_mut().enumerate() {
            let t = t as u64;
            for r in rows.drain(..) {
                input.insert(r);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step();
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let start = started.lock().unwrap().expect("started");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = matches!(ConnectorConfig::from(target.clone()), ConnectorConfig::Memory(_));
    assert!(checksum.load(Ordering::Relaxed) > 0 || !target.records().is_empty(), "the sink delivered nothing");
    if !target.records().is_empty() {
        assert_eq!(target.records().len() as u64, n, "every update becomes one record");
    }
    rate
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--updates", 2_000_000);
    let snapshot = args.iter().any(|a| a == "--snapshot");
    let times: u64 = if snapshot { 1 } else { arg(&args, "--times", 100) };
    let writer: String = arg(&args, "--writer", "null".to_string());
    let workers: String = arg(&args, "--workers", "1,2".to_string());
    let (raw, bytes) = raw_encode(n.min(2_000_000));
    println!("raw serde_json encoding: {:.0} rows/s ({:.0} bytes/row)", raw, bytes as f64 / n.min(2_000_000) as f64);
    let mut one = None;
    for w in workers.split(',').filter_map(|w| w.parse::<usize>().ok()) {
        let rate = run_sink(n, times, w, &writer);
        let one_rate = *one.get_or_insert(rate);
        println!(
            "sink ({writer} writer, {w} worker{}): {rate:.0} updates/s = {:.2}x raw encoding, {:.2}x one worker",
            if w == 1 { "" } else { "s" },
            rate / raw,
            rate / one_rate
        );
    }
    if snapshot {
        println!("peak memory (VmHWM) for a {n}-update snapshot: {:.0} MB", peak_rss_mb());
    }
}
