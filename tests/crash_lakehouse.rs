//! Crash tests of the lakehouse sinks (Iceberg, Delta Lake): `dsink` on 2 workers killed with
//! SIGKILL inside a chunked time, around a worker's prepare, around and inside the committer's
//! commit of a round (manifests or data files written, the catalog pointer or log entry not yet),
//! then rerun; the table is read back after every run by the independent Python readers
//! (pyiceberg; the `deltalake` package) and compared with the reference.

mod common;

use common::crash::{self, CrashTest, Guarantee, Readback, COORDINATED};
use common::lakehouse::ROW_SCHEMA;
use common::Row;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn python() -> String {
    common::service_env("DSINK_PYTHON", "iceberg")
}

fn reader(script: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(script);
    let out = std::process::Command::new(python()).arg(script).args(args).output().expect("the Python reader runs");
    assert!(out.status.success(), "the Python reader failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn rows(table: &Value) -> Vec<Row> {
    serde_json::from_value(table["rows"].clone()).expect("rows of k, v, s")
}

/// An upsert table's rows by key; a key held twice fails the test.
fn by_key(rows: Vec<Row>) -> BTreeMap<u32, Row> {
    let mut out = BTreeMap::new();
    for r in rows {
        if let Some(old) = out.insert(r.k, r.clone()) {
            panic!("key {} is in the table twice: {old:?} and {r:?}", r.k);
        }
    }
    out
}

fn test(label: &'static str, with: Vec<String>, guarantee: Guarantee, seed: u64) -> CrashTest<'static> {
    let mut args = vec!["--schema".to_string(), ROW_SCHEMA.to_string()];
    args.extend(with.into_iter().flat_map(|w| ["--with".to_string(), w]));
    CrashTest { label, args, workers: 2, points: COORDINATED, guarantee, seed, env: vec![] }
}

fn iceberg(wh: &Path, extra: &[&str]) -> Vec<String> {
    let mut with = vec![
        "connector=iceberg".to_string(),
        format!("warehouse.path={}", wh.display()),
        "database.name=db".into(),
        "table.name=t".into(),
        "create_table_if_not_exists=true".into(),
    ];
    with.extend(extra.iter().map(|s| s.to_string()));
    with
}

fn read_iceberg(wh: &Path) -> Value {
    let db = wh.join("catalog.db");
    reader("read_iceberg.py", &[db.to_str().unwrap(), wh.to_str().unwrap(), "db.t", "default"])
}

fn delta(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut with = vec![
        "connector=deltalake".to_string(),
        format!("location={}", dir.display()),
        "create_table_if_not_exists=true".into(),
    ];
    with.extend(extra.iter().map(|s| s.to_string()));
    with
}

fn read_delta(dir: &Path) -> Value {
    reader("read_delta.py", &[dir.to_str().unwrap(), "sink"])
}

#[test]
fn iceberg_upsert_killed_at_every_crash_point_ends_in_the_final_state() {
    let wh = crash::scratch("iceberg-upsert");
    let t = test("iceberg upsert", iceberg(&wh, &["type=upsert", "primary_key=k"]), Guarantee::ExactlyOnce, 11);
    let report = crash::run(&t, &crash::history(11), &|| Readback::Table(by_key(rows(&read_iceberg(&wh)))));
    assert_eq!(report.crashes.len(), COORDINATED.len());
    let _ = std::fs::remove_dir_all(&wh);
}

#[test]
fn iceberg_append_only_killed_at_every_crash_point_holds_every_row_once() {
    let wh = crash::scratch("iceberg-append");
    let t = test("iceberg append-only", iceberg(&wh, &["type=append-only"]), Guarantee::ExactlyOnce, 12);
    let report = crash::run(&t, &crash::insert_history(12), &|| Readback::Rows(rows(&read_iceberg(&wh))));
    assert_eq!(report.crashes.len(), COORDINATED.len());
    let _ = std::fs::remove_dir_all(&wh);
}

#[test]
fn delta_upsert_killed_at_every_crash_point_ends_in_the_final_state() {
    let dir = crash::scratch("delta-upsert");
    let t = test("delta upsert", delta(&dir, &["type=upsert", "primary_key=k"]), Guarantee::ExactlyOnce, 13);
    let report = crash::run(&t, &crash::history(13), &|| Readback::Table(by_key(rows(&read_delta(&dir)))));
    assert_eq!(report.crashes.len(), COORDINATED.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn delta_append_only_killed_at_every_crash_point_holds_every_row_once() {
    let dir = crash::scratch("delta-append");
    let t = test("delta append-only", delta(&dir, &["type=append-only"]), Guarantee::ExactlyOnce, 14);
    let report = crash::run(&t, &crash::insert_history(14), &|| Readback::Rows(rows(&read_delta(&dir))));
    assert_eq!(report.crashes.len(), COORDINATED.len());
    let _ = std::fs::remove_dir_all(&dir);
}
