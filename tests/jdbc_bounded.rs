//! Bounded transactions of the `jdbc` connector against real servers: PostgreSQL
//! (`DSINK_POSTGRES_URL`) and MariaDB (`DSINK_MYSQL_URL`).
//!
//! A time larger than `transaction.max.records` is committed in parts inside the time, each part
//! with a progress row recording the time and how many of its changes are in (`partial`); a
//! restart skips that many of the re-delivered time. The tests drive a [`JdbcWriter`] directly
//! (so they can look at the table between two `write` calls of one time, and drop the writer in
//! the middle of a time as a crash would) or through the sink operator, and compare what they
//! read back with their own SQL against the reference computed from the history alone
//! (`common`). A missing server variable fails the test.

mod common;
mod drive;

use common::{expected_changes, keyed_history, service_env, state_before, tracked, unique_name, Row};
use differential_sinks::connectors::jdbc::{JdbcConfig, JdbcWriter};
use differential_sinks::delivery::RetryPolicy;
use differential_sinks::key::Key;
use differential_sinks::operators::{Change, Frontier, SinkWriter, WorkerContext};
use differential_sinks::{CommitPolicy, ErrorKind, SinkSpec};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Runs statements; panics on an error.
    fn exec(self, sql: &str) {
        let url = self.url();
        Db::rt().block_on(async {
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

    /// The rows of a query whose columns are all integers (NULL → `None`).
    fn ints(self, sql: &str) -> Vec<Vec<Option<i64>>> {
        let url = self.url();
        Db::rt().block_on(async {
            match self {
                Db::Pg => {
                    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL");
                    tokio::spawn(conn);
                    let rows = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.into_iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                Some((0..r.len()).map(|i| r.get(i).map(|v| v.parse().unwrap())).collect())
                            }
                            _ => None,
                        })
                        .collect()
                }
                Db::My => {
                    use mysql_async::prelude::Queryable;
                    let mut c = mysql_async::Conn::from_url(&url).await.expect("MariaDB");
                    let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.disconnect().await.unwrap();
                    rows.into_iter()
                        .map(|r| {
                            r.unwrap()
                                .into_iter()
                                .map(|v| match v {
                                    mysql_async::Value::NULL => None,
                                    mysql_async::Value::Bytes(b) => {
                                        Some(String::from_utf8(b).unwrap().parse().unwrap())
                                    }
                                    mysql_async::Value::Int(i) => Some(i),
                                    mysql_async::Value::UInt(u) => Some(u as i64),
                                    other => panic!("{sql}: unexpected {other:?}"),
                                })
                                .collect()
                        })
                        .collect()
                }
            }
        })
    }

    /// Every row `(k, v, s)` of `table`, duplicates kept, sorted.
    fn rows(self, table: &str) -> Vec<Row> {
        let (url, sql) = (self.url(), format!("SELECT k, v, s FROM {table}"));
        let mut out: Vec<Row> = Db::rt().block_on(async {
            match self {
                Db::Pg => {
                    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL");
                    tokio::spawn(conn);
                    let rows = c.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    rows.iter()
                        .map(|r| Row { k: r.get::<_, i32>(0) as u32, v: r.get::<_, i64>(1) as u32, s: r.get(2) })
                        .collect()
                }
                Db::My => {
                    use mysql_async::prelude::Queryable;
                    let mut c = mysql_async::Conn::from_url(&url).await.expect("MariaDB");
                    let rows: Vec<(i64, i64, String)> = c.query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.disconnect().await.unwrap();
                    rows.into_iter().map(|(k, v, s)| Row { k: k as u32, v: v as u32, s }).collect()
                }
            }
        });
        out.sort();
        out
    }
}

/// A fresh table `(k, v, s)`, with `k` as primary key unless `append`.
fn create_table(db: Db, prefix: &str, append: bool) -> String {
    let table = unique_name(prefix, '_');
    let key = if append { "NOT NULL" } else { "PRIMARY KEY" };
    db.exec(&format!("CREATE TABLE {table} (k integer {key}, v bigint NOT NULL, s {} NOT NULL)", db.text()));
    table
}

