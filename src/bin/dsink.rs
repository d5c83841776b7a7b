//! `dsink`: replay a change log into any sink, and generate change logs to replay.
//!
//! ```text
//! dsink --input changes.jsonl --with connector=file --with path=out --with type=upsert --with primary_key=id
//! dsink generate --keys 1000 --updates 100000 --times 100 > changes.jsonl
//! ```
//!
//! Input lines are `{"time": <u64>, "diff": <±n>, "row": {...}}` with non-decreasing times. With
//! several workers every worker reads the file and takes every n-th line (and checks that the
//! times of its own lines do not decrease); stdin is read by worker 0. The sink options are the
//! RisingWave-style keys of `--with`; `--schema` declares column types.
//!
//! A bad line — not a change-log line, a time going back, a row the schema refuses, or input that
//! cannot be read — stops the whole run (every worker, in every process of a cluster) with an
//! error naming the line, and nothing at or after the time of the line before it is committed:
//! the committed frontier stays at or before that time, so a rerun on the corrected input
//! delivers the rest exactly once. The same holds when the sink cannot be created on a worker.
//!
//! `--metrics ADDR` serves the sink's metrics (the `dsink_*` names of
//! [`differential_sinks::operators::worker_metrics`], labelled by sink and worker) at
//! `http://ADDR/metrics` in Prometheus text format while the run lasts (feature `prometheus`).

use clap::{Args, Parser, Subcommand};
use differential_dataflow::input::Input;
use differential_sinks::change_log::ChangeLine;
use differential_sinks::{JsonRow, Options, Schema, SinkCollection, SinkSpec};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Probe;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input as TimelyInput, Inspect};

#[derive(Parser, Debug)]
#[command(
    name = "dsink",
    version,
    about = "Replay a change log into a differential-sinks sink",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a random change log (inserts, updates, deletes of keyed rows) to stdout.
    Generate(GenArgs),
}

