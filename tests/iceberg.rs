//! Integration tests of the Iceberg sink: tables written by the sink are read back with an
//! independent reader, pyiceberg through its own SQL catalog client on the same SQLite database
//! (installed by `scripts/services install iceberg`; its interpreter comes from `DSINK_PYTHON`),
//! and compared with references computed from the input histories of `tests/common`.
//!
//! Needs `DSINK_PYTHON` (the tests that read a table back); the tests on S3 also need moto
//! (`DSINK_MOTO_URL`, `scripts/services start moto`).
//!
//! Library notes (iceberg-rust 0.10): its transactions only fast-append data files — there is
//! no row-delta commit, so the sink writes position-delete files and swaps the metadata itself
//! through the catalog (`FencedCatalog`); `from_table_properties` does not map the compression
//! codec, so the sink sets Parquet's codec from the table's properties itself.

mod common;
mod drive;

use common::lakehouse::{
    assert_stopped_by_the_index_budget, expected_inserts, final_state, insert_history, row_multiset,
    rows_another_writer_left, run, run_and_drop, run_dsink, run_until, run_with_meanwhile, table_multiset, try_run,
    upsert_each_time, ROW_SCHEMA,
};
use common::{expected_changes, keyed_history, Row};
use differential_sinks::connectors::iceberg::IcebergConfig;
use differential_sinks::{CommitPolicy, ErrorKind, Options, Schema, SinkSpec};
use drive::{Drive, Pace};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn python() -> String {
    std::env::var("DSINK_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DSINK_PYTHON is not set: the Iceberg tests read tables with pyiceberg. Run \
             `scripts/services install iceberg`, then `set -a; . <(scripts/services env iceberg); set +a` \
             (or use scripts/test)"
        )
    })
}

/// The table `db.<table>` of the warehouse `dir` as pyiceberg sees it (see
/// tests/support/read_iceberg.py).
fn read_table(dir: &Path, table: &str) -> Value {
    read_filtered(dir, table, &[])
}

/// [`read_table`], plus the rows of a scan with each of `filters` (pyiceberg's syntax).
fn read_filtered(dir: &Path, table: &str, filters: &[String]) -> Value {
    read_from(&dir.join("catalog.db"), dir.to_str().expect("a UTF-8 path"), table, None, filters)
}

/// The table `db.<table>` of the catalog `db` and the warehouse `warehouse` (a directory or
/// `s3://` URL) as pyiceberg sees it, with the catalog's S3 properties for a warehouse on S3,
/// plus the rows of a scan with each of `filters` (pyiceberg's syntax).
fn read_from(db: &Path, warehouse: &str, table: &str, storage: Option<&Value>, filters: &[String]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_iceberg.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(db)
        .arg(warehouse)
        .arg(format!("db.{table}"))
        .arg("default")
        .args(filters)
        .env("DSINK_STORAGE_OPTIONS", storage.map(Value::to_string).unwrap_or_default())
        .output()
        .expect("the Python reader runs");
    assert!(out.status.success(), "the Python reader failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn iceberg(dir: &Path, table: &str) -> IcebergConfig {
    IcebergConfig::new(dir, "db", table).create_table_if_not_exists(true)
}

/// The summaries of the snapshots `sink` made, in commit order.
fn sink_snapshots<'a>(table: &'a Value, sink: &str) -> Vec<&'a Value> {
    table["snapshots"].as_array().unwrap().iter().filter(|s| s["summary"]["dsink.sink"] == sink).collect()
}

/// The frontier the sink's latest snapshot records (`complete` once the input ended).
fn committed_to(table: &Value, sink: &str) -> Option<String> {
    sink_snapshots(table, sink).last().map(|s| s["summary"]["dsink.to"].as_str().unwrap().to_string())
}

#[test]
fn append_only_histories_arrive_as_the_inserted_multiset() {
    for (seed, peers) in [(1u64, 1usize), (2, 2), (3, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 12, 50);
        let spec = SinkSpec::builder("orders", iceberg(dir.path(), "orders"))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run(&history, &spec, peers);
        let table = read_table(dir.path(), "orders");
        let expected = expected_inserts(&history, u64::MAX);
        assert!(expected.values().any(|&n| n == 2), "the history has rows of multiplicity 2");
        assert_eq!(table_multiset(&table), expected, "seed {seed}, {peers} workers");
        // The input ended, so the sink's last snapshot records the complete frontier.
        assert_eq!(committed_to(&table, "orders").as_deref(), Some("complete"), "seed {seed}, {peers} workers");
        let last = sink_snapshots(&table, "orders").last().unwrap()["summary"].clone();
        assert_eq!(last["dsink.peers"], peers.to_string());
        // Files of a few kilobytes against the default 128 MiB target: every one is small.
        assert_eq!(last["dsink.small-files"], last["dsink.files"], "{last}");
        assert_eq!(spec.metrics().snapshot().small_files, spec.metrics().snapshot().files_committed);
        assert!(spec.metrics().snapshot().files_committed >= peers as u64);
        assert_eq!(last["dsink.frontiers"], vec!["complete"; peers].join(","));
        check_commit_chain(&table, "orders", &history);
    }
}

#[test]
fn forced_append_only_writes_every_inserted_row_of_a_keyed_history() {
    for (seed, peers) in [(4u64, 1usize), (5, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 40, 10, 25);
        let spec = SinkSpec::builder("keyed", iceberg(dir.path(), "keyed"))
            .append_only(true)
            .primary_key(["k"])
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run(&history, &spec, peers);
        // Deletes are dropped; inserts and the new side of updates are appended.
        let afters: Vec<Row> = expected_changes(&history).into_values().filter_map(|(_, after)| after).collect();
        assert!(afters.len() > 50);
        assert_eq!(table_multiset(&read_table(dir.path(), "keyed")), row_multiset(&afters), "seed {seed}");
    }
}

#[test]
fn a_retraction_without_force_stops_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("strict", iceberg(dir.path(), "strict"))
        .append_only(false)
        .primary_key(["k"])
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    let history = keyed_history(6, 10, 6, 10);
    assert!(history.iter().any(|h| h.2 < 0));
    let errors = try_run(&history, &spec, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("force_append_only"), "{errors:?}");
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Typed {
    id: i32,
    big: i64,
    ratio: String,
    price: String,
    name: Option<String>,
    ok: Option<bool>,
    day: Option<String>,
    at: Option<i64>,
    at_utc: Option<String>,
    half: Option<String>,
}

