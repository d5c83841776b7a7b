//! The Elasticsearch sink against a real `_bulk` server (`DSINK_ELASTICSEARCH_URL`, started by
//! `scripts/services start osmem`): random histories end in the collection's final state, a
//! restart or a full replay changes nothing visible (external versions), and documents the
//! server refuses are reported with their ids.
//!
//! Server notes: `osmem-server` is an in-memory OpenSearch-compatible server with the same
//! `_bulk` item semantics (external versions, 409s, 404s, mapping errors); requests go as
//! `application/x-ndjson`, which Elasticsearch 7/8 and OpenSearch all accept.

mod common;
mod drive;
#[path = "support/json_http.rs"]
mod json_http;

use common::{keyed_history, state_before, Row};
use differential_sinks::connectors::elasticsearch::ElasticsearchConfig;
use differential_sinks::{ErrorKind, JsonRow, Options, SinkSpec};
use drive::run;
use std::collections::BTreeMap;

fn url() -> String {
    std::env::var("DSINK_ELASTICSEARCH_URL").expect(
        "DSINK_ELASTICSEARCH_URL is not set: start the server with `scripts/services start osmem` and \
         `source $DSINK_SERVICES_DIR/env` (this test needs a real `_bulk` server)",
    )
}

/// One HTTP call; returns (status, JSON body).
fn call(method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    json_http::call(&url(), method, path, body)
}

fn fresh(index: &str) -> String {
    call("DELETE", &format!("/{index}"), None);
    index.to_string()
}

/// Every document of `index`: id → (source, version).
fn docs(index: &str) -> BTreeMap<String, (serde_json::Value, u64)> {
    call("POST", &format!("/{index}/_refresh"), None);
    let (s, v) = call(
        "POST",
        &format!("/{index}/_search?size=10000&version=true"),
        Some(serde_json::json!({"query": {"match_all": {}}})),
    );
    if s == 404 {
        return BTreeMap::new();
    }
    assert_eq!(s, 200, "{v}");
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), (h["_source"].clone(), h["_version"].as_u64().unwrap_or(0))))
        .collect()
}

fn state(index: &str) -> BTreeMap<u32, Row> {
    docs(index)
        .into_iter()
        .map(|(id, (src, _))| {
            let r: Row = serde_json::from_value(src).unwrap();
            assert_eq!(id, r.k.to_string(), "the document id is the primary key");
            (r.k, r)
        })
        .collect()
}

fn spec(sink: &str, index: &str) -> SinkSpec {
    let c = ElasticsearchConfig::new(url(), index).batch(23, 64).concurrent_requests(3);
    SinkSpec::builder(format!("{sink}-{}", std::process::id()), c).upsert().primary_key(["k"]).build().unwrap()
}

#[test]
fn upserts_end_in_the_final_state() {
    for (seed, peers) in [(1u64, 1usize), (2, 2), (3, 2)] {
        let history = keyed_history(seed, 40, 12, 20);
        let index = fresh(&format!("final-{seed}"));
        assert_eq!(run(&history, &spec(&index, &index), peers, None), None);
        assert_eq!(state(&index), state_before(&history, u64::MAX), "seed {seed}");
    }
}

#[test]
fn a_restart_or_a_full_replay_changes_nothing_visible() {
    let history = keyed_history(8, 30, 14, 15);
    let index = fresh("restart");
    let s = spec("restart", &index);
    assert_eq!(run(&history, &s, 2, Some(6)), None);
    assert_eq!(state(&index), state_before(&history, 6), "after the first run");
    assert_eq!(run(&history, &s, 2, None), None);
    let after = docs(&index);
    assert_eq!(state(&index), state_before(&history, u64::MAX), "after the restart");
    // A different sink name has no progress: the whole history is replayed, every write is
    // refused as a version conflict, and no document changes (not even its version).
    assert_eq!(run(&history, &spec("restart-replay", &index), 1, None), None);
    assert_eq!(docs(&index), after);
    // Each document's version is the logical time of its last change.
    let last_time: BTreeMap<u32, u64> = history.iter().map(|(r, t, _)| (r.k, *t)).collect();
    for (id, (_, version)) in &after {
        assert_eq!(Some(*version), last_time.get(&id.parse::<u32>().unwrap()).copied(), "document {id}");
    }
}

/// Two sinks of one name into two indexes of one server keep their progress apart: the second
/// delivers everything instead of resuming from the first's frontier.
#[test]
fn two_sinks_of_one_name_into_two_indexes_are_independent() {
    let history = keyed_history(12, 30, 10, 15);
    for name in ["same-a", "same-b"] {
        let index = fresh(name);
        assert_eq!(run(&history, &spec("same-name", &index), 2, None), None);
        assert_eq!(state(&index), state_before(&history, u64::MAX), "index {index}");
    }
}

