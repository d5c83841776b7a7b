//! The `jdbc` connector against real servers: PostgreSQL (`DSINK_POSTGRES_URL`) and MariaDB
//! (`DSINK_MYSQL_URL`), as `scripts/services start postgres mariadb` provides them.
//!
//! Every check reads the table back with its own `SELECT` and compares it with the reference
//! model of `common` (the collection's state computed from the history alone). A missing server
//! variable fails the test: none passes without its server.
//!
//! Driver notes: on MySQL, `verify-ca` is carried out by a `verify-full` handshake that, when the
//! chain is trusted and only the host name differs, is repeated under a name the certificate
//! holds (mysql_async's own switch for skipping the name check does not work with current
//! rustls); such a session costs one more handshake.

mod common;
mod drive;

use common::{expected_changes, keyed_history, state_before, Rng, Row};
use differential_dataflow::input::Input;
use differential_sinks::connectors::jdbc::{JdbcConfig, PgUpsertMethod, TlsMode};
use differential_sinks::delivery::RetryPolicy;
use differential_sinks::{CommitPolicy, ErrorKind, Format, JsonRow, Options, Schema, SinkCollection, SinkSpec};
use drive::{AtCommit, Drive, Pace};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Pg,
    My,
}

impl Db {
    fn url(self) -> String {
        let var = match self {
            Db::Pg => "DSINK_POSTGRES_URL",
            Db::My => "DSINK_MYSQL_URL",
        };
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: start the servers with `scripts/services start postgres mariadb` and \
                 `source $DSINK_SERVICES_DIR/env` (see scripts/services)"
            )
        })
    }
}

/// A unique table name per test process and call.
fn table_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A plain SQL session for setting up tables and reading them back, independent of the sink.
struct Sql {
    rt: tokio::runtime::Runtime,
    pg: Option<tokio_postgres::Client>,
    my: Option<mysql_async::Conn>,
}

impl Sql {
    fn connect(db: Db) -> Sql {
        Sql::connect_to(db, &db.url())
    }

    fn connect_to(db: Db, url: &str) -> Sql {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = url.to_string();
        match db {
            Db::Pg => {
                let client = rt.block_on(async {
                    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
                    tokio::spawn(conn);
                    client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
                    client
                });
                Sql { rt, pg: Some(client), my: None }
            }
            Db::My => {
                let conn = rt.block_on(async {
                    let opts = mysql_async::Opts::from_url(&url).unwrap();
                    let mut c =
                        mysql_async::Conn::new(opts).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
                    use mysql_async::prelude::Queryable;
                    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
                    c
                });
                Sql { rt, pg: None, my: Some(conn) }
            }
        }
    }

    fn exec(&mut self, sql: &str) {
        use mysql_async::prelude::Queryable;
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            match (pg, my) {
                (Some(c), _) => c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")),
                (_, Some(c)) => c.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")),
                _ => unreachable!(),
            }
        })
    }

    /// Rows as text (NULL → None).
    fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        use mysql_async::prelude::Queryable;
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            match (pg, my) {
                (Some(c), _) => c
                    .simple_query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        _ => None,
                    })
                    .collect(),
                (_, Some(c)) => {
                    let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.into_iter()
                        .map(|r| {
                            r.unwrap()
                                .into_iter()
                                .map(|v| match v {
                                    mysql_async::Value::NULL => None,
                                    mysql_async::Value::Bytes(b) => Some(String::from_utf8(b).unwrap()),
                                    other => Some(other.as_sql(true)),
                                })
                                .collect()
                        })
                        .collect()
                }
                _ => unreachable!(),
            }
        })
    }
}

impl Drop for Sql {
    fn drop(&mut self) {
        if let Some(c) = self.my.take() {
            let _ = self.rt.block_on(c.disconnect());
        }
    }
}

fn text_type(db: Db) -> &'static str {
    match db {
        Db::Pg => "text",
        Db::My => "varchar(200)",
    }
}

/// Creates the property tests' table `(k int primary key, v bigint, s text)` (or without a key).
fn create_row_table(sql: &mut Sql, db: Db, name: &str, pk: bool) {
    let key = if pk { " PRIMARY KEY" } else { " NOT NULL" };
    sql.exec(&format!("CREATE TABLE {name} (k integer{key}, v bigint NOT NULL, s {} NOT NULL)", text_type(db)));
}

fn config(db: Db, table: &str) -> JdbcConfig {
    JdbcConfig::new(&db.url(), table).unwrap().retry(RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        deadline: Duration::from_secs(30),
    })
}

/// The table's rows, by key.
fn read_rows(sql: &mut Sql, table: &str) -> BTreeMap<u32, Row> {
    let mut out = BTreeMap::new();
    for r in sql.rows(&format!("SELECT k, v, s FROM {table} ORDER BY k")) {
        let row = Row {
            k: r[0].as_ref().unwrap().parse().unwrap(),
            v: r[1].as_ref().unwrap().parse().unwrap(),
            s: r[2].clone().unwrap(),
        };
        assert!(out.insert(row.k, row).is_none(), "key twice in {table}");
    }
    out
}

/// Every row of the table (with duplicates), sorted.
fn read_all_rows(sql: &mut Sql, table: &str) -> Vec<Row> {
    let mut out: Vec<Row> = sql
        .rows(&format!("SELECT k, v, s FROM {table}"))
        .into_iter()
        .map(|r| Row {
            k: r[0].as_ref().unwrap().parse().unwrap(),
            v: r[1].as_ref().unwrap().parse().unwrap(),
            s: r[2].clone().unwrap(),
        })
        .collect();
    out.sort();
    out
}

/// Runs `history` into the sinks `specs` on `peers` workers (each worker feeds every peers-th
/// update), stepping to completion. Returns the first sink error.
fn run(history: &[(Row, u64, isize)], specs: &[SinkSpec], peers: usize) -> Option<differential_sinks::Error> {
    Drive::new(peers).run_many(history, specs).first()
}

fn check_upsert_history(
    db: Db,
    history: Vec<(Row, u64, isize)>,
    peers: usize,
    max_changes: Option<u64>,
    method: PgUpsertMethod,
) {
    let mut sql = Sql::connect(db);
    let table = table_name("prop");
    create_row_table(&mut sql, db, &table, true);
    let spec = SinkSpec::builder("prop", config(db, &table).pg_upsert(method).batch_size(7))
        .upsert()
        .primary_key(["k"])
        .commit(CommitPolicy { max_changes, interval: Duration::ZERO })
        .build()
        .unwrap();
    let err = run(&history, &[spec], peers);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read_rows(&mut sql, &table), state_before(&history, u64::MAX));
    let progress = sql.rows(&format!(
        "SELECT worker, frontier FROM dsink_progress WHERE sink_name = 'prop' AND target LIKE '%.{table}' ORDER BY worker"
    ));
    assert_eq!(progress.len(), peers, "one progress row per worker: {progress:?}");
    assert!(progress.iter().all(|r| r[1].is_none()), "every worker committed the complete frontier: {progress:?}");
    sql.exec(&format!("DROP TABLE {table}"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 16, ..ProptestConfig::default() })]

    #[test]
    fn postgres_upsert_equals_the_reference(
        seed in any::<u64>(), keys in 1u32..40, times in 1u64..10, per_time in 0usize..20,
        peers in prop_oneof![Just(1usize), Just(2), Just(4)], max_changes in prop::option::of(1u64..30), copy in any::<bool>()
    ) {
        let method = if copy { PgUpsertMethod::Copy } else { PgUpsertMethod::Unnest };
        check_upsert_history(Db::Pg, keyed_history(seed, keys, times, per_time), peers, max_changes, method);
    }

    #[test]
    fn mysql_upsert_equals_the_reference(
        seed in any::<u64>(), keys in 1u32..40, times in 1u64..10, per_time in 0usize..20,
        peers in prop_oneof![Just(1usize), Just(2), Just(4)], max_changes in prop::option::of(1u64..30)
    ) {
        check_upsert_history(Db::My, keyed_history(seed, keys, times, per_time), peers, max_changes, PgUpsertMethod::Unnest);
    }
}

