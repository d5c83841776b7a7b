//! Integration tests of the Delta Lake sink: tables written by the sink are read back with an
//! independent reader, the Python `deltalake` package (installed by `scripts/services install
//! deltalake`; its interpreter comes from `DSINK_PYTHON`), and compared with references computed
//! from the input histories of `tests/common`.
//!
//! Needs `DSINK_PYTHON` (the tests that read a table back); the tests on S3 also need moto
//! (`DSINK_MOTO_URL`, `scripts/services start moto`).
//!
//! Storage notes: on S3 the sink commits with conditional `PutObject` (AWS S3 since August 2024,
//! MinIO, Cloudflare R2, moto here), without the DynamoDB lock older delta-rs versions needed.

mod common;
mod drive;

use common::lakehouse::{
    assert_stopped_by_the_index_budget, expected_inserts, final_state, insert_history, row_multiset,
    rows_another_writer_left, run, run_and_drop, run_dsink, run_until, run_with_meanwhile, table_multiset, try_run,
    upsert_each_time, ROW_SCHEMA,
};
use common::{expected_changes, keyed_history, Row};
use differential_dataflow::input::Input;
use differential_sinks::connectors::deltalake::DeltaLakeConfig;
use differential_sinks::{CommitPolicy, ErrorKind, Options, Schema, SinkCollection, SinkSpec};
use drive::{Drive, Pace};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn python() -> String {
    std::env::var("DSINK_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DSINK_PYTHON is not set: the Delta Lake tests read tables with the Python `deltalake` package. Run \
             `scripts/services install deltalake && scripts/services start deltalake`, then \
             `export $(scripts/services env deltalake)` (or use scripts/test)"
        )
    })
}

/// The table as the Python reader sees it (see tests/support/read_delta.py).
fn read_table(dir: &Path, apps: &[&str]) -> Value {
    read_uri(dir.to_str().expect("a UTF-8 path"), apps, None)
}

