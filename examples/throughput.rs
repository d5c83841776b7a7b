//! End-to-end throughput: updates/s through the sink operator — routing by key, per-time
//! consolidation, the upsert envelope and JSON encoding — into a writer, next to the same
//! encoding done straight, without a dataflow, as a ratio.
//!
//! ```text
//! cargo run --release --features test-utils --example throughput -- [--updates N] [--times T] [--workers W,...] [--writer null|typed|memory] [--snapshot]
//! ```
//!
//! What is compared, for each worker count W of `--workers`:
//!
//! * **the sink**: N upserts of distinct keys, spread over T times, through `sink` on W timely
//!   workers (each feeding every W-th row), one commit per time;
//! * **raw**: the same rows on W threads, each taking every W-th row: the key extracted as the
//!   sink extracts it (`KeyColumns`), the row moved into a change, the changes of each time
//!   handed in chunks of the operator's write chunk to the very writer the sink uses
//!   ([`EnvelopeWriter`]: the [`RecordEncoder`](differential_sinks::encode::RecordEncoder) of the sink's spec, upsert JSON records, into
//!   the counting writer below), committed per time, then dropped. It produces the same records
//!   (the checksums must agree) and is the scaling ceiling of the encoding on this machine. The
//!   1-thread raw rate is printed too.
//!
//! Each line's `= 0.NNx raw` is the sink's rate over raw's with as many threads as the sink has
//! workers: what the dataflow (exchange, buffering, sorting and consolidation per time, the
//! operator's bookkeeping) costs on top of encoding. Both sides take owned rows and free them
//! inside the clock. Fixed costs stay outside both clocks: the rows are built (owned, per worker
//! or thread) before it starts, the dataflow (and the writers) is built before it starts, and it
//! stops when the last worker has seen every time committed, before the dataflow is torn down;
//! the sink's setup is printed apart.
//!
//! `--writer null` (default) keeps only counts and a checksum of the encoded records (the sink's
//! own cost), through `sink` into a target of the application's own, so each row is encoded once
//! where it is produced and its bytes travel; `typed` is the same writer behind the operator on
//! typed rows (the path of targets that take the rows themselves, SQL cells and Arrow columns);
//! `memory` stores every record in the transactional in-memory target (adds two allocations per
//! record, on the sink's side only: raw always uses the counting writer).
//! `--snapshot` puts every update at one time (a large initial snapshot) and reports the
//! process's peak memory after the sink's runs, before any raw baseline runs.

use differential_dataflow::input::Input;
use differential_sinks::connectors::memory::MemoryTarget;
use differential_sinks::connectors::{CustomConnector, EnvelopeWriter, RecordWriter};
use differential_sinks::key::{Key, KeyColumns};
use differential_sinks::operators::{Change, Frontier, SinkWriter, WorkerContext, DEFAULT_WRITE_CHUNK};
use differential_sinks::{RecordBatch, SinkCollection, SinkSpec};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
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

/// The spec both sides encode with: upsert JSON keyed by `id`.
fn spec(target: &Arc<MemoryTarget>) -> SinkSpec {
    SinkSpec::builder("bench", target.clone()).upsert().primary_key(["id"]).build().unwrap()
}

/// The rows of worker (or thread) `index` of `peers`, per time, owned.
fn share(n: u64, times: u64, index: usize, peers: usize) -> Vec<Vec<Row>> {
    let per_time = n.div_ceil(times);
    (0..times)
        .map(|t| {
            (t * per_time..((t + 1) * per_time).min(n)).filter(|i| *i as usize % peers == index).map(row).collect()
        })
        .collect()
}

/// A clock started by the first of several threads and stopped by the last.
#[derive(Clone, Default)]
struct Clock(Arc<Mutex<(Option<Instant>, Option<Instant>)>>);
impl Clock {
    fn start(&self) {
        self.0.lock().unwrap().0.get_or_insert_with(Instant::now);
    }
    fn stop(&self) {
        let now = Instant::now();
        let mut c = self.0.lock().unwrap();
        c.1 = Some(c.1.map_or(now, |t| t.max(now)));
    }
    fn started(&self) -> Instant {
        self.0.lock().unwrap().0.expect("started")
    }
    fn secs(&self) -> f64 {
        let (s, e) = *self.0.lock().unwrap();
        (e.expect("stopped") - s.expect("started")).as_secs_f64()
    }
}