/// Rows the table already holds (written by someone else) are replaced, not refused, when the
/// collection inserts their keys: the sink's fast path for new keys falls back to the upsert.
fn foreign_rows_are_upserted(db: Db) {
    let history = keyed_history(99, 40, 6, 15);
    let mut sql = Sql::connect(db);
    let table = table_name("foreign");
    create_row_table(&mut sql, db, &table, true);
    sql.exec(&format!(
        "INSERT INTO {table} (k, v, s) VALUES {}",
        (0..60).map(|k| format!("({k}, 0, 'foreign')")).collect::<Vec<_>>().join(", ")
    ));
    let spec = SinkSpec::builder("foreign", config(db, &table)).upsert().primary_key(["k"]).build().unwrap();
    let err = run(&history, &[spec], 2);
    assert!(err.is_none(), "{err:?}");
    let touched: std::collections::BTreeSet<u32> = history.iter().map(|h| h.0.k).collect();
    let mut want = state_before(&history, u64::MAX);
    for k in (0..60).filter(|k| !touched.contains(k)) {
        want.insert(k, Row { k, v: 0, s: "foreign".into() });
    }
    assert_eq!(read_rows(&mut sql, &table), want);
    sql.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_foreign_rows_are_upserted() {
    foreign_rows_are_upserted(Db::Pg);
}

#[test]
fn mysql_foreign_rows_are_upserted() {
    foreign_rows_are_upserted(Db::My);
}

fn append_only_duplicates(db: Db) {
    let mut rng = Rng::new(42);
    // Insert-only, with identical rows: a table without a key holds each copy.
    let history: Vec<(Row, u64, isize)> = (0..120)
        .map(|_| (Row { k: rng.below(10) as u32, v: rng.below(3) as u32, s: "日本\t\\\n\"".into() }, rng.below(8), 1))
        .collect();
    let mut sql = Sql::connect(db);
    let table = table_name("app");
    create_row_table(&mut sql, db, &table, false);
    let spec = SinkSpec::builder("app", config(db, &table)).append_only(false).build().unwrap();
    let err = run(&history, &[spec], 2);
    assert!(err.is_none(), "{err:?}");
    let mut want: Vec<Row> = history.iter().map(|h| h.0.clone()).collect();
    want.sort();
    assert_eq!(read_all_rows(&mut sql, &table), want);
    sql.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_append_only_keeps_every_copy() {
    append_only_duplicates(Db::Pg);
}

#[test]
fn mysql_append_only_keeps_every_copy() {
    append_only_duplicates(Db::My);
}

fn primary_key_rules(db: Db) {
    let mut sql = Sql::connect(db);
    let keyed = table_name("pkr");
    let unkeyed = table_name("pkr");
    sql.exec(&format!(
        "CREATE TABLE {keyed} (a integer NOT NULL, b integer NOT NULL, c {} , PRIMARY KEY (a, b))",
        text_type(db)
    ));
    sql.exec(&format!("CREATE TABLE {unkeyed} (a integer, b integer, c {})", text_type(db)));
    let build = |table: &str, format: Format, pk: Option<&[&str]>| {
        let mut b = SinkSpec::builder("rules", config(db, table)).format(format);
        if let Some(pk) = pk {
            b = b.primary_key(pk.iter().copied());
        }
        b.build()
    };
    // Rule 1: an upsert sink must declare the key, and it must be the table's.
    let e = build(&keyed, Format::Upsert, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(&keyed) && e.to_string().contains("primary_key = 'a,b'"), "{e}");
    let e = build(&keyed, Format::Upsert, Some(&["a"])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(e.to_string().contains(&keyed) && e.to_string().contains("(a,b)"), "{e}");
    build(&keyed, Format::Upsert, Some(&["b", "a"])).expect("the table's key, in any order");
    // Rule 2: a table without a key takes no upsert sink, but an append-only one.
    let e = build(&unkeyed, Format::Upsert, Some(&["a"])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(
        e.to_string().contains(&unkeyed)
            && e.to_string().contains("no primary key")
            && e.to_string().contains("append-only"),
        "{e}"
    );
    build(&unkeyed, Format::AppendOnly { force: false }, None).expect("append-only without a key");
    build(&keyed, Format::AppendOnly { force: true }, Some(&["a", "b"])).expect("append-only into a keyed table");
    // Debezium has no meaning for a table.
    let e = build(&keyed, Format::Debezium { tombstone_after_delete: false }, Some(&["a", "b"])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    // A missing table.
    let e = build("no_such_table_here", Format::AppendOnly { force: false }, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(e.to_string().contains("no_such_table_here"), "{e}");
    // Schemas: a column the table lacks, an incompatible type, an uncovered NOT NULL column.
    let with_schema = |s: &str| {
        SinkSpec::builder("rules", config(db, &keyed))
            .upsert()
            .primary_key(["a", "b"])
            .schema(s.parse::<Schema>().unwrap())
            .build()
    };
    let e = with_schema("a:int32!,b:int32!,zz:string").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().contains("`zz`") && e.to_string().contains(&keyed), "{e}");
    let e = with_schema("a:int32!,b:int32!,c:timestamp").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().contains("`c`") && e.to_string().contains("timestamp"), "{e}");
    with_schema("a:int32!,b:int64!,c:string").expect("compatible schema");
    with_schema("a:int32!,b:int64!").expect("c is nullable, so the rows may leave it out");
    sql.exec(&format!("DROP TABLE {keyed}"));
    sql.exec(&format!("DROP TABLE {unkeyed}"));
}

#[test]
fn postgres_primary_key_rules() {
    primary_key_rules(Db::Pg);
}

#[test]
fn mysql_primary_key_rules() {
    primary_key_rules(Db::My);
}

/// Runs JSON rows (a map per row, as `dsink` reads them) into `spec` on one worker, all at time 0
/// unless the row says `"@time"`.
fn run_json(rows: Vec<(serde_json::Value, u64, isize)>, spec: &SinkSpec) -> Option<differential_sinks::Error> {
    let rows: Vec<(JsonRow, u64, isize)> = rows.into_iter().map(|(r, t, d)| (JsonRow::from(r), t, d)).collect();
    Drive::new(1).pace(Pace::Unflushed).run(&rows, spec).first()
}

fn types_round_trip(db: Db) {
    use serde_json::json;
    let mut sql = Sql::connect(db);
    let table = table_name("types");
    let ddl = match db {
        Db::Pg => format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, n numeric(40,12), ts timestamptz, tn timestamp, d date, \
             j jsonb, s text, b boolean, bin bytea, f double precision, big numeric(20,0))"
        ),
        Db::My => format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, n decimal(40,12), ts timestamp(6) NULL, tn datetime(6), d date, \
             j json, s varchar(100), b boolean, bin varbinary(20), f double, big decimal(20,0))"
        ),
    };
    sql.exec(&ddl);
    let spec = SinkSpec::builder("types", config(db, &table)).upsert().primary_key(["id"]).build().unwrap();
    let full = json!({
        "id": 1, "n": "1234567890123456789012345678.123456789012", "ts": "2024-02-29T23:59:58.123456+01:00",
        "tn": "2000-01-01T01:59:59+02:00", "d": "2024-02-29", "j": {"a": [1, 2.5, null, "ü"], "b": {"c": true}},
        "s": "ünïcödé ✓ 日本語 🎉 'quote' \"dq\" back\\slash tab\t nl\n", "b": true, "bin": "3q2+7w==",
        "f": 0.1, "big": u64::MAX
    });
    let nulls = json!({"id": 2, "n": null, "ts": null, "tn": null, "d": null, "j": null, "s": null, "b": null, "bin": null, "f": null, "big": null});
    let sparse = json!({"id": 3, "s": "", "j": "just a string", "ts": 1_700_000_000_123_456i64, "n": -0.5});
    let err = run_json(vec![(full, 0, 1), (nulls, 0, 1), (sparse, 0, 1)], &spec);
    assert!(err.is_none(), "{err:?}");
    let select = match db {
        Db::Pg => format!(
            "SELECT id::text, n::text, to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(tn, 'YYYY-MM-DD HH24:MI:SS'), d::text, \
             j::text, s, b::text, encode(bin, 'hex'), f::text, big::text FROM {table} ORDER BY id"
        ),
        Db::My => format!(
            "SELECT CAST(id AS CHAR), CAST(n AS CHAR), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(tn, '%Y-%m-%d %H:%i:%s'), \
             CAST(d AS CHAR), CAST(j AS CHAR), s, CAST(b AS CHAR), LOWER(HEX(bin)), CAST(f AS CHAR), CAST(big AS CHAR) \
             FROM {table} ORDER BY id"
        ),
    };
    let rows = sql.rows(&select);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r[1].as_deref(), Some("1234567890123456789012345678.123456789012"));
    assert_eq!(r[2].as_deref(), Some("2024-02-29 22:59:58.123456"));
    assert_eq!(r[3].as_deref(), Some("1999-12-31 23:59:59"));
    assert_eq!(r[4].as_deref(), Some("2024-02-29"));
    let j: serde_json::Value = serde_json::from_str(r[5].as_deref().unwrap()).unwrap();
    assert_eq!(j, json!({"a": [1, 2.5, null, "ü"], "b": {"c": true}}));
    assert_eq!(r[6].as_deref(), Some("ünïcödé ✓ 日本語 🎉 'quote' \"dq\" back\\slash tab\t nl\n"));
    assert!(matches!(r[7].as_deref(), Some("true") | Some("1")), "{:?}", r[7]);
    assert_eq!(r[8].as_deref(), Some("deadbeef"));
    assert_eq!(r[9].as_deref(), Some("0.1"));
    assert_eq!(r[10].as_deref(), Some("18446744073709551615"));
    assert!(rows[1][1..].iter().all(Option::is_none), "NULLs stay NULL: {:?}", rows[1]);
    let r = &rows[2];
    assert_eq!(r[1].as_deref().map(|s| s.trim_end_matches('0')), Some("-0.5"));
    assert_eq!(r[2].as_deref(), Some("2023-11-14 22:13:20.123456"));
    let j: serde_json::Value = serde_json::from_str(r[5].as_deref().unwrap()).unwrap();
    assert_eq!(j, json!("just a string"));
    assert_eq!(r[6].as_deref(), Some(""));
    sql.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_types_round_trip() {
    types_round_trip(Db::Pg);
}