/// The table at `uri` (a directory or `s3://` URL) as the Python reader sees it, with delta-rs'
/// storage options for an object store.
fn read_uri(uri: &str, apps: &[&str], storage: Option<&Value>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_delta.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(uri)
        .args(apps)
        .env("DSINK_STORAGE_OPTIONS", storage.map(Value::to_string).unwrap_or_default())
        .output()
        .expect("the Python reader runs");
    assert!(out.status.success(), "the Python reader failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

fn delta(dir: &Path) -> DeltaLakeConfig {
    DeltaLakeConfig::new(dir).create_table_if_not_exists(true)
}

#[test]
fn append_only_histories_arrive_as_the_inserted_multiset() {
    for (seed, peers) in [(1u64, 1usize), (2, 2), (3, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 12, 50);
        let spec = SinkSpec::builder("orders", delta(dir.path()))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run(&history, &spec, peers);
        let table = read_table(dir.path(), &["orders"]);
        let expected = expected_inserts(&history, u64::MAX);
        assert!(expected.values().any(|&n| n == 2), "the history has rows of multiplicity 2");
        assert_eq!(table_multiset(&table), expected, "seed {seed}, {peers} workers");
        // The input ended, so the sink's transaction records the complete frontier.
        assert_eq!(table["txn"]["orders"], i64::MAX, "seed {seed}, {peers} workers");
        // Files of a few kilobytes against the default 128 MiB target: every one is small.
        let m = spec.metrics().snapshot();
        assert!(m.files_committed >= peers as u64 && m.small_files == m.files_committed, "{m:?}");
        for h in table["history"].as_array().unwrap().iter().filter(|h| h["operation"] == "WRITE") {
            assert_eq!(h["dsink"]["small_files"], h["dsink"]["files"], "{h}");
        }
    }
}

#[test]
fn forced_append_only_writes_every_inserted_row_of_a_keyed_history() {
    for (seed, peers) in [(4u64, 1usize), (5, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 40, 10, 25);
        let spec = SinkSpec::builder("keyed", delta(dir.path()))
            .append_only(true)
            .primary_key(["k"])
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run(&history, &spec, peers);
        // Deletes are dropped; inserts and the new side of updates are appended.
        let afters: Vec<Row> = expected_changes(&history).into_values().filter_map(|(_, after)| after).collect();
        assert!(afters.len() > 50);
        assert_eq!(table_multiset(&read_table(dir.path(), &[])), row_multiset(&afters), "seed {seed}");
    }
}

#[test]
fn a_retraction_without_force_stops_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("strict", delta(dir.path()))
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
fn types_round_trip_through_the_python_reader() {
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
    let spec = SinkSpec::builder("typed", delta(dir.path())).append_only(false).schema(schema).build().unwrap();
    let input: Vec<(Typed, u64, isize)> = rows.iter().map(|r| (r.clone(), 0, 1)).collect();
    assert!(Drive::new(1).pace(Pace::Unflushed).run(&input, &spec).errors.is_empty());
    let table = read_table(dir.path(), &[]);
    let types: Vec<String> =
        table["schema"].as_array().unwrap().iter().map(|c| c[1].as_str().unwrap().into()).collect();
    assert_eq!(
        types,
        [
            "PrimitiveType(\"integer\")",
            "PrimitiveType(\"long\")",
            "PrimitiveType(\"string\")",
            "PrimitiveType(\"decimal(12,3)\")",
            "PrimitiveType(\"string\")",
            "PrimitiveType(\"boolean\")",
            "PrimitiveType(\"date\")",
            "PrimitiveType(\"timestamp_ntz\")",
            "PrimitiveType(\"timestamp\")",
            "PrimitiveType(\"decimal(4,1)\")",
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
fn floats_round_trip_through_the_python_reader() {
    let rows = vec![
        Floats { id: 1, f: 1.5, d: Some(-2.25e300) },
        Floats { id: 2, f: f32::MAX, d: None },
        Floats { id: 3, f: -0.1, d: Some(0.1) },
    ];
    let dir = tempfile::tempdir().unwrap();
    let spec = SinkSpec::builder("floats", delta(dir.path()))
        .append_only(false)
        .schema("id:int64!,f:float32!,d:float64".parse().unwrap())
        .build()
        .unwrap();
    let input: Vec<(Floats, u64, isize)> = rows.iter().map(|r| (r.clone(), 0, 1)).collect();
    Drive::new(1).pace(Pace::Unflushed).run(&input, &spec);
    let table = read_table(dir.path(), &[]);
    let mut got: Vec<Floats> = serde_json::from_value(table["rows"].clone()).unwrap();
    got.sort();
    // Python widens float32 to a double holding the same value.
    assert_eq!(got, rows);
}

fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

#[test]
fn exactly_once_across_a_stop_with_files_written_but_not_committed() {
    for (seed, peers) in [(7u64, 1usize), (8, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 10, 40);
        // Commit after 120 changes per worker, and close a file after every write: the stop
        // leaves data files no commit names.
        let cfg = delta(dir.path()).target_file_size(1);
        let spec = |max| {
            SinkSpec::builder("eos", cfg.clone())
                .append_only(false)
                .schema(ROW_SCHEMA.parse().unwrap())
                .commit(CommitPolicy { max_changes: max, interval: Duration::from_secs(3600) })
                .build()
                .unwrap()
        };
        let handed = run_and_drop(&history, &spec(Some(120 / peers as u64)), peers, 8);
        let stopped = read_table(dir.path(), &["eos"]);
        let committed = table_multiset(&stopped).values().sum::<usize>() as u64;
        assert!(committed > 0 && committed < handed, "stopped after some commits ({committed}) of {handed} rows");
        let referenced = stopped["history"].as_array().unwrap().len();
        assert!(
            parquet_files(dir.path()) > committed_files(&stopped),
            "the stop left uncommitted data files ({} on disk, {referenced} versions)",
            parquet_files(dir.path())
        );
        let stopped_at = stopped["txn"]["eos"].as_i64().expect("the sink recorded its frontier");
        assert!(stopped_at > 0 && stopped_at <= 8);

        // Restart over the whole input with the default cadence.
        run(&history, &spec(None), peers);
        let table = read_table(dir.path(), &["eos"]);
        assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "seed {seed}, {peers} workers");
        assert_eq!(table["txn"]["eos"], i64::MAX);

        let ranges = check_commit_chain(&table, "eos", &history);
        assert!(ranges.len() >= 2, "{ranges:?}");
        assert!(ranges.iter().any(|r| r.0 == Some(stopped_at)), "the restart resumed at {stopped_at}: {ranges:?}");
    }
}

/// Checks one version per committed frontier range: the sink's commits, in version order, cover
/// ranges `[from, to)` that chain without gap or overlap from 0 to the end of the input, and their
/// row counts add up to the history's. Returns the ranges and row counts.
fn check_commit_chain(
    table: &Value,
    sink: &str,
    history: &[(Row, u64, isize)],
) -> Vec<(Option<i64>, Option<i64>, u64)> {
    let mut commits: Vec<&Value> =
        table["history"].as_array().unwrap().iter().filter(|h| h["operation"] == "WRITE").collect();
    commits.sort_by_key(|h| h["version"].as_i64());
    let mut ranges = Vec::new();
    let mut from = Some(0i64);
    for c in commits {
        // The reader flattens commit-info entries into the history record.
        let i = &c["dsink"];
        assert_eq!(i["sink"], sink, "{c}");
        assert_eq!(i["from"].as_i64(), from, "commit {c} starts where the previous one ended");
        let to = i["to"].as_i64();
        assert!(to.is_none() || to > from, "{c}");
        ranges.push((from, to, i["rows"].as_u64().unwrap()));
        from = to;
    }
    assert_eq!(from, None, "the last commit reaches the end of the input");
    let rows: u64 = ranges.iter().map(|r| r.2).sum();
    assert_eq!(rows, expected_inserts(history, u64::MAX).values().sum::<usize>() as u64);
    ranges
}

#[test]
fn a_restart_with_another_worker_count_resumes_from_the_common_frontier() {
    for (seed, first, second) in [(12u64, 2usize, 1usize), (13, 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = insert_history(seed, 10, 30);
        let spec = SinkSpec::builder("resize", delta(dir.path()))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run_until(&history, &spec, first, 5);
        let half = read_table(dir.path(), &["resize", "resize.peers", "resize.generation"]);
        assert_eq!(table_multiset(&half), expected_inserts(&history, 5));
        assert_eq!(half["txn"]["resize"], 5);
        assert_eq!(half["txn"]["resize.peers"], first as i64);
        assert_eq!(half["txn"]["resize.generation"], 0);
        run(&history, &spec, second);
        let table = read_table(dir.path(), &["resize", "resize.peers", "resize.generation"]);
        assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "{first} then {second} workers");
        assert_eq!(table["txn"]["resize.peers"], second as i64);
        assert_eq!(table["txn"]["resize.generation"], 1);
        let ranges = check_commit_chain(&table, "resize", &history);
        assert!(ranges.iter().any(|r| r.0 == Some(5)), "{ranges:?}");
    }
}

fn committed_files(table: &Value) -> usize {
    table["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.get("dsink").and_then(|d| d["files"].as_u64()))
        .sum::<u64>() as usize
}

#[test]
fn refused_configurations_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dir.path().display().to_string();
    let from = |pairs: &[&str]| {
        SinkSpec::from_options_with_schema(
            Options::parse_pairs(pairs.iter().copied()).unwrap(),
            Some(ROW_SCHEMA.parse().unwrap()),
        )
    };
    let e = from(&["connector=deltalake", "type=append-only"]).unwrap_err();
    assert!(e.to_string().contains("`location`"), "{e}");
    let e = from(&["connector=deltalake", &format!("location={loc}"), "type=debezium", "primary_key=k"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("`type`") && e.to_string().contains("type = upsert"), "{e}");
    let e = from(&["connector=deltalake", &format!("location={loc}"), "type=append-only"]).unwrap_err();
    assert!(e.to_string().contains("create_table_if_not_exists"), "{e}");
    let e = from(&["connector=deltalake", "location=s3://bucket/t", "type=append-only"]).unwrap_err();
    assert!(e.to_string().contains("`location`"), "{e}");
    let s3_refusal = if cfg!(feature = "deltalake-s3") { "`s3.region`" } else { "`deltalake-s3`" };
    assert!(e.to_string().contains(s3_refusal), "{e}");
    let e = from(&["connector=deltalake", &format!("location={loc}"), "type=append-only", "s3.region=r"]).unwrap_err();
    assert!(e.to_string().contains("`s3.region` applies to `s3://` locations only"), "{e}");
    // Create the table, then declare a different schema for it.
    let ok = [
        "connector=deltalake".to_string(),
        format!("location={loc}"),
        "type=append-only".into(),
        "create_table_if_not_exists=true".into(),
    ];
    let spec = from(&ok.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    run(&insert_history(9, 2, 3), &spec, 1);
    let other: Schema = "k:int32!,v:int64,s:string!,extra:boolean".parse().unwrap();
    let e = SinkSpec::builder("orders", DeltaLakeConfig::new(dir.path())).schema(other).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let m = e.to_string();
    for part in ["column `k` is long in the table but integer", "column `v` is not nullable in the table", "`extra`"] {
        assert!(m.contains(part), "{m}");
    }
    // Without a declared schema the table's own is used.
    let spec = SinkSpec::builder("orders", DeltaLakeConfig::new(dir.path())).build().unwrap();
    run(&insert_history(10, 2, 3), &spec, 1);
    let mut expected = expected_inserts(&insert_history(9, 2, 3), u64::MAX);
    for (row, n) in expected_inserts(&insert_history(10, 2, 3), u64::MAX) {
        *expected.entry(row).or_default() += n;
    }
    assert_eq!(table_multiset(&read_table(dir.path(), &[])), expected);
    // An upsert key the table has no column for, with the table's own schema: refused naming
    // the option and the column, in a Delta table's words.
    let spec = SinkSpec::builder("orders", DeltaLakeConfig::new(dir.path())).upsert().primary_key(["nope"]).build();
    let m = match spec {
        Err(e) => e.to_string(),
        // Refused as the writer opens, when the dataflow is built.
        Ok(spec) => timely::execute_directly(move |worker| {
            worker.dataflow::<u64, _, _>(|scope| {
                let (_input, rows) = scope.new_collection::<Row, isize>();
                rows.sink(&spec).err().map(|e| e.to_string()).unwrap_or_default()
            })
        }),
    };
    assert!(m.contains("`primary_key`") && m.contains("`nope`") && !m.contains("Iceberg"), "{m}");
}

#[test]
fn dsink_writes_a_change_log_to_a_delta_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let history = insert_history(11, 8, 30);
    let with = ["connector=deltalake", "type=append-only", "sink.name=log", "create_table_if_not_exists=true"];
    let location = format!("location={}", table.display());
    run_dsink(dir.path(), &history, &with.iter().map(|w| w.to_string()).chain([location]).collect::<Vec<_>>());
    let read = read_table(&table, &["log"]);
    assert_eq!(table_multiset(&read), expected_inserts(&history, u64::MAX));
    assert_eq!(read["txn"]["log"], i64::MAX);
}

fn upsert_spec(dir: &Path, commit: Option<CommitPolicy>) -> SinkSpec {
    let b = SinkSpec::builder("kv", delta(dir)).upsert().primary_key(["k"]).schema(ROW_SCHEMA.parse().unwrap());
    match commit {
        Some(c) => b.commit(c),
        None => b,
    }
    .build()
    .unwrap()
}

/// Checks the sink's upsert commits chain from 0 to the end of the input, and returns how many
/// rows they deleted with deletion vectors in all.
fn check_upsert_chain(table: &Value) -> u64 {
    let mut commits: Vec<&Value> =
        table["history"].as_array().unwrap().iter().filter(|h| h["operation"] == "STREAMING UPDATE").collect();
    commits.sort_by_key(|h| h["version"].as_i64());
    let (mut from, mut deleted) = (Some(0i64), 0);
    for c in commits {
        let i = &c["dsink"];
        assert_eq!(i["from"].as_i64(), from, "commit {c} starts where the previous one ended");
        deleted += i["deleted"].as_u64().unwrap();
        from = i["to"].as_i64();
    }
    assert_eq!(from, None, "the last commit reaches the end of the input");
    deleted
}

/// A worker's key index past `upsert.index.max.bytes` stops the sink with an error naming the
/// option, leaving the table at a state the collection had; a restart with a larger budget
/// resumes from there to the final state.
#[test]
fn an_upsert_index_past_its_budget_stops_the_sink_naming_the_option_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let history = keyed_history(71, 30, 12, 20);
    let spec = |budget: usize| upsert_each_time("kv", delta(dir.path()).index_max_bytes(budget));
    // Room for about 25 keys of the 30.
    let report = Drive::new(1).pace(Pace::Step(1)).run(&history, &spec(25 * 72));
    assert_stopped_by_the_index_budget(&report.errors.iter().map(|e| e.1.to_string()).collect::<Vec<_>>());
    let stopped = read_table(dir.path(), &["kv"]);
    let at = stopped["txn"]["kv"].as_i64().expect("the sink committed the times before the failure");
    assert!(at > 0 && at < i64::MAX, "stopped at {at}");
    assert_eq!(table_multiset(&stopped), final_state(&history, at as u64), "the table is the state before {at}");
    run(&history, &spec(1 << 20), 1);
    let table = read_table(dir.path(), &["kv"]);
    assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
    assert_eq!(table["txn"]["kv"], i64::MAX);
}

#[test]
fn upsert_histories_end_in_the_collections_final_state() {
    // Per-time commits, and one commit for the whole input, in which keys change many times
    // before it (their earlier rows of the same round get deletion vectors from the start).
    let whole = || Some(CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) });
    for (seed, peers, commit) in [(50u64, 1usize, None), (51, 2, None), (52, 1, whole()), (53, 2, whole())] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 30, 12, 20);
        let spec = upsert_spec(dir.path(), commit);
        run(&history, &spec, peers);
        let table = read_table(dir.path(), &["kv"]);
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX), "seed {seed}, {peers} workers");
        // Every update and delete of a key in the table deleted its row by position.
        let retractions = history.iter().filter(|h| h.2 < 0).count() as u64;
        assert_eq!(check_upsert_chain(&table), retractions, "seed {seed}");
        assert_eq!(table["txn"]["kv"], i64::MAX);
        assert_eq!(table["deletion_vectors"], true, "the table has the deletionVectors feature");
    }
}