#[test]
fn types_round_trip_through_pyiceberg() {
    // f32/f64 travel as decimal text here so the rows stay `Ord` for the dataflow; the float
    // columns are covered by a second row type below.
    let schema: Schema = "id:int32!,big:int64!,ratio:string!,price:decimal(12,3)!,name:string,ok:boolean,\
                          day:date,at:timestamp,at_utc:timestamptz,half:decimal(4,1)"
        .parse()
        .unwrap();
    let rows = [
        Typed {
            id: i32::MIN,
            big: i64::MAX,
            ratio: "α\"\\日本".into(),
            price: "123456789.125".into(),
            name: Some("".into()),
            ok: Some(true),
            day: Some("2024-02-29".into()),
            at: Some(1_700_000_000_123_456),
            at_utc: Some("2001-02-03T04:05:06.789012Z".into()),
            half: Some("-0.5".into()),
        },
        Typed {
            id: 7,
            big: -1,
            ratio: "x".into(),
            price: "0.000".into(),
            name: None,
            ok: None,
            day: None,
            at: None,
            at_utc: None,
            half: None,
        },
        Typed {
            id: 0,
            big: 0,
            ratio: "".into(),
            price: "-1.5".into(),
            name: Some("n".into()),
            ok: Some(false),
            day: Some("1969-12-31".into()),
            at: Some(-1),
            at_utc: Some("1970-01-01T00:00:00Z".into()),
            half: Some("999.9".into()),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let spec =
        SinkSpec::builder("typed", iceberg(dir.path(), "typed")).append_only(false).schema(schema).build().unwrap();
    let input: Vec<(Typed, u64, isize)> = rows.iter().map(|r| (r.clone(), 0, 1)).collect();
    assert!(Drive::new(1).pace(Pace::Unflushed).run(&input, &spec).errors.is_empty());
    let table = read_table(dir.path(), "typed");
    let types: Vec<String> =
        table["schema"].as_array().unwrap().iter().map(|c| c[1].as_str().unwrap().into()).collect();
    assert_eq!(
        types,
        [
            "int",
            "long",
            "string",
            "decimal(12, 3)",
            "string",
            "boolean",
            "date",
            "timestamp",
            "timestamptz",
            "decimal(4, 1)"
        ]
    );
    let nullable: Vec<bool> = table["schema"].as_array().unwrap().iter().map(|c| c[2].as_bool().unwrap()).collect();
    assert_eq!(nullable, [false, false, false, false, true, true, true, true, true, true]);
    let mut got: Vec<Value> = table["rows"].as_array().unwrap().clone();
    got.sort_by_key(|r| r["id"].as_i64());
    // The reference: the same rows, with the reader's forms (decimals at their scale, the UTC
    // timestamp as microseconds since the epoch).
    let expected = serde_json::json!([
        {"id": i32::MIN, "big": i64::MAX, "ratio": "α\"\\日本", "price": "123456789.125", "name": "", "ok": true,
         "day": "2024-02-29", "at": 1_700_000_000_123_456i64, "at_utc": 981_173_106_789_012i64, "half": "-0.5"},
        {"id": 0, "big": 0, "ratio": "", "price": "-1.500", "name": "n", "ok": false,
         "day": "1969-12-31", "at": -1, "at_utc": 0, "half": "999.9"},
        {"id": 7, "big": -1, "ratio": "x", "price": "0.000", "name": null, "ok": null,
         "day": null, "at": null, "at_utc": null, "half": null},
    ]);
    assert_eq!(Value::Array(got), expected);
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Floats {
    id: i64,
    f: f32,
    d: Option<f64>,
}
impl Eq for Floats {}
impl PartialOrd for Floats {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Floats {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.id, self.f.to_bits(), self.d.map(f64::to_bits)).cmp(&(
            other.id,
            other.f.to_bits(),
            other.d.map(f64::to_bits),
        ))
    }
}

#[test]
fn floats_round_trip_through_pyiceberg() {
    let rows = vec![
        Floats { id: 1, f: 1.5, d: Some(-2.25e300) },
        Floats { id: 2, f: f32::MAX, d: None },
        Floats { id: 3, f: -0.1, d: Some(0.1) },
    ];
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("floats", iceberg(dir.path(), "floats"))
        .append_only(false)
        .schema("id:int64!,f:float32!,d:float64".parse().unwrap())
        .build()
        .unwrap();
    let input: Vec<(Floats, u64, isize)> = rows.iter().map(|r| (r.clone(), 0, 1)).collect();
    Drive::new(1).pace(Pace::Unflushed).run(&input, &spec);
    let table = read_table(dir.path(), "floats");
    let mut got: Vec<Floats> = serde_json::from_value(table["rows"].clone()).unwrap();
    got.sort();
    // Python widens float32 to a double holding the same value.
    assert_eq!(got, rows);
}

/// The Parquet files under the table's `data/` directory.
fn parquet_files(dir: &Path, table: &str) -> usize {
    let data = dir.join("db").join(table).join("data");
    std::fs::read_dir(data)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

#[test]
fn exactly_once_across_a_stop_with_files_written_but_not_committed() {
    for (seed, peers) in [(7u64, 1usize), (8, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 10, 40);
        // Commit after 120 changes per worker, and roll to a new file after every write: the stop
        // leaves data files no snapshot names.
        let cfg = iceberg(dir.path(), "eos").target_file_size(1);
        let spec = |max| {
            SinkSpec::builder("eos", cfg.clone())
                .append_only(false)
                .schema(ROW_SCHEMA.parse().unwrap())
                .commit(CommitPolicy { max_changes: max, interval: Duration::from_secs(3600) })
                .build()
                .unwrap()
        };
        let handed = run_and_drop(&history, &spec(Some(120 / peers as u64)), peers, 8);
        let stopped = read_table(dir.path(), "eos");
        let committed = table_multiset(&stopped).values().sum::<usize>() as u64;
        assert!(committed > 0 && committed < handed, "stopped after some commits ({committed}) of {handed} rows");
        let referenced = stopped["data_files"].as_array().unwrap().len();
        assert!(
            parquet_files(dir.path(), "eos") > referenced,
            "the stop left uncommitted data files ({} on disk, {referenced} in the table)",
            parquet_files(dir.path(), "eos")
        );
        let stopped_at: u64 = committed_to(&stopped, "eos").expect("the sink committed").parse().unwrap();
        // A one-byte target: no file is below three quarters of it.
        assert!(sink_snapshots(&stopped, "eos").iter().all(|s| s["summary"]["dsink.small-files"] == "0"));
        assert!(stopped_at > 0 && stopped_at <= 8);

        // Restart over the whole input with the default cadence.
        run(&history, &spec(None), peers);
        let table = read_table(dir.path(), "eos");
        assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "seed {seed}, {peers} workers");
        assert_eq!(committed_to(&table, "eos").as_deref(), Some("complete"));
        let ranges = check_commit_chain(&table, "eos", &history);
        assert!(ranges.len() >= 2, "{ranges:?}");
        assert!(
            ranges.iter().any(|r| r.0 == stopped_at.to_string()),
            "the restart resumed at {stopped_at}: {ranges:?}"
        );
    }
}

/// Checks one snapshot per committed frontier range: the sink's snapshots, in commit order,
/// cover ranges `[from, to)` that chain without gap or overlap from 0 to the end of the input,
/// each adds as many rows as its summary says, and their row counts add up to the history's.
/// Returns the ranges and row counts.
fn check_commit_chain(table: &Value, sink: &str, history: &[(Row, u64, isize)]) -> Vec<(String, String, u64)> {
    let mut ranges = Vec::new();
    let mut from = "0".to_string();
    for s in sink_snapshots(table, sink) {
        let summary = &s["summary"];
        assert_eq!(s["operation"], "append", "{s}");
        assert_eq!(summary["dsink.from"], from.as_str(), "snapshot {s} starts where the previous one ended");
        let to = summary["dsink.to"].as_str().unwrap().to_string();
        if to != "complete" {
            assert!(from.parse::<u64>().unwrap() < to.parse::<u64>().unwrap(), "{s}");
        }
        let rows: u64 = summary["dsink.rows"].as_str().unwrap().parse().unwrap();
        // Iceberg's own summary counts the rows the snapshot added: it must agree.
        assert_eq!(summary["added-records"].as_str().unwrap().parse::<u64>().unwrap(), rows, "{s}");
        ranges.push((from.clone(), to.clone(), rows));
        from = to;
    }
    assert_eq!(from, "complete", "the last snapshot reaches the end of the input");
    let rows: u64 = ranges.iter().map(|r| r.2).sum();
    assert_eq!(rows, expected_inserts(history, u64::MAX).values().sum::<usize>() as u64);
    ranges
}

#[test]
fn a_restart_with_another_worker_count_resumes_from_the_common_frontier() {
    for (seed, first, second) in [(12u64, 2usize, 1usize), (13, 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 10, 30);
        let spec = SinkSpec::builder("resize", iceberg(dir.path(), "resize"))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run_until(&history, &spec, first, 5);
        let half = read_table(dir.path(), "resize");
        assert_eq!(table_multiset(&half), expected_inserts(&history, 5));
        let last = &sink_snapshots(&half, "resize").last().unwrap()["summary"];
        assert_eq!(last["dsink.to"], "5");
        assert_eq!(last["dsink.peers"], first.to_string());
        assert_eq!(last["dsink.generation"], "0");
        run(&history, &spec, second);
        let table = read_table(dir.path(), "resize");
        assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "{first} then {second} workers");
        let last = &sink_snapshots(&table, "resize").last().unwrap()["summary"];
        assert_eq!(last["dsink.peers"], second.to_string());
        assert_eq!(last["dsink.generation"], "1");
        let ranges = check_commit_chain(&table, "resize", &history);
        assert!(ranges.iter().any(|r| r.0 == "5"), "{ranges:?}");
    }
}

#[test]
fn two_sinks_share_a_table_and_each_resumes_from_its_own_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |name: &str| {
        SinkSpec::builder(name, iceberg(dir.path(), "shared"))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap()
    };
    let (a, b) = (insert_history(20, 6, 10), insert_history(21, 6, 10));
    run_until(&a, &spec("a"), 1, 3);
    run(&b, &spec("b"), 2);
    // `a` resumes from its snapshot, which is no longer the table's current one.
    run(&a, &spec("a"), 1);
    let table = read_table(dir.path(), "shared");
    let mut expected = expected_inserts(&a, u64::MAX);
    for (row, n) in expected_inserts(&b, u64::MAX) {
        *expected.entry(row).or_default() += n;
    }
    assert_eq!(table_multiset(&table), expected);
    check_commit_chain(&table, "a", &a);
    check_commit_chain(&table, "b", &b);
}