#[test]
fn mysql_types_round_trip() {
    types_round_trip(Db::My);
}

fn refused_row_names_its_key(db: Db) {
    use serde_json::json;
    let mut sql = Sql::connect(db);
    let table = table_name("refuse");
    sql.exec(&format!("CREATE TABLE {table} (id integer PRIMARY KEY, qty integer NOT NULL CHECK (qty >= 0))"));
    let spec = SinkSpec::builder("refuse", config(db, &table)).upsert().primary_key(["id"]).build().unwrap();
    let rows: Vec<_> = (0..50).map(|i| (json!({"id": i, "qty": if i == 37 { -1 } else { i }}), 0, 1)).collect();
    let e = run_json(rows, &spec).expect("the check constraint stops the sink");
    assert_eq!(e.kind(), ErrorKind::Fatal, "{e}");
    assert!(e.to_string().contains("{\"id\":37}"), "the message names the key: {e}");
    let n = sql.rows(&format!("SELECT count(*) FROM {table}"));
    assert_eq!(n[0][0].as_deref(), Some("0"), "nothing of the refused commit is applied");
    // A value the column cannot take.
    let e = run_json(vec![(json!({"id": 5, "qty": "many"}), 0, 1)], &spec).expect("refused");
    assert!(e.to_string().contains("{\"id\":5}"), "{e}");
    // A field the table has no column for.
    let e = run_json(vec![(json!({"id": 6, "qty": 1, "colour": "red"}), 0, 1)], &spec).expect("refused");
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().contains("`colour`") && e.to_string().contains(&table), "{e}");
    sql.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_refused_row_names_its_key() {
    refused_row_names_its_key(Db::Pg);
}

#[test]
fn mysql_refused_row_names_its_key() {
    refused_row_names_its_key(Db::My);
}

/// What one worker's sink had done when the first run of [`exactly_once_across_a_crash`]
/// stopped: changes written, changes committed, and the frontier of its last commit (as the
/// committed stream reported them on that worker).
#[derive(Clone, Debug, Default)]
struct AtStop {
    written: u64,
    committed: u64,
    upper: Option<u64>,
}

/// Each worker's committed frontier time in the progress table of sink `sink` into `table`
/// (read with the test's own SQL; a worker without a row has committed nothing, 0; `u64::MAX`
/// for the complete frontier).
fn progress_frontiers(sql: &mut Sql, sink: &str, table: &str, peers: usize) -> Vec<u64> {
    let mut out = vec![0; peers];
    for r in sql.rows(&format!(
        "SELECT worker, frontier FROM dsink_progress WHERE sink_name = '{sink}' AND target LIKE '%.{table}'"
    )) {
        let w: usize = r[0].as_ref().unwrap().parse().unwrap();
        out[w] = r[1].as_ref().map_or(u64::MAX, |f| f.parse().unwrap_or_else(|e| panic!("frontier {f:?}: {e}")));
    }
    out
}