#[test]
fn upserts_replace_rows_another_writer_or_an_append_only_run_left() {
    // Another sink leaves rows (two of them for some keys) in one data file, holding keys of both
    // workers of the upsert run that follows: both delete rows of that file in the same commit,
    // and the file's one deletion vector must hold both workers' positions.
    let dir = tempfile::tempdir().unwrap();
    let (old, history) = rows_another_writer_left();
    // An upsert sink without rows creates the table with deletion vectors.
    run(&[], &upsert_spec(dir.path(), None), 1);
    let append = SinkSpec::builder("loader", delta(dir.path()))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    run(&old, &append, 1);
    assert_eq!(committed_files(&read_table(dir.path(), &["loader"])), 1, "the old rows are in one file");
    // The upsert sink's first time re-inserts the existing rows (it never delivered them).
    run(&history, &upsert_spec(dir.path(), None), 2);
    let table = read_table(dir.path(), &["kv"]);
    assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
}

#[test]
fn upserts_are_exactly_once_across_a_stop_and_a_restart_on_another_worker_count() {
    for (seed, first, second) in [(60u64, 1usize, 1usize), (61, 2, 1), (62, 1, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let history = keyed_history(seed, 25, 10, 15);
        let spec = |max: Option<u64>| {
            SinkSpec::builder("kv", delta(dir.path()).target_file_size(1))
                .upsert()
                .primary_key(["k"])
                .schema(ROW_SCHEMA.parse().unwrap())
                .commit(CommitPolicy { max_changes: max, interval: Duration::from_secs(3600) })
                .build()
                .unwrap()
        };
        // Commits every ~40 changes, then a stop that leaves written but uncommitted files.
        run_and_drop(&history, &spec(Some(40 / first as u64)), first, 8);
        let stopped = read_table(dir.path(), &["kv"]);
        let at = stopped["txn"]["kv"].as_i64().expect("the sink committed") as u64;
        assert!(at > 0 && at <= 8, "{at}");
        assert_eq!(table_multiset(&stopped), final_state(&history, at), "seed {seed}, stopped at {at}");
        // The restart reads the keys' places (and the deletion vectors) back from the table.
        run(&history, &spec(None), second);
        let table = read_table(dir.path(), &["kv"]);
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX), "seed {seed}, {first} then {second}");
        assert_eq!(check_upsert_chain(&table), history.iter().filter(|h| h.2 < 0).count() as u64, "seed {seed}");
    }
}