/// Runs `spec` as run A, which resumes (when its dataflow is built) before another run of the
/// same sink delivers the whole `history`; returns A's error, which it must meet at its first
/// commit.
fn second_run_error(spec: &SinkSpec, history: &[(Row, u64, isize)]) -> differential_sinks::Error {
    // Run B delivers between the building of A's dataflow and A's first step.
    let (spec_b, input_b) = (spec.clone(), history.to_vec());
    let error = run_with_meanwhile(history, spec, move || run(&input_b, &spec_b, 1));
    error.expect("run A is refused at its first commit")
}

#[test]
fn a_run_that_finds_a_newer_snapshot_of_its_sink_at_commit_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("fence", iceberg(dir.path(), "fence"))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    let history = insert_history(30, 4, 10);
    let error = second_run_error(&spec, &history);
    assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("another run of sink `fence`"), "{error}");
    // The table holds run B's delivery alone: A appended nothing.
    let table = read_table(dir.path(), "fence");
    assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX));
    check_commit_chain(&table, "fence", &history);
}

#[test]
fn an_upsert_run_that_finds_a_newer_snapshot_of_its_sink_at_commit_is_fenced() {
    // The upserts' own commit path (manifests and the catalog swap written by the sink) fences
    // like the appends' transaction.
    let dir = tempfile::tempdir().unwrap();
    let spec = upsert_spec(dir.path(), "fence", None);
    let history = keyed_history(31, 20, 6, 10);
    let error = second_run_error(&spec, &history);
    assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
    assert!(error.to_string().contains("another run of sink `fence`"), "{error}");
    let table = read_table(dir.path(), "fence");
    assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
    assert_eq!(check_upsert_chain(&table, "fence"), history.iter().filter(|h| h.2 < 0).count() as u64);
}