/// A dataflow stopped after some commits, at a time where every worker holds changes written to
/// each sink but not committed, then run again over the same input. At the stop, each table shows
/// exactly what the workers committed — per key, the key's changes before its worker's committed
/// frontier — and none of the written, uncommitted ones; after the rerun the upsert table equals
/// the reference, and the append-only table (where a change applied twice would show as a second
/// row) holds each change once.
fn exactly_once_across_a_crash(db: Db, peers: usize) {
    let history = keyed_history(7 + peers as u64, 30, 24, 12);
    let times = history.iter().map(|h| h.1 + 1).max().unwrap();
    let mut sql = Sql::connect(db);
    let (up, app) = (table_name("eo_up"), table_name("eo_app"));
    create_row_table(&mut sql, db, &up, true);
    create_row_table(&mut sql, db, &app, false);
    // Commits only when 15 changes wait, so a worker usually holds written, uncommitted changes.
    let cadence = CommitPolicy { max_changes: Some(15), interval: Duration::from_secs(3600) };
    let builders = vec![
        SinkSpec::builder("eo-up", config(db, &up)).upsert().primary_key(["k"]).commit(cadence.clone()),
        SinkSpec::builder("eo-app", config(db, &app)).append_only(true).primary_key(["k"]).commit(cadence),
    ];
    let specs: Vec<SinkSpec> = builders.iter().map(|b| b.clone().build().unwrap()).collect();
    let crash_at = times / 2;
    // worker → per sink, what it had done at the stop.
    let at_stop = Arc::new(Mutex::new(BTreeMap::<usize, Vec<AtStop>>::new()));
    // time → per worker, whether it held uncommitted changes in every sink once that time was written.
    let votes = Arc::new(Mutex::new(BTreeMap::<u64, Vec<Option<bool>>>::new()));
    {
        let (history, builders, at_stop, votes) =
            (Arc::new(history.clone()), builders.clone(), at_stop.clone(), votes.clone());
        // A loop of its own: the workers vote after each time and crash together once all hold
        // written, uncommitted changes.
        timely::execute(timely::Config::process(peers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let id = worker.next_dataflow_index();
            // Each worker's own specs, with counters of its own (the metrics are shared by the
            // workers of one spec).
            let specs: Vec<SinkSpec> = builders
                .iter()
                .map(|b| b.clone().metrics(Arc::new(differential_sinks::SinkMetrics::default())).build().unwrap())
                .collect();
            let committed: Vec<Arc<Mutex<AtStop>>> = specs.iter().map(|_| Arc::default()).collect();
            let (mut input, written, handles) = worker.dataflow::<u64, _, _>(|scope| {
                use timely::dataflow::operators::Inspect;
                let (input, rows) = scope.new_collection::<Row, isize>();
                let mut written = Vec::new();
                let mut handles = Vec::new();
                for (s, c) in specs.iter().zip(&committed) {
                    let out = rows.clone().sink(s).expect("sink builds");
                    let c = c.clone();
                    out.committed.inspect(move |r| {
                        assert_eq!(r.worker, index, "a worker's committed stream reports its own commits");
                        let mut c = c.lock().unwrap();
                        c.committed += r.changes;
                        c.upper = Some(r.upper.time().copied().unwrap_or(u64::MAX));
                    });
                    // The dead-letter stream's frontier is the sink's written frontier.
                    written.push(out.dead_letters.inner.probe().0);
                    handles.push(out.handle);
                }
                (input, written, handles)
            });
            let state = |specs: &[SinkSpec]| -> Vec<AtStop> {
                specs
                    .iter()
                    .zip(&committed)
                    .map(|(s, c)| AtStop { written: s.metrics().snapshot().changes_out, ..c.lock().unwrap().clone() })
                    .collect()
            };
            let mut t = 0;
            loop {
                for (i, (row, _, d)) in history.iter().enumerate().filter(|(_, h)| h.1 == t) {
                    if i % peers == index {
                        input.update(row.clone(), *d);
                    }
                }
                t += 1;
                input.advance_to(t);
                input.flush();
                while written.iter().any(|p| p.less_than(&t)) {
                    assert!(handles.iter().all(|h| !h.is_failed()));
                    worker.step();
                }
                // Every worker says whether it holds written, uncommitted changes in every sink;
                // all stop together once all do (past the middle of the history).
                let pending = state(&specs).iter().all(|s| s.written > s.committed);
                votes.lock().unwrap().entry(t).or_insert_with(|| vec![None; peers])[index] = Some(pending);
                let all = loop {
                    if let Some(v) = votes.lock().unwrap()[&t].iter().copied().collect::<Option<Vec<bool>>>() {
                        break v;
                    }
                    worker.step();
                };
                let stop = t >= crash_at && all.iter().all(|p| *p);
                if stop || t + 1 >= times {
                    at_stop.lock().unwrap().insert(index, state(&specs));
                    break;
                }
            }
            worker.drop_dataflow(id);
        })
        .expect("timely runs");
    }
    let at_stop = at_stop.lock().unwrap().clone();
    assert_eq!(at_stop.len(), peers);
    for (w, sinks) in &at_stop {
        for (s, a) in specs.iter().zip(sinks) {
            assert!(
                a.written > a.committed,
                "{peers} worker(s): worker {w} of sink {} stopped with changes written but not committed: {a:?}",
                s.name()
            );
        }
    }
    // Each worker's durable frontier per sink, as the progress tables hold it.
    let frontiers: Vec<Vec<u64>> =
        specs.iter().zip([&up, &app]).map(|(s, table)| progress_frontiers(&mut sql, s.name(), table, peers)).collect();
    assert!(frontiers.iter().flatten().any(|f| *f > 0), "the first run committed something");
    eprintln!("{peers} worker(s): stopped with committed frontiers {frontiers:?} (upsert, append-only), {at_stop:?}");
    // Per key, the key's changes in time order: (time, row after it).
    let mut per_key: BTreeMap<u32, Vec<(u64, Option<Row>)>> = BTreeMap::new();
    for ((t, k), (_, after)) in expected_changes(&history) {
        per_key.entry(k).or_default().push((t, after));
    }
    let mut app_rows: BTreeMap<u32, Vec<Row>> = BTreeMap::new();
    for r in read_all_rows(&mut sql, &app) {
        app_rows.entry(r.k).or_default().push(r);
    }
    let up_rows = read_rows(&mut sql, &up);
    // Every key shows its changes before the committed frontier of one worker (its owner), in both
    // tables, and none after: a key whose worker's uncommitted changes were visible would show more.
    let (mut low, mut high) = ([0u64; 2], [0u64; 2]);
    for (k, changes) in &per_key {
        let before = |f: u64| changes.iter().filter(move |(t, _)| *t < f);
        let app_at = |f: u64| -> Vec<Row> {
            let mut v: Vec<Row> = before(f).filter_map(|(_, a)| a.clone()).collect();
            v.sort();
            v
        };
        let up_at = |f: u64| before(f).next_back().and_then(|(_, a)| a.clone());
        let owners: Vec<usize> = (0..peers)
            .filter(|w| {
                app_at(frontiers[1][*w]) == app_rows.get(k).cloned().unwrap_or_default()
                    && up_at(frontiers[0][*w]) == up_rows.get(k).cloned()
            })
            .collect();
        assert!(
            !owners.is_empty(),
            "{peers} worker(s): key {k} shows {:?} (append-only) and {:?} (upsert), which is what no worker \
             committed (frontiers {frontiers:?}, changes {changes:?})",
            app_rows.get(k),
            up_rows.get(k)
        );
        for s in 0..2 {
            let n = owners.iter().map(|w| before(frontiers[s][*w]).count() as u64);
            low[s] += n.clone().min().unwrap();
            high[s] += n.max().unwrap();
        }
    }
    // And the changes shown add up to what the workers reported committed.
    for (s, spec) in specs.iter().enumerate() {
        let committed: u64 = at_stop.values().map(|a| a[s].committed).sum();
        assert!(
            low[s] <= committed && committed <= high[s],
            "{peers} worker(s), sink {}: {committed} changes committed, the table shows {}..={}",
            spec.name(),
            low[s],
            high[s]
        );
    }
    // What each worker committed, as the progress tables hold it, is what its committed stream said.
    for (i, s) in specs.iter().enumerate() {
        let reported: Vec<u64> = (0..peers).map(|w| at_stop[&w][i].upper.unwrap_or(0)).collect();
        assert_eq!(frontiers[i], reported, "{peers} worker(s), sink {}: progress rows against commits", s.name());
    }
    let partial = read_all_rows(&mut sql, &app).len();
    let all_after = expected_changes(&history).values().filter(|c| c.1.is_some()).count();
    assert!(partial < all_after, "the first run stopped before the end ({partial} of {all_after})");
    // Second run over the same input, to the end.
    let err = run(&history, &specs, peers);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read_rows(&mut sql, &up), state_before(&history, u64::MAX));
    let mut want: Vec<Row> = expected_changes(&history).into_values().filter_map(|(_, after)| after).collect();
    want.sort();
    assert_eq!(read_all_rows(&mut sql, &app), want, "{peers} worker(s): each change appended exactly once");
    for t in [&up, &app] {
        let p =
            sql.rows(&format!("SELECT worker, frontier FROM dsink_progress WHERE target LIKE '%.{t}' ORDER BY worker"));
        assert_eq!(p.len(), peers, "one progress row per worker: {p:?}");
        assert!(p.iter().all(|r| r[1].is_none()), "{p:?}");
    }
    sql.exec(&format!("DROP TABLE {up}"));
    sql.exec(&format!("DROP TABLE {app}"));
}

#[test]
fn postgres_exactly_once_across_a_crash() {
    for peers in [1, 2, 3] {
        exactly_once_across_a_crash(Db::Pg, peers);
    }
}

#[test]
fn mysql_exactly_once_across_a_crash() {
    for peers in [1, 2, 3] {
        exactly_once_across_a_crash(Db::My, peers);
    }
}