#[derive(Args, Debug, Default)]
struct RunArgs {
    /// The change log: a file of JSON lines, or `-` for stdin.
    #[arg(long, short, default_value = "-")]
    input: String,
    /// A sink option `key=value` (repeatable), e.g. `--with connector=file`.
    #[arg(long = "with", short = 'w', value_name = "KEY=VALUE")]
    with: Vec<String>,
    /// Column types `name:type,…` (`!` after a type: not null); rows are checked against it.
    #[arg(long)]
    schema: Option<String>,
    /// Worker threads in this process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Processes in a timely cluster (all started with the same arguments but --process).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster.
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// A file with one `host:port` per process, for a cluster.
    #[arg(long)]
    hostfile: Option<String>,
    /// Progress display: auto (when stderr is a terminal), always or never.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Print the closing summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Lines fed between steps of the dataflow: smaller makes the sink's frontier, and so its
    /// commits, follow the input more closely.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    step_every: u64,
    /// After each time, wait until the sink has committed it before reading on: one commit per
    /// time, as from a live source (slower than letting commits cover many times).
    #[arg(long)]
    commit_each_time: bool,
    /// Serve the sink's metrics at http://ADDR/metrics in Prometheus text format while the run
    /// lasts, e.g. `--metrics 127.0.0.1:9464`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// How the input is paced against the dataflow.
#[derive(Clone, Copy)]
struct Pace {
    step_every: usize,
    commit_each_time: bool,
}

#[derive(Args, Debug)]
struct GenArgs {
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Updates (lines) to write.
    #[arg(long, default_value_t = 10_000)]
    updates: u64,
    /// Logical times to spread them over (at least 1).
    #[arg(long, default_value_t = 10)]
    times: u64,
    /// Approximate size of a row's JSON in bytes.
    #[arg(long, default_value_t = 100)]
    row_bytes: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a snapshot instead: `--updates` inserts of distinct keys, all at time 0.
    #[arg(long)]
    snapshot: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(g)) => generate(&g),
        None => run(cli.run),
    };
    if let Err(e) = result {
        eprintln!("dsink: {e}");
        std::process::exit(1);
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let mut opts = Options::parse_pairs(&args.with).map_err(|e| e.to_string())?;
    if opts.get("connector").is_none() {
        opts.set("connector", "file");
    }
    let schema = args.schema.as_deref().map(Schema::parse).transpose().map_err(|e| e.to_string())?;
    // Validate everything before starting workers: configuration errors surface here.
    let spec = SinkSpec::from_options_with_schema(opts, schema.clone()).map_err(|e| e.to_string())?;
    if args.input != "-" && !std::path::Path::new(&args.input).is_file() {
        return Err(format!("--input {}: no such file", args.input));
    }
    let mut timely_args = vec!["-w".to_string(), args.workers.max(1).to_string()];
    if args.processes > 1 {
        let hostfile = args.hostfile.clone().ok_or("--processes > 1 needs --hostfile")?;
        timely_args.extend([
            "-n".into(),
            args.processes.to_string(),
            "-p".into(),
            args.process.to_string(),
            "-h".into(),
            hostfile,
        ]);
    }
    if let Some(addr) = args.metrics {
        // Before the workers start: they register their counters with the recorder installed now.
        serve_metrics(addr)?;
    }
    let show_progress = match args.progress.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stderr().is_terminal() && !args.json,
    };
    let metrics = Arc::clone(spec.metrics());
    let rows_in = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let input_path = args.input.clone();
    let (spec2, rows2, schema2) = (spec.clone(), Arc::clone(&rows_in), schema.clone());
    let pace = Pace {
        step_every: usize::try_from(args.step_every).unwrap_or(usize::MAX),
        commit_each_time: args.commit_each_time,
    };

    let guards = timely::execute_from_args(timely_args.into_iter(), move |worker| -> Result<(), String> {
        replay(worker, &spec2, &input_path, schema2.as_ref(), &rows2, show_progress, pace)
    })?;
    let mut errors = Vec::new();
    for r in guards.join() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("a worker panicked: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let m = metrics.snapshot();
    let rows = rows_in.load(Ordering::Relaxed);
    let rate = rows as f64 / secs.max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "rows_in": rows, "changes_out": m.changes_out, "records_out": m.records_out, "bytes_out": m.bytes_out,
                "commits": m.commits, "files_committed": m.files_committed, "small_files": m.small_files,
                "seconds": secs, "rows_per_second": rate,
                "updates_already_committed": m.updates_already_committed,
                "violations_skipped": m.violations_skipped, "violations_dead_lettered": m.violations_dead_lettered,
                "spilled_updates": m.spilled_updates, "spilled_bytes": m.spilled_bytes,
                "retries": m.retries, "errors": errors,
            })
        );
    } else {
        let mut extra = String::new();
        if m.updates_already_committed > 0 {
            extra += &format!(", {} already committed by an earlier run", m.updates_already_committed);
        }
        if m.files_committed > 0 {
            extra += &format!(", {} data files committed ({} small)", m.files_committed, m.small_files);
        }
        if m.retries > 0 {
            extra += &format!(", {} retries", m.retries);
        }
        if m.spilled_updates > 0 {
            extra += &format!(", {} updates spilled ({:.1} MB)", m.spilled_updates, m.spilled_bytes as f64 / 1e6);
        }
        eprintln!(
            "dsink: {rows} rows in, {} changes, {} records out ({:.1} MB), {} commits, {secs:.2} s, {rate:.0} rows/s{extra}",
            m.changes_out,
            m.records_out,
            m.bytes_out as f64 / 1e6,
            m.commits,
        );
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Commit latency buckets, in seconds, for `dsink_commit_seconds`.
#[cfg(feature = "prometheus")]
const COMMIT_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Installs the Prometheus recorder and its HTTP listener on `addr` (a background thread).
#[cfg(feature = "prometheus")]
fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    use differential_sinks::operators::worker_metrics::COMMIT_SECONDS;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.to_string()), &COMMIT_BUCKETS)
        .and_then(PrometheusBuilder::install)
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    differential_sinks::describe_metrics();
    Ok(())
}

/// Without the exporter, `--metrics` is refused.
#[cfg(not(feature = "prometheus"))]
fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    Err(format!(
        "--metrics {addr}: this dsink was built without the `prometheus` feature; rebuild it with `--features prometheus`"
    ))
}

/// How a worker's reading of its input ended.
enum Fed {
    /// Every line was read.
    All,
    /// Another worker stopped the run.
    Stopped,
    /// This worker's sink failed (its error is in the handle).
    SinkFailed,
}

/// Stopping a whole run on the first error any worker meets, committing nothing it did not read.
///
/// The error travels to every worker on a stream built before the sink, so the stream is the same
/// on every worker even where the sink failed to open. A stopping worker keeps its input open —
/// the input's capability holds the sink's frontier at or before the time of the last line this
/// worker read — waits until every worker has seen the error, and then drops the dataflow rather
/// than completing it: no sink ever sees the input end, so no worker commits past that time.
struct Stop {
    errors: Option<timely::dataflow::InputHandleVec<u64, String>>,
    probe: timely::dataflow::ProbeHandle<u64>,
    seen: Rc<RefCell<Option<String>>>,
    dataflow: usize,
}