#[test]
fn a_restart_after_its_snapshots_were_expired_is_refused_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("gone", iceberg(dir.path(), "gone"))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    let history = insert_history(40, 6, 10);
    run_until(&history, &spec, 1, 3);
    // Another writer appends, and the table's maintenance expires every older snapshot: the
    // sink's own snapshots are gone from the branch.
    let done = other_writer(dir.path(), "gone", "expire");
    assert!(!done["expired"].as_array().unwrap().is_empty(), "{done}");
    let before = read_table(dir.path(), "gone");
    assert!(sink_snapshots(&before, "gone").is_empty());
    let rows_before = table_multiset(&before);

    let built = drive::build::<Row>(&spec);
    let e = built.expect_err("the restart is refused");
    assert_eq!(e.kind(), ErrorKind::Resume, "{e}");
    assert!(e.to_string().contains("dsink.progress.gone") && e.to_string().contains("`3`"), "{e}");
    // Nothing was written by the refused run.
    assert_eq!(table_multiset(&read_table(dir.path(), "gone")), rows_before);
}

/// Runs tests/support/iceberg_other_writer.py on table `db.<table>` of the warehouse `dir` in
/// `mode`, and returns what it printed.
fn other_writer(dir: &Path, table: &str, mode: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/iceberg_other_writer.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(dir.join("catalog.db"))
        .arg(dir)
        .arg(format!("db.{table}"))
        .arg(mode)
        .output()
        .expect("the Python writer runs");
    assert!(out.status.success(), "the Python writer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_upsert_run_refuses_to_commit_after_another_writer_rewrote_the_table() {
    // The workers read where each key's row is when the dataflow is built; another engine then
    // rewrites the table (a compaction: new data files, the old ones removed). Deleting rows by
    // their old positions would leave the rewritten rows in place, so the commit is refused and
    // nothing is written; a restart reads the keys again and ends in the final state.
    let dir = tempfile::tempdir().unwrap();
    let spec = upsert_spec(dir.path(), "compacted", None);
    let history = keyed_history(64, 20, 8, 12);
    run_until(&history, &spec, 2, 4);
    let before = final_state(&history, 4);
    assert_eq!(table_multiset(&read_table(dir.path(), "compacted")), before);

    let (path, rows): (std::path::PathBuf, usize) = (dir.path().to_path_buf(), before.values().sum());
    let error = run_with_meanwhile(&history, &spec, move || {
        let done = other_writer(&path, "compacted", "rewrite");
        assert_eq!(done["rows"], rows, "{done}");
    });
    let error = error.expect("the run is refused at its first commit");
    assert_eq!(error.kind(), ErrorKind::Retriable, "{error}");
    assert!(error.to_string().contains("another writer rewrote rows"), "{error}");
    assert_eq!(table_multiset(&read_table(dir.path(), "compacted")), before, "nothing was committed");
    run(&history, &spec, 2);
    assert_eq!(table_multiset(&read_table(dir.path(), "compacted")), final_state(&history, u64::MAX));
}

#[test]
fn refused_configurations_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().display().to_string();
    let from = |pairs: &[&str]| {
        SinkSpec::from_options_with_schema(
            Options::parse_pairs(pairs.iter().copied()).unwrap(),
            Some(ROW_SCHEMA.parse().unwrap()),
        )
    };
    let base = ["connector=iceberg".to_string(), format!("warehouse.path={wh}"), "database.name=db".into()];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.iter().map(String::as_str).collect();
        v.extend_from_slice(extra);
        from(&v)
    };
    let e = from(&["connector=iceberg", "type=append-only", "database.name=db", "table.name=t"]).unwrap_err();
    assert!(e.to_string().contains("`warehouse.path`"), "{e}");
    let e = with(&["type=append-only"]).unwrap_err();
    assert!(e.to_string().contains("`table.name`"), "{e}");
    let e = with(&["table.name=t", "type=append-only"]).unwrap_err();
    assert!(e.to_string().contains("create_table_if_not_exists"), "{e}");
    // A REST catalog nobody answers at is refused when the sink is built, naming its option.
    let e =
        with(&["table.name=t", "type=append-only", "catalog.type=rest", "catalog.uri=http://127.0.0.1:9"]).unwrap_err();
    assert!(e.to_string().contains("`catalog.uri`"), "{e}");
    let e = with(&["table.name=t", "type=append-only", "catalog.type=glue"]).unwrap_err();
    assert!(e.to_string().contains("`catalog.type`"), "{e}");
    let e = with(&["table.name=t", "type=append-only", "create_table_if_not_exist=true"]).unwrap_err();
    assert!(e.to_string().contains("did you mean `create_table_if_not_exists`"), "{e}");
    // Nothing was created by the refused specs.
    assert!(!dir.path().join("catalog.db").exists());

    // Create the table, then declare a different schema for it.
    let spec = with(&["table.name=t", "type=append-only", "create_table_if_not_exists=true"]).unwrap();
    run(&insert_history(9, 2, 3), &spec, 1);
    let other: Schema = "k:int32!,v:int64,s:string!,extra:boolean".parse().unwrap();
    let e = SinkSpec::builder("orders", IcebergConfig::new(dir.path(), "db", "t")).schema(other).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let m = e.to_string();
    for part in ["column `k` is int64 in the table but int32", "column `v` is not nullable in the table", "`extra`"] {
        assert!(m.contains(part), "{m}");
    }
    // Without a declared schema the table's own is used.
    let spec = SinkSpec::builder("orders", IcebergConfig::new(dir.path(), "db", "t")).build().unwrap();
    run(&insert_history(10, 2, 3), &spec, 1);
    let mut expected = expected_inserts(&insert_history(9, 2, 3), u64::MAX);
    for (row, n) in expected_inserts(&insert_history(10, 2, 3), u64::MAX) {
        *expected.entry(row).or_default() += n;
    }
    assert_eq!(table_multiset(&read_table(dir.path(), "t")), expected);
}