/// Raw: the sink's encoding and writer without the dataflow, on `threads` threads; returns
/// updates/s and the checksum of what the writer received.
fn run_raw(n: u64, times: u64, threads: usize) -> (f64, u64) {
    let checksum = Arc::new(AtomicU64::new(0));
    let (barrier, clock) = (Arc::new(Barrier::new(threads)), Clock::default());
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let (checksum, barrier, clock) = (checksum.clone(), barrier.clone(), clock.clone());
            std::thread::spawn(move || {
                let keys = KeyColumns::new(vec!["id".into()], Default::default()).unwrap();
                let mut w = EnvelopeWriter::new(&spec(&MemoryTarget::new()), NullWriter(checksum));
                SinkWriter::<Key, Row, u64>::resume(&mut w, WorkerContext::new(index, threads)).unwrap();
                let mine = share(n, times, index, threads);
                let mut changes = Vec::with_capacity(DEFAULT_WRITE_CHUNK);
                barrier.wait();
                clock.start();
                for (t, rows) in mine.into_iter().enumerate() {
                    let t = t as u64;
                    let mut rows = rows.into_iter();
                    loop {
                        changes.extend(rows.by_ref().take(DEFAULT_WRITE_CHUNK).map(|r| Change {
                            key: keys.extract(&r),
                            before: None,
                            after: Some(r),
                        }));
                        if changes.is_empty() {
                            break;
                        }
                        SinkWriter::write(&mut w, &t, &mut changes).unwrap();
                        changes.clear();
                    }
                    SinkWriter::<Key, Row, u64>::commit(&mut w, &Frontier::at(t + 1)).unwrap();
                }
                clock.stop();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (n as f64 / clock.secs(), checksum.load(Ordering::Relaxed))
}

/// The sink on `workers` workers; returns updates/s, the seconds of setup before the clock, and
/// the checksum of what the counting writer received (0 with the memory writer).
fn run_sink(n: u64, times: u64, workers: usize, writer: &str) -> (f64, f64, u64) {
    let checksum = Arc::new(AtomicU64::new(0));
    let target = MemoryTarget::new();
    let (writer, c2, t2) = (writer.to_string(), checksum.clone(), target.clone());
    let (barrier, clock) = (Arc::new(Barrier::new(workers)), Clock::default());
    let (b2, k2) = (barrier.clone(), clock.clone());
    let setup_started = Instant::now();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let spec = spec(&t2);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let out = match writer.as_str() {
                // The operator on typed rows, keyed by the same extraction: the path of targets
                // that build their records from the rows themselves (SQL cells, Arrow columns).
                "typed" => {
                    use differential_sinks::operators::SinkExt;
                    let cols = KeyColumns::new(vec!["id".into()], Default::default()).unwrap();
                    let w = EnvelopeWriter::new(&spec, NullWriter(c2.clone()));
                    rows.sink_with(
                        differential_sinks::operators::SinkConfig::new("bench"),
                        move |r: &Row| cols.extract(r),
                        w,
                    )
                }
                // `sink` into a target of the application's own: rows encoded once where they
                // are produced, their bytes moved and consolidated.
                "null" => {
                    let c = c2.clone();
                    let target = CustomConnector::new("null", move |_| {
                        Ok(Box::new(NullWriter(c.clone())) as Box<dyn RecordWriter>)
                    });
                    let spec = SinkSpec::builder("bench", target).upsert().primary_key(["id"]).build().unwrap();
                    rows.sink(&spec).unwrap()
                }
                _ => rows.sink(&spec).unwrap(),
            };
            let (probe, _) = out.committed.probe();
            (input, probe)
        });
        let mut mine = share(n, times, index, peers);
        b2.wait();
        k2.start();
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
        k2.stop();
    })
    .unwrap();
    let rate = n as f64 / clock.secs();
    let setup = (clock.started() - setup_started).as_secs_f64();
    assert!(checksum.load(Ordering::Relaxed) > 0 || !target.records().is_empty(), "the sink delivered nothing");
    if !target.records().is_empty() {
        assert_eq!(target.records().len() as u64, n, "every update becomes one record");
    }
    (rate, setup, checksum.load(Ordering::Relaxed))
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
    let workers: Vec<usize> =
        arg(&args, "--workers", "1,2".to_string()).split(',').filter_map(|w| w.parse().ok()).collect();
    println!("{n} upserts of distinct keys over {times} time(s), {writer} writer");
    // Raw runs after the sink's runs in a snapshot, so the peak memory is the sink's.
    let mut sinks = Vec::new();
    let mut peak = None;
    for &w in &workers {
        if snapshot {
            sinks.push((w, run_sink(n, times, w, &writer)));
        }
    }
    if snapshot {
        peak = Some(peak_rss_mb());
    }
    let mut one = None;
    let mut raw_one = None;
    for (i, &w) in workers.iter().enumerate() {
        // Each worker count's sink and raw runs back to back, so both see the same load.
        let (rate, setup, sum) = if snapshot { sinks[i].1 } else { run_sink(n, times, w, &writer) };
        let (raw, raw_sum) = run_raw(n, times, w);
        if w == 1 {
            raw_one = Some(raw);
        }
        if writer != "memory" {
            assert_eq!(sum, raw_sum, "the sink and raw wrote different records");
        }
        let one_rate = *one.get_or_insert(rate);
        println!(
            "sink ({writer} writer, {w} worker{s}): {rate:.0} updates/s = {:.2}x raw ({w} thread{s}: {raw:.0} updates/s), \
             {:.2}x one worker (setup outside the clock: {setup:.3} s)",
            rate / raw,
            rate / one_rate,
            s = if w == 1 { "" } else { "s" },
        );
    }
    let raw_one = raw_one.unwrap_or_else(|| run_raw(n, times, 1).0);
    println!("raw, 1 thread: {raw_one:.0} updates/s");
    if let Some(peak) = peak {
        println!("peak memory (VmHWM) after the sink's runs on a {n}-update snapshot, before raw: {peak:.0} MB");
    }
}
