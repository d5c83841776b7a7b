//! The lakehouse tables read by a second, independent reader: DuckDB's `iceberg` and `delta`
//! extensions (tests/support/read_duckdb.py; installed by `scripts/services install iceberg
//! deltalake`, interpreter from `DSINK_PYTHON`), which share no code with pyiceberg, delta-rs or
//! the sink. Each test writes a table with the sink and compares what DuckDB reads with a
//! reference computed from the input: an upsert history's final state (position deletes and
//! deletion vectors applied by DuckDB), rows of every column type the sinks write, rows packed
//! once on the worker that produced them, and unkeyed rows (routed by their packed bytes) that
//! meet their retractions from another worker.

mod common;
mod drive;

use common::lakehouse::{final_state, row_multiset, run, table_multiset, try_run, ROW_SCHEMA};
use common::{keyed_history, tracked, Row};
use differential_sinks::connectors::deltalake::DeltaLakeConfig;
use differential_sinks::connectors::iceberg::IcebergConfig;
use differential_sinks::{Schema, SinkSpec};
use drive::{Drive, Pace};
use serde_json::{json, Value};
use std::path::Path;

fn python() -> String {
    std::env::var("DSINK_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DSINK_PYTHON is not set: these tests read tables with DuckDB. Run `scripts/services install iceberg \
             deltalake`, then `set -a; . <(scripts/services env iceberg deltalake); set +a` (or use scripts/test)"
        )
    })
}

/// The rows DuckDB reads from a table (`args` as read_duckdb.py takes them).
fn duckdb(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_duckdb.py");
    let out = std::process::Command::new(python()).arg(script).args(args).output().expect("the DuckDB reader runs");
    assert!(out.status.success(), "the DuckDB reader failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn iceberg_rows(dir: &Path, table: &str) -> Value {
    let db = dir.join("catalog.db");
    duckdb(&["iceberg", db.to_str().expect("a UTF-8 path"), "db", table])
}

fn delta_rows(dir: &Path) -> Value {
    duckdb(&["delta", dir.to_str().expect("a UTF-8 path")])
}

fn iceberg(dir: &Path, table: &str) -> IcebergConfig {
    IcebergConfig::new(dir, "db", table).create_table_if_not_exists(true)
}

fn delta(dir: &Path) -> DeltaLakeConfig {
    DeltaLakeConfig::new(dir).create_table_if_not_exists(true)
}

#[test]
fn duckdb_reads_the_final_state_of_upsert_histories() {
    // Small files, so deletes land in files written at earlier commits and by other workers.
    for (seed, peers) in [(70u64, 1usize), (71, 2)] {
        let history = keyed_history(seed, 40, 12, 25);
        assert!(history.iter().any(|h| h.2 < 0));
        let expected = final_state(&history, u64::MAX);

        let dir = tempfile::tempdir().unwrap();
        let cfg = iceberg(dir.path(), "kv").target_file_size(1);
        let spec = SinkSpec::builder("kv", cfg).upsert().primary_key(["k"]).schema(ROW_SCHEMA.parse().unwrap());
        run(&history, &spec.build().unwrap(), peers);
        assert_eq!(table_multiset(&iceberg_rows(dir.path(), "kv")), expected, "iceberg, seed {seed}, {peers} workers");

        let dir = tempfile::tempdir().unwrap();
        let cfg = delta(dir.path()).target_file_size(1);
        let spec = SinkSpec::builder("kv", cfg).upsert().primary_key(["k"]).schema(ROW_SCHEMA.parse().unwrap());
        run(&history, &spec.build().unwrap(), peers);
        assert_eq!(table_multiset(&delta_rows(dir.path())), expected, "delta, seed {seed}, {peers} workers");
    }
}

/// A row of every column type, in the forms a row may give them (text for decimals, dates and
/// timestamps; microseconds for a timestamp).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Typed {
    id: i32,
    big: i64,
    text: String,
    price: String,
    name: Option<String>,
    ok: Option<bool>,
    day: Option<String>,
    at: Option<i64>,
    at_utc: Option<String>,
}

const TYPED_SCHEMA: &str =
    "id:int32!,big:int64!,text:string!,price:decimal(12,3)!,name:string,ok:boolean,day:date,at:timestamp,at_utc:timestamptz";