/// `dsink`'s options naming table `db.<table>` of the warehouse `wh`.
fn dsink_table(wh: &Path, table: &str) -> [String; 3] {
    ["database.name=db".to_string(), format!("table.name={table}"), format!("warehouse.path={}", wh.display())]
}

#[test]
fn dsink_writes_a_change_log_to_an_iceberg_table() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    let history = insert_history(11, 8, 30);
    let with = ["connector=iceberg", "type=append-only", "sink.name=log", "create_table_if_not_exists=true"];
    let with = with.iter().map(|w| w.to_string()).chain(dsink_table(&wh, "log")).collect::<Vec<_>>();
    run_dsink(dir.path(), &history, &with);
    let read = read_table(&wh, "log");
    assert_eq!(table_multiset(&read), expected_inserts(&history, u64::MAX));
    assert_eq!(committed_to(&read, "log").as_deref(), Some("complete"));
    check_commit_chain(&read, "log", &history);
}

#[test]
fn dsink_upserts_a_change_log_into_an_iceberg_table() {
    // dsink's rows are JSON text; their keys are packed for the table's key columns as typed
    // rows' are, and each of the 2 workers finds the rows its keys replace.
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    let history = keyed_history(12, 20, 8, 12);
    let with = ["connector=iceberg", "type=upsert", "primary_key=k", "sink.name=kv", "create_table_if_not_exists=true"];
    let with = with.iter().map(|w| w.to_string()).chain(dsink_table(&wh, "kv")).collect::<Vec<_>>();
    run_dsink(dir.path(), &history, &with);
    let read = read_table(&wh, "kv");
    assert_eq!(table_multiset(&read), final_state(&history, u64::MAX));
    assert_eq!(check_upsert_chain(&read, "kv"), history.iter().filter(|h| h.2 < 0).count() as u64);
}

fn upsert_spec(dir: &Path, table: &str, commit: Option<CommitPolicy>) -> SinkSpec {
    let b =
        SinkSpec::builder(table, iceberg(dir, table)).upsert().primary_key(["k"]).schema(ROW_SCHEMA.parse().unwrap());
    match commit {
        Some(c) => b.commit(c),
        None => b,
    }
    .build()
    .unwrap()
}

/// Checks the sink's snapshots chain one committed range after the other from 0 to the end of
/// the input, and returns how many position deletes they added in all.
fn check_upsert_chain(table: &Value, sink: &str) -> u64 {
    let mut from = "0".to_string();
    let mut deletes = 0;
    for s in sink_snapshots(table, sink) {
        let summary = &s["summary"];
        assert_eq!(summary["dsink.from"], from.as_str(), "snapshot {s} starts where the previous one ended");
        let n: u64 = summary.get("added-position-deletes").map_or(0, |v| v.as_str().unwrap().parse().unwrap());
        // Iceberg's own operation names what the snapshot does.
        assert_eq!(s["operation"], if n > 0 { "overwrite" } else { "append" }, "{s}");
        deletes += n;
        from = summary["dsink.to"].as_str().unwrap().to_string();
    }
    assert_eq!(from, "complete", "the last snapshot reaches the end of the input");
    deletes
}

#[test]
fn upsert_histories_end_in_the_collections_final_state() {
    // Per-time commits, and one commit for the whole input, in which keys change many times
    // before it (their earlier rows of the same round are deleted by position too).
    let whole = || Some(CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) });
    for (seed, peers, commit) in [(50u64, 1usize, None), (51, 2, None), (52, 1, whole()), (53, 2, whole())] {
        let one_round = commit.is_some();
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 30, 12, 20);
        assert!(history.iter().any(|h| h.2 < 0));
        let spec = upsert_spec(dir.path(), "kv", commit);
        run(&history, &spec, peers);
        let table = read_table(dir.path(), "kv");
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX), "seed {seed}, {peers} workers");
        let deletes = check_upsert_chain(&table, "kv");
        // Every update and delete of a key that was in the table replaced a row by position.
        let replaced = history.iter().filter(|h| h.2 < 0).count() as u64;
        if !one_round {
            assert_eq!(deletes, replaced, "seed {seed}: one position delete per retraction");
        } else {
            assert_eq!(sink_snapshots(&table, "kv").len(), 1, "seed {seed}: one commit");
            assert_eq!(deletes, replaced, "seed {seed}: rows replaced within the round are deleted too");
        }
    }
}

/// A worker's key index past `upsert.index.max.bytes` stops the sink with an error naming the
/// option, leaving the table at a state the collection had; a restart with a larger budget
/// resumes from there to the final state.
#[test]
fn an_upsert_index_past_its_budget_stops_the_sink_naming_the_option_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(70, 30, 12, 20);
    let spec = |budget: usize| upsert_each_time("budget", iceberg(dir.path(), "budget").index_max_bytes(budget));
    // Room for about 25 keys of the 30: the sink stops at the time the index passes that.
    let report = Drive::new(1).pace(Pace::Step(1)).run(&history, &spec(25 * 72));
    assert_stopped_by_the_index_budget(&report.errors.iter().map(|e| e.1.to_string()).collect::<Vec<_>>());
    let stopped = read_table(dir.path(), "budget");
    let at = match committed_to(&stopped, "budget") {
        Some(to) => to.parse::<u64>().expect("stopped before the end of the input"),
        None => 0,
    };
    assert!(at > 0, "the sink committed the times before the one that passed the budget");
    assert_eq!(table_multiset(&stopped), final_state(&history, at), "the table is the state before {at}");
    run(&history, &spec(1 << 20), 1);
    let table = read_table(dir.path(), "budget");
    assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
    assert_eq!(committed_to(&table, "budget").as_deref(), Some("complete"));
}

