//! The Cassandra sink, through the real `scylla` driver, against an in-test double of the CQL
//! native protocol v4 (`cql_double`; no Cassandra or ScyllaDB server can be installed here). The
//! double keeps tables with Cassandra's write semantics — per-cell last write wins by write
//! timestamp, row tombstones — so these tests check what the sink's `USING TIMESTAMP` scheme
//! promises: random histories end in the collection's final state, restarts and replays change
//! nothing stored, an older write cannot resurrect a deleted row, and mismatched tables are
//! refused at creation through `system_schema`.
//!
//! No CQL server can be installed here: the sink runs through the real `scylla` driver against
//! `tests/cql_double`, a CQL native protocol v4 double with Cassandra's per-cell last-write-wins
//! and row tombstones. It cannot show what only a real cluster does: consistency levels and
//! replication, repair, tombstone purging after `gc_grace_seconds` (past which a replay of an old
//! write could resurrect a deleted row), compaction, paging of large results, token-aware routing
//! and ScyllaDB shard awareness.

mod common;
mod cql_double;
mod drive;

use common::{expected_changes, keyed_history, state_before, Row};
use cql_double::{CqlDouble, Fault};
use differential_sinks::connectors::cassandra::{insert_cql, CassandraConfig};
use differential_sinks::{Options, SinkSpec};
use drive::run;
use std::collections::BTreeMap;

const TABLE: &str = "CREATE TABLE ks.t (k int PRIMARY KEY, v bigint, s text)";

/// A double with keyspace `ks` and the tables `ddl` create.
fn double(ddl: &[&str]) -> CqlDouble {
    let d = CqlDouble::start();
    d.exec("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    for q in ddl {
        d.exec(q);
    }
    d
}

fn spec(d: &CqlDouble, sink: &str, batch: usize) -> SinkSpec {
    let mut c = CassandraConfig::new(&d.url(), "ks", "t");
    c.batch_size = batch;
    SinkSpec::builder(sink, c).upsert().primary_key(["k"]).build().unwrap()
}

/// The table's visible rows by `k` (panics if two rows share a `k`: with a composite key a
/// stale row must not hide behind the map).
fn table(d: &CqlDouble) -> BTreeMap<u32, Row> {
    let mut out = BTreeMap::new();
    for r in d.rows("ks", "t") {
        let row: Row =
            serde_json::from_value(serde_json::Value::Object(r.clone())).unwrap_or_else(|e| panic!("{r:?}: {e}"));
        if let Some(other) = out.insert(row.k, row.clone()) {
            panic!("two rows for k = {}: {other:?} and {row:?}", row.k);
        }
    }
    out
}

/// (timestamp, is a delete) of every change the history implies: what the sink must send.
fn expected_writes(history: &[(Row, u64, isize)]) -> Vec<(i64, bool)> {
    let mut w: Vec<(i64, bool)> =
        expected_changes(history).iter().map(|((t, _), (_, after))| (*t as i64, after.is_none())).collect();
    w.sort();
    w
}

fn sent_writes(d: &CqlDouble) -> Vec<(i64, bool)> {
    let mut w: Vec<(i64, bool)> = d.writes("ks", "t").iter().map(|w| (w.ts, w.delete)).collect();
    w.sort();
    w
}

#[test]
fn random_histories_end_in_the_final_state() {
    for seed in 1u64..=10 {
        let (peers, batch, keys) =
            (1 + (seed % 2) as usize, [1, 7, 100][(seed % 3) as usize], [5, 30, 200][(seed / 3 % 3) as usize]);
        let d = double(&[TABLE]);
        let history = keyed_history(seed, keys, 12, 15);
        assert_eq!(run(&history, &spec(&d, "final", batch), peers, None), None, "seed {seed}");
        assert_eq!(table(&d), state_before(&history, u64::MAX), "seed {seed}, {peers} workers");
        // One statement per change, carrying its logical time as the write timestamp.
        assert_eq!(sent_writes(&d), expected_writes(&history), "seed {seed}");
        // The writes went as unlogged batches of prepared statements.
        let db = d.db.lock().unwrap();
        assert!(db.requests.iter().any(|(op, _)| *op == "BATCH"), "no BATCH request");
        assert!(db
            .requests
            .iter()
            .any(|(op, q)| *op == "PREPARE" && q.contains("JSON ? DEFAULT NULL USING TIMESTAMP ?")));
    }
}

