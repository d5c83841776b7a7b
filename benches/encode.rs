//! Each pure encoder alone, on the same generated rows (4 columns, ~100 bytes of JSON each):
//!
//! * `records_json_upsert`, `records_json_debezium_update` — [`RecordEncoder`]: per-key changes
//!   through the envelope into keyed JSON records (the message targets);
//! * `avro_from_json_text` — [`AvroType::encode_json`] on the rows' JSON text, as the Kafka writer
//!   transcodes the envelope's output; `avro_from_row` includes writing that JSON text;
//! * `rowbinary` — [`RowBinaryEncoder`] from the rows' `Serialize` into a ClickHouse block.
//!
//! Throughput is in rows (elements). `cargo bench --bench encode --all-features`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use differential_sinks::config::SinkSpec;
use differential_sinks::connectors::memory::MemoryTarget;
use differential_sinks::encode::avro::{row_schema, AvroType};
use differential_sinks::encode::rowbinary::{Encoded, RowBinaryEncoder};
use differential_sinks::encode::{ChangeEncoder, RecordEncoder};
use differential_sinks::envelope::Format;
use differential_sinks::key::{Key, KeyColumns, KeyEncoding};
use differential_sinks::operators::Change;
use differential_sinks::{RecordBatch, Schema};
use serde::Serialize;
use std::hint::black_box;

#[derive(Clone, Debug, Serialize)]
struct Row {
    id: u64,
    name: String,
    amount: i64,
    note: String,
}

const N: usize = 10_000;

fn rows() -> Vec<Row> {
    (0..N as u64)
        .map(|i| Row {
            id: i,
            name: format!("customer-{i:08}"),
            amount: (i * 7919 % 100_000) as i64,
            note: format!("{:040x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rows = rows();
    let keys = KeyColumns::new(vec!["id".into()], KeyEncoding::Json).unwrap();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(N as u64));

    let inserts: Vec<Change<Key, Row>> =
        rows.iter().map(|r| Change { key: keys.extract(r), before: None, after: Some(r.clone()) }).collect();
    let updates: Vec<Change<Key, Row>> =
        rows.iter().map(|r| Change { key: keys.extract(r), before: Some(r.clone()), after: Some(r.clone()) }).collect();
    for (name, format, input) in [
        ("records_json_upsert", Format::Upsert, &inserts),
        ("records_json_debezium_update", Format::Debezium { tombstone_after_delete: false }, &updates),
    ] {
        let spec = SinkSpec::builder("bench", MemoryTarget::new()).format(format).primary_key(["id"]).build().unwrap();
        let mut enc = RecordEncoder::<Row>::new(spec.settings());
        let mut batch = RecordBatch::new(1);
        g.bench_function(name, |b| {
            b.iter(|| {
                batch.reset(1);
                enc.encode(1, input, &mut batch).unwrap();
                black_box(batch.bytes())
            })
        });
    }

    let schema: Schema = "id:int64!,name:string!,amount:int64!,note:string!".parse().unwrap();
    let avro: AvroType = row_schema("bench_value", &schema);
    let texts: Vec<Vec<u8>> = rows.iter().map(|r| serde_json::to_vec(r).unwrap()).collect();
    g.bench_function("avro_from_json_text", |b| {
        let mut out = Vec::with_capacity(N * 100);
        b.iter(|| {
            out.clear();
            for t in &texts {
                avro.encode_json(t, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });
    g.bench_function("avro_from_row", |b| {
        let (mut text, mut out) = (Vec::with_capacity(128), Vec::with_capacity(N * 100));
        b.iter(|| {
            out.clear();
            for r in &rows {
                text.clear();
                serde_json::to_writer(&mut text, r).unwrap();
                avro.encode_json(&text, &mut out).unwrap();
            }
            black_box(out.len())
        })
    });

    let columns = [("id", "UInt64"), ("name", "String"), ("amount", "Int64"), ("note", "String")];
    let mut rb = RowBinaryEncoder::new(columns, "UTC").unwrap();
    rb.set_columns(vec![0, 1, 2, 3]);
    g.bench_function("rowbinary", |b| {
        let mut out = Vec::with_capacity(N * 100);
        b.iter(|| {
            out.clear();
            for r in &rows {
                let done = rb.encode(r, &mut out).unwrap();
                debug_assert_eq!(done, Encoded::Written);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