#[test]
fn upserts_are_exactly_once_across_a_stop_and_a_restart_on_another_worker_count() {
    for (seed, first, second) in [(60u64, 1usize, 1usize), (61, 2, 1), (62, 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 25, 10, 15);
        let cfg = iceberg(dir.path(), "eos").target_file_size(1);
        let spec = |max: Option<u64>| {
            SinkSpec::builder("eos", cfg.clone())
                .upsert()
                .primary_key(["k"])
                .schema(ROW_SCHEMA.parse().unwrap())
                .commit(CommitPolicy { max_changes: max, interval: Duration::from_secs(3600) })
                .build()
                .unwrap()
        };
        // Commits every ~40 changes, then a stop that leaves written but uncommitted files.
        run_and_drop(&history, &spec(Some(40 / first as u64)), first, 8);
        let stopped = read_table(dir.path(), "eos");
        let at: u64 = committed_to(&stopped, "eos").expect("the sink committed").parse().unwrap();
        assert!(at > 0 && at <= 8, "{at}");
        // What the table holds is the collection's state at the committed frontier.
        assert_eq!(table_multiset(&stopped), final_state(&history, at), "seed {seed}, stopped at {at}");
        // The restart reads the keys' places back from the table, and replaces those rows.
        run(&history, &spec(None), second);
        let table = read_table(dir.path(), "eos");
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX), "seed {seed}, {first} then {second}");
        let deletes = check_upsert_chain(&table, "eos");
        assert_eq!(deletes, history.iter().filter(|h| h.2 < 0).count() as u64, "seed {seed}");
        let last = &sink_snapshots(&table, "eos").last().unwrap()["summary"];
        assert_eq!(last["dsink.peers"], second.to_string());
    }
}

#[test]
fn upserts_replace_rows_another_writer_or_an_append_only_run_left() {
    // An append-only run of another sink leaves rows (two of them for some keys); the upsert
    // sink's first changes of those keys replace every one of them.
    let dir = tempfile::tempdir().unwrap();
    let (old, history) = rows_another_writer_left();
    let append = SinkSpec::builder("loader", iceberg(dir.path(), "mixed"))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    run(&old, &append, 1);
    // The upsert sink's first time re-inserts the existing rows (it never delivered them).
    run(&history, &upsert_spec(dir.path(), "mixed", None), 2);
    let table = read_table(dir.path(), "mixed");
    assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
}

#[test]
fn upsert_refusals_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().display().to_string();
    let from = |pairs: &[&str]| {
        SinkSpec::from_options_with_schema(
            Options::parse_pairs(pairs.iter().copied()).unwrap(),
            Some(ROW_SCHEMA.parse().unwrap()),
        )
    };
    let base = ["connector=iceberg", "database.name=db", "table.name=t", "create_table_if_not_exists=true"];
    let with = |extra: &[&str]| {
        let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        v.push(format!("warehouse.path={wh}"));
        v.extend(extra.iter().map(|s| s.to_string()));
        from(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let e = with(&["type=debezium", "primary_key=k"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("`type`") && e.to_string().contains("type = upsert"), "{e}");
    let e = with(&["type=upsert", "primary_key=nope"]).unwrap_err();
    assert!(e.to_string().contains("`nope`"), "{e}");
    // A key function names no columns the table could be searched by.
    let e = SinkSpec::builder("t", iceberg(dir.path(), "t"))
        .upsert()
        .key_by_function()
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`primary_key`"), "{e}");
    with(&["type=upsert", "primary_key=k"]).expect("an upsert sink with a primary key is accepted");
}

/// Checks that scans filtered by key — which pyiceberg prunes by the data files' partition
/// values — find each key's rows, so every row is in the partition its values map to.
fn check_pruned_scans(dir: &Path, table: &str, expected: &std::collections::BTreeMap<Row, usize>) {
    let keys: Vec<u32> = expected.keys().map(|r| r.k).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let filters: Vec<String> = keys.iter().map(|k| format!("k = {k}")).collect();
    let read = read_filtered(dir, table, &filters);
    for (k, rows) in keys.iter().zip(read["filtered"].as_array().unwrap()) {
        let got = table_multiset(&serde_json::json!({ "rows": rows }));
        let want: std::collections::BTreeMap<Row, usize> =
            expected.iter().filter(|(r, _)| r.k == *k).map(|(r, n)| (r.clone(), *n)).collect();
        assert_eq!(got, want, "the rows of key {k} through a pruned scan");
    }
}

#[test]
fn partitioned_appends_land_in_their_partitions() {
    for (seed, peers) in [(70u64, 1usize), (71, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 8, 40);
        let cfg = iceberg(dir.path(), "parts").partition_by("bucket(4, k), truncate(1, s)").unwrap();
        let spec =
            SinkSpec::builder("parts", cfg).append_only(false).schema(ROW_SCHEMA.parse().unwrap()).build().unwrap();
        run(&history, &spec, peers);
        let table = read_table(dir.path(), "parts");
        assert_eq!(
            table["partition_spec"],
            serde_json::json!([["k", "bucket[4]", "k_bucket"], ["s", "truncate[1]", "s_trunc"]])
        );
        let expected = expected_inserts(&history, u64::MAX);
        assert_eq!(table_multiset(&table), expected, "seed {seed}, {peers} workers");
        let files = table["data_files"].as_array().unwrap();
        let buckets: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|f| {
                f.as_str()
                    .unwrap()
                    .split("/k_bucket=")
                    .nth(1)
                    .expect("a partition directory")
                    .split('/')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(buckets.into_iter().collect::<Vec<_>>(), ["0", "1", "2", "3"], "{files:?}");
        check_pruned_scans(dir.path(), "parts", &expected);
        check_commit_chain(&table, "parts", &history);
    }
}

#[test]
fn partitioned_upserts_follow_rows_that_move_between_partitions() {
    // `v` changes with every update, so updated rows move to another bucket of `v` and their
    // previous rows are deleted in the partition they were in.
    // The last case keeps one data file open at a time: a worker closes a partition's file
    // whenever it writes another partition.
    for (seed, peers, open) in [(72u64, 1usize, 32usize), (73, 2, 32), (74, 2, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 30, 10, 20);
        let cfg = iceberg(dir.path(), "moving").partition_by("bucket(3, v)").unwrap().max_open_files(open);
        let spec = SinkSpec::builder("moving", cfg)
            .upsert()
            .primary_key(["k"])
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        // Later, every key is deleted and five come back with new values: a restart must read
        // the keys' places back from every partition.
        let before = final_state(&history, u64::MAX);
        let mut all = history.clone();
        all.extend(before.keys().map(|r| (r.clone(), 20u64, -1isize)));
        all.extend(before.keys().take(5).map(|r| (Row { k: r.k, v: r.v + 1000, s: r.s.clone() }, 20u64, 1isize)));
        run_until(&all, &spec, peers, 20);
        let table = read_table(dir.path(), "moving");
        assert_eq!(table_multiset(&table), before, "seed {seed}, {peers} workers");
        check_pruned_scans(dir.path(), "moving", &before);
        run(&all, &spec, 3 - peers);
        let table = read_table(dir.path(), "moving");
        let expected = final_state(&all, u64::MAX);
        assert_eq!(table_multiset(&table), expected, "seed {seed}, after the restart");
        assert_eq!(check_upsert_chain(&table, "moving"), all.iter().filter(|h| h.2 < 0).count() as u64);
        check_pruned_scans(dir.path(), "moving", &expected);
    }
}

#[test]
fn a_worker_keeps_at_most_file_max_open_data_files_open() {
    // One commit for the whole input, rows of 4 buckets interleaved in every time: with one open
    // file at a time, each switch of bucket closes a file, so there are more files than buckets;
    // the table still holds exactly the inserted rows.
    let dir = tempfile::tempdir().unwrap();
    let history = insert_history(76, 8, 40);
    let whole = CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) };
    let files_with = |open: usize, table: &str| {
        let cfg = iceberg(dir.path(), table).partition_by("bucket(4, k)").unwrap().max_open_files(open);
        let spec = SinkSpec::builder(table, cfg)
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .commit(whole.clone())
            .build()
            .unwrap();
        run(&history, &spec, 1);
        let read = read_table(dir.path(), table);
        assert_eq!(table_multiset(&read), expected_inserts(&history, u64::MAX), "file.max.open = {open}");
        read["data_files"].as_array().unwrap().len()
    };
    assert_eq!(files_with(32, "many"), 4, "one file per bucket");
    assert!(files_with(1, "one") > 4, "files closed early to keep one open");
}

#[test]
fn partition_by_is_checked_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let build = |partition_by: &str| {
        SinkSpec::builder("p", iceberg(dir.path(), "p").partition_by(partition_by).unwrap())
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
    };
    let e = build("day(s)").unwrap_err();
    assert!(e.to_string().contains("`partition_by`"), "{e}");
    let e = build("bucket(4, nope)").unwrap_err();
    assert!(e.to_string().contains("`partition_by`") && e.to_string().contains("`nope`"), "{e}");
    run(&insert_history(74, 2, 5), &build("bucket(4, k)").unwrap(), 1);
    // The table exists with its own spec: another one is refused, none is accepted.
    let e = build("truncate(2, s)").unwrap_err();
    assert!(e.to_string().contains("`partition_by`") && e.to_string().contains("bucket[4](k)"), "{e}");
    let spec = SinkSpec::builder("q", iceberg(dir.path(), "p"))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    run(&insert_history(75, 2, 5), &spec, 1);
    let mut expected = expected_inserts(&insert_history(74, 2, 5), u64::MAX);
    for (row, n) in expected_inserts(&insert_history(75, 2, 5), u64::MAX) {
        *expected.entry(row).or_default() += n;
    }
    assert_eq!(table_multiset(&read_table(dir.path(), "p")), expected);
}

