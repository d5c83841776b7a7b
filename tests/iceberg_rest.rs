//! Integration tests of the Iceberg sink on a REST catalog (`catalog.type = rest`).
//!
//! The catalog server is `tests/support/iceberg_rest_catalog.py`: the REST catalog API over
//! pyiceberg's SqlCatalog, with the OAuth2 client-credentials token endpoint, bearer-token checks,
//! and commits whose requirements pyiceberg checks against the table's current metadata (409 when
//! one fails). Each test starts its own server on a port the system picks and stops it by its PID
//! when done. Tables are read back through the same REST catalog with pyiceberg's `RestCatalog`
//! (`tests/support/read_iceberg.py`) and compared with references computed from the input
//! histories of `tests/common`.
//!
//! Needs `DSINK_PYTHON` (pyiceberg and pyarrow: `scripts/services install iceberg`).

mod common;

use common::lakehouse::{
    expected_inserts, final_state, insert_history, run, run_until, table_multiset, try_run, ROW_SCHEMA,
};
use common::{keyed_history, Row};
use differential_sinks::connectors::iceberg::{IcebergConfig, RestOptions};
use differential_sinks::{ErrorKind, Options, SinkSpec};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const CLIENT_ID: &str = "dsink-client";
const CLIENT_SECRET: &str = "client-secret-9f2c";
const STATIC_TOKEN: &str = "static-token-51ab";

fn python() -> String {
    std::env::var("DSINK_PYTHON").unwrap_or_else(|_| {
        panic!(
            "DSINK_PYTHON is not set: the Iceberg REST tests run their catalog server and read tables with \
             pyiceberg. Run `scripts/services install iceberg`, then `set -a; . <(scripts/services env iceberg); \
             set +a` (or use scripts/test)"
        )
    })
}

/// A REST catalog server of this test's own, with its warehouse in a temporary directory;
/// stopped (by PID) when dropped.
struct RestCatalog {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RestCatalog {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/iceberg_rest_catalog.py");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .arg(dir.path())
            .args([CLIENT_ID, CLIENT_SECRET, STATIC_TOKEN])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the REST catalog server starts");
        // The server prints its port once it listens; EOF first means it died.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(port) = line.trim().strip_prefix("port=").and_then(|p| p.parse().ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the REST catalog server did not start: {}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
        };
        RestCatalog { child, port, dir }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn warehouse(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The sink's configuration for `db.<table>` in this catalog, with `rest`'s authentication.
    fn config(&self, table: &str, rest: RestOptions) -> IcebergConfig {
        IcebergConfig::new(self.warehouse(), "db", table).create_table_if_not_exists(true).rest_catalog(rest)
    }

    fn with_credential(&self) -> RestOptions {
        RestOptions::new(self.uri()).credential(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    }

    /// A plain HTTP/1.1 exchange with the server's test hooks.
    fn hook(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, payload) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(payload).unwrap()
    }

    fn stats(&self) -> Value {
        self.hook("GET", "/test/stats", None)
    }

    /// The table `db.<table>` as pyiceberg's RestCatalog reads it through this server.
    fn read(&self, table: &str) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_iceberg.py");
        let out = Command::new(python())
            .arg(script)
            .arg(self.uri())
            .arg(self.warehouse())
            .arg(format!("db.{table}"))
            .arg("rest")
            .env("DSINK_STORAGE_OPTIONS", json!({ "credential": format!("{CLIENT_ID}:{CLIENT_SECRET}") }).to_string())
            .output()
            .expect("the Python reader runs");
        assert!(out.status.success(), "the Python reader failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
    }
}

impl Drop for RestCatalog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(name: &str, config: IcebergConfig) -> SinkSpec {
    SinkSpec::builder(name, config).append_only(false).schema(ROW_SCHEMA.parse().unwrap()).build().unwrap()
}

/// The summaries of the snapshots `sink` made, in commit order.
fn sink_snapshots<'a>(table: &'a Value, sink: &str) -> Vec<&'a Value> {
    table["snapshots"].as_array().unwrap().iter().filter(|s| s["summary"]["dsink.sink"] == sink).collect()
}

/// The sink's snapshots chain `[from, to)` ranges from 0 to `end` without gap or overlap, each
/// adding as many rows as its summary says; returns the ranges.
fn commit_chain(table: &Value, sink: &str, end: &str) -> Vec<(String, String)> {
    let mut from = "0".to_string();
    let mut ranges = Vec::new();
    for s in sink_snapshots(table, sink) {
        let summary = &s["summary"];
        assert_eq!(summary["dsink.from"], from.as_str(), "{s}");
        assert_eq!(summary["added-records"], summary["dsink.rows"], "{s}");
        let to = summary["dsink.to"].as_str().unwrap().to_string();
        ranges.push((from, to.clone()));
        from = to;
    }
    assert_eq!(from, end, "{ranges:?}");
    ranges
}