impl Stop {
    /// The first error any worker broadcast, once it reached this worker.
    fn seen(&self) -> Option<String> {
        self.seen.borrow().clone()
    }

    /// This worker will broadcast no error.
    fn close(&mut self) {
        self.errors = None;
    }

    /// Stops this worker with `error` (broadcast) or with the one another worker broadcast, and
    /// returns the error to report. `input`, if still open, is released only after the dataflow
    /// is dropped.
    fn stop(mut self, worker: &mut timely::worker::Worker, error: Option<String>, input: Option<Rows>) -> String {
        if let (Some(e), Some(errors)) = (&error, self.errors.as_mut()) {
            errors.send(e.clone());
        }
        self.close();
        while !self.probe.done() {
            worker.step_or_park(None);
        }
        worker.drop_dataflow(self.dataflow);
        drop(input);
        error.or_else(|| self.seen()).unwrap_or_else(|| "stopped by another worker".to_string())
    }
}

type Rows = differential_dataflow::input::InputSession<u64, JsonRow, isize>;

/// The sink as the feeding loop sees it: its handle, and a probe of its committed frontier.
#[derive(Clone, Copy)]
struct Sink<'a> {
    handle: &'a differential_sinks::SinkHandle<u64, differential_sinks::Error>,
    committed: &'a timely::dataflow::ProbeHandle<u64>,
}

fn replay(
    worker: &mut timely::worker::Worker,
    spec: &SinkSpec,
    path: &str,
    schema: Option<&Schema>,
    rows_in: &AtomicU64,
    show_progress: bool,
    pace: Pace,
) -> Result<(), String> {
    let (index, peers) = (worker.index(), worker.peers());
    let dataflow = worker.next_dataflow_index();
    let seen = Rc::new(RefCell::new(None::<String>));
    let first = Rc::clone(&seen);
    let (errors, stop_probe, mut input, sink) = worker.dataflow::<u64, _, _>(move |scope| {
        let (errors, stream) = TimelyInput::new_input::<Vec<String>>(&scope);
        let (stop_probe, _) = stream
            .broadcast()
            .inspect(move |e: &String| {
                first.borrow_mut().get_or_insert_with(|| e.clone());
            })
            .probe();
        let (input, rows) = scope.new_collection::<JsonRow, isize>();
        let sink = rows.sink(spec).map(|out| (out.committed.probe().0, out.handle)).map_err(|e| e.to_string());
        (errors, stop_probe, input, sink)
    });
    let mut stop = Stop { errors: Some(errors), probe: stop_probe, seen, dataflow };
    let (probe, handle) = match sink {
        Ok(sink) => sink,
        Err(e) => return Err(stop.stop(worker, Some(e), Some(input))),
    };
    // A reader thread hands this worker its lines in chunks over a bounded channel, so the worker
    // keeps stepping (committing on its cadence) while the input is idle, e.g. a slow pipe.
    let lines = match spawn_reader(path, index, peers) {
        Ok(lines) => lines,
        Err(e) => return Err(stop.stop(worker, Some(e), Some(input))),
    };
    let mut progress = Progress::new(show_progress && index == 0);
    let sink = Sink { handle: &handle, committed: &probe };
    let fed =
        feed(worker, &mut input, &lines, path, schema, rows_in, &stop, sink, pace, || progress.tick(spec, rows_in));
    match fed {
        Err(e) => return Err(stop.stop(worker, Some(e), Some(input))),
        Ok(Fed::Stopped) => return Err(stop.stop(worker, None, Some(input))),
        Ok(Fed::All | Fed::SinkFailed) => {}
    }
    input.close();
    stop.close();
    // Until every worker's sink committed the end of the input (a failed sink on this worker has
    // released its part), or another worker stops the run.
    while !probe.done() {
        if stop.seen().is_some() {
            return Err(stop.stop(worker, None, None));
        }
        worker.step();
        progress.tick(spec, rows_in);
    }
    drop(progress);
    match handle.take_error() {
        Some(e) => Err(format!("sink `{}` (worker {index}): {e}", spec.name())),
        None => Ok(()),
    }
}