/// The sink with its warehouse on moto's S3 (`DSINK_MOTO_URL`) and its catalog in a local
/// SQLite file: each test writes to a bucket of its own.
#[cfg(feature = "iceberg-s3")]
mod s3 {
    use super::*;
    use common::s3::{create_bucket, iceberg_reader_options, list_keys, moto_url, ACCESS_KEY, REGION, SECRET_KEY};
    use differential_sinks::connectors::lakehouse::s3::{S3Options, StorageLocation};

    /// A warehouse `s3://<bucket>/wh` whose catalog is `catalog.db` in `dir`.
    struct Warehouse {
        dir: tempfile::TempDir,
        bucket: String,
    }

    impl Warehouse {
        fn new(prefix: &str) -> Self {
            Warehouse { dir: tempfile::tempdir().unwrap(), bucket: create_bucket(prefix) }
        }
        fn url(&self) -> String {
            format!("s3://{}/wh", self.bucket)
        }
        fn catalog(&self) -> std::path::PathBuf {
            self.dir.path().join("catalog.db")
        }
        fn config(&self, table: &str) -> IcebergConfig {
            let options = S3Options::new(REGION).endpoint(moto_url()).credentials(ACCESS_KEY, SECRET_KEY);
            IcebergConfig::new(StorageLocation::S3 { url: self.url(), options }, "db", table)
                .catalog_uri(format!("sqlite:{}", self.catalog().display()))
                .create_table_if_not_exists(true)
        }
        fn read(&self, table: &str) -> Value {
            read_from(&self.catalog(), &self.url(), table, Some(&iceberg_reader_options()), &[])
        }
        /// The Parquet files on S3 under the table's `data/` prefix.
        fn parquet_files(&self, table: &str) -> usize {
            list_keys(&self.bucket, &format!("wh/db/{table}/data/")).iter().filter(|k| k.ends_with(".parquet")).count()
        }
    }

    fn spec(name: &str, config: IcebergConfig, max_changes: Option<u64>) -> SinkSpec {
        SinkSpec::builder(name, config)
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .commit(CommitPolicy { max_changes, interval: Duration::from_secs(3600) })
            .build()
            .unwrap()
    }

    #[test]
    fn histories_written_to_s3_read_back_as_the_inserted_multiset() {
        for (seed, peers) in [(101u64, 1usize), (102, 2)] {
            let wh = Warehouse::new("iceberg");
            let history = insert_history(seed, 12, 50);
            run(&history, &spec("orders", wh.config("orders"), None), peers);
            let table = wh.read("orders");
            let expected = expected_inserts(&history, u64::MAX);
            assert!(expected.values().any(|&n| n == 2), "the history has rows of multiplicity 2");
            assert_eq!(table_multiset(&table), expected, "seed {seed}, {peers} workers");
            assert_eq!(committed_to(&table, "orders").as_deref(), Some("complete"));
            check_commit_chain(&table, "orders", &history);
            // Metadata and data files are on S3 under the warehouse; the catalog stays local.
            let files = table["data_files"].as_array().unwrap();
            assert!(files.iter().all(|f| f.as_str().unwrap().starts_with(&format!("{}/db/orders/data/", wh.url()))));
            assert!(list_keys(&wh.bucket, "wh/db/orders/metadata/").iter().any(|k| k.ends_with(".metadata.json")));
            assert!(list_keys(&wh.bucket, "").iter().all(|k| k.starts_with("wh/db/orders/")));
        }
    }