/// The sink `table` with its own progress table `<table>_p`, committing early at `bound` rows.
fn spec(db: Db, table: &str, append: bool, bound: u64) -> (JdbcConfig, SinkSpec) {
    let mut c = JdbcConfig::new(&db.url(), table).unwrap().max_transaction(bound, 1 << 30).retry(RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        deadline: Duration::from_secs(30),
    });
    c.progress_table = format!("{table}_p");
    let b = SinkSpec::builder(table, c.clone()).commit(CommitPolicy { max_changes: None, interval: Duration::ZERO });
    let b = if append { b.append_only(false) } else { b.upsert().primary_key(["k"]) };
    (c, b.build().unwrap())
}

fn writer(db: Db, table: &str, append: bool, bound: u64) -> JdbcWriter<Row> {
    let (c, s) = spec(db, table, append, bound);
    JdbcWriter::open(&c, s.settings()).unwrap()
}

fn resume(w: &mut JdbcWriter<Row>, index: usize, peers: usize) -> differential_sinks::Result<Frontier<u64>> {
    SinkWriter::<Key, Row, u64>::resume(w, WorkerContext::new(index, peers))
}

/// `(worker, frontier, partial)` of every progress row of `table`'s sink.
fn progress(db: Db, table: &str) -> Vec<(i64, Option<i64>, i64)> {
    db.ints(&format!("SELECT worker, frontier, partial FROM {table}_p ORDER BY generation, worker"))
        .into_iter()
        .map(|r| (r[0].unwrap(), r[1], r[2].unwrap()))
        .collect()
}

fn count(db: Db, table: &str) -> i64 {
    db.ints(&format!("SELECT count(*) FROM {table}"))[0][0].unwrap()
}

fn change(k: u32, before: Option<Row>, after: Option<Row>) -> Change<Key, Row> {
    Change { key: Key::from_bytes(k.to_string().into_bytes()), before, after }
}

fn row(k: u32, v: u32) -> Row {
    Row { k, v, s: format!("row {k} v{v}") }
}

/// Writes `changes` as time `t` in calls of `chunk` changes.
fn write_chunks(w: &mut JdbcWriter<Row>, t: u64, changes: &[Change<Key, Row>], chunk: usize) {
    for part in changes.chunks(chunk) {
        let mut v = part.to_vec();
        SinkWriter::<Key, Row, u64>::write(w, &t, &mut v).unwrap();
    }
}

fn commit(w: &mut JdbcWriter<Row>, upper: u64) {
    SinkWriter::<Key, Row, u64>::commit(w, &Frontier::at(upper)).unwrap();
}

/// One time of 500 inserts, bound 40 rows, handed over in calls of 50: after each call the
/// table already holds the changes the progress row says are in (as many rows as `partial`),
/// `partial` grows from call to call, and the commit of the time leaves exactly the 500 rows.
fn large_time_is_committed_in_parts(db: Db) {
    let table = create_table(db, "bt_parts", true);
    let mut w = writer(db, &table, true, 40);
    assert_eq!(resume(&mut w, 0, 1).unwrap(), Frontier::at(0));
    let changes: Vec<_> = (0..500).map(|k| change(k, None, Some(row(k, 1)))).collect();
    let mut seen = Vec::new();
    for part in changes.chunks(50) {
        write_chunks(&mut w, 0, part, 50);
        let p = progress(db, &table);
        assert_eq!(p.len(), 1, "{p:?}");
        let (_, frontier, partial) = p[0];
        assert_eq!(frontier, Some(0), "an early commit records the time being written: {p:?}");
        assert_eq!(count(db, &table), partial, "the table holds exactly the changes the progress row counts");
        assert!(seen.last().is_none_or(|l| *l <= partial), "partial never goes back: {seen:?} then {partial}");
        seen.push(partial);
    }
    seen.dedup();
    assert!(seen.len() >= 8, "several commits inside the one time: partial counts {seen:?}");
    assert!(seen.iter().all(|p| *p > 0 && *p < 500), "{seen:?}");
    commit(&mut w, 1);
    assert_eq!(progress(db, &table), vec![(0, Some(1), 0)]);
    let want: Vec<Row> = (0..500).map(|k| row(k, 1)).collect();
    assert_eq!(db.rows(&table), want, "each insert once");
    drop(w);
    db.exec(&format!("DROP TABLE {table}"));
    db.exec(&format!("DROP TABLE {table}_p"));
}