#[test]
fn upserts_need_deletion_vectors_and_a_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    // An append-only sink creates the table without deletion vectors.
    let append = SinkSpec::builder("a", delta(dir.path()))
        .append_only(false)
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap();
    run(&insert_history(80, 2, 5), &append, 1);
    let errors = try_run(&keyed_history(81, 5, 3, 3), &upsert_spec(dir.path(), None), 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("delta.enableDeletionVectors"), "{errors:?}");
    let e = SinkSpec::builder("kv", delta(dir.path()))
        .upsert()
        .key_by_function()
        .schema(ROW_SCHEMA.parse().unwrap())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`primary_key`"), "{e}");
}

/// The sink on moto's S3 (`DSINK_MOTO_URL`): each test writes to a bucket of its own.
#[cfg(feature = "deltalake-s3")]
mod s3 {
    use super::*;
    use common::s3::{create_bucket, delta_reader_options, list_keys, moto_url, ACCESS_KEY, REGION, SECRET_KEY};
    use differential_sinks::connectors::lakehouse::s3::{S3Options, StorageLocation};

    fn moto() -> S3Options {
        S3Options::new(REGION).endpoint(moto_url()).credentials(ACCESS_KEY, SECRET_KEY)
    }

    fn s3_table(bucket: &str, path: &str) -> DeltaLakeConfig {
        let location = StorageLocation::S3 { url: format!("s3://{bucket}/{path}"), options: moto() };
        DeltaLakeConfig::new(location).create_table_if_not_exists(true)
    }

