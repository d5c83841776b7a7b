//! The Delta Lake sink against a baseline in the same process: the same rows, already converted to
//! Arrow batches, written with `parquet`'s `ArrowWriter` straight to files (one file per worker,
//! no dataflow, no Delta log); for upserts, the baseline then also writes the deletion vectors
//! the sink writes (one file per thread in Delta's deletion-vector format, the positions known in
//! advance). Also times the row → Arrow conversion alone, and, for appends, the baseline writing
//! the rows in the order the sink writes them (scattered by their hash, which compresses less than
//! id order) with the sink's ratio to it.
//!
//! ```text
//! cargo run --release --features deltalake,test-utils --example deltalake_bench -- --rows 1000000 --times 10
//! cargo run --release --features deltalake,test-utils --example deltalake_bench -- --upsert-keys 100000
//! cargo run --release --features deltalake,test-utils --example deltalake_bench -- --workers 1 --buffer-bytes 2GiB
//! ```
//!
//! Prints rows/s and MB/s (of Parquet written) for 1 and 2 workers (`--workers`), and the sink's ratio to the
//! baseline. The sink's clock starts once every worker has built its dataflow (the table and the
//! writers exist, the rows are built) and stops when every time is committed; its line also shows
//! the writers' prepare time (closing data files, summed over workers), the committer's commit
//! time and the setup outside the clock, so fixed costs are seen apart from the per-row cost.
//! Run with `--rows 10000000` or more for figures where the fixed costs are small. The harness
//! feeds times faster than the writers drain them, so under the default `buffer.max.bytes` the
//! sink spills; `--buffer-bytes` sets the budget, to measure the rows' path without spilling.

#[path = "common/bench.rs"]
mod bench;
#[path = "common/lakehouse.rs"]
mod lakehouse;

use bench::arg;
use differential_sinks::connectors::deltalake::schema::{arrow_schema, delta_schema};
use differential_sinks::connectors::deltalake::DeltaLakeConfig;
use differential_sinks::encode::arrow::RowBatcher;
use differential_sinks::{CommitPolicy, Schema, SinkSpec};
use lakehouse::{
    baseline, baseline_in_sink_order, conversion, dir_bytes, print_conversion, print_header, print_pair,
    print_sink_order, time_sink, time_upserts, upsert_history, with_buffer, worker_counts, Timing, SCHEMA,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::time::Duration;

fn batcher() -> RowBatcher {
    let schema: Schema = SCHEMA.parse().unwrap();
    RowBatcher::new(arrow_schema(&delta_schema(&schema).unwrap()).unwrap()).unwrap()
}

/// The timing of the sink writing and committing `n` rows over `times` times (appends, or upserts
/// over `upsert_keys` keys), and its commits.
fn sink(args: &[String], n: u64, times: u64, peers: usize, dir: &Path, upsert_keys: Option<u64>) -> (Timing, usize) {
    let builder =
        with_buffer(args, SinkSpec::builder("bench", DeltaLakeConfig::new(dir).create_table_if_not_exists(true)))
            .schema(SCHEMA.parse().unwrap())
            .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO });
    let timing = match upsert_keys {
        // The same number of new rows, each replacing its key's previous one by deletion vector.
        Some(keys) => {
            time_upserts(builder.upsert().primary_key(["id"]).build().unwrap(), upsert_history(n, times, peers, keys))
        }
        None => time_sink(builder.append_only(false).build().unwrap(), n, times, peers),
    };
    // Log entries after the table's creation (version 0) are the sink's commits.
    let versions = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    (timing, versions - 1)
}

/// Seconds to write, as the baseline writes its data, the deletion vectors of an upsert run over
/// `keys` keys: per worker thread one file in Delta's deletion-vector format holding, for each
/// data file, the rows that worker's new rows replace (row `i ≥ keys` replaces row `i − keys`,
/// which the baseline wrote as row `(i − keys) / peers` of `w{(i − keys) % peers}.parquet`). The
/// positions are listed before the clock starts, as the data batches are built; the sink has to
/// find the same positions through its key index, and unions them with the files' vectors.
fn baseline_vectors(n: u64, keys: u64, peers: u64, dir: &Path) -> f64 {
    use buoyant_kernel::actions::deletion_vector_writer::{KernelDeletionVector, StreamingDeletionVectorWriter};
    let per_worker: Vec<Vec<Vec<u64>>> = (0..peers)
        .map(|w| {
            let mut files = vec![Vec::new(); peers as usize];
            for i in (keys..n).filter(|i| i % peers == w) {
                files[((i - keys) % peers) as usize].push((i - keys) / peers);
            }
            files
        })
        .collect();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for (w, files) in per_worker.iter().enumerate() {
            s.spawn(move || {
                let mut bytes = Vec::new();
                let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
                for positions in files.iter().filter(|p| !p.is_empty()) {
                    let mut dv = KernelDeletionVector::new();
                    dv.add_deleted_row_indexes(positions.iter().copied());
                    writer.write_deletion_vector(dv).unwrap();
                }
                writer.finalize().unwrap();
                std::fs::write(dir.join(format!("dv{w}.bin")), bytes).unwrap();
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = arg(&args, "--rows", 1_000_000);
    let times: u64 = arg(&args, "--times", 10);
    // `--upsert-keys K`: an upsert sink over K keys instead of appends (row i is key i % K).
    let upsert_keys: Option<u64> =
        args.iter().any(|a| a == "--upsert-keys").then(|| arg(&args, "--upsert-keys", 100_000));

    let conversion_rates = conversion(batcher(), n);
    if upsert_keys.is_some() {
        println!("baseline: the data files, then one deletion-vector file per thread of the rows replaced");
    }
    print_header(n, times);
    for peers in worker_counts(&args) {
        let base_dir = tempfile::tempdir().unwrap();
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut base = baseline(n, peers as u64, base_dir.path(), batcher, props);
        if let Some(keys) = upsert_keys {
            // Upserts: the baseline also writes the deletion vectors the sink writes.
            base += baseline_vectors(n, keys, peers as u64, base_dir.path());
        }
        let base_mb = dir_bytes(base_dir.path()) as f64 / 1e6;
        let sink_dir = tempfile::tempdir().unwrap();
        let (timing, commits) = sink(&args, n, times, peers, sink_dir.path(), upsert_keys);
        let sink_mb = dir_bytes(sink_dir.path()) as f64 / 1e6;
        print_pair(peers, n, (base, base_mb), (&format!("deltalake sink ({commits} commits)"), timing, sink_mb));
        if upsert_keys.is_none() {
            let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
            print_sink_order(peers, n, baseline_in_sink_order(n, times, peers as u64, batcher, props), timing.secs);
        }
        print_conversion(peers, n, base, conversion_rates);
    }
}
