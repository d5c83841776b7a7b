//! Shared pieces of the lakehouse benchmark harnesses (Delta Lake, Iceberg): the baseline — the
//! same rows, already converted to Arrow batches, written with `parquet`'s `ArrowWriter` straight
//! to files, one per worker thread — the timed sink run, and the report.

#![allow(dead_code)]

use super::bench::{time_of, Row};
use differential_dataflow::input::Input;
use differential_sinks::encode::arrow::{PackedColumns, PackedEncoder, PackedLayout, RowBatcher};
use differential_sinks::{SinkCollection, SinkSpec};
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use timely::dataflow::operators::probe::Probe;

/// The row schema of [`Row`].
pub const SCHEMA: &str = "id:int64!,name:string!,amount:int64!,note:string!";
/// Rows per Arrow batch in the baseline and the conversion measurement.
pub const CHUNK: u64 = 4096;

/// The worker counts of `--workers W,...` (default `1,2`).
pub fn worker_counts(args: &[String]) -> Vec<usize> {
    super::bench::arg(args, "--workers", "1,2".to_string()).split(',').filter_map(|w| w.parse().ok()).collect()
}

/// `builder` with `--buffer-bytes B` (bytes, or with a `KiB`/`MiB`/`GiB` suffix) as its `buffer.max.bytes`, if given: a budget large enough
/// to hold every time the harness feeds ahead of the writer measures the rows' path without
/// spilling; the default budget spills in these runs (the harness outruns the writer).
pub fn with_buffer(
    args: &[String],
    builder: differential_sinks::SinkSpecBuilder,
) -> differential_sinks::SinkSpecBuilder {
    match args.iter().position(|a| a == "--buffer-bytes").and_then(|i| args.get(i + 1)) {
        Some(v) => builder.buffer_max_bytes(differential_sinks::options::parse_bytes("--buffer-bytes", v).unwrap()),
        None => builder,
    }
}

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
pub fn batches(b: RowBatcher, n: u64, w: u64, peers: u64) -> Vec<arrow_array::RecordBatch> {
    let rows: Vec<Row> = (0..n).filter(|i| i % peers == w).map(super::bench::row).collect();
    into_batches(b, &rows)
}

/// `rows` as Arrow batches of `CHUNK` rows, in order.
fn into_batches(mut b: RowBatcher, rows: &[Row]) -> Vec<arrow_array::RecordBatch> {
    rows.chunks(CHUNK as usize)
        .map(|c| {
            b.push(c).unwrap();
            b.finish().unwrap().unwrap()
        })
        .collect()
}

/// The rows of worker `w` of `peers` as Arrow batches of `CHUNK` rows, in the order the sink
/// writes an append-only table's rows: time by time, and in a time by the stable hash of the
/// row's packed encoding (an unkeyed row's key) rather than by id.
fn batches_in_sink_order(b: RowBatcher, n: u64, times: u64, w: u64, peers: u64) -> Vec<arrow_array::RecordBatch> {
    let layout = Arc::new(PackedLayout::new(b.schema()).expect("the bench schema packs"));
    let mut encoder = PackedEncoder::new(layout);
    let mut packed = Vec::new();
    let mut rows: Vec<(u64, u64, Row)> = (0..n)
        .filter(|i| i % peers == w)
        .map(|i| {
            let row = super::bench::row(i);
            packed.clear();
            encoder.encode(&row, &mut packed).unwrap();
            (time_of(i, n, times), differential_sinks::stable_hash::words64(&packed), row)
        })
        .collect();
    rows.sort_unstable_by_key(|(t, hash, _)| (*t, *hash));
    let rows: Vec<Row> = rows.into_iter().map(|(_, _, row)| row).collect();
    into_batches(b, &rows)
}

/// Seconds and megabytes of Parquet of the baseline writing the same rows in the order the sink
/// writes them ([`batches_in_sink_order`]). Scattered rows compress less (the sink's files are
/// larger than the id-ordered baseline's), and Parquet's encoding and compression then take
/// longer: the sink's ratio to this baseline is what it costs besides its rows' order.
pub fn baseline_in_sink_order(
    n: u64,
    times: u64,
    peers: u64,
    batcher: impl Fn() -> RowBatcher,
    props: WriterProperties,
) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let per_worker: Vec<_> = (0..peers).map(|w| batches_in_sink_order(batcher(), n, times, w, peers)).collect();
    let secs = write_per_thread(dir.path(), "w", &per_worker, props);
    (secs, dir_bytes(dir.path()) as f64 / 1e6)
}