fn options_and_redaction(db: Db) {
    let mut sql = Sql::connect(db);
    let table = table_name("opts");
    create_row_table(&mut sql, db, &table, true);
    let opts = Options::parse_pairs([
        "connector=jdbc".to_string(),
        format!("jdbc.url={}", db.url()),
        format!("table.name={table}"),
        "type=upsert".into(),
        "primary_key=k".into(),
        "password=hunter2-secret".into(),
        "jdbc.batch.size=100".into(),
    ])
    .unwrap();
    let shown = format!("{opts:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    // Trust authentication accepts any password here; what matters is that none is printed.
    match SinkSpec::from_options(opts) {
        Ok(spec) => assert!(!format!("{spec:?}").contains("hunter2"), "{spec:?}"),
        Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
    }
    let bad = Options::parse_pairs([
        "connector=jdbc".to_string(),
        "jdbc.url=postgres://u:hunter2@127.0.0.1:1/x".into(),
        format!("table.name={table}"),
        "type=append-only".into(),
        "jdbc.connect.timeout.ms=500".into(),
    ])
    .unwrap();
    let e = SinkSpec::from_options(bad).unwrap_err();
    assert!(!e.to_string().contains("hunter2") && !format!("{e:?}").contains("hunter2"), "{e:?}");
    sql.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_options_and_redaction() {
    options_and_redaction(Db::Pg);
}

#[test]
fn mysql_options_and_redaction() {
    options_and_redaction(Db::My);
}

/// A RisingWave `WITH (…)` carries over: a `jdbc:` URL with Java driver parameters (ignored with
/// a warning) and `jdbc.query.timeout` build a sink that writes the table.
fn risingwave_options_carry_over(db: Db) {
    let mut sql = Sql::connect(db);
    let table = table_name("rw");
    create_row_table(&mut sql, db, &table, true);
    let params = match db {
        Db::Pg => "reWriteBatchedInserts=true&stringtype=unspecified",
        Db::My => "nullCatalogMeansCurrent=true&useUnicode=true&characterEncoding=UTF-8",
    };
    let url = db.url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let spec = SinkSpec::from_options(
        Options::parse_pairs([
            "connector=jdbc".to_string(),
            format!("jdbc.url=jdbc:{url}{sep}{params}"),
            format!("table.name={table}"),
            "type=upsert".into(),
            "primary_key=k".into(),
            "jdbc.query.timeout=30".into(),
        ])
        .unwrap(),
    )
    .unwrap();
    let history = keyed_history(23, 20, 5, 8);
    assert!(run(&history, &[spec], 2).is_none());
    assert_eq!(read_rows(&mut sql, &table), state_before(&history, u64::MAX));
}

#[test]
fn postgres_risingwave_options_carry_over() {
    risingwave_options_carry_over(Db::Pg);
}

#[test]
fn mysql_risingwave_options_carry_over() {
    risingwave_options_carry_over(Db::My);
}

/// `dsink` reaches the connector through its options: a generated change log replayed into a
/// table equals the state the log describes.
fn dsink_replays_into(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("changes.jsonl");
    let gen = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(["generate", "--keys", "300", "--updates", "3000", "--times", "30", "--row-bytes", "80"])
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    std::fs::write(&log, &gen.stdout).unwrap();
    // The state the log describes, computed from the log alone.
    let mut state: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for line in String::from_utf8(gen.stdout).unwrap().lines() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = l["row"]["id"].as_u64().unwrap();
        if l["diff"].as_i64().unwrap() > 0 {
            state.insert(id, l["row"].clone());
        } else {
            state.remove(&id);
        }
    }
    let mut sql = Sql::connect(db);
    let create = |sql: &mut Sql, table: &str| {
        sql.exec(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(64) NOT NULL, amount bigint, note {})",
            text_type(db)
        ))
    };
    // Each worker count delivers into a fresh table of its own, so each run alone must produce
    // the whole state.
    let mut tables = Vec::new();
    for workers in ["1", "2"] {
        let table = table_name(&format!("dsink_w{workers}"));
        create(&mut sql, &table);
        tables.push(table.clone());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"))
            .args(["--input", log.to_str().unwrap(), "--workers", workers, "--progress", "never"])
            .args(["--with", "connector=jdbc", "--with", &format!("jdbc.url={}", db.url())])
            .args(["--with", &format!("table.name={table}"), "--with", "type=upsert", "--with", "primary_key=id"])
            .args(["--with", &format!("sink.name=dsink-{workers}"), "--with", "commit.max_changes=100"])
            .output()
            .unwrap();
        assert!(out.status.success(), "dsink failed: {}", String::from_utf8_lossy(&out.stderr));
        let rows = sql.rows(&format!("SELECT id, name, amount, note FROM {table} ORDER BY id"));
        let ids: Vec<u64> = rows.iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
        assert_eq!(ids, state.keys().copied().collect::<Vec<_>>(), "{workers} worker(s): the table's keys");
        for r in rows {
            let id: u64 = r[0].as_ref().unwrap().parse().unwrap();
            let want = &state[&id];
            assert_eq!(r[1].as_deref(), want["name"].as_str(), "{workers} worker(s): id {id}");
            assert_eq!(r[2].as_ref().unwrap().parse::<u64>().unwrap(), want["amount"].as_u64().unwrap());
            assert_eq!(r[3].as_deref(), want["note"].as_str(), "{workers} worker(s): id {id}");
        }
        // Every worker of the run committed the complete frontier into this table.
        let progress = sql.rows(&format!(
            "SELECT worker, frontier FROM dsink_progress WHERE sink_name = 'dsink-{workers}' AND target LIKE '%.{table}' \
             ORDER BY worker"
        ));
        let want: Vec<Vec<Option<String>>> =
            (0..workers.parse::<u32>().unwrap()).map(|w| vec![Some(w.to_string()), None]).collect();
        assert_eq!(progress, want, "{workers} worker(s): one complete progress row per worker");
    }
    let table = tables[0].clone();
    // A configuration error surfaces before any worker starts, naming the table's key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsink"))
        .args(["--input", log.to_str().unwrap()])
        .args(["--with", "connector=jdbc", "--with", &format!("jdbc.url={}", db.url())])
        .args(["--with", &format!("table.name={table}"), "--with", "type=upsert"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("primary_key = 'id'"), "{err}");
    for table in tables {
        sql.exec(&format!("DROP TABLE {table}"));
    }
}

#[test]
fn postgres_dsink_replays_a_change_log() {
    dsink_replays_into(Db::Pg);
}

#[test]
fn mysql_dsink_replays_a_change_log() {
    dsink_replays_into(Db::My);
}

/// The sink's session is terminated by the server after every commit: the next commit finds the
/// connection gone, reconnects and retries the whole transaction, and the table still equals the
/// reference. (PostgreSQL only: its sessions carry the sink's name in `application_name`, so the
/// test can end exactly those and no other test's.)
#[test]
fn postgres_connection_loss_is_retried() {
    let db = Db::Pg;
    let history = keyed_history(5, 30, 8, 10);
    let times = history.iter().map(|h| h.1 + 1).max().unwrap();
    let mut sql = Sql::connect(db);
    let table = table_name("kill");
    create_row_table(&mut sql, db, &table, true);
    let sink = format!("kill-{table}");
    let spec = SinkSpec::builder(sink.clone(), config(db, &table)).upsert().primary_key(["k"]).build().unwrap();
    let app = format!("dsink {sink}");
    let killed = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed2 = killed.clone();
    let admin = Mutex::new(None::<Sql>);
    // After each time is committed, ends every session of the sink.
    let end_sessions = move |_: AtCommit| {
        let mut admin = admin.lock().unwrap();
        let admin = admin.get_or_insert_with(|| Sql::connect(Db::Pg));
        let live = admin.rows(&format!("SELECT pid::text FROM pg_stat_activity WHERE application_name = '{app}'"));
        let mut killed = killed2.lock().unwrap();
        for pid in live.into_iter().map(|r| r[0].clone().unwrap()) {
            assert!(!killed.contains(&pid), "the session {pid} was ended, yet committed");
            // Waits (up to 10 s) until the session is gone.
            let ended = admin.rows(&format!("SELECT pg_terminate_backend({pid}, 10000)"));
            assert_eq!(ended[0][0].as_deref(), Some("t"));
            killed.push(pid);
        }
    };
    Drive::new(1)
        .pace(Pace::Commit(1))
        .at_commit(end_sessions)
        .run(&history, &spec)
        .expect_ok("the sink rides out the lost session");
    assert!(
        killed.lock().unwrap().len() as u64 >= times,
        "a session was ended after every commit: {:?}",
        killed.lock().unwrap()
    );
    assert_eq!(read_rows(&mut sql, &table), state_before(&history, u64::MAX));
    sql.exec(&format!("DROP TABLE {table}"));
}