    #[test]
    fn partitioned_upserts_on_s3_end_in_the_final_state_across_a_restart() {
        // Position deletes and manifests written to and read back from S3: a first run to time 6,
        // a restart on another worker count to the end.
        let wh = Warehouse::new("iceberg-upsert");
        let history = keyed_history(109, 25, 10, 15);
        let spec = SinkSpec::builder("kv", wh.config("kv").partition_by("bucket(2, v)").unwrap())
            .upsert()
            .primary_key(["k"])
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run_until(&history, &spec, 2, 6);
        assert_eq!(table_multiset(&wh.read("kv")), final_state(&history, 6));
        run(&history, &spec, 1);
        let table = wh.read("kv");
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
        assert_eq!(check_upsert_chain(&table, "kv"), history.iter().filter(|h| h.2 < 0).count() as u64);
    }

    #[test]
    fn exactly_once_on_s3_across_a_stop_with_files_written_but_not_committed() {
        for (seed, peers) in [(107u64, 1usize), (108, 2)] {
            let wh = Warehouse::new("iceberg-eos");
            let history = insert_history(seed, 10, 40);
            let cfg = wh.config("eos").target_file_size(1);
            let handed = run_and_drop(&history, &spec("eos", cfg.clone(), Some(120 / peers as u64)), peers, 8);
            let stopped = wh.read("eos");
            let committed = table_multiset(&stopped).values().sum::<usize>() as u64;
            assert!(committed > 0 && committed < handed, "stopped after some commits ({committed}) of {handed} rows");
            let referenced = stopped["data_files"].as_array().unwrap().len();
            let on_s3 = wh.parquet_files("eos");
            assert!(
                on_s3 > referenced,
                "the stop left uncommitted data files ({on_s3} on S3, {referenced} in the table)"
            );
            let stopped_at: u64 = committed_to(&stopped, "eos").expect("the sink committed").parse().unwrap();
            assert!(stopped_at > 0 && stopped_at <= 8);

            run(&history, &spec("eos", cfg, None), peers);
            let table = wh.read("eos");
            assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "seed {seed}, {peers} workers");
            assert_eq!(committed_to(&table, "eos").as_deref(), Some("complete"));
            let ranges = check_commit_chain(&table, "eos", &history);
            assert!(ranges.iter().any(|r| r.0 == stopped_at.to_string()), "resumed at {stopped_at}: {ranges:?}");
        }
    }

    /// A server that answers every request as S3 does for an unknown access key.
    fn refusing_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf);
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code>\
                            <Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
                let _ = write!(
                    conn,
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn refused_credentials_and_missing_buckets_are_named_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let from = |warehouse: &str, endpoint: &str, catalog: &str| {
            let pairs = [
                "connector=iceberg".to_string(),
                "type=append-only".into(),
                "create_table_if_not_exists=true".into(),
                "database.name=db".into(),
                "table.name=t".into(),
                format!("warehouse.path={warehouse}"),
                format!("catalog.uri=sqlite:{}", dir.path().join(catalog).display()),
                format!("s3.endpoint={endpoint}"),
                format!("s3.region={REGION}"),
                "s3.access.key=AKWRONG".into(),
                "s3.secret.key=not-the-secret".into(),
            ];
            let built = SinkSpec::from_options_with_schema(
                Options::parse_pairs(pairs.iter()).unwrap(),
                Some(ROW_SCHEMA.parse().unwrap()),
            )
            .and_then(|spec| drive::build::<Row>(&spec));
            built.expect_err("the sink is refused")
        };
        let m = from("s3://bucket/wh", &refusing_endpoint(), "a.db").to_string();
        assert!(m.contains("`s3.endpoint`") && m.contains("`s3.access.key`"), "{m}");
        assert!(!m.contains("not-the-secret"), "{m}");
        let m = from("s3://no-such-bucket-for-dsink/wh", &moto_url(), "b.db").to_string();
        assert!(m.contains("`warehouse.path`'s bucket"), "{m}");

        // Without a catalog.uri the S3 warehouse is refused before anything is written.
        let e = SinkSpec::from_options_with_schema(
            Options::parse_pairs([
                "connector=iceberg",
                "type=append-only",
                "database.name=db",
                "table.name=t",
                "warehouse.path=s3://bucket/wh",
                "s3.region=us-east-1",
            ])
            .unwrap(),
            Some(ROW_SCHEMA.parse().unwrap()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`catalog.uri` is required"), "{e}");
    }

    /// Connections to the object store cut mid-request (data files, manifests, the commit),
    /// at points spread over the traffic of a whole run (measured by a first run without a cut):
    /// the sink rides through by retrying, or stops and a rerun finishes; the table then holds
    /// every row once.
    #[test]
    fn connections_cut_mid_request_lose_and_duplicate_nothing() {
        use common::proxy::{run_with_faults, Fault, FaultProxy};
        let proxy = FaultProxy::start(moto_url().trim_start_matches("http://").trim_end_matches('/'));
        let history = insert_history(120, 12, 60);
        let wh = Warehouse::new("iceberg-cut");
        let endpoint = format!("http://{}", proxy.addr());
        let spec = |i: usize| {
            let options = S3Options::new(REGION).endpoint(&endpoint).credentials(ACCESS_KEY, SECRET_KEY);
            let cfg = IcebergConfig::new(StorageLocation::S3 { url: wh.url(), options }, "db", format!("cut{i}"))
                .catalog_uri(format!("sqlite:{}", wh.catalog().display()))
                .create_table_if_not_exists(true);
            spec("cut", cfg, Some(100))
        };
        run_with_faults(
            &proxy,
            &[Fault::CutAt(0.1), Fault::CutAt(0.5), Fault::CutAt(0.9)],
            |i| {
                let errors = try_run(&history, &spec(i), 2);
                (!errors.is_empty()).then(|| errors.join("; "))
            },
            |i| {
                assert_eq!(
                    table_multiset(&wh.read(&format!("cut{i}"))),
                    expected_inserts(&history, u64::MAX),
                    "table {i}"
                )
            },
        );
    }
}
