//! Throughput of the `jdbc` sink against plain client baselines, on PostgreSQL and MySQL.
//!
//! ```text
//! cargo run --release --features jdbc --example jdbc_bench -- [--rows 200000] [--times 10] [--workers 1] [--slow-rows 20000] [--sink-tls MODE]
//! ```
//!
//! `--sink-tls require|verify-ca|verify-full` runs the sink's sessions over TLS (the baselines stay
//! plain), trusting the CA of `DSINK_TLS_CA` as `scripts/services start` writes it.
//!
//! Reads `DSINK_POSTGRES_URL` and `DSINK_MYSQL_URL` (either may be missing; that database is then
//! skipped). Runs on a freshly started server as on one it ran on before: it (re)creates its
//! table, `dsink_bench`, and its own progress table, `dsink_bench_progress` (dropped before every
//! sink case, so each starts from nothing; the default `dsink_progress` is not touched). Every case
//! writes the same rows — `(id bigint primary key, name, amount, note)`, about 100 bytes each —
//! into a fresh table, and prints rows/s and the ratio to the baseline:
//!
//! * the baseline: `COPY` (PostgreSQL) / multi-row `INSERT` of 2 000 rows (MySQL), the client's
//!   bulk path, in `--times` transactions of one time's rows each — as many commits as the sink
//!   makes, since each commit is a WAL flush (PostgreSQL) or a redo-log flush (InnoDB) on both
//!   sides. The same rows in a single transaction are printed too, for reference;
//! * row-at-a-time `INSERT … ON CONFLICT` / `ON DUPLICATE KEY UPDATE`, one prepared statement per
//!   row in one transaction (`--slow-rows` rows, as it is slow);
//! * the sink, through a dataflow: upsert (each path), an update pass over the filled table
//!   (a retraction and an insertion per key), and append-only; then the upsert's insert pass again
//!   with typed rows whose cells the writer renders (the dead-letter policy keeps rows typed), to
//!   compare with rows rendered where they are produced. Its time includes the dataflow
//!   (routing, consolidation, key extraction), encoding and one commit per logical time, each
//!   commit also locking and writing the worker's progress row. The update pass is a second sink
//!   over the filled table whose every row replaces an existing one.
//!
//! Fixed costs stay outside every clock, on both sides: the baseline's session is opened before
//! it, and the sink's clock starts once every worker has built its dataflow — the writer has then
//! connected, read the table's description and its progress — and holds its share of the rows,
//! built (owned, as a dataflow input takes them) beforehand; it stops when the last worker has
//! seen every time committed, before the dataflow is torn down. That setup is printed apart.

use differential_dataflow::input::Input;
use differential_sinks::connectors::jdbc::{JdbcConfig, PgUpsertMethod};
use differential_sinks::{SinkCollection, SinkSpec, ViolationPolicy};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use timely::dataflow::operators::probe::Probe;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Order {
    id: u64,
    name: String,
    amount: i64,
    note: String,
}

fn rows(n: u64, version: i64) -> Vec<Order> {
    (0..n)
        .map(|i| Order {
            id: i,
            name: format!("customer-{i}"),
            amount: (i as i64 * 7919 + version) % 100_000,
            note: format!("note {version} {:0>56}", i * 31),
        })
        .collect()
}

struct Args {
    rows: u64,
    times: u64,
    workers: usize,
    slow_rows: u64,
    sink_tls: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args { rows: 200_000, times: 10, workers: 1, slow_rows: 20_000, sink_tls: None };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), v) {
            ("--rows", Some(v)) => a.rows = v,
            ("--times", Some(v)) => a.times = v.max(1),
            ("--workers", Some(v)) => a.workers = v.max(1) as usize,
            ("--slow-rows", Some(v)) => a.slow_rows = v,
            ("--sink-tls", _) if i + 1 < argv.len() => a.sink_tls = Some(argv[i + 1].clone()),
            (other, _) => {
                eprintln!("unknown or incomplete argument `{other}`; see the header of examples/jdbc_bench.rs");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Pg,
    My,
}

fn ddl(db: Db, table: &str) -> String {
    match db {
        Db::Pg => format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, amount bigint, note text)"
        ),
        Db::My => format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(64) NOT NULL, amount bigint, note varchar(200))"
        ),
    }
}

struct Client {
    rt: tokio::runtime::Runtime,
    pg: Option<tokio_postgres::Client>,
    my: Option<mysql_async::Conn>,
}

