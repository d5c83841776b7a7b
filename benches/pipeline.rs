//! Micro-benchmarks of the sink's pure stages, each next to raw `serde_json` encoding of the same
//! rows: key extraction, per-time consolidation into changes, and envelope + JSON encoding into
//! a record batch (upsert and Debezium).
//!
//! `cargo bench --features test-utils --bench pipeline`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use differential_sinks::config::SinkSpec;
use differential_sinks::connectors::memory::MemoryTarget;
use differential_sinks::connectors::{EnvelopeWriter, RecordWriter};
use differential_sinks::encoded_row::EncodedRow;
use differential_sinks::envelope::{Emission, Format};
use differential_sinks::key::{Key, KeyColumns, KeyEncoding};
use differential_sinks::operators::{changes_from_updates, Change, Frontier, WorkerContext};
use differential_sinks::RecordBatch;
use serde::Serialize;
use std::hint::black_box;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Row {
    id: u64,
    name: String,
    amount: i64,
    note: String,
}

const N: usize = 10_000;

fn make_rows(n: usize) -> Vec<Row> {
    (0..n as u64)
        .map(|i| Row {
            id: i,
            name: format!("customer-{i:08}"),
            amount: (i * 7919 % 100_000) as i64,
            note: format!("{:040x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        })
        .collect()
}

struct Discard;
impl RecordWriter for Discard {
    fn resume(&mut self, _: WorkerContext) -> differential_sinks::Result<Frontier<u64>> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, _: &RecordBatch) -> differential_sinks::Result<()> {
        Ok(())
    }
    fn commit(&mut self, _: Frontier<u64>) -> differential_sinks::Result<()> {
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let rows = make_rows(N);
    let keys = KeyColumns::new(vec!["id".into()], KeyEncoding::Json).unwrap();
    let mut g = c.benchmark_group("per_row");
    g.throughput(Throughput::Elements(N as u64));

    g.bench_function("raw_serde_json", |b| {
        let mut buf = Vec::with_capacity(N * 128);
        b.iter(|| {
            buf.clear();
            for r in &rows {
                serde_json::to_writer(&mut buf, r).unwrap();
            }
            black_box(buf.len())
        })
    });

    g.bench_function("raw_sonic_rs", |b| {
        let mut buf = Vec::with_capacity(N * 128);
        b.iter(|| {
            buf.clear();
            for r in &rows {
                sonic_rs::to_writer(&mut buf, r).unwrap();
            }
            black_box(buf.len())
        })
    });

    g.bench_function("key_extract_json", |b| {
        b.iter(|| rows.iter().map(|r| keys.extract(r)).fold(0u64, |a, k| a ^ k.stable_hash()))
    });

    let keyed: Vec<((Key, Row), isize)> = rows.iter().map(|r| ((keys.extract(r), r.clone()), 1)).collect();
    // Typed rows, then the sink's own path: rows encoded where they are produced, compared as
    // bytes.
    let encoded: Vec<((Key, EncodedRow), isize)> =
        rows.iter().map(|r| ((keys.extract(r), EncodedRow::encode(r)), 1)).collect();
    consolidate(&mut g, "consolidate_into_changes", &keyed);
    consolidate(&mut g, "consolidate_encoded_into_changes", &encoded);

    let changes: Vec<Change<Key, Row>> =
        keyed.iter().map(|((k, r), _)| Change { key: k.clone(), before: None, after: Some(r.clone()) }).collect();
    let updates: Vec<Change<Key, Row>> = keyed
        .iter()
        .map(|((k, r), _)| Change { key: k.clone(), before: Some(r.clone()), after: Some(r.clone()) })
        .collect();
    for (name, format, input) in [
        ("envelope_json_upsert", Format::Upsert, &changes),
        ("envelope_json_debezium_update", Format::Debezium { tombstone_after_delete: false }, &updates),
    ] {
        let spec = SinkSpec::builder("bench", MemoryTarget::new()).format(format).primary_key(["id"]).build().unwrap();
        let mut w: EnvelopeWriter<Discard, Row> = EnvelopeWriter::new(&spec, Discard);
        g.bench_function(name, |b| b.iter(|| black_box(w.encode(1, input).unwrap().bytes())));
    }

    g.bench_function("envelope_emit_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for c in &changes {
                Format::Upsert.emit(c, |e| n += matches!(e, Emission::Row { .. }) as usize).unwrap();
            }
            black_box(n)
        })
    });
    g.finish();

    // One large time, as a table's snapshot or a backlog delivers: its updates no longer fit in
    // the core's cache.
    let large = 200_000;
    let mut g = c.benchmark_group("per_row_large_time");
    g.throughput(Throughput::Elements(large as u64)).sample_size(20);
    let encoded: Vec<((Key, EncodedRow), isize)> =
        make_rows(large).iter().map(|r| ((keys.extract(r), EncodedRow::encode(r)), 1)).collect();
    consolidate(&mut g, "consolidate_encoded_into_changes", &encoded);
    g.finish();
}

/// Per-time consolidation of `updates` into changes, each iteration on a fresh copy.
fn consolidate<V: Ord + Clone>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    updates: &[((Key, V), isize)],
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            || updates.to_vec(),
            |mut updates| {
                let (mut changes, mut violations) = (Vec::with_capacity(updates.len()), Vec::new());
                changes_from_updates(&mut updates, &mut changes, &mut violations);
                black_box(changes.len())
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
