//! The ClickHouse sink against a real server (`DSINK_CLICKHOUSE_URL`, started by
//! `scripts/services start clickhouse`): random change histories end in exactly the collection's
//! final state, restarts and replays change nothing visible, and mismatched tables are refused
//! with the table, the columns and the fix.

mod common;
mod drive;

use common::{keyed_history, state_before, Row};
use differential_sinks::connectors::clickhouse::ClickHouseConfig;
use differential_sinks::{Options, SinkSpec};
use drive::run;
use std::collections::BTreeMap;

fn url() -> String {
    std::env::var("DSINK_CLICKHOUSE_URL").expect(
        "DSINK_CLICKHOUSE_URL is not set: start the server with `scripts/services start clickhouse` and \
         `source $DSINK_SERVICES_DIR/env` (this test needs a real ClickHouse)",
    )
}

/// Runs one query over HTTP and returns its output; panics on an error answer.
fn q(sql: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new().post(format!("{}/", url())).body(sql.to_string()).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "query `{sql}` failed: {body}");
        body
    })
}

/// A fresh table (dropped first) named after the test.
fn fresh(name: &str, ddl: &str) -> String {
    q(&format!("DROP TABLE IF EXISTS default.{name}"));
    q(&format!("CREATE TABLE default.{name} {ddl}"));
    name.to_string()
}

const REPLACING: &str =
    "(k UInt32, v UInt32, s String, ver UInt64, del UInt8) ENGINE = ReplacingMergeTree(ver) ORDER BY k";
const COLLAPSING: &str = "(k UInt32, v UInt32, s String, sign Int8) ENGINE = CollapsingMergeTree(sign) ORDER BY k";

fn spec(sink: &str, table: &str, delete: bool) -> SinkSpec {
    let mut c = ClickHouseConfig::new(url(), "default", table).batch(37, 1 << 20);
    if delete {
        c = c.delete_column("del");
    }
    SinkSpec::builder(sink, c).upsert().primary_key(["k"]).build().unwrap()
}

fn rows_of(out: &str) -> BTreeMap<u32, Row> {
    out.lines()
        .map(|l| {
            let r: Row = serde_json::from_str(l).unwrap();
            (r.k, r)
        })
        .collect()
}