impl Client {
    fn new(db: Db, url: &str) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (pg, my) = rt.block_on(async {
            match db {
                Db::Pg => {
                    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                    tokio::spawn(conn);
                    (Some(c), None)
                }
                Db::My => (
                    None,
                    Some(mysql_async::Conn::new(mysql_async::Opts::from_url(url).unwrap()).await.expect("connect")),
                ),
            }
        });
        Client { rt, pg, my }
    }

    fn exec(&mut self, sql: &str) {
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            if let Some(c) = pg {
                c.batch_execute(sql).await.expect(sql);
            }
            if let Some(c) = my {
                for s in sql.split("; ") {
                    c.query_drop(s).await.expect(s);
                }
            }
        })
    }

    fn count(&mut self, table: &str) -> u64 {
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            let sql = format!("SELECT count(*) FROM {table}");
            if let Some(c) = pg {
                return c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) as u64;
            }
            let c = my.as_mut().unwrap();
            c.query_first::<u64, _>(sql).await.unwrap().unwrap()
        })
    }

    /// The bulk baseline: COPY (PostgreSQL) or multi-row INSERTs (MySQL), one transaction per
    /// `per_txn` rows.
    fn bulk(&mut self, table: &str, rows: &[Order], per_txn: usize) {
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            for txn in rows.chunks(per_txn.max(1)) {
                if let Some(c) = pg {
                    use futures_util::SinkExt;
                    c.batch_execute("BEGIN").await.unwrap();
                    let sink = c
                        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} (id, name, amount, note) FROM STDIN"))
                        .await
                        .unwrap();
                    futures_util::pin_mut!(sink);
                    let mut buf = Vec::with_capacity(1 << 20);
                    for r in txn {
                        use std::io::Write;
                        writeln!(buf, "{}\t{}\t{}\t{}", r.id, r.name, r.amount, r.note).unwrap();
                        if buf.len() > 1 << 20 {
                            sink.send(bytes::Bytes::from(std::mem::take(&mut buf))).await.unwrap();
                        }
                    }
                    sink.send(bytes::Bytes::from(buf)).await.unwrap();
                    sink.finish().await.unwrap();
                    c.batch_execute("COMMIT").await.unwrap();
                }
                if let Some(c) = my.as_mut() {
                    c.query_drop("START TRANSACTION").await.unwrap();
                    for chunk in txn.chunks(2000) {
                        let sql = format!(
                            "INSERT INTO {table} (id, name, amount, note) VALUES {}",
                            vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
                        );
                        let params: Vec<mysql_async::Value> = chunk
                            .iter()
                            .flat_map(|r| {
                                [r.id.into(), r.name.as_str().into(), r.amount.into(), r.note.as_str().into()]
                            })
                            .collect();
                        c.exec_drop(sql, params).await.unwrap();
                    }
                    c.query_drop("COMMIT").await.unwrap();
                }
            }
        })
    }

    /// The row-at-a-time baseline: one prepared upsert per row, one transaction.
    fn row_at_a_time(&mut self, table: &str, rows: &[Order]) {
        let (rt, pg, my) = (&self.rt, &self.pg, &mut self.my);
        rt.block_on(async {
            if let Some(c) = pg {
                c.batch_execute("BEGIN").await.unwrap();
                let st = c
                    .prepare(&format!(
                        "INSERT INTO {table} (id, name, amount, note) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
                         SET name = EXCLUDED.name, amount = EXCLUDED.amount, note = EXCLUDED.note"
                    ))
                    .await
                    .unwrap();
                for r in rows {
                    c.execute(&st, &[&(r.id as i64), &r.name, &r.amount, &r.note])
                        .await
                        .unwrap();
                }
                c.batch_execute("COMMIT").await.unwrap();
            }
            if let Some(c) = my {
                c.query_drop("START TRANSACTION").await.unwrap();
                let st = c
                    .prep(format!(
                        "INSERT INTO {table} (id, name, amount, note) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                         name = VALUES(name), amount = VALUES(amount), note = VALUES(note)"
                    ))
                    .await
                    .unwrap();
                for r in rows {
                    c.exec_drop(&st, (r.id, r.name.as_str(), r.amount, r.note.as_str()))
                        .await
                        .unwrap();
                }
                c.query_drop("COMMIT").await.unwrap();
            }
        })
    }
}