#[test]
fn postgres_large_time_is_committed_in_parts() {
    large_time_is_committed_in_parts(Db::Pg);
}

#[test]
fn mysql_large_time_is_committed_in_parts() {
    large_time_is_committed_in_parts(Db::My);
}

/// A history whose time 1 updates, deletes and inserts many keys; the writer of the first run is
/// dropped (as a crash would) after several early commits inside time 1. The table then holds
/// time 0 and exactly the first `partial` changes of time 1 (in the order they were handed over);
/// a second writer resumes at time 1, is handed all of it again (cut into other chunks) and ends
/// with the reference state — every change once, for the append-only table too.
fn crash_inside_a_time(db: Db, append: bool) {
    let table = create_table(db, "bt_crash", append);
    let mut history = Vec::new();
    for k in 0..300u32 {
        history.push((row(k, 0), 0u64, 1isize));
    }
    if append {
        for k in 300..700u32 {
            history.push((row(k, 1), 1, 1));
        }
    } else {
        for k in 0..150u32 {
            history.push((row(k, 0), 1, -1));
            history.push((row(k, 1), 1, 1));
        }
        for k in 150..200u32 {
            history.push((row(k, 0), 1, -1));
        }
        for k in 300..450u32 {
            history.push((row(k, 1), 1, 1));
        }
    }
    // The changes of each time, in key order, as the operator hands them over.
    let expected = expected_changes(&history);
    let of_time = |t: u64| -> Vec<Change<Key, Row>> {
        expected.range((t, 0)..(t + 1, 0)).map(|((_, k), (b, a))| change(*k, b.clone(), a.clone())).collect()
    };
    let (t0, t1) = (of_time(0), of_time(1));
    assert!(t1.len() >= 300, "time 1 is many times the bound: {}", t1.len());

    let mut w = writer(db, &table, append, 25);
    resume(&mut w, 0, 1).unwrap();
    write_chunks(&mut w, 0, &t0, 100);
    commit(&mut w, 1);
    write_chunks(&mut w, 1, &t1[..200], 30);
    drop(w);
    let p = progress(db, &table);
    let partial = p[0].2;
    assert_eq!(p[0].1, Some(1), "{p:?}");
    assert!((100..200).contains(&partial), "several early commits inside time 1: {p:?}");
    // What the table holds: time 0, then the first `partial` changes of time 1.
    let mut state: BTreeMap<u32, Row> = state_before(&history, 1);
    let mut appended: Vec<Row> = state.values().cloned().collect();
    for c in &t1[..partial as usize] {
        let k: u32 = std::str::from_utf8(c.key.bytes().unwrap()).unwrap().parse().unwrap();
        match &c.after {
            Some(r) => {
                state.insert(k, r.clone());
                appended.push(r.clone());
            }
            None => {
                state.remove(&k);
            }
        }
    }
    appended.sort();
    let got = db.rows(&table);
    if append {
        assert_eq!(got, appended, "after the crash: time 0 and the committed part of time 1");
    } else {
        assert_eq!(got, state.into_values().collect::<Vec<_>>(), "after the crash: the committed part");
    }

    let mut w = writer(db, &table, append, 25);
    assert_eq!(resume(&mut w, 0, 1).unwrap(), Frontier::at(1), "resumes inside time 1");
    write_chunks(&mut w, 1, &t1, 70);
    commit(&mut w, 2);
    assert_eq!(progress(db, &table), vec![(0, Some(2), 0)]);
    let got = db.rows(&table);
    if append {
        let mut want: Vec<Row> = history.iter().filter(|h| h.2 > 0).map(|h| h.0.clone()).collect();
        want.sort();
        assert_eq!(got, want, "every insert once");
    } else {
        assert_eq!(got, state_before(&history, 2).into_values().collect::<Vec<_>>());
    }
    drop(w);
    db.exec(&format!("DROP TABLE {table}"));
    db.exec(&format!("DROP TABLE {table}_p"));
}

