//! Crash tests of the table connectors: `dsink` on 2 workers, killed with SIGKILL once at each
//! crash point of an independently committing sink (`write` inside the chunked first time,
//! `commit.begin`, `commit.mid` inside the connector's own commit, `commit.end`), then run to the
//! end, through the harness of `common::crash` (unchanged). After every run the target is read
//! back here, with the client crates the connectors' own test files use and not with the
//! library, and checked against the reference computed from the history alone: an upsert table
//! ([`Readback::Table`]) holds every key at a state it had and never older than at the previous
//! read, and the final state at the end; an append-only table ([`Readback::Rows`]) holds a
//! sub-multiset of the inserts, and every insert once at the end.
//!
//! Targets: PostgreSQL and MariaDB through `jdbc` (upsert and append-only, one transaction per
//! commit holding the rows and the progress row: exactly-once; and with transactions bounded at
//! 20 rows, so the large first time is committed in parts and restarts resume inside it), ClickHouse (upsert onto a
//! ReplacingMergeTree read with `FINAL`: exactly-once in effect), Elasticsearch / OpenSearch
//! (upsert with external versions: idempotent), Cassandra (the CQL protocol double of
//! `tests/cql_double`, in this process, reached by the child over TCP on 127.0.0.1; write
//! timestamps: idempotent) and Doris (the Stream Load double of `tests/doris_double`, which
//! `tests/doris.rs` uses too, in this process: labels dedupe a replay from the beginning). Every table is fresh, named by `common::unique_name`, with columns `k` (key),
//! `v`, `s` as `common::Row`. A missing server variable fails the test (`common::service_env`).
//!
//! Three additions of this file sharpen what the reads can see. The upsert histories get
//! sentinel keys, inserted once at each time after the first and never touched again, so a lost
//! commit shows in the final state instead of being overwritten by later updates of its keys.
//! Elasticsearch sends small `_bulk` requests, so documents reach the index well ahead of their
//! progress document and the reads after a crash see them. The Doris double checks every load as
//! it applies it: a key taken back to an older version (a replayed load applied again instead of
//! refused by its label) fails the test even when a later load restores the key before any read.

mod common;
mod cql_double;
mod doris_double;
#[path = "support/json_http.rs"]
mod json_http;

use common::crash::{self, CrashTest, Guarantee, Readback, INDEPENDENT};
use common::{service_env, unique_name, Row};
use doris_double::DorisDouble;
use std::collections::BTreeMap;

/// `--with` arguments from `key=value` pairs.
fn with(pairs: &[String]) -> Vec<String> {
    pairs.iter().flat_map(|p| ["--with".to_string(), p.clone()]).collect()
}

/// Runs the crash test on 2 workers at every independent crash point and checks that every
/// crash happened.
fn crash_run(
    label: &str,
    args: Vec<String>,
    guarantee: Guarantee,
    seed: u64,
    append: bool,
    read: &dyn Fn() -> Readback,
) {
    let history = if append { crash::insert_history(seed) } else { with_sentinels(crash::history(seed)) };
    let test = CrashTest { label, args, workers: 2, points: INDEPENDENT, guarantee, seed, env: vec![] };
    // Each read's size, shown with `--no-capture`: how far every crashed run had got.
    let reads = std::cell::RefCell::new(Vec::new());
    let counted = || {
        let got = read();
        reads.borrow_mut().push(match &got {
            Readback::Table(t) => t.len(),
            Readback::Rows(r) => r.len(),
            Readback::Log(l) => l.len(),
        });
        got
    };
    let report = crash::run(&test, &history, &counted);
    assert_eq!(report.crashes.len(), INDEPENDENT.len(), "{label}: crashes {:?}", report.crashes);
    eprintln!("{label}: crashed at {:?}, rows read after each run {:?}", report.crashes, reads.borrow());
}

/// Keys from [`SENTINEL`] on, inserted [`SENTINELS`] at each time from 1 on and never touched
/// again.
const SENTINEL: u32 = 1000;
const SENTINELS: u32 = 6;

