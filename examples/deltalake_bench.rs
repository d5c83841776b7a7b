//! The Delta Lake sink against a baseline in the same process: the same rows, already converted to
//! Arrow batches, written with `parquet`'s `ArrowWriter` straight to files (one file per worker,
//! no dataflow, no Delta log). Also times the row → Arrow conversion alone.
//!
//! ```text
//! cargo run --release --features deltalake,test-utils --example deltalake_bench -- --rows 1000000 --times 10
//! ```
//!
//! Prints rows/s and MB/s (of Parquet written) for 1 and 2 workers, and the sink's ratio to the
//! baseline.

#[path = "common/bench.rs"]
mod bench;

use bench::{arg, row, time_of, Row};
use differential_dataflow::input::Input;
use differential_sinks::connectors::deltalake::batch::{arrow_schema, delta_schema, RowBatcher};
use differential_sinks::connectors::deltalake::DeltaLakeConfig;
use differential_sinks::{CommitPolicy, Schema, SinkCollection, SinkSpec};
use std::path::Path;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;

const SCHEMA: &str = "id:int64!,name:string!,amount:int64!,note:string!";
const CHUNK: u64 = 4096;

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += dir_bytes(&e.path());
        } else if e.path().extension().is_some_and(|x| x == "parquet") {
            total += m.len();
        }
    }
    total
}

fn batcher() -> RowBatcher {
    let schema: Schema = SCHEMA.parse().unwrap();
    RowBatcher::new(arrow_schema(&delta_schema(&schema).unwrap()).unwrap()).unwrap()
}

/// The rows of worker `w` of `peers`, as Arrow batches of `CHUNK` rows.
fn batches(n: u64, w: u64, peers: u64) -> Vec<arrow_array::RecordBatch> {
    let mut b = batcher();
    let rows: Vec<Row> = (0..n).filter(|i| i % peers == w).map(row).collect();
    rows.chunks(CHUNK as usize)
        .map(|c| {
            b.push(c).unwrap();
            b.finish().unwrap().unwrap()
        })
        .collect()
}

/// Seconds to write pre-built batches with `ArrowWriter`, one file per worker thread.
fn baseline(n: u64, peers: u64, dir: &Path) -> f64 {
    let per_worker: Vec<_> = (0..peers).map(|w| batches(n, w, peers)).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, batches) in per_worker.iter().enumerate() {
            s.spawn(move || {
                let props = deltalake::parquet::file::properties::WriterProperties::builder()
                    .set_compression(deltalake::parquet::basic::Compression::SNAPPY)
                    .build();
                let f = std::fs::File::create(dir.join(format!("w{w}.parquet"))).unwrap();
                let mut writer =
                    deltalake::parquet::arrow::ArrowWriter::try_new(f, batches[0].schema(), Some(props)).unwrap();
                for b in batches {
                    writer.write(b).unwrap();
                }
                writer.close().unwrap();
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// Seconds for the sink to write and commit `n` rows over `times` times.
fn sink(n: u64, times: u64, peers: usize, dir: &Path) -> (f64, usize) {
    let spec = SinkSpec::builder("bench", DeltaLakeConfig::new(dir).create_table_if_not_exists(true))
        .append_only(false)
        .schema(SCHEMA.parse().unwrap())
        .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO })
        .build()
        .unwrap();
    // The rows are made before the clock starts, as the baseline's batches are.
    let rows: Vec<Vec<(u64, Row)>> =
        (0..peers as u64).map(|w| (w..n).step_by(peers).map(|i| (time_of(i, n, times), row(i))).collect()).collect();
    let rows = std::sync::Arc::new(std::sync::Mutex::new(rows));
    let start = Instant::now();
    timely::execute(timely::Config::process(peers), move |worker| {
        let mine = std::mem::take(&mut rows.lock().unwrap()[worker.index()]);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            (input, rows.sink(&spec).unwrap().committed.probe().0)
        });
        for (t, row) in mine {
            if t > *input.time() {
                input.advance_to(t);
                input.flush();
                worker.step();
            }
            input.insert(row);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    // Log entries after the table's creation (version 0) are the sink's commits.
    let versions = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    (secs, versions - 1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--rows", 1_000_000);
    let times: u64 = arg(&args, "--times", 10);

    let rows: Vec<Row> = (0..n.min(200_000)).map(row).collect();
    let mut b = batcher();
    let start = Instant::now();
    for c in rows.chunks(CHUNK as usize) {
        b.push(c).unwrap();
        std::hint::black_box(b.finish().unwrap());
    }
    let conv = rows.len() as f64 / start.elapsed().as_secs_f64();
    println!("rows → Arrow (RowBatcher): {:.2} M rows/s ({} rows of 4 columns)", conv / 1e6, rows.len());

    println!("{n} rows over {times} times");
    println!("{:<8} {:<26} {:>12} {:>10} {:>10} {:>9}", "workers", "writer", "rows/s", "MB/s", "seconds", "ratio");
    for peers in [1usize, 2] {
        let base_dir = tempfile::tempdir().unwrap();
        let base = baseline(n, peers as u64, base_dir.path());
        let base_mb = dir_bytes(base_dir.path()) as f64 / 1e6;
        let sink_dir = tempfile::tempdir().unwrap();
        let (secs, commits) = sink(n, times, peers, sink_dir.path());
        let sink_mb = dir_bytes(sink_dir.path()) as f64 / 1e6;
        println!(
            "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9}",
            peers,
            "ArrowWriter (baseline)",
            n as f64 / base,
            base_mb / base,
            base,
            "1.00"
        );
        println!(
            "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9.2}",
            peers,
            format!("deltalake sink ({} commits)", commits),
            n as f64 / secs,
            sink_mb / secs,
            secs,
            base / secs
        );
    }
}