#[test]
fn postgres_crash_inside_a_time_resumes_exactly() {
    crash_inside_a_time(Db::Pg, false);
    crash_inside_a_time(Db::Pg, true);
}

#[test]
fn mysql_crash_inside_a_time_resumes_exactly() {
    crash_inside_a_time(Db::My, false);
    crash_inside_a_time(Db::My, true);
}

/// The progress table `<table>_p` as versions before the `partial` column made it.
fn create_old_progress_table(db: Db, table: &str) {
    db.exec(&match db {
        Db::Pg => format!(
            "CREATE TABLE {table}_p (sink_name text NOT NULL, target text NOT NULL, generation bigint NOT NULL, \
             worker integer NOT NULL, peers integer NOT NULL, base numeric(20,0), frontier numeric(20,0), \
             updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink_name, target, generation, worker))"
        ),
        Db::My => format!(
            "CREATE TABLE {table}_p (sink_name VARCHAR(191) NOT NULL, target VARCHAR(191) NOT NULL, \
             generation BIGINT NOT NULL, worker INT NOT NULL, peers INT NOT NULL, base DECIMAL(20,0) NULL, \
             frontier DECIMAL(20,0) NULL, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (sink_name, target, generation, worker)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ),
    });
}

/// A progress table made before the `partial` column existed (with a row of this sink) is
/// taken over: the column is added, the old row reads as a whole time, and commits go on.
fn old_progress_table_is_migrated(db: Db) {
    let table = create_table(db, "bt_mig", true);
    create_old_progress_table(db, &table);
    // The target is recorded as `schema.table`: PostgreSQL's `public`, MySQL's database.
    let target = match db {
        Db::Pg => format!("'public.{table}'"),
        Db::My => format!("CONCAT(DATABASE(), '.{table}')"),
    };
    db.exec(&format!(
        "INSERT INTO {table}_p (sink_name, target, generation, worker, peers, base, frontier) \
         VALUES ('{table}', {target}, 0, 0, 1, 0, 5)"
    ));
    let mut w = writer(db, &table, true, 10);
    assert_eq!(resume(&mut w, 0, 1).unwrap(), Frontier::at(5), "the old row is read");
    assert_eq!(progress(db, &table), vec![(0, Some(5), 0)], "the column was added, reading 0");
    let changes: Vec<_> = (0..35).map(|k| change(k, None, Some(row(k, 5)))).collect();
    write_chunks(&mut w, 5, &changes, 35);
    assert_eq!(progress(db, &table), vec![(0, Some(5), 30)], "early commits record partial counts");
    commit(&mut w, 6);
    assert_eq!(progress(db, &table), vec![(0, Some(6), 0)]);
    // The layout columns were added too: the old row read routing 0 (not recorded), and the
    // writer's commits record its layout (the default context's: routing 0, format 1).
    let layout = db.ints(&format!("SELECT layout_routing, layout_format FROM {table}_p"));
    assert_eq!(layout, vec![vec![Some(0), Some(1)]]);
    assert_eq!(db.rows(&table), (0..35).map(|k| row(k, 5)).collect::<Vec<_>>());
    // A second writer finds the column there and changes nothing.
    let mut again = writer(db, &table, true, 10);
    drop(w);
    assert_eq!(resume(&mut again, 0, 1).unwrap(), Frontier::at(6));
    drop(again);
    db.exec(&format!("DROP TABLE {table}"));
    db.exec(&format!("DROP TABLE {table}_p"));
}

#[test]
fn postgres_old_progress_table_is_migrated() {
    old_progress_table_is_migrated(Db::Pg);
}

#[test]
fn mysql_old_progress_table_is_migrated() {
    old_progress_table_is_migrated(Db::My);
}

/// While a worker's progress row holds part of a time, a restart with another worker count is
/// refused (saying to restart with the old count); once the workers committed a whole time, the
/// new count is taken.
fn worker_count_change_waits_for_whole_times(db: Db) {
    let table = create_table(db, "bt_peers", true);
    let inserts = |from: u32, n: u32, t: u64| -> Vec<Change<Key, Row>> {
        (from..from + n).map(|k| change(k, None, Some(row(k, t as u32)))).collect()
    };
    let (mut w0, mut w1) = (writer(db, &table, true, 10), writer(db, &table, true, 10));
    resume(&mut w0, 0, 2).unwrap();
    resume(&mut w1, 1, 2).unwrap();
    commit(&mut w1, 1);
    write_chunks(&mut w0, 0, &inserts(0, 25, 0), 25);
    drop((w0, w1));
    assert!(progress(db, &table).iter().any(|r| r.2 > 0), "{:?}", progress(db, &table));

    let mut one = writer(db, &table, true, 10);
    let e = resume(&mut one, 0, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Resume, "{e}");
    assert!(e.to_string().contains("2 workers") && e.to_string().contains("transaction.max.records"), "{e}");
    drop(one);

    // The old count finishes time 0 (worker 0 skips what it committed), then the new count runs.
    let (mut w0, mut w1) = (writer(db, &table, true, 10), writer(db, &table, true, 10));
    assert_eq!(resume(&mut w0, 0, 2).unwrap(), Frontier::at(0));
    resume(&mut w1, 1, 2).unwrap();
    write_chunks(&mut w0, 0, &inserts(0, 25, 0), 7);
    commit(&mut w0, 1);
    drop((w0, w1));
    let mut one = writer(db, &table, true, 10);
    assert_eq!(resume(&mut one, 0, 1).unwrap(), Frontier::at(1));
    write_chunks(&mut one, 1, &inserts(100, 15, 1), 15);
    commit(&mut one, 2);
    drop(one);
    let mut want: Vec<Row> = (0..25).map(|k| row(k, 0)).chain((100..115).map(|k| row(k, 1))).collect();
    want.sort();
    assert_eq!(db.rows(&table), want, "each insert once");
    db.exec(&format!("DROP TABLE {table}"));
    db.exec(&format!("DROP TABLE {table}_p"));
}

#[test]
fn postgres_worker_count_change_waits_for_whole_times() {
    worker_count_change_waits_for_whole_times(Db::Pg);
}

#[test]
fn mysql_worker_count_change_waits_for_whole_times() {
    worker_count_change_waits_for_whole_times(Db::My);
}

/// Through the sink operator on 2 workers, with large times and a bound of 8 rows, into a
/// progress table of the earlier format (both workers add the column at once): the upsert table
/// equals the reference, and a trigger's log of the progress-row writes shows one frontier
/// written several times by a worker — commits inside a time.
fn operator_with_tiny_bound_equals_the_reference(db: Db) {
    let table = create_table(db, "bt_op", false);
    create_old_progress_table(db, &table);
    db.exec(&format!("CREATE TABLE {table}_log (worker integer, frontier bigint)"));
    match db {
        Db::Pg => {
            db.exec(&format!(
                "CREATE FUNCTION {table}_f() RETURNS trigger AS $$ BEGIN \
                 INSERT INTO {table}_log VALUES (NEW.worker, NEW.frontier); RETURN NEW; END $$ LANGUAGE plpgsql"
            ));
            db.exec(&format!(
                "CREATE TRIGGER {table}_t AFTER INSERT OR UPDATE ON {table}_p FOR EACH ROW EXECUTE FUNCTION {table}_f()"
            ));
        }
        Db::My => {
            for (name, event) in [("ti", "INSERT"), ("tu", "UPDATE")] {
                db.exec(&format!(
                    "CREATE TRIGGER {table}_{name} AFTER {event} ON {table}_p FOR EACH ROW \
                     INSERT INTO {table}_log VALUES (NEW.worker, NEW.frontier)"
                ));
            }
        }
    }
    let history = keyed_history(41, 400, 4, 300);
    let (_, spec) = spec(db, &table, false, 8);
    let err = drive::Drive::new(2).run_many(&history, &[spec]).first();
    assert!(err.is_none(), "{err:?}");
    let want: Vec<Row> = state_before(&history, u64::MAX).into_values().collect();
    assert_eq!(db.rows(&table), want);
    assert!(progress(db, &table).iter().all(|r| r.1.is_none() && r.2 == 0), "{:?}", progress(db, &table));
    let writes = db.ints(&format!(
        "SELECT worker, frontier, count(*) FROM {table}_log WHERE frontier IS NOT NULL GROUP BY worker, frontier"
    ));
    assert!(
        writes.iter().any(|r| r[2].unwrap() >= 3),
        "some time committed in several transactions by one worker: (worker, frontier, writes) {writes:?}"
    );
    if db == Db::Pg {
        db.exec(&format!("DROP TABLE {table}_p; DROP FUNCTION {table}_f()"));
    } else {
        db.exec(&format!("DROP TABLE {table}_p"));
    }
    db.exec(&format!("DROP TABLE {table}"));
    db.exec(&format!("DROP TABLE {table}_log"));
}

#[test]
fn postgres_operator_with_tiny_bound_equals_the_reference() {
    operator_with_tiny_bound_equals_the_reference(Db::Pg);
}

#[test]
fn mysql_operator_with_tiny_bound_equals_the_reference() {
    operator_with_tiny_bound_equals_the_reference(Db::My);
}

/// Rows are encoded once, into their cells, on the worker that produced them: their `Serialize`
/// runs there only (once for the key, once for the cells), never after the exchange, and the
/// table ends in the state computed from the input.
fn rows_are_encoded_once_on_the_worker_that_produced_them(db: Db) {
    let table = create_table(db, "encode_once", false);
    let (_, spec) = spec(db, &table, false, 1 << 20);
    let seen = tracked::run(spec, 3);
    tracked::assert_encoded_once(&seen, 3);
    assert_eq!(db.rows(&table), tracked::reference(3));
}

#[test]
fn postgres_rows_are_encoded_once_on_the_worker_that_produced_them() {
    rows_are_encoded_once_on_the_worker_that_produced_them(Db::Pg);
}

#[test]
fn mysql_rows_are_encoded_once_on_the_worker_that_produced_them() {
    rows_are_encoded_once_on_the_worker_that_produced_them(Db::My);
}

/// Workers starting together on a database without the progress table all create it (or find it
/// created): none stops on the other's creation. PostgreSQL's `CREATE TABLE IF NOT EXISTS` may
/// still fail when another session creates the table at the same moment — on the table's name
/// or its row type's — which the sink must take as "it exists".
fn workers_creating_the_progress_table_at_once_all_start(db: Db) {
    const WORKERS: usize = 6;
    for round in 0..40 {
        let table = create_table(db, "create_race", false);
        let barrier = std::sync::Barrier::new(WORKERS);
        let results: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (table, barrier) = (&table, &barrier);
                    s.spawn(move || {
                        let mut writer = writer(db, table, false, 1 << 20);
                        barrier.wait();
                        resume(&mut writer, w, WORKERS).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect()
        });
        assert!(results.is_empty(), "round {round}: workers stopped creating the progress table: {results:?}");
    }
}

#[test]
fn postgres_workers_creating_the_progress_table_at_once_all_start() {
    workers_creating_the_progress_table_at_once_all_start(Db::Pg);
}

#[test]
fn mysql_workers_creating_the_progress_table_at_once_all_start() {
    workers_creating_the_progress_table_at_once_all_start(Db::My);
}