// ---------------------------------------------------------------------------------------------
// TLS: `scripts/services start postgres mariadb` starts both servers with TLS on (and plain
// connections still accepted), with a server certificate valid for IP 127.0.0.1 only, signed by
// the CA of `DSINK_TLS_CA`. `DSINK_TLS_OTHER_CA` is a CA that signed nothing the servers present.

fn tls_file(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the servers with `scripts/services start postgres mariadb` (it generates the \
             test CA and certificates) and `source $DSINK_SERVICES_DIR/env` (see scripts/services)"
        )
    })
}

/// The URL with its host replaced by `host`.
fn url_with_host(db: Db, host: &str) -> String {
    let url = db.url();
    assert!(url.contains("@127.0.0.1:"), "the server URL connects to 127.0.0.1: {url}");
    url.replacen("@127.0.0.1:", &format!("@{host}:"), 1)
}

/// A table of `Row`s with a column `tls` that records, per row, whether the session that inserted
/// it was encrypted as the server sees it: PostgreSQL `pg_stat_ssl.ssl` through a column default,
/// MariaDB's session `Ssl_cipher` through a trigger. The sink writes only the declared schema's
/// columns, so `tls` is filled by the sink's own sessions.
fn create_tls_table(sql: &mut Sql, db: Db, table: &str) {
    match db {
        Db::Pg => {
            sql.exec(&format!(
                "CREATE FUNCTION {table}_tls() RETURNS text LANGUAGE sql VOLATILE AS \
                 $$ SELECT CASE WHEN ssl THEN version ELSE '' END FROM pg_stat_ssl WHERE pid = pg_backend_pid() $$"
            ));
            sql.exec(&format!(
                "CREATE TABLE {table} (k integer PRIMARY KEY, v bigint NOT NULL, s text NOT NULL, \
                 tls text DEFAULT {table}_tls())"
            ));
        }
        Db::My => {
            create_row_table(sql, db, table, true);
            sql.exec(&format!("ALTER TABLE {table} ADD COLUMN tls varchar(100)"));
            sql.exec(&format!(
                "CREATE TRIGGER {table}_tls BEFORE INSERT ON {table} FOR EACH ROW SET NEW.tls = \
                 (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_CIPHER')"
            ));
        }
    }
}

fn drop_tls_table(sql: &mut Sql, db: Db, table: &str) {
    sql.exec(&format!("DROP TABLE {table}"));
    if db == Db::Pg {
        sql.exec(&format!("DROP FUNCTION {table}_tls()"));
    }
}

/// What the `tls` column says for every row: the distinct values.
fn tls_seen(sql: &mut Sql, table: &str) -> Vec<Option<String>> {
    sql.rows(&format!("SELECT DISTINCT tls FROM {table}")).into_iter().map(|mut r| r.remove(0)).collect()
}

fn tls_spec(name: &str, config: JdbcConfig) -> differential_sinks::Result<SinkSpec> {
    SinkSpec::builder(name, config.batch_size(7))
        .upsert()
        .primary_key(["k"])
        .schema("k:int32!,v:int64!,s:string!".parse::<Schema>().unwrap())
        .commit(CommitPolicy { max_changes: Some(9), interval: Duration::ZERO })
        .build()
}

/// Delivers a random history through `config` (into a fresh table) and checks the table against
/// the reference; returns what the sink's sessions recorded in `tls`.
fn deliver_and_observe(db: Db, config: impl FnOnce(&str) -> JdbcConfig, seed: u64) -> Vec<Option<String>> {
    let mut sql = Sql::connect(db);
    let table = table_name("tls");
    create_tls_table(&mut sql, db, &table);
    let history = keyed_history(seed, 30, 6, 12);
    let spec = tls_spec("tls", config(&table)).unwrap_or_else(|e| panic!("the sink builds: {e}"));
    let err = run(&history, &[spec], 2);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read_rows(&mut sql, &table), state_before(&history, u64::MAX));
    let seen = tls_seen(&mut sql, &table);
    drop_tls_table(&mut sql, db, &table);
    seen
}

/// True when every row was inserted by an encrypted session.
fn all_encrypted(seen: &[Option<String>]) -> bool {
    !seen.is_empty() && seen.iter().all(|s| s.as_deref().is_some_and(|s| !s.is_empty()))
}

fn tls_modes_deliver_encrypted(db: Db) {
    let ca = tls_file("DSINK_TLS_CA");
    // The control: the same observation says "plain" for a plain session, so it can tell.
    let plain = deliver_and_observe(db, |t| config(db, t).tls(TlsMode::Disable), 1);
    assert!(!plain.is_empty() && plain.iter().all(|s| s.as_deref().unwrap_or("").is_empty()), "{plain:?}");
    for (i, mode) in [TlsMode::Prefer, TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull].into_iter().enumerate()
    {
        let seen = deliver_and_observe(db, |t| config(db, t).tls(mode).tls_root_cert(&ca), 10 + i as u64);
        assert!(all_encrypted(&seen), "{mode:?}: every session of the sink is encrypted: {seen:?}");
    }
    // The same through the URL's parameters and through the sink's options.
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url());
    let seen = deliver_and_observe(db, |t| JdbcConfig::new(&url, t).unwrap(), 20);
    assert!(all_encrypted(&seen), "{seen:?}");
    let mut sql = Sql::connect(db);
    let table = table_name("tlsopt");
    create_tls_table(&mut sql, db, &table);
    let mode = if db == Db::My { "VERIFY_IDENTITY" } else { "verify-full" };
    let opts = Options::parse_pairs([
        "connector=jdbc".to_string(),
        format!("jdbc.url={}", db.url()),
        format!("table.name={table}"),
        "type=upsert".into(),
        "primary_key=k".into(),
        format!("jdbc.ssl.mode={mode}"),
        format!("jdbc.ssl.root.cert={ca}"),
    ])
    .unwrap();
    let schema = "k:int32!,v:int64!,s:string!".parse::<Schema>().unwrap();
    let spec = SinkSpec::from_options_with_schema(opts, Some(schema))
        .unwrap_or_else(|e| panic!("the sink builds from options: {e}"));
    let history = keyed_history(21, 20, 4, 10);
    let err = run(&history, &[spec], 1);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read_rows(&mut sql, &table), state_before(&history, u64::MAX));
    let seen = tls_seen(&mut sql, &table);
    assert!(all_encrypted(&seen), "{seen:?}");
    drop_tls_table(&mut sql, db, &table);
}

#[test]
fn postgres_tls_modes_deliver_encrypted() {
    tls_modes_deliver_encrypted(Db::Pg);
}

#[test]
fn mysql_tls_modes_deliver_encrypted() {
    tls_modes_deliver_encrypted(Db::My);
}