/// Runs `updates` through a sink of `spec` on `workers` workers, spread over `times` times.
/// Returns the seconds from the moment every worker has built its dataflow (the sink's sessions
/// open, its progress read) and holds its share of the rows, until the last worker has seen every
/// time committed; and the seconds of that setup.
fn run_sink(spec: &SinkSpec, updates: &[(Order, isize)], times: u64, workers: usize) -> (f64, f64) {
    let updates = std::sync::Arc::new(updates.to_vec());
    let spec = spec.clone();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(workers));
    let clock = std::sync::Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
    let (b2, c2) = (barrier.clone(), clock.clone());
    let setup_started = Instant::now();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Order, isize>();
            let out = rows.sink(&spec).expect("sink");
            (input, out.committed.probe().0, out.handle)
        });
        // This worker's rows of each time, owned, made before the clock starts.
        let per_time = updates.len().div_ceil(times as usize).max(1);
        let mut mine: Vec<Vec<(Order, isize)>> = updates
            .chunks(per_time)
            .map(|chunk| chunk.iter().enumerate().filter(|(i, _)| i % peers == index).map(|(_, u)| u.clone()).collect())
            .collect();
        b2.wait();
        c2.lock().unwrap().0.get_or_insert_with(Instant::now);
        for (t, chunk) in mine.iter_mut().enumerate() {
            for (row, d) in chunk.drain(..) {
                input.update(row, d);
            }
            input.advance_to(t as u64 + 1);
            input.flush();
            worker.step();
        }
        input.close();
        while !probe.done() && !handle.is_failed() {
            worker.step();
        }
        if let Some(e) = handle.take_error() {
            panic!("sink failed: {e}");
        }
        let now = Instant::now();
        let mut c = c2.lock().unwrap();
        c.1 = Some(c.1.map_or(now, |t: Instant| t.max(now)));
    })
    .expect("timely");
    let (start, end) = *clock.lock().unwrap();
    let (start, end) = (start.expect("started"), end.expect("finished"));
    ((end - start).as_secs_f64(), (start - setup_started).as_secs_f64())
}

fn report(name: &str, rows: u64, secs: f64, baseline: Option<f64>) -> f64 {
    let rate = rows as f64 / secs;
    match baseline {
        Some(b) => println!("  {name:<56} {rows:>8} rows {secs:>8.3} s {rate:>12.0} rows/s  {:>6.2}x", rate / b),
        None => println!("  {name:<56} {rows:>8} rows {secs:>8.3} s {rate:>12.0} rows/s"),
    }
    rate
}

/// The progress table of the harness's sinks, dropped before each sink case.
const PROGRESS: &str = "dsink_bench_progress";