/// Every row of `table` (`k, v, s`), duplicates kept, sorted.
fn all_rows(table: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = q(&format!("SELECT k, v, s FROM default.{table} FORMAT JSONEachRow"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort();
    rows
}

/// Every stored row of `table` with all its columns (versions, delete flags, signs), duplicates
/// kept, sorted: what the table physically holds before merges.
fn raw_rows(table: &str) -> Vec<String> {
    let mut rows: Vec<String> =
        q(&format!("SELECT * FROM default.{table} FORMAT JSONEachRow")).lines().map(str::to_string).collect();
    rows.sort();
    rows
}

fn replacing_state(table: &str) -> BTreeMap<u32, Row> {
    rows_of(&q(&format!("SELECT k, v, s FROM default.{table} FINAL WHERE del = 0 ORDER BY k FORMAT JSONEachRow")))
}

fn collapsing_state(table: &str) -> BTreeMap<u32, Row> {
    // Every key must net to 0 or 1 rows: more would be a double-counted insert.
    let bad = q(&format!("SELECT k, sum(sign) AS n FROM default.{table} GROUP BY k HAVING n NOT IN (0, 1) FORMAT TSV"));
    assert!(bad.is_empty(), "keys with a net count other than 0 or 1:\n{bad}");
    rows_of(&q(&format!(
        "SELECT k, v, s FROM default.{table} GROUP BY k, v, s HAVING sum(sign) > 0 ORDER BY k FORMAT JSONEachRow"
    )))
}

#[test]
fn replacing_upserts_end_in_the_final_state() {
    for (seed, peers) in [(1u64, 1usize), (2, 2), (3, 1), (4, 2)] {
        let history = keyed_history(seed, 30, 12, 15);
        let table = fresh(&format!("rep_final_{seed}"), REPLACING);
        let s = spec(&format!("{table}_{}", std::process::id()), &table, true);
        assert_eq!(run(&history, &s, peers, None), None);
        assert_eq!(replacing_state(&table), state_before(&history, u64::MAX), "seed {seed}");
    }
}

#[test]
fn collapsing_upserts_end_in_the_final_state() {
    for (seed, peers) in [(11u64, 1usize), (12, 2), (13, 2)] {
        let history = keyed_history(seed, 30, 12, 15);
        let table = fresh(&format!("col_final_{seed}"), COLLAPSING);
        let s = spec(&format!("{table}_{}", std::process::id()), &table, false);
        assert_eq!(run(&history, &s, peers, None), None);
        assert_eq!(collapsing_state(&table), state_before(&history, u64::MAX), "seed {seed}");
        // OPTIMIZE … FINAL collapses the table itself to the same answer.
        q(&format!("OPTIMIZE TABLE default.{table} FINAL"));
        assert_eq!(collapsing_state(&table), state_before(&history, u64::MAX));
    }
}

#[test]
fn a_restart_mid_stream_changes_nothing_visible() {
    for (engine, ddl) in [("rep", REPLACING), ("col", COLLAPSING)] {
        let history = keyed_history(77, 25, 14, 12);
        let table = fresh(&format!("restart_{engine}"), ddl);
        let s = spec(&format!("{table}_{}", std::process::id()), &table, engine == "rep");
        let state = |t: &str| if engine == "rep" { replacing_state(t) } else { collapsing_state(t) };
        // First run stops after committing time 6; the table shows exactly the state before 7.
        assert_eq!(run(&history, &s, 2, Some(7)), None);
        assert_eq!(state(&table), state_before(&history, 7), "{engine}: after the first run");
        // The restarted run (same sink, so it resumes from the progress table) finishes the job.
        assert_eq!(run(&history, &s, 2, None), None);
        assert_eq!(state(&table), state_before(&history, u64::MAX), "{engine}: after the restart");
        // Running the whole history again under the same sink is a no-op: the table holds the
        // very same stored rows (merges stopped, so only an insert could change them).
        q(&format!("SYSTEM STOP MERGES default.{table}"));
        let before = raw_rows(&table);
        assert_eq!(run(&history, &s, 2, None), None);
        assert_eq!(raw_rows(&table), before, "{engine}: nothing re-inserted");
        q(&format!("SYSTEM START MERGES default.{table}"));
    }
}

/// Two sinks of one name into two tables of one server keep their progress apart: the second
/// delivers everything instead of resuming from the first's frontier. The tables are
/// collapsing, so a replay or a skipped change would show.
#[test]
fn two_sinks_of_one_name_into_two_tables_are_independent() {
    let history = keyed_history(31, 25, 10, 12);
    let name = format!("same_name_{}", std::process::id());
    for t in ["same_name_a", "same_name_b"] {
        let table = fresh(t, COLLAPSING);
        assert_eq!(run(&history, &spec(&name, &table, false), 2, None), None);
        assert_eq!(collapsing_state(&table), state_before(&history, u64::MAX), "table {table}");
    }
}

/// A progress table made before progress rows named their table gains the `target` column;
/// a progress row that cannot be read is refused with the table named, never read as 0.
#[test]
fn old_and_unreadable_progress_tables() {
    let history = keyed_history(32, 20, 8, 10);
    let table = fresh("old_progress_data", REPLACING);
    let progress = fresh(
        "old_progress",
        "(sink String, worker UInt32, peers UInt32, generation UInt64, base UInt64, base_complete UInt8, \
         frontier UInt64, complete UInt8) ENGINE = MergeTree ORDER BY (sink, generation, worker)",
    );
    let c = ClickHouseConfig::new(url(), "default", &table).progress_table(&progress).delete_column("del");
    let s = SinkSpec::builder(format!("old_{}", std::process::id()), c).upsert().primary_key(["k"]).build().unwrap();
    assert_eq!(run(&history, &s, 2, Some(4)), None);
    assert_eq!(run(&history, &s, 2, None), None);
    assert_eq!(replacing_state(&table), state_before(&history, u64::MAX));
    let targets = q(&format!("SELECT DISTINCT target FROM default.{progress} FORMAT TSV"));
    assert_eq!(targets.trim(), format!("default.{table}"));
    // The layout columns were added too, and every row records the run's layout.
    let layouts = q(&format!("SELECT DISTINCT layout_format, layout_routing > 0 FROM default.{progress} FORMAT TSV"));
    assert_eq!(layouts.trim(), "1\t1");

    let bad = fresh(
        "bad_progress",
        "(sink String, target String, worker String, peers UInt32, generation UInt64, base UInt64, \
         base_complete UInt8, frontier String, complete UInt8) ENGINE = MergeTree ORDER BY sink",
    );
    let name = format!("bad_{}", std::process::id());
    q(&format!("INSERT INTO default.{bad} VALUES ('{name}', 'default.{table}', '0', 1, 0, 0, 0, 'not a number', 0)"));
    let c = ClickHouseConfig::new(url(), "default", &table).progress_table(&bad).delete_column("del");
    let s = SinkSpec::builder(name, c).upsert().primary_key(["k"]).build().unwrap();
    let e = run(&history, &s, 1, None).expect("an unreadable progress row stops the sink");
    assert!(e.contains("unreadable progress record") && e.contains("bad_progress"), "{e}");
}

#[test]
fn replaying_everything_into_replacing_merge_tree_is_harmless() {
    // A replay without any progress record (as after a crash between a block and its progress
    // row, in the worst case): the same versions, so FINAL shows the same state.
    let history = keyed_history(5, 40, 10, 20);
    let table = fresh("rep_replay", REPLACING);
    let s1 = spec(&format!("{table}_a_{}", std::process::id()), &table, true);
    assert_eq!(run(&history, &s1, 1, None), None);
    let s2 = spec(&format!("{table}_b_{}", std::process::id()), &table, true);
    assert_eq!(run(&history, &s2, 2, None), None);
    assert_eq!(replacing_state(&table), state_before(&history, u64::MAX));
    q(&format!("OPTIMIZE TABLE default.{table} FINAL"));
    assert_eq!(replacing_state(&table), state_before(&history, u64::MAX));
}

#[test]
fn append_only_inserts_rows_into_a_plain_merge_tree() {
    let table = fresh("plain_append", "(k UInt32, v UInt32, s String) ENGINE = MergeTree ORDER BY k");
    let history: Vec<(Row, u64, isize)> =
        (0..200u32).map(|i| (Row { k: i % 50, v: i, s: format!("r{i}") }, u64::from(i / 20), 1)).collect();
    let c = ClickHouseConfig::new(url(), "default", &table);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).build().unwrap();
    assert_eq!(run(&history, &s, 2, None), None);
    assert_eq!(q(&format!("SELECT count(), sum(v) FROM default.{table} FORMAT TSV")).trim(), "200\t19900");
    // The exact multiset of rows: every input row once, with its contents.
    let mut want: Vec<Row> = history.iter().map(|(r, _, _)| r.clone()).collect();
    want.sort();
    assert_eq!(all_rows(&table), want, "the table holds exactly the input rows");
}

#[test]
fn mismatched_tables_are_refused_at_creation() {
    let err = |opts: &[&str]| {
        let mut all = vec!["connector=clickhouse".to_string(), format!("clickhouse.url={}", url())];
        all.extend(opts.iter().map(|s| s.to_string()));
        SinkSpec::from_options(Options::parse_pairs(all).unwrap()).unwrap_err().to_string()
    };
    fresh("refuse_plain", "(k UInt32, v UInt32) ENGINE = MergeTree ORDER BY k");
    let e = err(&["clickhouse.table=refuse_plain", "type=upsert", "primary_key=k"]);
    assert!(e.contains("default.refuse_plain") && e.contains("ReplacingMergeTree(ver)"), "{e}");
    fresh("refuse_rep", REPLACING);
    let e = err(&["clickhouse.table=refuse_rep", "type=upsert", "primary_key=v", "clickhouse.delete.column=del"]);
    assert!(e.contains("sorting key") && e.contains("primary_key = 'k'"), "{e}");
    let e = err(&["clickhouse.table=refuse_rep", "type=upsert", "primary_key=k"]);
    assert!(e.contains("clickhouse.delete.column"), "{e}");
    let e = err(&["clickhouse.table=no_such_table", "type=append-only"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = err(&["clickhouse.table=refuse_rep", "type=debezium", "primary_key=k"]);
    assert!(e.contains("debezium"), "{e}");
}

#[test]
fn rows_that_do_not_fit_the_table_stop_the_sink_with_the_column() {
    let table = fresh("narrow", "(k UInt32, v UInt32) ENGINE = MergeTree ORDER BY k");
    let c = ClickHouseConfig::new(url(), "default", &table);
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).build().unwrap();
    let history = vec![(Row { k: 1, v: 1, s: "x".into() }, 0, 1)];
    let e = run(&history, &s, 1, None).expect("refused");
    assert!(e.contains("`s`") && e.contains("default.narrow") && e.contains("ADD COLUMN"), "{e}");
}

#[test]
fn dsink_binary_replays_a_change_log_into_clickhouse() {
    let history = keyed_history(99, 50, 20, 20);
    let table = fresh("dsink_bin", REPLACING);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let mut text = String::new();
    for (row, t, d) in &history {
        text.push_str(&serde_json::json!({"time": t, "diff": d, "row": row}).to_string());
        text.push('\n');
    }
    std::fs::write(&log, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(["--input", log.to_str().unwrap(), "--workers", "2", "--progress", "never"])
        .args(["--with", "connector=clickhouse", "--with", &format!("clickhouse.url={}", url())])
        .args(["--with", &format!("clickhouse.table={table}"), "--with", "clickhouse.delete.column=del"])
        .args(["--with", "type=upsert", "--with", "primary_key=k"])
        .args(["--with", &format!("sink.name={table}_{}", std::process::id())])
        .output()
        .unwrap();
    assert!(out.status.success(), "dsink failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(replacing_state(&table), state_before(&history, u64::MAX));
}

/// Faults between the sink and the server: connections cut mid-request (inside a streamed
/// insert, a progress row or a query) at points spread over a whole run, and the answer lost to
/// a data block and to a progress row (the server applied it, the sink never heard: an
/// ambiguous commit, which the retry sends again). The sink rides through by retrying, or stops
/// and a rerun finishes; the ReplacingMergeTree table then shows exactly the reference state,
/// a resent insert being the same rows with the same versions.
#[test]
fn connections_cut_mid_request_lose_and_duplicate_nothing() {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let proxy = FaultProxy::start(url().trim_start_matches("http://"));
    let history = keyed_history(41, 2_000, 20, 300);
    let faults = [
        Fault::CutAt(0.03),
        Fault::CutAt(0.4),
        Fault::CutAt(0.8),
        Fault::LoseAnswerTo(b"FORMAT+RowBinary"),
        Fault::LoseAnswerTo(b"INSERT INTO `default`.`dsink_progress` (sink, target"),
    ];
    let table = |i: usize| format!("cut_{i}");
    for i in 0..=faults.len() {
        fresh(&table(i), REPLACING);
    }
    run_with_faults(
        &proxy,
        &faults,
        |i| {
            let c = ClickHouseConfig::new(format!("http://{}", proxy.addr()), "default", table(i))
                .delete_column("del")
                .batch(500, 1 << 20);
            let s = SinkSpec::builder(format!("{}_{}", table(i), std::process::id()), c)
                .upsert()
                .primary_key(["k"])
                .build()
                .unwrap();
            run(&history, &s, 2, None)
        },
        |i| assert_eq!(replacing_state(&table(i)), state_before(&history, u64::MAX), "table {}", table(i)),
    );
}

/// A URL that starts with `http://` but does not parse is refused when the sink is created,
/// naming the option, and credentials written into the URL never show in errors or `Debug`.
#[test]
fn bad_and_credentialed_urls() {
    let o = Options::parse_pairs([
        "connector=clickhouse",
        "type=append-only",
        "clickhouse.url=http://127.0.0.1:99999",
        "clickhouse.table=t",
    ])
    .unwrap();
    let e = SinkSpec::from_options(o).unwrap_err().to_string();
    assert!(e.contains("clickhouse.url") && e.contains("not a valid URL"), "{e}");
    let c = ClickHouseConfig::new("http://ann:hunter2@127.0.0.1:99999", "default", "t");
    assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    let e = SinkSpec::builder("bad-url", c).append_only(false).build().unwrap_err().to_string();
    assert!(e.contains("clickhouse.url") && !e.contains("hunter2"), "{e}");
    let with_creds = url().replace("http://", "http://default:@");
    let table = fresh("url_creds", "(k UInt32, v UInt32, s String) ENGINE = MergeTree ORDER BY k");
    let c = ClickHouseConfig::new(with_creds, "default", &table);
    assert_eq!(c.user.as_deref(), Some("default"));
    let s = SinkSpec::builder(format!("{table}_{}", std::process::id()), c).append_only(false).build().unwrap();
    let history: Vec<(Row, u64, isize)> = (0..10u32).map(|i| (Row { k: i, v: i, s: String::new() }, 0, 1)).collect();
    assert_eq!(run(&history, &s, 1, None), None);
    assert_eq!(q(&format!("SELECT count() FROM default.{table} FORMAT TSV")).trim(), "10");
    let want: Vec<Row> = history.iter().map(|(r, _, _)| r.clone()).collect();
    assert_eq!(all_rows(&table), want, "the table holds exactly the input rows");
}

/// A private ClickHouse (started by `scripts/services` on its own ports and data) is killed with
/// SIGKILL mid-stream and restarted on its data: the sink rides through by retrying, or stops and
/// a rerun finishes; the ReplacingMergeTree table then shows exactly the reference state.
#[test]
fn a_server_killed_and_restarted_mid_stream_changes_nothing_visible() {
    use common::service::{free_ports, PrivateService};
    let [http, tcp, inter] = free_ports::<3>();
    let server = PrivateService::start(
        "clickhouse",
        &[
            ("DSINK_CLICKHOUSE_PORT", http.to_string()),
            ("DSINK_CLICKHOUSE_TCP_PORT", tcp.to_string()),
            ("DSINK_CLICKHOUSE_INTERSERVER_PORT", inter.to_string()),
        ],
        None,
    );
    let base = format!("http://127.0.0.1:{http}");
    let query = |sql: &str| -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new().post(format!("{base}/")).body(sql.to_string()).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        })
    };
    query(&format!("CREATE TABLE default.crash {REPLACING}")).expect("the private server answers");
    let history = keyed_history(49, 5_000, 40, 1_000);
    let c = ClickHouseConfig::new(base.clone(), "default", "crash").delete_column("del").batch(2_000, 1 << 20);
    let s = SinkSpec::builder("crash", c).upsert().primary_key(["k"]).build().unwrap();
    let (h2, s2) = (history.clone(), s.clone());
    let first = std::thread::spawn(move || run(&h2, &s2, 2, None));
    // Kill once the sink has made a few commits (and before it finished).
    let metrics = std::sync::Arc::clone(s.metrics());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while metrics.snapshot().commits < 3 {
        if first.is_finished() {
            panic!("the sink ended before the kill: {:?}", first.join());
        }
        assert!(std::time::Instant::now() < deadline, "the sink made no commits within 120 s");
        std::thread::sleep(std::time::Duration::from_millis(5)); // poll interval while waiting for the condition
    }
    assert!(!first.is_finished(), "the kill came before the sink finished");
    server.kill_and_restart();
    let first = first.join().unwrap();
    eprintln!("{}", first.as_ref().map_or("rode through".to_string(), |e| format!("stopped: {e}")));
    if let Some(e) = first {
        assert_eq!(run(&history, &s, 2, None), None, "the rerun after `{e}` completes");
    }
    let rows = query("SELECT k, v, s FROM default.crash FINAL WHERE del = 0 ORDER BY k FORMAT JSONEachRow").unwrap();
    assert_eq!(rows_of(&rows), state_before(&history, u64::MAX));
}

/// Workers starting together on a server without the progress table all create it (or find it
/// created): none stops on another's creation.
#[test]
fn workers_creating_the_progress_table_at_once_all_start() {
    use differential_sinks::connectors::clickhouse::ClickHouseWriter;
    use differential_sinks::key::Key;
    use differential_sinks::operators::{SinkWriter, WorkerContext};
    const WORKERS: usize = 6;
    let table = fresh("create_race", REPLACING);
    for round in 0..20 {
        let progress = format!("create_race_p_{}_{round}", std::process::id());
        q(&format!("DROP TABLE IF EXISTS default.{progress}"));
        let cfg = ClickHouseConfig::new(url(), "default", &table).delete_column("del").progress_table(&progress);
        let s = SinkSpec::builder(format!("race_{round}"), cfg.clone()).upsert().primary_key(["k"]).build().unwrap();
        let barrier = std::sync::Barrier::new(WORKERS);
        let errors: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (cfg, s, barrier) = (&cfg, &s, &barrier);
                    scope.spawn(move || {
                        let ctx = WorkerContext::new(w, WORKERS);
                        let mut writer = ClickHouseWriter::<Row>::open(cfg, s.settings(), ctx).unwrap();
                        barrier.wait();
                        SinkWriter::<Key, Row, u64>::resume(&mut writer, ctx).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect()
        });
        assert!(errors.is_empty(), "round {round}: workers stopped creating the progress table: {errors:?}");
        q(&format!("DROP TABLE IF EXISTS default.{progress}"));
    }
}