fn typed_rows() -> Vec<Typed> {
    vec![
        Typed {
            id: i32::MIN,
            big: i64::MAX,
            text: "α\"\\日本".into(),
            price: "123456789.125".into(),
            name: Some("".into()),
            ok: Some(true),
            day: Some("2024-02-29".into()),
            at: Some(1_700_000_000_123_456),
            at_utc: Some("2001-02-03T04:05:06.789012+01:00".into()),
        },
        Typed {
            id: 7,
            big: -1,
            text: "x".into(),
            price: "0".into(),
            name: None,
            ok: None,
            day: None,
            at: None,
            at_utc: None,
        },
        Typed {
            id: 0,
            big: 0,
            text: "".into(),
            price: "-1.5".into(),
            name: Some("n".into()),
            ok: Some(false),
            day: Some("1969-12-31".into()),
            at: Some(-1),
            at_utc: Some("1970-01-01 00:00:00".into()),
        },
    ]
}

/// The reference: the same values in the reader's forms (decimals at their scale, timestamps as
/// microseconds since the epoch in UTC), by `id`.
fn typed_expected() -> Value {
    json!([
        {"id": i32::MIN, "big": i64::MAX, "text": "α\"\\日本", "price": "123456789.125", "name": "", "ok": true,
         "day": "2024-02-29", "at": 1_700_000_000_123_456i64, "at_utc": 981_169_506_789_012i64},
        {"id": 0, "big": 0, "text": "", "price": "-1.500", "name": "n", "ok": false,
         "day": "1969-12-31", "at": -1, "at_utc": 0},
        {"id": 7, "big": -1, "text": "x", "price": "0.000", "name": null, "ok": null,
         "day": null, "at": null, "at_utc": null},
    ])
}

fn by_id(rows: &Value) -> Value {
    let mut rows = rows["rows"].as_array().expect("rows").clone();
    rows.sort_by_key(|r| r["id"].as_i64());
    Value::Array(rows)
}

#[test]
fn duckdb_reads_every_column_type_as_written() {
    let schema: Schema = TYPED_SCHEMA.parse().unwrap();
    let input: Vec<(Typed, u64, isize)> = typed_rows().into_iter().map(|r| (r, 0, 1)).collect();

    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("typed", iceberg(dir.path(), "typed")).append_only(false).schema(schema.clone());
    assert!(Drive::new(2).pace(Pace::Unflushed).run(&input, &spec.build().unwrap()).errors.is_empty());
    assert_eq!(by_id(&iceberg_rows(dir.path(), "typed")), typed_expected(), "iceberg");

    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("typed", delta(dir.path())).append_only(false).schema(schema);
    assert!(Drive::new(2).pace(Pace::Unflushed).run(&input, &spec.build().unwrap()).errors.is_empty());
    assert_eq!(by_id(&delta_rows(dir.path())), typed_expected(), "delta");
}

#[test]
fn lakehouse_rows_are_packed_once_on_the_worker_that_produced_them() {
    // Tracked rows serialize their fields in another order than the table's columns.
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("kv", iceberg(dir.path(), "kv")).upsert().primary_key(["k"]);
    let seen = tracked::run(spec.schema(ROW_SCHEMA.parse().unwrap()).build().unwrap(), 3);
    tracked::assert_encoded_once(&seen, 3);
    assert_eq!(table_multiset(&iceberg_rows(dir.path(), "kv")), row_multiset(&tracked::reference(3)), "iceberg");

    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("kv", delta(dir.path())).upsert().primary_key(["k"]);
    let seen = tracked::run(spec.schema(ROW_SCHEMA.parse().unwrap()).build().unwrap(), 3);
    tracked::assert_encoded_once(&seen, 3);
    assert_eq!(table_multiset(&delta_rows(dir.path())), row_multiset(&tracked::reference(3)), "delta");
}

#[test]
fn unkeyed_rows_meet_their_retractions_from_other_workers() {
    // Each row is inserted twice on one worker and retracted once on the other, at the same
    // time: only if both workers route it alike does the sink see one insert (append-only
    // refuses a retraction it cannot cancel).
    let mut history = Vec::new();
    for i in 0..60u32 {
        let row = Row { k: i, v: i * 7, s: format!("r{i}") };
        let (first, second) = if i % 2 == 0 { (2, -1) } else { (-1, 2) };
        history.push((row.clone(), 0, first));
        history.push((row, 0, second));
    }
    let expected = row_multiset(history.iter().filter(|h| h.2 > 0).map(|h| &h.0));

    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("rows", iceberg(dir.path(), "rows")).append_only(false);
    let errors = try_run(&history, &spec.schema(ROW_SCHEMA.parse().unwrap()).build().unwrap(), 2);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(table_multiset(&iceberg_rows(dir.path(), "rows")), expected, "iceberg");

    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("rows", delta(dir.path())).append_only(false);
    let errors = try_run(&history, &spec.schema(ROW_SCHEMA.parse().unwrap()).build().unwrap(), 2);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(table_multiset(&delta_rows(dir.path())), expected, "delta");
}
