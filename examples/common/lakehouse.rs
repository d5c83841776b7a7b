//! Shared pieces of the lakehouse benchmark harnesses (Delta Lake, Iceberg): the baseline — the
//! same rows, already converted to Arrow batches, written with `parquet`'s `ArrowWriter` straight
//! to files, one per worker thread — the timed sink run, and the report.

#![allow(dead_code)]

use super::bench::{time_of, Row};
use differential_dataflow::input::Input;
use differential_sinks::encode::arrow::RowBatcher;
use differential_sinks::{SinkCollection, SinkSpec};
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::time::Instant;
use timely::dataflow::operators::probe::Probe;

/// The row schema of [`Row`].
pub const SCHEMA: &str = "id:int64!,name:string!,amount:int64!,note:string!";
/// Rows per Arrow batch in the baseline and the conversion measurement.
pub const CHUNK: u64 = 4096;

/// Bytes of Parquet files under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
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

/// The rows of worker `w` of `peers`, as Arrow batches of `CHUNK` rows.
pub fn batches(mut b: RowBatcher, n: u64, w: u64, peers: u64) -> Vec<arrow_array::RecordBatch> {
    let rows: Vec<Row> = (0..n).filter(|i| i % peers == w).map(super::bench::row).collect();
    rows.chunks(CHUNK as usize)
        .map(|c| {
            b.push(c).unwrap();
            b.finish().unwrap().unwrap()
        })
        .collect()
}

/// Seconds to write pre-built batches with `ArrowWriter`, one file per worker thread.
pub fn baseline(n: u64, peers: u64, dir: &Path, batcher: impl Fn() -> RowBatcher, props: WriterProperties) -> f64 {
    let per_worker: Vec<_> = (0..peers).map(|w| batches(batcher(), n, w, peers)).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, batches) in per_worker.iter().enumerate() {
            let props = props.clone();
            s.spawn(move || {
                let f = std::fs::File::create(dir.join(format!("w{w}.parquet"))).unwrap();
                let mut writer = parquet::arrow::ArrowWriter::try_new(f, batches[0].schema(), Some(props)).unwrap();
                for b in batches {
                    writer.write(b).unwrap();
                }
                writer.close().unwrap();
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// Seconds for the sink of `spec` to write and commit `n` rows over `times` times on `peers`
/// workers. The rows are made before the clock starts, as the baseline's batches are.
pub fn time_sink(spec: SinkSpec, n: u64, times: u64, peers: usize) -> f64 {
    let rows: Vec<Vec<(u64, Row)>> = (0..peers as u64)
        .map(|w| (w..n).step_by(peers).map(|i| (time_of(i, n, times), super::bench::row(i))).collect())
        .collect();
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
    start.elapsed().as_secs_f64()
}

/// The update history of an upsert run: `n` new rows over `times` times, row `i` the new value
/// of key `i % keys` (its previous row retracted at the same time), dealt to `peers` workers.
pub fn upsert_history(n: u64, times: u64, peers: usize, keys: u64) -> Vec<Vec<(u64, Row, isize)>> {
    let mut out: Vec<Vec<(u64, Row, isize)>> = vec![Vec::new(); peers];
    let mut last: Vec<Option<Row>> = vec![None; keys as usize];
    for i in 0..n {
        let t = time_of(i, n, times);
        let mut row = super::bench::row(i);
        row.id = i % keys;
        let w = (i % peers as u64) as usize;
        if let Some(old) = last[row.id as usize].replace(row.clone()) {
            out[w].push((t, old, -1));
        }
        out[w].push((t, row, 1));
    }
    out
}

/// Seconds for the sink of `spec` (an upsert sink keyed by `id`) to apply and commit `updates`.
pub fn time_upserts(spec: SinkSpec, updates: Vec<Vec<(u64, Row, isize)>>) -> f64 {
    let peers = updates.len();
    let updates = std::sync::Arc::new(std::sync::Mutex::new(updates));
    let start = Instant::now();
    timely::execute(timely::Config::process(peers), move |worker| {
        let mine = std::mem::take(&mut updates.lock().unwrap()[worker.index()]);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            (input, rows.sink(&spec).unwrap().committed.probe().0)
        });
        for (t, row, d) in mine {
            if t > *input.time() {
                input.advance_to(t);
                input.flush();
                worker.step();
            }
            input.update(row, d);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap();
    start.elapsed().as_secs_f64()
}

/// Times the row → Arrow conversion alone and prints it.
pub fn print_conversion(mut b: RowBatcher, n: u64) {
    let rows: Vec<Row> = (0..n.min(200_000)).map(super::bench::row).collect();
    let start = Instant::now();
    for c in rows.chunks(CHUNK as usize) {
        b.push(c).unwrap();
        std::hint::black_box(b.finish().unwrap());
    }
    let conv = rows.len() as f64 / start.elapsed().as_secs_f64();
    println!("rows → Arrow (RowBatcher): {:.2} M rows/s ({} rows of 4 columns)", conv / 1e6, rows.len());
}

/// Prints the table header.
pub fn print_header(n: u64, times: u64) {
    println!("{n} rows over {times} times");
    println!("{:<8} {:<26} {:>12} {:>10} {:>10} {:>9}", "workers", "writer", "rows/s", "MB/s", "seconds", "ratio");
}

/// Prints the baseline's line and the sink's, with the sink's ratio to the baseline.
pub fn print_pair(peers: usize, n: u64, base: (f64, f64), sink: (&str, f64, f64)) {
    let (base_secs, base_mb) = base;
    let (name, secs, mb) = sink;
    println!(
        "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9}",
        peers,
        "ArrowWriter (baseline)",
        n as f64 / base_secs,
        base_mb / base_secs,
        base_secs,
        "1.00"
    );
    println!(
        "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9.2}",
        peers,
        name,
        n as f64 / secs,
        mb / secs,
        secs,
        base_secs / secs
    );
}