fn bench(db: Db, url: &str, args: &Args) {
    let name = if db == Db::Pg { "PostgreSQL" } else { "MySQL" };
    println!("{name}: {} rows, {} times, {} worker(s)", args.rows, args.times, args.workers);
    let table = "dsink_bench";
    let mut c = Client::new(db, url);
    let data = rows(args.rows, 1);
    let inserts: Vec<(Order, isize)> = data.iter().map(|r| (r.clone(), 1)).collect();
    let per_time = (args.rows as usize).div_ceil(args.times as usize).max(1);
    let bulk_name = if db == Db::Pg { "COPY" } else { "multi-row INSERT, 2000 rows" };

    c.exec(&ddl(db, table));
    let t = Instant::now();
    c.bulk(table, &data, per_time);
    let bulk_secs = t.elapsed().as_secs_f64();
    assert_eq!(c.count(table), args.rows);
    let bulk = report(&format!("{bulk_name}, a transaction per time (baseline)"), args.rows, bulk_secs, None);

    c.exec(&ddl(db, table));
    let t = Instant::now();
    c.bulk(table, &data, data.len());
    let one_secs = t.elapsed().as_secs_f64();
    assert_eq!(c.count(table), args.rows);
    report(&format!("{bulk_name}, one transaction"), args.rows, one_secs, Some(bulk));

    c.exec(&ddl(db, table));
    let slow = &data[..args.slow_rows.min(args.rows) as usize];
    let t = Instant::now();
    c.row_at_a_time(table, slow);
    let slow_rate = report("row-at-a-time INSERT … upsert", slow.len() as u64, t.elapsed().as_secs_f64(), Some(bulk));

    let methods: &[(PgUpsertMethod, &str)] = if db == Db::Pg {
        &[
            (PgUpsertMethod::Unnest, "sink upsert (unnest), insert pass"),
            (PgUpsertMethod::Copy, "sink upsert (COPY + merge), insert pass"),
        ]
    } else {
        &[(PgUpsertMethod::Unnest, "sink upsert, insert pass")]
    };
    let mut best = 0f64;
    let mut setup = Vec::new();
    for (i, (method, label)) in methods.iter().enumerate() {
        c.exec(&ddl(db, table));
        c.exec(&format!("DROP TABLE IF EXISTS {PROGRESS}"));
        let config = sink_config(url, table, args).pg_upsert(*method);
        let spec = SinkSpec::builder(format!("bench-{i}"), config).upsert().primary_key(["id"]).build().unwrap();
        let (secs, s) = run_sink(&spec, &inserts, args.times, args.workers);
        setup.push(s);
        assert_eq!(c.count(table), args.rows);
        let rate = report(label, args.rows, secs, Some(bulk));
        best = best.max(rate);
        // Update pass: a second sink over the filled table; every row replaces an existing one.
        let updated: Vec<(Order, isize)> = rows(args.rows, 2).into_iter().map(|r| (r, 1)).collect();
        let spec2 = SinkSpec::builder(format!("bench-{i}-u"), spec.connector().clone())
            .upsert()
            .primary_key(["id"])
            .build()
            .unwrap();
        let (secs, s) = run_sink(&spec2, &updated, args.times, args.workers);
        setup.push(s);
        report(&label.replace("insert pass", "update pass"), args.rows, secs, Some(bulk));
    }

    c.exec(&ddl(db, table));
    c.exec(&format!("DROP TABLE IF EXISTS {PROGRESS}"));
    let config = sink_config(url, table, args);
    let spec = SinkSpec::builder("bench-append", config).append_only(false).build().unwrap();
    let (secs, s) = run_sink(&spec, &inserts, args.times, args.workers);
    setup.push(s);
    assert_eq!(c.count(table), args.rows);
    report("sink append-only", args.rows, secs, Some(bulk));

    // The upsert sink with typed rows rendered by the writer, as before rows were encoded where
    // they are produced (the dead-letter policy keeps rows typed: its dead letters are the rows).
    c.exec(&ddl(db, table));
    c.exec(&format!("DROP TABLE IF EXISTS {PROGRESS}"));
    let spec = SinkSpec::builder("bench-typed", sink_config(url, table, args))
        .upsert()
        .primary_key(["id"])
        .violations(ViolationPolicy::DeadLetter)
        .build()
        .unwrap();
    let (secs, s) = run_sink(&spec, &inserts, args.times, args.workers);
    setup.push(s);
    assert_eq!(c.count(table), args.rows);
    report("sink upsert (unnest), insert pass, typed rows", args.rows, secs, Some(bulk));

    setup.sort_by(f64::total_cmp);
    println!(
        "  sink setup outside the clock (threads, dataflow, sessions, table description, progress read): {:.3}–{:.3} s",
        setup[0],
        setup[setup.len() - 1]
    );
    println!(
        "  => {name} upsert sink: {:.2}x the bulk baseline (target >= 0.5), {:.1}x row-at-a-time (target >= 10)\n",
        best / bulk,
        best / slow_rate
    );
    c.exec(&format!("DROP TABLE {table}; DROP TABLE IF EXISTS {PROGRESS}"));
    if let Some(m) = c.my.take() {
        let _ = c.rt.block_on(m.disconnect());
    }
}

/// The sink's configuration: `url`, with the TLS mode of `--sink-tls` if given.
fn sink_config(url: &str, table: &str, args: &Args) -> JdbcConfig {
    let url = match &args.sink_tls {
        None => url.to_string(),
        Some(mode) => {
            let ca = std::env::var("DSINK_TLS_CA").expect("--sink-tls needs DSINK_TLS_CA (scripts/services start)");
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}sslmode={mode}&sslrootcert={ca}")
        }
    };
    let mut config = JdbcConfig::new(&url, table).unwrap();
    config.progress_table = PROGRESS.into();
    config
}

fn main() {
    let args = parse_args();
    let mut any = false;
    for (db, var) in [(Db::Pg, "DSINK_POSTGRES_URL"), (Db::My, "DSINK_MYSQL_URL")] {
        match std::env::var(var) {
            Ok(url) => {
                any = true;
                bench(db, &url, &args);
            }
            Err(_) => println!("{var} is not set: skipping"),
        }
    }
    if !any {
        eprintln!("set DSINK_POSTGRES_URL and/or DSINK_MYSQL_URL (scripts/services start postgres mariadb)");
        std::process::exit(2);
    }
}