/// `history` (time-ordered) with sentinel keys added at every time after the first: most keys of
/// `crash::history` change again later, so a commit lost after time 0 would mostly be hidden by
/// later updates in the final state; a sentinel's insert is its only change, so losing the
/// commit that held it leaves the key missing at the end.
fn with_sentinels(history: Vec<(Row, u64, isize)>) -> Vec<(Row, u64, isize)> {
    let mut out = Vec::with_capacity(history.len() + (crash::TIMES as usize) * SENTINELS as usize);
    let mut next = SENTINEL;
    let mut sentinels = |t: u64, out: &mut Vec<(Row, u64, isize)>| {
        for _ in 0..SENTINELS {
            out.push((Row { k: next, v: next, s: format!("sentinel {t}") }, t, 1));
            next += 1;
        }
    };
    for (i, h) in history.iter().enumerate() {
        out.push(h.clone());
        let last_of_time = history.get(i + 1).is_none_or(|n| n.1 != h.1);
        if last_of_time && h.1 > 0 {
            sentinels(h.1, &mut out);
        }
    }
    out
}

/// A single-threaded runtime for one read.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn row(k: i64, v: i64, s: String) -> Row {
    Row { k: u32::try_from(k).expect("k fits u32"), v: u32::try_from(v).expect("v fits u32"), s }
}