    fn read(bucket: &str, path: &str, apps: &[&str]) -> Value {
        read_uri(&format!("s3://{bucket}/{path}"), apps, Some(&delta_reader_options()))
    }

    fn spec(name: &str, config: DeltaLakeConfig, max_changes: Option<u64>) -> SinkSpec {
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
            let bucket = create_bucket("delta");
            let history = insert_history(seed, 12, 50);
            run(&history, &spec("orders", s3_table(&bucket, "tables/orders"), None), peers);
            let table = read(&bucket, "tables/orders", &["orders"]);
            let expected = expected_inserts(&history, u64::MAX);
            assert!(expected.values().any(|&n| n == 2), "the history has rows of multiplicity 2");
            assert_eq!(table_multiset(&table), expected, "seed {seed}, {peers} workers");
            assert_eq!(table["txn"]["orders"], i64::MAX, "seed {seed}, {peers} workers");
            check_commit_chain(&table, "orders", &history);
            // The log and the data files are under the table's prefix, nothing outside it.
            let keys = list_keys(&bucket, "");
            assert!(keys.iter().all(|k| k.starts_with("tables/orders/")), "{keys:?}");
            assert!(keys.iter().any(|k| k == "tables/orders/_delta_log/00000000000000000000.json"), "{keys:?}");
        }
    }

    #[test]
    fn upserts_on_s3_end_in_the_final_state_across_a_restart() {
        // Deletion vectors written to and read back from S3: a first run to time 6, a restart
        // on another worker count to the end.
        let bucket = create_bucket("delta-upsert");
        let history = keyed_history(109, 25, 10, 15);
        let spec = SinkSpec::builder("kv", s3_table(&bucket, "kv"))
            .upsert()
            .primary_key(["k"])
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap();
        run_until(&history, &spec, 2, 6);
        assert_eq!(table_multiset(&read(&bucket, "kv", &[])), final_state(&history, 6));
        run(&history, &spec, 1);
        let table = read(&bucket, "kv", &["kv"]);
        assert_eq!(table_multiset(&table), final_state(&history, u64::MAX));
        assert_eq!(check_upsert_chain(&table), history.iter().filter(|h| h.2 < 0).count() as u64);
        assert!(list_keys(&bucket, "kv/").iter().any(|k| k.starts_with("kv/deletion_vector_")));
    }

    /// The answer to a commit (the conditional `PUT` of `_delta_log/<version>.json`) is lost:
    /// the log entry exists, the sink never heard so. The sink must not commit the same rows
    /// again under the next version: the table holds every row once, whether the sink rides
    /// through or stops and is run again.
    #[test]
    fn an_ambiguous_commit_on_s3_is_not_applied_twice() {
        let host = moto_url().trim_start_matches("http://").trim_end_matches('/').to_string();
        let proxy = common::proxy::FaultProxy::start(&host);
        for peers in [1usize, 2] {
            let bucket = create_bucket("delta-amb");
            let history = insert_history(110 + peers as u64, 12, 40);
            let location = StorageLocation::S3 {
                url: format!("s3://{bucket}/amb"),
                options: S3Options::new(REGION)
                    .endpoint(format!("http://{}", proxy.addr()))
                    .credentials(ACCESS_KEY, SECRET_KEY),
            };
            let cfg = DeltaLakeConfig::new(location).create_table_if_not_exists(true);
            let spec = spec("amb", cfg, Some(60));
            proxy.lose_answer_to(format!("PUT /{bucket}/amb/_delta_log/00000000000000000001.json").as_bytes());
            let lost = proxy.lost_answers();
            let errors = try_run(&history, &spec, peers);
            assert_eq!(proxy.lost_answers(), lost + 1, "the answer to commit 1 was lost");
            eprintln!(
                "{peers} worker(s): {}",
                if errors.is_empty() { "rode through".to_string() } else { format!("stopped: {errors:?}") }
            );
            if !errors.is_empty() {
                run(&history, &spec, peers);
            }
            let table = read(&bucket, "amb", &["amb"]);
            assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "{peers} worker(s)");
            check_commit_chain(&table, "amb", &history);
        }
    }

    #[test]
    fn exactly_once_on_s3_across_a_stop_with_files_written_but_not_committed() {
        for (seed, peers) in [(107u64, 1usize), (108, 2)] {
            let bucket = create_bucket("delta-eos");
            let history = insert_history(seed, 10, 40);
            let cfg = s3_table(&bucket, "eos").target_file_size(1);
            let handed = run_and_drop(&history, &spec("eos", cfg.clone(), Some(120 / peers as u64)), peers, 8);
            let stopped = read(&bucket, "eos", &["eos"]);
            let committed = table_multiset(&stopped).values().sum::<usize>() as u64;
            assert!(committed > 0 && committed < handed, "stopped after some commits ({committed}) of {handed} rows");
            let on_s3 = list_keys(&bucket, "eos/").iter().filter(|k| k.ends_with(".parquet")).count();
            assert!(on_s3 > committed_files(&stopped), "the stop left uncommitted data files ({on_s3} on S3)");
            let stopped_at = stopped["txn"]["eos"].as_i64().expect("the sink recorded its frontier");
            assert!(stopped_at > 0 && stopped_at <= 8);

            run(&history, &spec("eos", cfg, None), peers);
            let table = read(&bucket, "eos", &["eos"]);
            assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "seed {seed}, {peers} workers");
            assert_eq!(table["txn"]["eos"], i64::MAX);
            let ranges = check_commit_chain(&table, "eos", &history);
            assert!(ranges.iter().any(|r| r.0 == Some(stopped_at)), "the restart resumed at {stopped_at}: {ranges:?}");
        }
    }

    /// Two runs of one sink: B delivers everything while A, which loaded the table before, has
    /// not committed yet. A's first commit tries to write the log version B already wrote; the
    /// conditional put refuses it and delta-rs' conflict checker finds B's commits of the same
    /// transaction ids, so A stops and the table holds B's delivery alone. Were the put not
    /// conditional, A would overwrite B's first commit and lose its rows.
    #[test]
    fn a_second_run_committing_the_same_log_version_on_s3_is_refused() {
        let bucket = create_bucket("delta-fence");
        let spec = spec("fence", s3_table(&bucket, "fence"), None);
        let history = insert_history(130, 4, 10);
        // A's committer loaded the table (creating it) when its dataflow was built; another run
        // of the same sink then delivers the whole history before A commits anything.
        let (spec_b, input_b) = (spec.clone(), history.clone());
        let error = run_with_meanwhile(&history, &spec, move || run(&input_b, &spec_b, 1));
        let error = error.expect("run A is refused at its first commit");
        assert_eq!(error.kind(), ErrorKind::Fenced, "{error}");
        assert!(error.to_string().contains("committing"), "{error}");
        let table = read(&bucket, "fence", &["fence"]);
        assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX));
        check_commit_chain(&table, "fence", &history);
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
        let from = |location: &str, endpoint: &str| {
            SinkSpec::from_options_with_schema(
                Options::parse_pairs([
                    "connector=deltalake",
                    "type=append-only",
                    "create_table_if_not_exists=true",
                    &format!("location={location}"),
                    &format!("s3.endpoint={endpoint}"),
                    &format!("s3.region={REGION}"),
                    "s3.access.key=AKWRONG",
                    "s3.secret.key=not-the-secret",
                ])
                .unwrap(),
                Some(ROW_SCHEMA.parse().unwrap()),
            )
        };
        let e = from("s3://bucket/t", &refusing_endpoint()).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("s3://bucket/t") && m.contains("`s3.endpoint`") && m.contains("`s3.access.key`"), "{m}");
        assert!(!m.contains("not-the-secret"), "{m}");
        let e = from("s3://no-such-bucket-for-dsink/t", &moto_url()).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("no-such-bucket-for-dsink") && m.contains("`location`'s bucket"), "{m}");
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
        let bucket = create_bucket("delta-cut");
        let endpoint = format!("http://{}", proxy.addr());
        let spec = |i: usize| {
            let options = S3Options::new(REGION).endpoint(&endpoint).credentials(ACCESS_KEY, SECRET_KEY);
            let location = StorageLocation::S3 { url: format!("s3://{bucket}/cut{i}"), options };
            spec("cut", DeltaLakeConfig::new(location).create_table_if_not_exists(true), Some(100))
        };
        run_with_faults(
            &proxy,
            &[Fault::CutAt(0.1), Fault::CutAt(0.5), Fault::CutAt(0.9)],
            |i| {
                let errors = try_run(&history, &spec(i), 2);
                (!errors.is_empty()).then(|| errors.join("; "))
            },
            |i| {
                let table = read(&bucket, &format!("cut{i}"), &["cut"]);
                assert_eq!(table_multiset(&table), expected_inserts(&history, u64::MAX), "table {i}");
            },
        );
    }
}
