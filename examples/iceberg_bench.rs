//! The Iceberg sink against a baseline in the same process: the same rows, already converted to
//! Arrow batches, written with `parquet`'s `ArrowWriter` straight to files (one file per worker,
//! no dataflow, no manifests or catalog), with the sink's compression (zstd, Iceberg's default);
//! for upserts, the baseline then also writes the position deletes the sink writes (one Parquet
//! file of `(file_path, pos)` per thread, the positions known in advance). Also times the row →
//! Arrow conversion alone, as lines of the table, and, for appends, the baseline writing the rows
//! in the order the sink writes them (scattered by their hash, which compresses less than id order)
//! with the sink's ratio to it.
//!
//! ```text
//! cargo run --release --features iceberg,test-utils --example iceberg_bench -- --rows 1000000 --times 10
//! cargo run --release --features iceberg,test-utils --example iceberg_bench -- --upsert-keys 100000
//! cargo run --release --features iceberg,test-utils --example iceberg_bench -- --workers 1 --buffer-bytes 2GiB
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
use differential_sinks::connectors::iceberg::{iceberg_schema, IcebergConfig};
use differential_sinks::encode::arrow::RowBatcher;
use differential_sinks::{CommitPolicy, Schema, SinkSpec};
use lakehouse::{
    baseline, baseline_deletes, baseline_in_sink_order, conversion, dir_bytes, print_conversion, print_header,
    print_pair, print_sink_order, time_sink, time_upserts, upsert_history, with_buffer, worker_counts, SCHEMA,
};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;
use std::time::Duration;

fn batcher() -> RowBatcher {
    let schema: Schema = SCHEMA.parse().unwrap();
    let arrow = iceberg::arrow::schema_to_arrow_schema(&iceberg_schema(&schema).unwrap()).unwrap();
    RowBatcher::new(Arc::new(arrow)).unwrap()
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
        println!("baseline: the data files, then one position-delete file per thread of the rows replaced");
    }
    print_header(n, times);
    for peers in worker_counts(&args) {
        let base_dir = tempfile::tempdir().unwrap();
        let props = WriterProperties::builder().set_compression(Compression::ZSTD(Default::default())).build();
        let mut base = baseline(n, peers as u64, base_dir.path(), batcher, props.clone());
        if let Some(keys) = upsert_keys {
            // Upserts: the baseline also writes the position deletes the sink writes.
            base += baseline_deletes(n, keys, peers as u64, base_dir.path(), props);
        }
        let base_mb = dir_bytes(base_dir.path()) as f64 / 1e6;
        let sink_dir = tempfile::tempdir().unwrap();
        let config = IcebergConfig::new(sink_dir.path(), "bench", "rows").create_table_if_not_exists(true);
        let builder = with_buffer(&args, SinkSpec::builder("bench", config))
            .schema(SCHEMA.parse().unwrap())
            .commit(CommitPolicy { max_changes: None, interval: Duration::ZERO });
        let timing = match upsert_keys {
            // The same number of new rows, each replacing its key's previous one by position.
            Some(keys) => time_upserts(
                builder.upsert().primary_key(["id"]).build().unwrap(),
                upsert_history(n, times, peers, keys),
            ),
            None => time_sink(builder.append_only(false).build().unwrap(), n, times, peers),
        };
        let sink_mb = dir_bytes(sink_dir.path()) as f64 / 1e6;
        // Each snapshot has one manifest list, `snap-<id>-….avro`.
        let commits = std::fs::read_dir(sink_dir.path().join("bench/rows/metadata"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("snap-"))
            .count();
        print_pair(peers, n, (base, base_mb), (&format!("iceberg sink ({commits} commits)"), timing, sink_mb));
        if upsert_keys.is_none() {
            let props = WriterProperties::builder().set_compression(Compression::ZSTD(Default::default())).build();
            print_sink_order(peers, n, baseline_in_sink_order(n, times, peers as u64, batcher, props), timing.secs);
        }
        print_conversion(peers, n, base, conversion_rates);
    }
}