/// A resume finds the sink's own progress documents however many other sinks' documents the
/// progress index holds (a plain search returns at most 10,000 hits).
#[test]
fn resume_finds_its_progress_among_many_other_documents() {
    let (index, progress) = (fresh("crowded"), fresh("crowded-progress"));
    let mut body = String::new();
    for i in 0..10_050 {
        body.push_str(&format!("{{\"index\":{{\"_index\":\"{progress}\",\"_id\":\"other-{i}\"}}}}\n"));
        body.push_str(&format!("{{\"sink\":\"other-{i}\",\"scope\":\"x{i}\",\"progress\":null}}\n"));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/_bulk?refresh=true", url()))
            .header("Content-Type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
    assert_eq!(status, 200);
    let history = keyed_history(13, 30, 12, 15);
    let c = ElasticsearchConfig::new(url(), &index).progress_index(&progress);
    let s =
        SinkSpec::builder(format!("crowded-{}", std::process::id()), c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s, 2, Some(6)), None);
    let first = s.metrics().snapshot();
    assert_eq!(run(&history, &s, 2, None), None);
    let second = s.metrics().snapshot();
    let before_6 = history.iter().filter(|h| h.1 < 6).count() as u64;
    assert_eq!(
        second.updates_already_committed - first.updates_already_committed,
        before_6,
        "the restart resumed from its committed frontier (dropping every update before time 6)"
    );
    assert_eq!(state(&index), state_before(&history, u64::MAX));
}

#[test]
fn refused_documents_are_reported_with_their_ids() {
    let index = fresh("mapping-conflict");
    let (s, v) = call(
        "PUT",
        &format!("/{index}"),
        Some(serde_json::json!({"mappings": {"properties": {"s": {"type": "long"}}}})),
    );
    assert_eq!(s, 200, "{v}");
    let history: Vec<(Row, u64, isize)> = vec![
        (Row { k: 1, v: 1, s: "12".into() }, 0, 1),
        (Row { k: 2, v: 2, s: "not a number".into() }, 0, 1),
        (Row { k: 3, v: 3, s: "7".into() }, 0, 1),
    ];
    let e = run(&history, &spec("mapping", &index), 1, None).expect("the sink must stop");
    assert!(e.contains("document \"2\"") && e.contains("400") && e.contains("mapper_parsing_exception"), "{e}");
    assert!(!e.contains("document \"1\"") && !e.contains("document \"3\""), "{e}");
    assert!(e.contains("refused 1 of"), "{e}");
}

#[test]
fn index_and_routing_columns_and_composite_ids() {
    fresh("by-col-a");
    fresh("by-col-b");
    let c = ElasticsearchConfig::new(url(), "unused").index_column("idx").routing_column("r");
    let s =
        SinkSpec::builder(format!("cols-{}", std::process::id()), c).upsert().primary_key(["id", "r"]).build().unwrap();
    let row =
        |id: u32, idx: &str, r: &str, n: u32| JsonRow::from(serde_json::json!({"id": id, "idx": idx, "r": r, "n": n}));
    let history = vec![
        (row(1, "by-col-a", "x", 1), 0, 1),
        (row(2, "by-col-b", "y", 1), 0, 1),
        (row(1, "by-col-a", "x", 1), 1, -1),
        (row(1, "by-col-a", "x", 2), 1, 1),
    ];
    assert_eq!(run(&history, &s, 1, None), None);
    let (st, v) = call("GET", "/by-col-a/_doc/1_x?routing=x", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["_source"]["n"], 2);
    assert_eq!(v["_version"], 1);
    let (st, v) = call("GET", "/by-col-b/_doc/2_y?routing=y", None);
    assert_eq!((st, v["_source"]["n"].as_u64()), (200, Some(1)), "{v}");
}

#[test]
fn options_reach_the_sink_and_mistakes_are_refused() {
    let parse = |extra: &[&str]| {
        let mut all = vec!["connector=elasticsearch".to_string(), format!("url={}", url()), "primary_key=k".into()];
        all.extend(extra.iter().map(|s| s.to_string()));
        if !extra.iter().any(|e| e.starts_with("type=")) {
            all.push("type=upsert".into());
        }
        SinkSpec::from_options(Options::parse_pairs(all).unwrap())
    };
    assert!(parse(&[
        "index=a",
        "delimiter=-",
        "batch_num_messages=10",
        "batch_size_kb=100",
        "concurrent_requests=2",
        "retry_on_conflict=5"
    ])
    .is_ok());
    let e = parse(&[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("index_column"), "{e}");
    assert!(parse(&["index=a", "index_column=b"]).unwrap_err().to_string().contains("not both"));
    assert!(parse(&["index=a", "type=debezium"]).is_err());
}

/// Faults between the sink and the server: connections cut mid-request (inside a `_bulk` body,
/// a progress document or the resume search) at points spread over a whole run, and the answer
/// lost to a `_bulk` request and to a progress document (the server applied it: an ambiguous
/// commit). The sink rides through by retrying, or stops and a rerun finishes; a resent write is
/// refused item by item as a version conflict, so every document ends at the reference state and
/// at the version of its last change.
#[test]
fn connections_cut_mid_request_lose_and_duplicate_nothing() {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let proxy = FaultProxy::start(url().trim_start_matches("http://"));
    let history = keyed_history(42, 1_500, 16, 250);
    let faults = [
        Fault::CutAt(0.01),
        Fault::CutAt(0.4),
        Fault::CutAt(0.8),
        Fault::LoseAnswerTo(b"POST /_bulk"),
        Fault::LoseAnswerTo(b"/dsink_progress/_doc/"),
    ];
    let index = |i: usize| format!("cut-{i}");
    for i in 0..=faults.len() {
        fresh(&index(i));
    }
    let last_time: BTreeMap<u32, u64> = history.iter().map(|(r, t, _)| (r.k, *t)).collect();
    run_with_faults(
        &proxy,
        &faults,
        |i| {
            let c = ElasticsearchConfig::new(format!("http://{}", proxy.addr()), index(i)).batch(200, 64);
            let s = SinkSpec::builder(format!("cut-{i}-{}", std::process::id()), c).upsert().primary_key(["k"]).build();
            run(&history, &s.unwrap(), 2, None)
        },
        |i| {
            assert_eq!(state(&index(i)), state_before(&history, u64::MAX), "index {}", index(i));
            for (id, (_, version)) in docs(&index(i)) {
                assert_eq!(Some(version), last_time.get(&id.parse::<u32>().unwrap()).copied(), "document {id}");
            }
        },
    );
}