#[test]
fn timestamp_offset_is_added_to_every_write() {
    let d = double(&[TABLE]);
    let history = keyed_history(8, 10, 5, 6);
    let mut c = CassandraConfig::new(&d.url(), "ks", "t");
    c.timestamp_offset = 1_000_000;
    let s = SinkSpec::builder("offset", c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let shifted: Vec<(i64, bool)> =
        expected_writes(&history).into_iter().map(|(t, del)| (t + 1_000_000, del)).collect();
    assert_eq!(sent_writes(&d), shifted);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

/// Two sinks of one name into two tables keep their progress apart: the second delivers every
/// write instead of resuming from the first's frontier.
#[test]
fn two_sinks_of_one_name_into_two_tables_are_independent() {
    let d = double(&[TABLE, "CREATE TABLE ks.t2 (k int PRIMARY KEY, v bigint, s text)"]);
    let history = keyed_history(78, 25, 10, 12);
    assert_eq!(run(&history, &spec(&d, "same", 9), 2, None), None);
    let c = CassandraConfig::new(&d.url(), "ks", "t2");
    let s2 = SinkSpec::builder("same", c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s2, 2, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    let mut writes: Vec<(i64, bool)> = d.writes("ks", "t2").iter().map(|w| (w.ts, w.delete)).collect();
    writes.sort();
    assert_eq!(writes, expected_writes(&history), "the second table received every change");
}

#[test]
fn a_restart_and_replays_change_nothing_stored() {
    let d = double(&[TABLE]);
    let history = keyed_history(77, 25, 14, 12);
    let s = spec(&d, "restart", 9);
    // The first run stops (as a crash would) once time 6 is committed.
    assert_eq!(run(&history, &s, 2, Some(7)), None);
    assert_eq!(table(&d), state_before(&history, 7), "after the first run");
    let progress = d.rows("ks", "dsink_progress");
    assert!(progress.iter().any(|r| r["frontier"] == 7 && r["sink"] == "restart@ks.t"), "progress rows: {progress:?}");
    // The restart resumes from the progress table and finishes.
    assert_eq!(run(&history, &s, 2, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX), "after the restart");
    let stored = d.stored("ks", "t");
    // Running again under the same sink resumes at the end: nothing is written.
    let before = d.writes("ks", "t").len();
    assert_eq!(run(&history, &s, 2, None), None);
    assert_eq!(d.writes("ks", "t").len(), before, "a completed sink wrote again");
    // A replay of everything from time 0 (a sink without progress, e.g. a lost progress table):
    // every statement is a no-op, down to the cells' timestamps and the tombstones.
    assert_eq!(run(&history, &spec(&d, "replay", 13), 1, None), None);
    let replayed = &d.writes("ks", "t")[before..];
    assert_eq!(replayed.len(), expected_writes(&history).len());
    assert!(replayed.iter().all(|w| !w.changed), "a replayed write changed the table");
    assert_eq!(d.stored("ks", "t"), stored);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

#[test]
fn an_older_write_after_a_delete_does_not_resurrect_the_row() {
    let d = double(&[TABLE]);
    let history = keyed_history(21, 12, 10, 8);
    // A key whose last change is a delete, and the insert before it.
    let changes = expected_changes(&history);
    let ((t_del, k), _) =
        changes.iter().rev().find(|(_, (_, after))| after.is_none()).map(|(a, b)| (*a, b.clone())).unwrap();
    assert!(changes.range((t_del + 1, 0)..).all(|((_, key), _)| *key != k), "key {k} changes after its delete");
    let (t_ins, old) = changes
        .iter()
        .rfind(|((t, key), _)| *key == k && *t < t_del)
        .map(|((t, _), (_, after))| (*t, after.clone().unwrap()))
        .unwrap();
    assert_eq!(run(&history, &spec(&d, "resurrect", 10), 2, None), None);
    assert!(!table(&d).contains_key(&k));
    // Through the sink: a second sink replays the history up to the delete only (an old retry
    // arriving after the delete); the deleted row stays deleted.
    assert_eq!(run(&history, &spec(&d, "late", 10), 1, Some(t_del)), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    // Through the driver, with the sink's own statement: older or equal timestamps stay
    // shadowed by the tombstone, a newer one writes.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = scylla::client::session_builder::SessionBuilder::new().known_node(d.url()).build().await.unwrap();
        let ins = s.prepare(insert_cql("ks", "t")).await.unwrap();
        let json = serde_json::to_string(&old).unwrap();
        for ts in [t_ins as i64, t_del as i64] {
            s.execute_unpaged(&ins, (&json, ts)).await.unwrap();
            assert!(!table(&d).contains_key(&k), "an insert at {ts} resurrected key {k} deleted at {t_del}");
        }
        s.execute_unpaged(&ins, (&json, t_del as i64 + 1)).await.unwrap();
        assert_eq!(table(&d).get(&k), Some(&old), "a newer insert must show");
        // And the SELECT path: the row reads back typed through the driver.
        let r = s.query_unpaged("SELECT k, v, s FROM ks.t WHERE k = ?", (k as i32,)).await.unwrap();
        let rows: Vec<(i32, i64, String)> = r.into_rows_result().unwrap().rows().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows, vec![(k as i32, old.v as i64, old.s.clone())]);
    });
}

#[test]
fn mismatched_tables_are_refused_at_creation() {
    let d = double(&[
        TABLE,
        "CREATE TABLE ks.two (k int, v bigint, s text, PRIMARY KEY ((k), v))",
        "CREATE TABLE ks.narrow (k int PRIMARY KEY, v bigint)",
    ]);
    let err = |opts: &[&str]| {
        let mut all = vec!["connector=cassandra".to_string(), format!("cassandra.url={}", d.url())];
        all.extend(["cassandra.keyspace=ks".to_string()]);
        all.extend(opts.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(all).unwrap()).unwrap_err().to_string()
    };
    let e = err(&["cassandra.table=two", "type=upsert", "primary_key=k"]);
    assert!(e.contains("ks.two") && e.contains("primary_key = 'k,v'"), "{e}");
    let e = err(&["cassandra.table=t", "type=upsert", "primary_key=v"]);
    assert!(e.contains("ks.t") && e.contains("primary_key = 'k'"), "{e}");
    let e = err(&["cassandra.table=missing", "type=upsert", "primary_key=k"]);
    assert!(e.contains("does not exist") && e.contains("cassandra.table"), "{e}");
    let e = err(&["cassandra.table=t", "type=debezium", "primary_key=k"]);
    assert!(e.contains("debezium"), "{e}");
    // Declared columns must exist: the fix is named.
    let c = CassandraConfig::new(&d.url(), "ks", "narrow");
    let e = SinkSpec::builder("narrow", c)
        .upsert()
        .primary_key(["k"])
        .schema("k:int32,v:int64,s:string".parse().unwrap())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`s`") && e.contains("ALTER TABLE ks.narrow ADD s"), "{e}");
    // The matching table passes, and the check read system_schema.columns through the driver.
    assert!(SinkSpec::from_options(
        Options::parse_pairs([
            "connector=cassandra".to_string(),
            format!("cassandra.url={}", d.url()),
            "cassandra.keyspace=ks".into(),
            "cassandra.table=two".into(),
            "type=upsert".into(),
            "primary_key=k,v".into(),
        ])
        .unwrap()
    )
    .is_ok());
    let db = d.db.lock().unwrap();
    assert!(db
        .requests
        .iter()
        .any(|(_, q)| q.starts_with("SELECT column_name, kind, position, type FROM system_schema.columns")));
}

#[test]
fn credentials_are_checked_by_the_server() {
    let d = CqlDouble::start_with(Some(("dsink", "s3cret")));
    d.exec("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    d.exec(TABLE);
    let with = |password: &str| {
        SinkSpec::from_options(
            Options::parse_pairs([
                "connector=scylladb".to_string(),
                format!("cassandra.url={}", d.url()),
                "cassandra.keyspace=ks".into(),
                "cassandra.table=t".into(),
                "cassandra.user=dsink".into(),
                format!("cassandra.password={password}"),
                "type=upsert".into(),
                "primary_key=k".into(),
            ])
            .unwrap(),
        )
    };
    let e = with("wrong").unwrap_err().to_string();
    assert!(e.contains("incorrect") && !e.contains("wrong"), "{e}");
    let history = keyed_history(5, 8, 4, 5);
    assert_eq!(run(&history, &with("s3cret").unwrap(), 1, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

#[test]
fn dsink_binary_replays_a_change_log_into_cassandra() {
    let d = double(&[TABLE]);
    let history = keyed_history(99, 50, 20, 20);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let mut text = String::new();
    for (row, t, diff) in &history {
        text.push_str(&serde_json::json!({"time": t, "diff": diff, "row": row}).to_string());
        text.push('\n');
    }
    std::fs::write(&log, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(["--input", log.to_str().unwrap(), "--workers", "2", "--progress", "never"])
        .args(["--with", "connector=cassandra", "--with", &format!("cassandra.url={}", d.url())])
        .args(["--with", "cassandra.keyspace=ks", "--with", "cassandra.table=t"])
        .args(["--with", "type=upsert", "--with", "primary_key=k", "--with", "sink.name=bin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dsink failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    assert_eq!(sent_writes(&d), expected_writes(&history));
}

#[test]
fn a_statement_the_table_refuses_stops_the_sink_with_the_column() {
    // No schema is declared, so the creation-time check cannot see that the table lacks `s`;
    // the server refuses the INSERT (Invalid, 0x2200), which no retry can fix.
    let d = double(&["CREATE TABLE ks.t (k int PRIMARY KEY, v bigint)"]);
    let history = vec![(Row { k: 1, v: 1, s: "x".into() }, 0, 1)];
    let started = std::time::Instant::now();
    let e = run(&history, &spec(&d, "narrow", 10), 1, None).expect("refused");
    assert!(e.contains("unrecognized column: s"), "{e}");
    assert!(d.rows("ks", "t").is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a permanent refusal was retried for {:?}",
        started.elapsed()
    );
    // A value of the wrong type for its column: refused by the server's JSON conversion.
    let d = double(&["CREATE TABLE ks.t (k int PRIMARY KEY, v bigint, s int)"]);
    let e = run(&history, &spec(&d, "typed", 10), 1, None).expect("refused");
    assert!(e.contains("Error decoding JSON value for s") && e.contains("Expected an int value"), "{e}");
}

#[test]
fn transient_failures_are_retried_and_their_replays_are_harmless() {
    let d = double(&[TABLE]);
    {
        let mut db = d.db.lock().unwrap();
        // A timeout after the batch landed (the retry replays it), one before, and no replicas.
        db.batch_faults.extend([
            Fault::Error { error: cql_double::write_timeout(), applied: true },
            Fault::Error { error: cql_double::write_timeout(), applied: false },
            Fault::Error { error: cql_double::unavailable(), applied: false },
        ]);
    }
    let history = keyed_history(31, 20, 10, 12);
    assert_eq!(run(&history, &spec(&d, "faults", 6), 2, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    assert!(d.db.lock().unwrap().batch_faults.is_empty(), "not every fault was met");
    // The batch that landed before its timeout was sent again: every statement a no-op.
    let replayed = d.writes("ks", "t").iter().filter(|w| !w.changed).count();
    assert!(replayed >= 1, "no write was replayed, so the failed batches were not retried");
}

/// A row whose columns have mixed-case (quoted) names in CQL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
struct Mixed {
    #[serde(rename = "userId")]
    user_id: u32,
    #[serde(rename = "Name")]
    name: String,
}

#[test]
fn case_sensitive_column_names_are_written_and_deleted() {
    // Cassandra lowercases unquoted JSON keys in `INSERT … JSON`; a quoted column must be named
    // `"\"userId\""` in the JSON, as the DELETE's `"userId"` names it.
    let d = double(&["CREATE TABLE ks.mixed (\"userId\" int PRIMARY KEY, \"Name\" text)"]);
    let row = |k: u32, n: &str| Mixed { user_id: k, name: n.into() };
    let history =
        vec![(row(1, "a"), 0, 1), (row(2, "b"), 0, 1), (row(1, "a"), 1, -1), (row(2, "b"), 1, -1), (row(2, "c"), 1, 1)];
    let s = SinkSpec::builder("mixed", CassandraConfig::new(&d.url(), "ks", "mixed"))
        .upsert()
        .primary_key(["userId"])
        .build()
        .unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let rows: Vec<Mixed> = d
        .rows("ks", "mixed")
        .into_iter()
        .map(|r| serde_json::from_value(serde_json::Value::Object(r)).unwrap())
        .collect();
    assert_eq!(rows, vec![row(2, "c")]);
}

#[test]
fn a_partition_and_clustering_key_is_written_and_deleted() {
    // Primary key (k, v): every update of v is a delete of one row and an insert of another.
    let d = double(&["CREATE TABLE ks.t (k int, v bigint, s text, PRIMARY KEY ((k), v))"]);
    let history = keyed_history(41, 20, 10, 12);
    let mut c = CassandraConfig::new(&d.url(), "ks", "t");
    c.batch_size = 8;
    let s = SinkSpec::builder("composite", c).upsert().primary_key(["k", "v"]).build().unwrap();
    assert_eq!(run(&history, &s, 2, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

#[test]
fn a_restart_on_another_worker_count_resumes() {
    let d = double(&[TABLE]);
    let history = keyed_history(55, 25, 14, 12);
    let s = spec(&d, "rescale", 9);
    assert_eq!(run(&history, &s, 2, Some(6)), None);
    assert_eq!(table(&d), state_before(&history, 6));
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

#[test]
fn wide_rows_are_batched_under_the_servers_batch_size_limit() {
    // Cassandra refuses a multi-partition batch of more than 50 KiB (batch_size_fail_threshold_in_kb);
    // 100 rows of 1 KiB at the default `cassandra.max_batch_rows` would pass it.
    let d = double(&[TABLE]);
    let history: Vec<(Row, u64, isize)> = (0..300u32)
        .map(|i| (Row { k: i, v: u32::from(i % 7 == 0), s: "x".repeat(1000) }, u64::from(i / 150), 1))
        .collect();
    let s = SinkSpec::builder("wide", CassandraConfig::new(&d.url(), "ks", "t"))
        .upsert()
        .primary_key(["k"])
        .build()
        .unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

#[test]
fn an_unanswered_batch_times_out_after_the_request_timeout_and_is_retried() {
    let d = double(&[TABLE]);
    d.db.lock().unwrap().batch_faults.push_back(Fault::Stall);
    let history = keyed_history(61, 10, 4, 6);
    let s = SinkSpec::from_options(
        Options::parse_pairs([
            "connector=cassandra".to_string(),
            format!("cassandra.url={}", d.url()),
            "cassandra.keyspace=ks".into(),
            "cassandra.table=t".into(),
            "cassandra.request_timeout_ms=300".into(),
            "type=upsert".into(),
            "primary_key=k".into(),
        ])
        .unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(run(&history, &s, 1, None), None);
    assert!(d.db.lock().unwrap().batch_faults.is_empty(), "the stall was never met");
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "an unanswered batch held the sink for {took:?}");
}

#[test]
fn mixed_case_keyspace_and_table_names_are_the_ones_checked_and_written() {
    // The creation check finds `Shop`.`Orders` in system_schema by its exact name; the
    // statements must then name the same (quoted) keyspace and table, not lowercase them.
    let d = CqlDouble::start();
    d.exec("CREATE KEYSPACE \"Shop\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    d.exec("CREATE TABLE \"Shop\".\"Orders\" (k int PRIMARY KEY, v bigint, s text)");
    let history = keyed_history(71, 10, 6, 6);
    let s = SinkSpec::builder("orders", CassandraConfig::new(&d.url(), "Shop", "Orders"))
        .upsert()
        .primary_key(["k"])
        .build()
        .unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    let rows: BTreeMap<u32, Row> = d
        .rows("Shop", "Orders")
        .into_iter()
        .map(|r| serde_json::from_value::<Row>(serde_json::Value::Object(r)).unwrap())
        .map(|r| (r.k, r))
        .collect();
    assert_eq!(rows, state_before(&history, u64::MAX));
}

#[test]
fn double_answers_use_and_unqualified_names_through_the_driver() {
    // Not the sink's path (it qualifies every name), but a driver may send USE on every
    // connection; the double answers with SetKeyspace and binds prepared statements to it.
    let d = double(&[TABLE]);
    d.exec("INSERT INTO ks.t JSON '{\"k\": 3, \"v\": 4, \"s\": \"x\"}' USING TIMESTAMP 1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s = scylla::client::session_builder::SessionBuilder::new().known_node(d.url()).build().await.unwrap();
        assert!(s.query_unpaged("SELECT k FROM t", ()).await.is_err(), "no keyspace yet");
        s.use_keyspace("ks", true).await.unwrap();
        let p = s.prepare("SELECT k, v, s FROM t WHERE k = ?").await.unwrap();
        let r = s.execute_unpaged(&p, (3i32,)).await.unwrap();
        let rows: Vec<(i32, i64, String)> = r.into_rows_result().unwrap().rows().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows, vec![(3, 4, "x".to_string())]);
        assert!(s.use_keyspace("nope", true).await.is_err());
        // Paging: five rows in pages of two, following the paging state.
        for k in 10..14 {
            s.query_unpaged(insert_cql("ks", "t"), (format!("{{\"k\": {k}, \"v\": 0, \"s\": \"\"}}"), 1i64))
                .await
                .unwrap();
        }
        let stmt = scylla::statement::Statement::new("SELECT k FROM t").with_page_size(2);
        let (mut keys, mut pages) = (Vec::new(), 0);
        let mut state = scylla::response::PagingState::start();
        loop {
            let (r, next) = s.query_single_page(stmt.clone(), (), state).await.unwrap();
            pages += 1;
            keys.extend(r.into_rows_result().unwrap().rows::<(i32,)>().unwrap().map(|r| r.unwrap().0));
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Continue(s) => state = s,
                std::ops::ControlFlow::Break(()) => break,
            }
        }
        assert_eq!((keys, pages), (vec![3, 10, 11, 12, 13], 3));
    });
}

#[test]
fn append_only_rows_are_inserted() {
    let d = double(&["CREATE TABLE ks.t (k int, v bigint, s text, PRIMARY KEY ((k), v))"]);
    let history: Vec<(Row, u64, isize)> =
        (0..120u32).map(|i| (Row { k: i % 9, v: i, s: format!("r{i}") }, u64::from(i / 10), 1)).collect();
    let c = CassandraConfig::new(&d.url(), "ks", "t");
    let s = SinkSpec::builder("append", c).primary_key(["k", "v"]).build().unwrap();
    assert_eq!(run(&history, &s, 2, None), None);
    let mut got: Vec<Row> =
        d.rows("ks", "t").into_iter().map(|r| serde_json::from_value(serde_json::Value::Object(r)).unwrap()).collect();
    got.sort();
    let mut want: Vec<Row> = history.into_iter().map(|h| h.0).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_lower_server_batch_limit_is_met_by_lowering_max_batch_bytes() {
    let d = double(&[TABLE]);
    d.db.lock().unwrap().batch_fail_threshold = 4 * 1024;
    let history: Vec<(Row, u64, isize)> =
        (0..40u32).map(|i| (Row { k: i, v: i, s: "y".repeat(1000) }, u64::from(i / 20), 1)).collect();
    let with = |extra: &[&str]| {
        let mut o = vec![
            "connector=cassandra".to_string(),
            format!("cassandra.url={}", d.url()),
            "cassandra.keyspace=ks".into(),
            "cassandra.table=t".into(),
            "type=upsert".into(),
            "primary_key=k".into(),
        ];
        o.extend(extra.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(o).unwrap()).unwrap()
    };
    let e = run(&history, &with(&["sink.name=a"]), 1, None).expect("refused");
    assert!(e.contains("Batch too large") && e.contains("cassandra.max_batch_bytes"), "{e}");
    assert_eq!(run(&history, &with(&["sink.name=b", "cassandra.max_batch_bytes=3000"]), 1, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
}

/// A progress row with a negative number (written by something else) is refused by name, not
/// wrapped into a huge frontier or worker count.
#[test]
fn a_negative_progress_value_is_refused() {
    let d = double(&[TABLE]);
    d.exec(
        "CREATE TABLE ks.dsink_progress (sink text, generation bigint, worker int, peers int, base bigint, \
         base_complete boolean, frontier bigint, complete boolean, PRIMARY KEY ((sink), generation, worker))",
    );
    d.exec(
        "INSERT INTO ks.dsink_progress (sink, generation, worker, peers, base, base_complete, frontier, complete) \
         VALUES ('neg@ks.t', 0, 0, 1, 0, false, -5, false)",
    );
    let e = run(&keyed_history(5, 5, 3, 4), &spec(&d, "neg", 9), 1, None).expect("the sink must stop");
    assert!(e.contains("negative") && e.contains("dsink_progress"), "{e}");
}

/// A progress table of an earlier version, without the layout columns, gains them on resume;
/// its rows read them as null (routing not recorded, format 1), so the sink resumes from them
/// and records its layout from then on.
#[test]
fn an_earlier_progress_table_gains_the_layout_columns_and_resumes() {
    let d = double(&[TABLE]);
    d.exec(
        "CREATE TABLE ks.dsink_progress (sink text, generation bigint, worker int, peers int, base bigint, \
         base_complete boolean, frontier bigint, complete boolean, PRIMARY KEY ((sink), generation, worker))",
    );
    let history = keyed_history(7, 8, 4, 6);
    // As if an earlier version had committed times before 3 (the rows before 3 are in place).
    d.exec(
        "INSERT INTO ks.dsink_progress (sink, generation, worker, peers, base, base_complete, frontier, complete) \
         VALUES ('old@ks.t', 0, 0, 1, 0, false, 3, false)",
    );
    assert_eq!(run(&history, &spec(&d, "old", 9), 1, None), None);
    let rows = d.rows("ks", "dsink_progress");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["complete"], true, "{rows:?}");
    assert_eq!(rows[0]["layout_format"], 1, "{rows:?}");
    assert!(rows[0]["layout_routing"].as_i64().is_some_and(|r| r > 0), "{rows:?}");
    // The rows before frontier 3 were not written again: only the times from 3 on reached the table.
    let from_3 = expected_changes(&history).keys().filter(|(t, _)| *t >= 3).count();
    assert_eq!(d.writes("ks", "t").len(), from_3, "only the changes at times from 3 on are written");
}

/// RisingWave's option names carry over: `cassandra.username` is the user the server checks, and
/// `cassandra.datacenter` naming the double's datacenter routes every request to it.
#[test]
fn risingwave_option_names_carry_over() {
    let d = CqlDouble::start_with(Some(("dsink", "s3cret")));
    d.exec("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    d.exec(TABLE);
    let spec = |extra: &[&str]| {
        let mut pairs = vec![
            "connector=cassandra".to_string(),
            format!("cassandra.url={}", d.url()),
            "cassandra.keyspace=ks".into(),
            "cassandra.table=t".into(),
            "cassandra.password=s3cret".into(),
            "type=upsert".into(),
            "primary_key=k".into(),
        ];
        pairs.extend(extra.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(pairs).unwrap())
    };
    let history = keyed_history(17, 10, 4, 5);
    let s = spec(&["cassandra.username=dsink", "cassandra.datacenter=datacenter1"]).unwrap();
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(table(&d), state_before(&history, u64::MAX));
    assert_eq!(sent_writes(&d), expected_writes(&history));

    let e = spec(&["cassandra.username=dsink", "cassandra.user=other"]).unwrap_err().to_string();
    assert!(e.contains("`cassandra.user`") && e.contains("`cassandra.username`"), "{e}");
}

/// A datacenter the cluster does not have is refused when the sink is created, naming the option
/// and the datacenters there are, instead of every request later finding no node.
#[test]
fn an_unknown_datacenter_is_refused_at_creation() {
    let d = double(&[TABLE]);
    let mut c = CassandraConfig::new(&d.url(), "ks", "t");
    c.datacenter = Some("dc-elsewhere".into());
    let e = SinkSpec::builder("dc", c).upsert().primary_key(["k"]).build().unwrap_err();
    assert_eq!(e.kind(), differential_sinks::ErrorKind::Config, "{e}");
    let m = e.to_string();
    assert!(m.contains("`cassandra.datacenter` = `dc-elsewhere`") && m.contains("datacenter1"), "{m}");
}