/// Feeds this worker's lines into `input` until they end, checking each. A bad line is an error,
/// returned with the input still open at (or before) the time of this worker's last good line.
#[allow(clippy::too_many_arguments)]
fn feed(
    worker: &mut timely::worker::Worker,
    input: &mut Rows,
    lines: &crossbeam_channel::Receiver<Chunk>,
    path: &str,
    schema: Option<&Schema>,
    rows_in: &AtomicU64,
    stop: &Stop,
    sink: Sink<'_>,
    pace: Pace,
    mut tick: impl FnMut(),
) -> Result<Fed, String> {
    let handle = sink.handle;
    let mut last_time = 0u64;
    let mut since_step = 0usize;
    loop {
        if stop.seen().is_some() {
            return Ok(Fed::Stopped);
        }
        let chunk = match lines.try_recv() {
            Ok(chunk) => chunk,
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(Fed::All),
            Err(crossbeam_channel::TryRecvError::Empty) => {
                input.flush();
                worker.step();
                match lines.recv_timeout(Duration::from_millis(5)) {
                    Ok(chunk) => chunk,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(Fed::All),
                }
            }
        };
        let chunk = chunk?;
        for &(n, from, to) in &chunk.lines {
            let line = chunk.text.get(from..to).unwrap_or_default();
            let l = ChangeLine::parse(line).map_err(|e| {
                format!("{path}:{}: not a change-log line ({{\"time\":…,\"diff\":…,\"row\":{{…}}}}): {e}", n + 1)
            })?;
            if l.time < last_time {
                return Err(format!(
                    "{path}:{}: time {} goes back (the previous line had {last_time}); times must not decrease",
                    n + 1,
                    l.time
                ));
            }
            let row = match schema {
                Some(s) => {
                    let value: serde_json::Value = serde_json::from_str(l.row_text())
                        .map_err(|e| format!("{path}:{}: the row is not JSON: {e}", n + 1))?;
                    s.check_json(&value).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
                    JsonRow::new(&value)
                }
                // Checked by the line's parse: copied, or canonicalized by a scan.
                None => l.row().map_err(|e| format!("{path}:{}: the row is not JSON: {e}", n + 1))?,
            };
            if *input.time() < l.time {
                input.advance_to(l.time);
                if pace.commit_each_time {
                    input.flush();
                    while sink.committed.less_than(&l.time) {
                        if stop.seen().is_some() {
                            return Ok(Fed::Stopped);
                        }
                        if handle.is_failed() {
                            return Ok(Fed::SinkFailed);
                        }
                        worker.step();
                    }
                }
            }
            last_time = l.time;
            input.update(row, l.diff);
            rows_in.fetch_add(1, Ordering::Relaxed);
            since_step += 1;
            if since_step >= pace.step_every {
                since_step = 0;
                input.flush();
                worker.step();
            }
        }
        if handle.is_failed() {
            return Ok(Fed::SinkFailed);
        }
        tick();
    }
}

/// The progress display (worker 0 only).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_draw: Instant,
    started: Instant,
}

impl Progress {
    fn new(show: bool) -> Self {
        let bar = show.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"),
            );
            b
        });
        Progress { bar, last_draw: Instant::now(), started: Instant::now() }
    }

    fn tick(&mut self, spec: &SinkSpec, rows_in: &AtomicU64) {
        if let Some(b) = &self.bar {
            if self.last_draw.elapsed() > Duration::from_millis(200) {
                self.last_draw = Instant::now();
                draw(b, spec, rows_in, self.started);
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

type Chunk = Result<Lines, String>;

/// Lines in one buffer (one allocation per chunk, not per line): each line's number and its
/// byte range in `text`.
#[derive(Default)]
struct Lines {
    text: String,
    lines: Vec<(usize, usize, usize)>,
}

/// Reads `path` (or stdin, on worker 0 only) on a thread, keeping every `peers`-th line from
/// `index` of a file, and sends them in chunks of at most 1024 lines or about 1 MiB; the channel
/// holds 16 chunks, so reading waits for the dataflow and holds at most about 16 MiB ahead of it
/// however long the lines are.
fn spawn_reader(path: &str, index: usize, peers: usize) -> Result<crossbeam_channel::Receiver<Chunk>, String> {
    let (tx, rx) = crossbeam_channel::bounded::<Chunk>(16);
    let stride = if path == "-" { 1 } else { peers };
    let name = format!("dsink-read-{index}");
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.clone()).spawn(f).map(|_| ()).map_err(|e| e.to_string())
    };
    if path == "-" {
        if index == 0 {
            spawn(Box::new(move || read_lines(BufReader::new(std::io::stdin()), "-".into(), 0, 1, tx)))?;
        }
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        let path = path.to_string();
        spawn(Box::new(move || read_lines(BufReader::with_capacity(1 << 20, file), path, index % stride, stride, tx)))?;
    }
    Ok(rx)
}

fn read_lines<R: std::io::Read>(
    mut reader: BufReader<R>,
    path: String,
    keep: usize,
    stride: usize,
    tx: crossbeam_channel::Sender<Chunk>,
) {
    let mut chunk = Lines::default();
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(format!("{path}: {e}")));
                return;
            }
        }
        if n % stride == keep && !line.trim().is_empty() {
            let from = chunk.text.len();
            chunk.text.push_str(line.trim_end());
            chunk.lines.push((n, from, chunk.text.len()));
        }
        n += 1;
        // Hand over full chunks, and partial ones whenever the next read may wait (a slow pipe).
        let full = chunk.lines.len() >= 1024 || chunk.text.len() >= 1 << 20;
        let hand_over = full || (!chunk.lines.is_empty() && reader.buffer().is_empty());
        if hand_over && tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
            return;
        }
    }
    if !chunk.lines.is_empty() {
        let _ = tx.send(Ok(chunk));
    }
}