#[test]
fn appends_through_a_rest_catalog_are_exactly_once_across_a_restart() {
    let server = RestCatalog::start();
    for (table, peers) in [("one", 1usize), ("two", 2)] {
        let history = insert_history(40 + peers as u64, 10, 30);
        let spec = spec(table, server.config(table, server.with_credential()));
        run_until(&history, &spec, peers, 4);
        let half = server.read(table);
        assert_eq!(table_multiset(&half), expected_inserts(&history, 4), "{peers} workers");
        commit_chain(&half, table, "4");
        // The restart resumes from the snapshot the catalog holds: no time twice, none missing.
        run(&history, &spec, peers);
        let all = server.read(table);
        let expected = expected_inserts(&history, u64::MAX);
        assert!(expected.values().any(|&n| n == 2), "the history has rows of multiplicity 2");
        assert_eq!(table_multiset(&all), expected, "{peers} workers");
        let ranges = commit_chain(&all, table, "complete");
        assert!(ranges.iter().any(|r| r.0 == "4"), "{ranges:?}");
    }
    let stats = server.stats();
    assert!(stats["tokens_issued"].as_u64().unwrap() >= 1, "the credential was exchanged for tokens: {stats}");
    assert!(stats["commits"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(stats["unauthorized"], 0, "{stats}");
}

#[test]
fn a_static_token_is_accepted_and_wrong_credentials_are_refused_naming_the_option() {
    let server = RestCatalog::start();
    let history = insert_history(50, 3, 10);
    let spec_t = spec("tok", server.config("tok", RestOptions::new(server.uri()).token(STATIC_TOKEN)));
    run(&history, &spec_t, 1);
    assert_eq!(table_multiset(&server.read("tok")), expected_inserts(&history, u64::MAX));
    assert_eq!(server.stats()["unauthorized"], 0);

    let refused = |rest: RestOptions| {
        let e = SinkSpec::builder("bad", server.config("bad", rest))
            .append_only(false)
            .schema(ROW_SCHEMA.parse().unwrap())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        e.to_string()
    };
    let m = refused(RestOptions::new(server.uri()).token("wrong-token-77"));
    assert!(m.contains("refused") && m.contains("`catalog.token`"), "{m}");
    assert!(!m.contains("wrong-token-77"), "the token is not printed: {m}");
    let m = refused(RestOptions::new(server.uri()).credential(format!("{CLIENT_ID}:wrong-secret-88")));
    assert!(m.contains("refused") && m.contains("`catalog.credential`"), "{m}");
    assert!(!m.contains("wrong-secret-88"), "the secret is not printed: {m}");
    let m = refused(RestOptions::new(server.uri()));
    assert!(m.contains("none is given"), "{m}");
    assert!(server.stats()["unauthorized"].as_u64().unwrap() >= 3);

    // The secrets stay out of the configuration's Debug output, from options too.
    let pairs = [
        "connector=iceberg".to_string(),
        "type=append-only".into(),
        "catalog.type=rest".into(),
        format!("catalog.uri={}", server.uri()),
        format!("catalog.credential={CLIENT_ID}:{CLIENT_SECRET}"),
        format!("warehouse.path={}", server.warehouse().display()),
        "database.name=db".into(),
        "table.name=opts".into(),
        "create_table_if_not_exists=true".into(),
    ];
    let spec_o = SinkSpec::from_options_with_schema(
        Options::parse_pairs(pairs.iter().map(String::as_str)).unwrap(),
        Some(ROW_SCHEMA.parse().unwrap()),
    )
    .unwrap();
    let debug = format!("{spec_o:?}");
    assert!(!debug.contains(CLIENT_SECRET), "{debug}");
    run(&history, &spec_o, 1);
    assert_eq!(table_multiset(&server.read("opts")), expected_inserts(&history, u64::MAX));
}

fn upsert_spec(name: &str, config: IcebergConfig) -> SinkSpec {
    SinkSpec::builder(name, config).upsert().primary_key(["k"]).schema(ROW_SCHEMA.parse().unwrap()).build().unwrap()
}

/// The position deletes the sink's snapshots added, checking that they chain from 0 to the end.
fn position_deletes(table: &Value, sink: &str) -> u64 {
    commit_chain(table, sink, "complete");
    sink_snapshots(table, sink)
        .iter()
        .map(|s| s["summary"].get("added-position-deletes").map_or(0, |v| v.as_str().unwrap().parse::<u64>().unwrap()))
        .sum()
}

/// The `dsink.*` summary of the sink's latest snapshot: what a second run's snapshot carries.
fn latest_record(table: &Value, sink: &str) -> serde_json::Map<String, Value> {
    sink_snapshots(table, sink).last().unwrap()["summary"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("dsink."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn upserts_through_a_rest_catalog_end_in_the_final_state_across_a_restart() {
    let server = RestCatalog::start();
    for (table, peers) in [("kv1", 1usize), ("kv2", 2)] {
        let history = keyed_history(80 + peers as u64, 30, 12, 20);
        let spec = upsert_spec(table, server.config(table, server.with_credential()));
        run_until(&history, &spec, peers, 6);
        assert_eq!(table_multiset(&server.read(table)), final_state(&history, 6), "{peers} workers, at 6");
        // The restart reads the keys' places back through the catalog and replaces those rows.
        run(&history, &spec, peers);
        let all = server.read(table);
        assert_eq!(table_multiset(&all), final_state(&history, u64::MAX), "{peers} workers");
        let retractions = history.iter().filter(|h| h.2 < 0).count() as u64;
        assert!(retractions > 0);
        assert_eq!(position_deletes(&all, table), retractions, "one position delete per retraction");
    }
    assert_eq!(server.stats()["unauthorized"], 0);
}

/// An upsert commit the server refuses with 409 because another writer's snapshot came first
/// is staged again on that snapshot; a snapshot of the same sink fences the run instead.
#[test]
fn an_upsert_commit_refused_with_409_is_retried_after_another_writer_and_fenced_after_the_same_sink() {
    let server = RestCatalog::start();
    let history = keyed_history(90, 20, 6, 15);
    let spec = upsert_spec("up", server.config("up", server.with_credential()));
    run_until(&history, &spec, 1, 2);
    let other = Row { k: 1_000_003, v: 3, s: "other writer".into() };
    server.hook("POST", "/test/interfere", Some(&json!({ "table": "db.up", "rows": [other] })));
    run_until(&history, &spec, 1, 4);
    assert!(server.stats()["conflicts"].as_u64().unwrap() >= 1);
    let mut expected = final_state(&history, 4);
    *expected.entry(other.clone()).or_default() += 1;
    let table = server.read("up");
    assert_eq!(table_multiset(&table), expected);
    commit_chain(&table, "up", "4");

    // The same sink's snapshot between this run's load and its commit: fenced, nothing added.
    let twin = Row { k: 1_000_004, v: 4, s: "second run".into() };
    let summary = latest_record(&table, "up");
    server.hook("POST", "/test/interfere", Some(&json!({ "table": "db.up", "rows": [twin], "summary": summary })));
    let conflicts = server.stats()["conflicts"].as_u64().unwrap();
    let errors = try_run(&history, &spec, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("another run of sink `up`"), "{errors:?}");
    assert!(server.stats()["conflicts"].as_u64().unwrap() > conflicts);
    *expected.entry(twin).or_default() += 1;
    assert_eq!(table_multiset(&server.read("up")), expected, "the fenced run added nothing");
}

/// A commit the server refuses with 409 because another writer's snapshot came first is tried
/// again on the new snapshot: the sink's rows and the other writer's both end in the table.
#[test]
fn a_commit_refused_with_409_after_another_writers_snapshot_is_retried_on_it() {
    let server = RestCatalog::start();
    let history = insert_history(60, 4, 10);
    let spec = spec("race", server.config("race", server.with_credential()));
    run_until(&history, &spec, 1, 2);
    let other = Row { k: 1_000_001, v: 1, s: "other writer".into() };
    server.hook(
        "POST",
        "/test/interfere",
        Some(&json!({ "table": "db.race", "rows": [{ "k": other.k, "v": other.v, "s": other.s }] })),
    );
    run(&history, &spec, 1);
    let stats = server.stats();
    assert!(stats["conflicts"].as_u64().unwrap() >= 1, "the server refused a stale commit: {stats}");
    let table = server.read("race");
    let mut expected = expected_inserts(&history, u64::MAX);
    *expected.entry(other).or_default() += 1;
    assert_eq!(table_multiset(&table), expected);
    commit_chain(&table, "race", "complete");
}

/// A commit refused with 409 because a snapshot of the same sink came first (a second run) is
/// not tried again: the run is fenced and adds nothing.
#[test]
fn a_commit_refused_with_409_after_a_snapshot_of_the_same_sink_is_fenced() {
    let server = RestCatalog::start();
    let history = insert_history(70, 4, 10);
    let spec = spec("twin", server.config("twin", server.with_credential()));
    run_until(&history, &spec, 1, 2);
    let before = server.read("twin");
    // Another run's snapshot: the same sink's progress record, and a row of its own.
    let summary = latest_record(&before, "twin");
    let twin = Row { k: 1_000_002, v: 2, s: "second run".into() };
    server.hook(
        "POST",
        "/test/interfere",
        Some(&json!({ "table": "db.twin", "rows": [{ "k": twin.k, "v": twin.v, "s": twin.s }], "summary": summary })),
    );
    let errors = try_run(&history, &spec, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("another run of sink `twin`"), "{errors:?}");
    assert!(server.stats()["conflicts"].as_u64().unwrap() >= 1);
    // The table holds the first run's rows and the second run's: the fenced one added nothing.
    let table = server.read("twin");
    let mut expected = expected_inserts(&history, 2);
    *expected.entry(twin).or_default() += 1;
    assert_eq!(table_multiset(&table), expected);
}