/// Prints the line of the baseline in the sink's order and the sink's ratio to it.
pub fn print_sink_order(peers: usize, n: u64, base: (f64, f64), sink_secs: f64) {
    let (secs, mb) = base;
    println!(
        "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9.2}   (the sink's ratio to ArrowWriter writing its order)",
        peers,
        "ArrowWriter, sink's order",
        n as f64 / secs,
        mb / secs,
        secs,
        secs / sink_secs
    );
}

/// Seconds to write pre-built batches with `ArrowWriter`, one file per worker thread.
pub fn baseline(n: u64, peers: u64, dir: &Path, batcher: impl Fn() -> RowBatcher, props: WriterProperties) -> f64 {
    let per_worker: Vec<_> = (0..peers).map(|w| batches(batcher(), n, w, peers)).collect();
    write_per_thread(dir, "w", &per_worker, props)
}

/// Seconds to write each thread's batches with `ArrowWriter` into `<prefix><thread>.parquet`.
fn write_per_thread(
    dir: &Path,
    prefix: &str,
    per_thread: &[Vec<arrow_array::RecordBatch>],
    props: WriterProperties,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for (w, batches) in per_thread.iter().enumerate() {
            let props = props.clone();
            s.spawn(move || {
                let f = std::fs::File::create(dir.join(format!("{prefix}{w}.parquet"))).unwrap();
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

/// Seconds to write, as the baseline writes its data, the position deletes of an upsert run over
/// `keys` keys: one Parquet file per worker thread of Iceberg's position-delete columns
/// `(file_path, pos)`, sorted, listing the rows that worker's new rows replace. Row `i ≥ keys`
/// replaces row `i − keys`, which the baseline wrote as row `(i − keys) / peers` of
/// `w{(i − keys) % peers}.parquet`. The lists are built before the clock starts, as the data
/// batches are; the sink has to find the same positions through its key index.
pub fn baseline_deletes(n: u64, keys: u64, peers: u64, dir: &Path, props: WriterProperties) -> f64 {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let per_worker: Vec<RecordBatch> = (0..peers)
        .map(|w| {
            let mut gone: Vec<(u64, u64)> =
                (keys..n).filter(|i| i % peers == w).map(|i| ((i - keys) % peers, (i - keys) / peers)).collect();
            gone.sort_unstable();
            let paths =
                StringArray::from_iter_values(gone.iter().map(|(f, _)| format!("{}/w{f}.parquet", dir.display())));
            let pos = Int64Array::from_iter_values(gone.iter().map(|(_, p)| *p as i64));
            RecordBatch::try_from_iter([("file_path", Arc::new(paths) as ArrayRef), ("pos", Arc::new(pos) as ArrayRef)])
                .unwrap()
        })
        .collect();
    // In chunks of the data batches' size, sliced before the clock starts.
    let chunks: Vec<Vec<RecordBatch>> = per_worker
        .iter()
        .map(|b| {
            (0..b.num_rows())
                .step_by(CHUNK as usize)
                .map(|at| b.slice(at, (CHUNK as usize).min(b.num_rows() - at)))
                .collect()
        })
        .collect();
    write_per_thread(dir, "d", &chunks, props)
}

/// What one timed sink run took.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Seconds from the moment every worker had built its dataflow (the catalog read, the table
    /// loaded or created, the writers opened, the rows built) until the last worker saw every
    /// time committed, before the dataflow is torn down.
    pub secs: f64,
    /// Seconds of that setup, outside the clock.
    pub setup: f64,
    /// Seconds the writers spent preparing their shares of commits (closing data files), summed
    /// over workers, and the committer spent committing (manifests, log entries, the catalog).
    pub prepare: f64,
    /// See `prepare`.
    pub commit: f64,
}

/// Runs the sink of `spec` for `n` appended rows over `times` times on `peers` workers.
pub fn time_sink(spec: SinkSpec, n: u64, times: u64, peers: usize) -> Timing {
    let updates = (0..peers as u64)
        .map(|w| (w..n).step_by(peers).map(|i| (time_of(i, n, times), super::bench::row(i), 1)).collect())
        .collect();
    time_upserts(spec, updates)
}

/// Runs the sink of `spec` over `updates`, one list per worker. Each worker builds its dataflow
/// and takes its updates (built before, owned, as a dataflow input takes them); the clock starts
/// once every worker has, and stops when the last worker has seen every time committed.
pub fn time_upserts(spec: SinkSpec, updates: Vec<Vec<(u64, Row, isize)>>) -> Timing {
    let peers = updates.len();
    let metrics = std::sync::Arc::clone(spec.settings().metrics());
    let before = metrics.snapshot();
    let updates = std::sync::Arc::new(std::sync::Mutex::new(updates));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(peers));
    let ends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (b2, e2) = (barrier.clone(), ends.clone());
    let launched = Instant::now();
    let start = std::sync::Arc::new(std::sync::OnceLock::new());
    let s2 = start.clone();
    timely::execute(timely::Config::process(peers), move |worker| {
        let mine = std::mem::take(&mut updates.lock().unwrap()[worker.index()]);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            (input, rows.sink(&spec).unwrap().committed.probe().0)
        });
        b2.wait();
        s2.get_or_init(Instant::now);
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
        e2.lock().unwrap().push(Instant::now());
    })
    .unwrap();
    let start = *start.get().expect("every worker started");
    let end = ends.lock().unwrap().iter().max().copied().expect("every worker ended");
    let after = metrics.snapshot();
    Timing {
        secs: (end - start).as_secs_f64(),
        setup: (start - launched).as_secs_f64(),
        prepare: (after.prepare_micros - before.prepare_micros) as f64 / 1e6,
        commit: (after.commit_micros - before.commit_micros) as f64 / 1e6,
    }
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

/// Rows per second of the row → Arrow conversion alone, on one thread, the sink's way and
/// `arrow-json`'s: rows packed for the table's columns (as where the sink's rows are produced)
/// then appended to Arrow builders (as its writers do), and rows through [`RowBatcher`] (the
/// baseline's batches; the sink's way before rows were packed).
pub fn conversion(mut b: RowBatcher, n: u64) -> (f64, f64) {
    let rows: Vec<Row> = (0..n.min(200_000)).map(super::bench::row).collect();
    let layout = Arc::new(PackedLayout::new(b.schema()).expect("the bench schema packs"));
    let mut encoder = PackedEncoder::new(Arc::clone(&layout));
    let mut columns = PackedColumns::all(Arc::clone(&layout));
    let mut packed = Vec::new();
    let start = Instant::now();
    for c in rows.chunks(CHUNK as usize) {
        for r in c {
            packed.clear();
            encoder.encode(r, &mut packed).unwrap();
            columns.push(layout.body(&packed).unwrap()).unwrap();
        }
        let arrays = columns.finish().unwrap();
        std::hint::black_box(arrow_array::RecordBatch::try_new(Arc::clone(b.schema()), arrays).unwrap());
    }
    let packed_rate = rows.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for c in rows.chunks(CHUNK as usize) {
        b.push(c).unwrap();
        std::hint::black_box(b.finish().unwrap());
    }
    (packed_rate, rows.len() as f64 / start.elapsed().as_secs_f64())
}

/// Prints the conversion's line for `peers` workers (one conversion thread per worker, as the
/// sink converts on every worker), with its ratio to the baseline's write rate.
pub fn print_conversion(peers: usize, n: u64, base_secs: f64, rates: (f64, f64)) {
    let (packed, json) = rates;
    for (name, rate) in [("rows→Arrow, packed", packed), ("rows→Arrow, arrow-json", json)] {
        let rate = rate * peers as f64;
        println!(
            "{:<8} {:<26} {:>12.0} {:>10} {:>10.3} {:>9.2}",
            peers,
            name,
            rate,
            "",
            n as f64 / rate,
            rate * base_secs / n as f64
        );
    }
}

/// Prints the table header.
pub fn print_header(n: u64, times: u64) {
    println!("{n} rows over {times} times");
    println!(
        "{:<8} {:<26} {:>12} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9}",
        "workers", "writer", "rows/s", "MB/s", "seconds", "ratio", "prepare s", "commit s", "setup s"
    );
}

/// Prints the baseline's line and the sink's, with the sink's ratio to the baseline and where its
/// fixed costs went: the writers' prepares (summed over workers), the committer's commits, and the
/// setup outside the clock.
pub fn print_pair(peers: usize, n: u64, base: (f64, f64), sink: (&str, Timing, f64)) {
    let (base_secs, base_mb) = base;
    let (name, t, mb) = sink;
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
        "{:<8} {:<26} {:>12.0} {:>10.1} {:>10.3} {:>9.2} {:>10.3} {:>10.3} {:>9.3}",
        peers,
        name,
        n as f64 / t.secs,
        mb / t.secs,
        t.secs,
        base_secs / t.secs,
        t.prepare,
        t.commit,
        t.setup
    );
}