fn draw(bar: &indicatif::ProgressBar, spec: &SinkSpec, rows_in: &AtomicU64, started: Instant) {
    let m = spec.metrics().snapshot();
    let rows = rows_in.load(Ordering::Relaxed);
    bar.set_message(format!(
        "{rows} rows in, {} records out, {} commits, {:.0} rows/s",
        m.records_out,
        m.commits,
        rows as f64 / started.elapsed().as_secs_f64().max(1e-9)
    ));
    bar.tick();
}

fn generate(g: &GenArgs) -> Result<(), String> {
    if g.keys == 0 || g.times == 0 {
        return Err("--keys and --times must be at least 1".into());
    }
    let mut rng = g.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let pad_len = g.row_bytes.saturating_sub(60);
    if g.snapshot {
        let out = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, out.lock());
        let mut note = String::with_capacity(pad_len);
        for key in 0..g.updates {
            note.clear();
            while note.len() < pad_len {
                note.push((b'a' + (next() % 26) as u8) as char);
            }
            let row = serde_json::json!({"id": key, "name": format!("customer-{key}"), "amount": (key * 7919) % 100_000, "note": note});
            serde_json::to_writer(&mut out, &serde_json::json!({"time": 0, "diff": 1, "row": row}))
                .map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        return out.flush().map_err(|e| e.to_string());
    }
    let mut state: std::collections::HashMap<u64, serde_json::Value> = Default::default();
    let per_time = g.updates.div_ceil(g.times).max(1);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out.lock());
    let mut written = 0u64;
    let mut version = 0u64;
    for time in 0..g.times {
        let mut touched = std::collections::HashSet::new();
        let mut n = 0;
        let mut attempts = 0;
        while n < per_time && written < g.updates && attempts < per_time * 4 {
            attempts += 1;
            let key = next() % g.keys;
            if !touched.insert(key) {
                continue;
            }
            version += 1;
            let row = |v: u64, next: &mut dyn FnMut() -> u64| {
                let mut note: String = String::with_capacity(pad_len);
                while note.len() < pad_len {
                    note.push((b'a' + (next() % 26) as u8) as char);
                }
                serde_json::json!({"id": key, "name": format!("customer-{key}"), "amount": (v * 7919) % 100_000, "note": note})
            };
            let lines: Vec<(isize, serde_json::Value)> = match state.get(&key).cloned() {
                None => {
                    let r = row(version, &mut next);
                    state.insert(key, r.clone());
                    vec![(1, r)]
                }
                Some(old) if next() % 4 == 0 => {
                    state.remove(&key);
                    vec![(-1, old)]
                }
                Some(old) => {
                    let r = row(version, &mut next);
                    state.insert(key, r.clone());
                    vec![(-1, old), (1, r)]
                }
            };
            for (diff, r) in lines {
                if written >= g.updates {
                    break;
                }
                serde_json::to_writer(&mut out, &serde_json::json!({"time": time, "diff": diff, "row": r}))
                    .map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
                written += 1;
                n += 1;
            }
        }
    }
    out.flush().map_err(|e| e.to_string())
}