/// Rows by key; a key twice is a broken upsert table.
fn by_key(rows: Vec<Row>, what: &str) -> BTreeMap<u32, Row> {
    let mut out = BTreeMap::new();
    for r in rows {
        let k = r.k;
        if let Some(other) = out.insert(k, r) {
            panic!("{what}: key {k} twice ({other:?} and {:?})", out[&k]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JDBC: PostgreSQL and MariaDB

#[derive(Clone, Copy, PartialEq)]
enum Db {
    Pg,
    My,
}

impl Db {
    fn url(self) -> String {
        match self {
            Db::Pg => service_env("DSINK_POSTGRES_URL", "postgres"),
            Db::My => service_env("DSINK_MYSQL_URL", "mariadb"),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Db::Pg => "text",
            Db::My => "varchar(200)",
        }
    }

    /// Runs statements; panics on an error.
    fn exec(self, sql: &str) {
        let url = self.url();
        rt().block_on(async {
            match self {
                Db::Pg => {
                    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL");
                    tokio::spawn(conn);
                    c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
                Db::My => {
                    use mysql_async::prelude::Queryable;
                    let mut c = mysql_async::Conn::from_url(&url).await.expect("MariaDB");
                    c.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.disconnect().await.unwrap();
                }
            }
        })
    }

    /// Every row `(k, v, s)` of `table`, duplicates kept.
    fn rows(self, table: &str) -> Vec<Row> {
        let (url, sql) = (self.url(), format!("SELECT k, v, s FROM {table}"));
        rt().block_on(async {
            match self {
                Db::Pg => {
                    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL");
                    tokio::spawn(conn);
                    let rows = c.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.iter().map(|r| row(r.get::<_, i32>(0).into(), r.get::<_, i32>(1).into(), r.get(2))).collect()
                }
                Db::My => {
                    use mysql_async::prelude::Queryable;
                    let mut c = mysql_async::Conn::from_url(&url).await.expect("MariaDB");
                    let rows: Vec<(i64, i64, String)> = c.query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.disconnect().await.unwrap();
                    rows.into_iter().map(|(k, v, s)| row(k, v, s)).collect()
                }
            }
        })
    }
}

fn jdbc(db: Db, name: &str, append: bool, seed: u64) {
    jdbc_with(db, name, append, seed, &[]);
}

fn jdbc_with(db: Db, name: &str, append: bool, seed: u64, extra: &[&str]) {
    let table = unique_name(name, '_');
    let key = if append { "NOT NULL" } else { "PRIMARY KEY" };
    db.exec(&format!("CREATE TABLE {table} (k integer {key}, v integer NOT NULL, s {} NOT NULL)", db.text()));
    let mut opts = vec![
        "connector=jdbc".to_string(),
        format!("jdbc.url={}", db.url()),
        format!("table.name={table}"),
        format!("sink.name={table}"),
    ];
    if append {
        opts.push("type=append-only".into());
    } else {
        opts.extend(["type=upsert".into(), "primary_key=k".into()]);
    }
    opts.extend(extra.iter().map(|o| o.to_string()));
    let read = || {
        let rows = db.rows(&table);
        if append {
            Readback::Rows(rows)
        } else {
            Readback::Table(by_key(rows, &table))
        }
    };
    crash_run(name, with(&opts), Guarantee::ExactlyOnce, seed, append, &read);
    db.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_upsert_killed_at_every_crash_point_ends_exact() {
    jdbc(Db::Pg, "crash_pg_upsert", false, 11);
}

#[test]
fn postgres_append_only_killed_at_every_crash_point_writes_each_row_once() {
    jdbc(Db::Pg, "crash_pg_append", true, 12);
}

#[test]
fn mariadb_upsert_killed_at_every_crash_point_ends_exact() {
    jdbc(Db::My, "crash_my_upsert", false, 13);
}

#[test]
fn mariadb_append_only_killed_at_every_crash_point_writes_each_row_once() {
    jdbc(Db::My, "crash_my_append", true, 14);
}

/// Transactions bounded at 20 rows: the large first time is committed in parts, and a crash
/// inside it (at `write` or inside an early commit) resumes from a partial commit.
const BOUNDED: &[&str] = &["transaction.max.records=20"];

#[test]
fn postgres_bounded_upsert_killed_at_every_crash_point_ends_exact() {
    jdbc_with(Db::Pg, "crash_pg_bupsert", false, 15, BOUNDED);
}

#[test]
fn postgres_bounded_append_only_killed_at_every_crash_point_writes_each_row_once() {
    jdbc_with(Db::Pg, "crash_pg_bappend", true, 16, BOUNDED);
}

#[test]
fn mariadb_bounded_upsert_killed_at_every_crash_point_ends_exact() {
    jdbc_with(Db::My, "crash_my_bupsert", false, 17, BOUNDED);
}

#[test]
fn mariadb_bounded_append_only_killed_at_every_crash_point_writes_each_row_once() {
    jdbc_with(Db::My, "crash_my_bappend", true, 18, BOUNDED);
}

// ---------------------------------------------------------------------------------------------
// ClickHouse

/// Runs one query over ClickHouse's HTTP interface; panics on an error answer.
fn clickhouse(sql: &str) -> String {
    let url = service_env("DSINK_CLICKHOUSE_URL", "clickhouse");
    rt().block_on(async {
        let r = reqwest::Client::new().post(format!("{url}/")).body(sql.to_string()).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "`{sql}` failed: {body}");
        body
    })
}

/// ClickHouse's README row: "exactly-once in effect on ReplacingMergeTree (replays are no-ops
/// after `FINAL`)". The delete flag is filtered here, after `FINAL`, so that no filter can run
/// before the rows of a key are merged.
#[test]
fn clickhouse_replacing_upsert_killed_at_every_crash_point_ends_exact() {
    let table = unique_name("crash_ch", '_');
    clickhouse(&format!(
        "CREATE TABLE default.{table} (k UInt32, v UInt32, s String, ver UInt64, del UInt8) \
         ENGINE = ReplacingMergeTree(ver) ORDER BY k"
    ));
    let opts = [
        "connector=clickhouse".to_string(),
        format!("clickhouse.url={}", service_env("DSINK_CLICKHOUSE_URL", "clickhouse")),
        format!("clickhouse.table={table}"),
        "clickhouse.delete.column=del".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("sink.name={table}"),
    ];
    let read = || {
        let out = clickhouse(&format!("SELECT k, v, s, del FROM default.{table} FINAL FORMAT JSONEachRow"));
        let mut rows = Vec::new();
        for line in out.lines() {
            let l: serde_json::Value = serde_json::from_str(line).unwrap();
            if l["del"] == 0 {
                rows.push(row(l["k"].as_i64().unwrap(), l["v"].as_i64().unwrap(), l["s"].as_str().unwrap().into()));
            }
        }
        Readback::Table(by_key(rows, &table))
    };
    crash_run("clickhouse upsert", with(&opts), Guarantee::ExactlyOnce, 21, false, &read);
    clickhouse(&format!("DROP TABLE default.{table}"));
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch / OpenSearch

/// One HTTP call to the `_bulk` server; returns (status, JSON body).
fn es(method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    json_http::call(&service_env("DSINK_ELASTICSEARCH_URL", "osmem"), method, path, body)
}

/// Upserts with external versions (the logical time): a replay's older write is refused, so the
/// README's "exactly-once in effect" is checked as idempotence.
#[test]
fn elasticsearch_upsert_killed_at_every_crash_point_ends_exact() {
    let index = unique_name("crash-es", '-');
    let opts = [
        "connector=elasticsearch".to_string(),
        format!("url={}", service_env("DSINK_ELASTICSEARCH_URL", "osmem")),
        format!("index={index}"),
        // Small `_bulk` requests: documents reach the index while their time is being written,
        // well ahead of the progress document.
        "batch_num_messages=4".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("sink.name={index}"),
    ];
    let read = || {
        es("POST", &format!("/{index}/_refresh"), None);
        let query = serde_json::json!({"query": {"match_all": {}}});
        let (status, v) = es("POST", &format!("/{index}/_search?size=10000"), Some(query));
        if status == 404 {
            return Readback::Table(BTreeMap::new());
        }
        assert_eq!(status, 200, "{v}");
        let hits = v["hits"]["hits"].as_array().unwrap();
        let mut rows = Vec::new();
        for h in hits {
            let r: Row = serde_json::from_value(h["_source"].clone()).unwrap();
            assert_eq!(h["_id"], r.k.to_string(), "the document id is the key");
            rows.push(r);
        }
        Readback::Table(by_key(rows, &index))
    };
    crash_run("elasticsearch upsert", with(&opts), Guarantee::Idempotent, 31, false, &read);
    es("DELETE", &format!("/{index}"), None);
}

// ---------------------------------------------------------------------------------------------
// Cassandra: the CQL double, in this process

/// Replays are idempotent by write timestamps (the logical time).
#[test]
fn cassandra_upsert_killed_at_every_crash_point_ends_exact() {
    let d = cql_double::CqlDouble::start();
    d.exec("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    d.exec("CREATE TABLE ks.t (k int PRIMARY KEY, v int, s text)");
    let opts = [
        "connector=cassandra".to_string(),
        format!("cassandra.url={}", d.url()),
        "cassandra.keyspace=ks".into(),
        "cassandra.table=t".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("sink.name={}", unique_name("crash_cql", '_')),
    ];
    let read = || {
        let rows = d.rows("ks", "t").into_iter().map(|r| serde_json::from_value(r.into()).unwrap()).collect();
        Readback::Table(by_key(rows, "ks.t"))
    };
    crash_run("cassandra upsert", with(&opts), Guarantee::Idempotent, 41, false, &read);
}

// ---------------------------------------------------------------------------------------------
// Doris: a Stream Load double, in this process

/// Doris keeps no progress the sink can read: a restarted worker replays from the beginning, and
/// every load it repeats carries its original's label (sink, table, worker, frontiers) and is
/// refused as `Label Already Exists` (README: exactly-once on unique-key tables).
#[test]
fn doris_upsert_killed_at_every_crash_point_ends_exact() {
    let d = DorisDouble::start(&["k", "v", "s"]);
    let opts = [
        "connector=doris".to_string(),
        format!("doris.url={}", d.fe),
        "doris.database=demo".into(),
        "doris.table=orders".into(),
        "doris.user=root".into(),
        "doris.password=secret".into(),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("sink.name={}", unique_name("crash_doris", '_')),
    ];
    let read = || Readback::Table(d.table("orders"));
    crash_run("doris upsert", with(&opts), Guarantee::ExactlyOnce, 51, false, &read);
    let st = d.state.lock().unwrap();
    let replayed = st.loads.iter().filter(|l| l.1 == "Label Already Exists").count();
    eprintln!("doris upsert: {} loads, {replayed} refused as replays", st.loads.len());
    // Reads between runs miss a replay that rewrites older rows and then catches up again; the
    // double sees every load: a replayed load must be refused by its label, never applied again.
    assert!(st.stale.is_empty(), "loads applied again instead of refused as replays:\n{}", st.stale.join("\n"));
}