/// A certificate the configured root did not sign, and a host name the certificate does not hold,
/// are refused when the sink is created, with a `Config` error that names the option; `verify-ca`
/// ignores the host name, `require` the whole certificate.
fn tls_refusals(db: Db) {
    let (ca, other) = (tls_file("DSINK_TLS_CA"), tls_file("DSINK_TLS_OTHER_CA"));
    let mut sql = Sql::connect(db);
    let table = table_name("tlsbad");
    create_tls_table(&mut sql, db, &table);
    let at = |host: &str, mode: TlsMode, root: &str| {
        let c = JdbcConfig::new(&url_with_host(db, host), table.clone()).unwrap().tls(mode).tls_root_cert(root);
        tls_spec("tlsbad", c.retry(RetryPolicy { deadline: Duration::from_secs(5), ..RetryPolicy::default() }))
    };
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let e = at("127.0.0.1", mode, &other).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let m = e.to_string();
        assert!(m.contains("not signed by a trusted root") && m.contains("jdbc.ssl.root.cert"), "{mode:?}: {m}");
    }
    // The certificate names IP 127.0.0.1 only.
    let e = at("localhost", TlsMode::VerifyFull, &ca).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let m = e.to_string();
    assert!(m.contains("does not name host `localhost`") && m.contains("verify-ca"), "{m}");
    at("localhost", TlsMode::VerifyCa, &ca).unwrap_or_else(|e| panic!("verify-ca does not compare host names: {e}"));
    at("localhost", TlsMode::Require, &other).unwrap_or_else(|e| panic!("require checks no certificate: {e}"));
    // A root file that is not PEM is refused before any connection.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = at("127.0.0.1", TlsMode::VerifyFull, junk.to_str().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("jdbc.ssl.root.cert"), "{e}");
    drop_tls_table(&mut sql, db, &table);
}

#[test]
fn postgres_tls_refusals() {
    tls_refusals(Db::Pg);
}

#[test]
fn mysql_tls_refusals() {
    tls_refusals(Db::My);
}

/// The user `dsink_cert` may log in only with the client certificate: with it the sink delivers
/// (over an encrypted session), without it the sink is refused at creation.
fn tls_client_certificate(db: Db) {
    let (ca, cert, key) =
        (tls_file("DSINK_TLS_CA"), tls_file("DSINK_TLS_CLIENT_CERT"), tls_file("DSINK_TLS_CLIENT_KEY"));
    let user = match db {
        Db::Pg => "postgres@",
        Db::My => "root@",
    };
    let url = db.url();
    assert!(url.contains(user), "{url}");
    let url = url.replacen(user, "dsink_cert@", 1);
    let with = |t: &str| {
        JdbcConfig::new(&url, t).unwrap().tls(TlsMode::VerifyFull).tls_root_cert(&ca).tls_client_identity(&cert, &key)
    };
    let seen = deliver_and_observe(db, with, 30);
    assert!(all_encrypted(&seen), "{seen:?}");
    let mut sql = Sql::connect(db);
    let table = table_name("tlsnocert");
    create_tls_table(&mut sql, db, &table);
    let without = JdbcConfig::new(&url, table.clone()).unwrap().tls(TlsMode::VerifyFull).tls_root_cert(&ca);
    let e = tls_spec(
        "tlsnocert",
        without.retry(RetryPolicy { deadline: Duration::from_secs(5), ..RetryPolicy::default() }),
    )
    .unwrap_err();
    assert!(e.to_string().contains("dsink_cert"), "the server refuses the user without a certificate: {e}");
    drop_tls_table(&mut sql, db, &table);
}

#[test]
fn postgres_tls_client_certificate() {
    tls_client_certificate(Db::Pg);
}

#[test]
fn mysql_tls_client_certificate() {
    tls_client_certificate(Db::My);
}

// ---------------------------------------------------------------------------------------------
// Faults: connections cut mid-transaction through a proxy (`common::proxy`).

/// An append-only sink into a table without a key (so a duplicate would show) through a proxy
/// that cuts every connection once a number of bytes has gone to the server — inside a batch, a
/// progress row or a `COMMIT` — and, once, refuses new connections for a while. The sink
/// reconnects and retries, or stops with an error; a rerun then leaves every row exactly once.
/// An ambiguous commit (the `COMMIT` applied, its answer lost) is caught by the progress row:
/// the retry finds it and applies nothing twice.
fn connections_cut_mid_transaction(db: Db) {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let port = db.url().split("@127.0.0.1:").nth(1).unwrap().split('/').next().unwrap().to_string();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"));
    let mut rng = Rng::new(43);
    let history: Vec<(Row, u64, isize)> =
        (0..6_000).map(|i| (Row { k: rng.below(500) as u32, v: i, s: format!("r{i}") }, rng.below(20), 1)).collect();
    let mut want: Vec<Row> = history.iter().map(|h| h.0.clone()).collect();
    want.sort();
    let sql = std::cell::RefCell::new(Sql::connect(db));
    let tables: Vec<String> = (0..=3).map(|_| table_name("cut")).collect();
    for t in &tables {
        create_row_table(&mut sql.borrow_mut(), db, t, false);
    }
    let url = db.url().replacen(&format!("127.0.0.1:{port}"), &proxy.addr(), 1);
    // Made before any fault is armed: opening a config talks to the server.
    let specs: Vec<SinkSpec> = tables
        .iter()
        .map(|t| {
            let cfg = JdbcConfig::new(&url, t).unwrap().batch_size(300).retry(RetryPolicy {
                initial: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
                deadline: Duration::from_secs(20),
            });
            SinkSpec::builder(format!("cut-{t}"), cfg)
                .append_only(false)
                .commit(CommitPolicy { max_changes: Some(1_000), interval: Duration::ZERO })
                .build()
                .unwrap()
        })
        .collect();
    run_with_faults(
        &proxy,
        &[Fault::CutAt(0.03), Fault::CutAt(0.4), Fault::CutAt(0.8)],
        |i| {
            run(&history, std::slice::from_ref(&specs[i]), 2).map(|e| {
                assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
                e.to_string()
            })
        },
        |i| assert_eq!(read_all_rows(&mut sql.borrow_mut(), &tables[i]), want, "{db:?}: table {}", tables[i]),
    );
    for t in &tables {
        sql.borrow_mut().exec(&format!("DROP TABLE {t}"));
    }
}

#[test]
fn postgres_connections_cut_mid_transaction_lose_and_duplicate_nothing() {
    connections_cut_mid_transaction(Db::Pg);
}

#[test]
fn mysql_connections_cut_mid_transaction_lose_and_duplicate_nothing() {
    connections_cut_mid_transaction(Db::My);
}

/// The answer to a `COMMIT` is lost (the transaction applied; the connection is cut before the
/// sink hears of it): the retry finds its own progress row and applies nothing twice.
fn ambiguous_commit_applies_once(db: Db) {
    use common::proxy::{run_with_faults, Fault, FaultProxy};
    let port = db.url().split("@127.0.0.1:").nth(1).unwrap().split('/').next().unwrap().to_string();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{port}"));
    let history: Vec<(Row, u64, isize)> =
        (0..2_000u32).map(|i| (Row { k: i % 300, v: i, s: format!("r{i}") }, u64::from(i / 100), 1)).collect();
    let mut want: Vec<Row> = history.iter().map(|h| h.0.clone()).collect();
    want.sort();
    let sql = std::cell::RefCell::new(Sql::connect(db));
    let table = table_name("amb");
    create_row_table(&mut sql.borrow_mut(), db, &table, false);
    let url = db.url().replacen(&format!("127.0.0.1:{port}"), &proxy.addr(), 1);
    // Made before the fault is armed: opening a config talks to the server.
    let cfg = JdbcConfig::new(&url, &table).unwrap().retry(RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        deadline: Duration::from_secs(20),
    });
    let spec = SinkSpec::builder(format!("amb-{table}"), cfg).append_only(false).build().unwrap();
    run_with_faults(
        &proxy,
        // The `COMMIT` statement itself, not the session's `READ COMMITTED`: PostgreSQL's simple
        // query ends in a NUL, MySQL's COM_QUERY starts with 0x03.
        &[Fault::LoseAnswerTo(if db == Db::Pg { b"COMMIT\0" } else { b"\x03COMMIT" })],
        |_| {
            run(&history, std::slice::from_ref(&spec), 1).map(|e| {
                assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
                e.to_string()
            })
        },
        |_| assert_eq!(read_all_rows(&mut sql.borrow_mut(), &table), want, "{db:?}: every row once"),
    );
    sql.borrow_mut().exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_ambiguous_commit_applies_once() {
    ambiguous_commit_applies_once(Db::Pg);
}

#[test]
fn mysql_ambiguous_commit_applies_once() {
    ambiguous_commit_applies_once(Db::My);
}

/// A progress table that another program made, with other column types, is refused with its
/// name and the option that names another — not a panic on the first row read.
#[test]
fn postgres_a_foreign_progress_table_is_refused_by_name() {
    let db = Db::Pg;
    let mut sql = Sql::connect(db);
    let (table, progress) = (table_name("fp"), table_name("fp_progress"));
    create_row_table(&mut sql, db, &table, true);
    sql.exec(&format!(
        "CREATE TABLE {progress} (sink_name text, target text, generation text, worker text, peers text, \
         base text, frontier text, PRIMARY KEY (sink_name, target, generation, worker))"
    ));
    let sink = format!("fp-{table}");
    sql.exec(&format!("INSERT INTO {progress} VALUES ('{sink}', 'public.{table}', 'g0', 'w0', '1', NULL, '3')"));
    let mut cfg = config(db, &table);
    cfg.progress_table = progress.clone();
    let spec = SinkSpec::builder(sink, cfg).upsert().primary_key(["k"]).build();
    let e = match spec {
        Err(e) => e,
        Ok(spec) => run(&keyed_history(3, 5, 3, 4), &[spec], 1).expect("the sink must stop"),
    };
    assert!(e.to_string().contains(&progress), "{e}");
    sql.exec(&format!("DROP TABLE {table}"));
    sql.exec(&format!("DROP TABLE {progress}"));
}

/// A private PostgreSQL server (its own data directory and port, as `scripts/services.d/postgres.sh`
/// starts the shared one), so a test can crash and restart it without touching the shared server.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display().to_string();
        let sh = |cmd: &str| {
            let out = std::process::Command::new("sh").arg("-c").arg(cmd).output().unwrap();
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(&format!("chown postgres {d} && chmod 700 {d}"));
        sh(&format!("runuser -u postgres -- {PG_BIN}/initdb -D {d}/data -U postgres --auth=trust -E UTF8 >/dev/null"));
        let pg = PrivatePostgres { dir, port };
        pg.start_server();
        pg
    }

    fn start_server(&self) {
        let d = self.dir.path().display();
        let cmd = format!(
            "runuser -u postgres -- {PG_BIN}/pg_ctl -D {d}/data -l {d}/log -w -t 60 \
             -o '-p {} -k {d} -c listen_addresses=127.0.0.1' start >/dev/null",
            self.port
        );
        let out = std::process::Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(out.status.success(), "starting the private PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Crashes the server — SIGQUIT to the postmaster, by its PID: every backend exits at once,
    /// nothing is flushed, the next start recovers from the WAL — and starts it again.
    fn crash_and_restart(&self) {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap().lines().next().unwrap().trim().to_string();
        let ok = std::process::Command::new("kill").args(["-QUIT", &pid]).status().unwrap().success();
        assert!(ok, "kill -QUIT {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while common::service::alive(&pid) {
            assert!(std::time::Instant::now() < deadline, "postmaster {pid} did not exit");
            std::thread::sleep(Duration::from_millis(20)); // poll interval while the server exits
        }
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let d = self.dir.path().display();
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("runuser -u postgres -- {PG_BIN}/pg_ctl -D {d}/data -m immediate -w stop >/dev/null 2>&1"))
            .status();
    }
}

/// A private server of either kind, to crash and restart.
enum Private {
    Pg(PrivatePostgres),
    My(common::service::PrivateService, u16),
}

impl Private {
    fn start(db: Db) -> Private {
        match db {
            Db::Pg => Private::Pg(PrivatePostgres::start()),
            Db::My => {
                let port = common::service::free_port();
                let s = common::service::PrivateService::start(
                    "mariadb",
                    &[("DSINK_MARIADB_PORT", port.to_string())],
                    None,
                );
                Private::My(s, port)
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Private::Pg(pg) => pg.url(),
            Private::My(_, port) => format!("mysql://root@127.0.0.1:{port}/dsink"),
        }
    }

    /// PostgreSQL: SIGQUIT to the postmaster (every backend exits, WAL recovery on restart);
    /// MariaDB: SIGKILL to mariadbd (InnoDB crash recovery on restart).
    fn crash_and_restart(&self) {
        match self {
            Private::Pg(pg) => pg.crash_and_restart(),
            Private::My(s, _) => s.kill_and_restart(),
        }
    }
}

/// The server crashes mid-stream (once part of the history is committed) and restarts on its
/// data: the sink reconnects and retries, or stops with a retriable error and a rerun finishes;
/// every row of a keyless table is there exactly once (what a commit wrote survives the crash
/// with its progress row; what it had not committed is rolled back and written again).
fn server_crash_and_restart_mid_stream(db: Db) {
    let server = Private::start(db);
    let mut sql = Sql::connect_to(db, &server.url());
    let table = table_name("crash");
    create_row_table(&mut sql, db, &table, false);
    let mut rng = Rng::new(48);
    let history: Vec<(Row, u64, isize)> = (0..40_000)
        .map(|i| (Row { k: rng.below(2_000) as u32, v: i, s: format!("r{i}") }, i as u64 / 1_000, 1))
        .collect();
    let mut want: Vec<Row> = history.iter().map(|h| h.0.clone()).collect();
    want.sort();
    let cfg = JdbcConfig::new(&server.url(), &table).unwrap().batch_size(500).retry(RetryPolicy {
        initial: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        deadline: Duration::from_secs(60),
    });
    let spec = SinkSpec::builder(format!("crash-{table}"), cfg)
        .append_only(false)
        // Small commits (each a durable transaction) keep the run long enough for the crash to
        // come in its middle, however fast the rows themselves go.
        .commit(CommitPolicy { max_changes: Some(300), interval: Duration::ZERO })
        .build()
        .unwrap();
    let (h2, s2) = (history.clone(), spec.clone());
    let first = std::thread::spawn(move || run(&h2, &[s2], 2));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n: usize = sql.rows(&format!("SELECT count(*) FROM {table}"))[0][0].as_ref().unwrap().parse().unwrap();
        if n >= want.len() / 5 {
            assert!(n < want.len(), "the crash came before the end");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sink never committed a fifth of the history");
        std::thread::sleep(Duration::from_millis(5)); // poll interval while waiting for the condition
    }
    drop(sql);
    server.crash_and_restart();
    let first = first.join().unwrap();
    eprintln!("{db:?}: {}", first.as_ref().map_or("rode through".to_string(), |e| format!("stopped: {e}")));
    if let Some(e) = first {
        assert_eq!(e.kind(), ErrorKind::Retriable, "{e}");
        assert!(run(&history, &[spec], 2).is_none(), "the rerun after `{e}` completes");
    }
    let mut sql = Sql::connect_to(db, &server.url());
    assert_eq!(read_all_rows(&mut sql, &table), want, "{db:?}: every row exactly once");
}

#[test]
fn postgres_server_crash_and_restart_mid_stream_loses_and_duplicates_nothing() {
    server_crash_and_restart_mid_stream(Db::Pg);
}

#[test]
fn mysql_server_crash_and_restart_mid_stream_loses_and_duplicates_nothing() {
    server_crash_and_restart_mid_stream(Db::My);
}
