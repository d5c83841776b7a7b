//! What the sink operator records to the `metrics` facade: a recorder of this test's own
//! (installed globally, since timely workers run on threads of their own) collects every series
//! by name and labels, and each is checked against what the writers and the committer saw
//! themselves, and against the `SinkMetrics` snapshot.

use differential_dataflow::input::Input;
use differential_sinks_operators::{
    Change, CommitPolicy, Committer, CoordinatedWriter, Frontier, OperatorError, Prepared, SinkConfig, SinkExt,
    SinkMetrics, SinkWriter, ViolationPolicy, WorkerContext,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use timely::dataflow::operators::probe::Probe;

/// A series: its name and sorted labels.
type Series = (String, Vec<(String, String)>);

/// Histogram samples.
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

#[derive(Default)]
struct TestRecorder {
    counters: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Series, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Series, Arc<Samples>>>,
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<(String, String)> =
        key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
    labels.sort();
    (key.name().to_string(), labels)
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::clone(self.counters.lock().unwrap().entry(series(key)).or_default()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::clone(self.gauges.lock().unwrap().entry(series(key)).or_default()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut h = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(
            h.entry(series(key)).or_insert_with(|| Arc::new(Samples(Mutex::new(Vec::new())))),
        ))
    }
}

/// The recorder every test of this binary shares (each test uses sinks of its own names).
fn recorder() -> &'static TestRecorder {
    static R: OnceLock<&'static TestRecorder> = OnceLock::new();
    R.get_or_init(|| {
        let r: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(r).expect("no other recorder in this test binary");
        r
    })
}

fn labels(sink: &str, worker: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = [("sink", sink.to_string()), ("worker", worker.to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    l.sort();
    l
}

fn counter(name: &str, sink: &str, worker: usize, extra: &[(&str, &str)]) -> Option<u64> {
    let c = recorder().counters.lock().unwrap();
    c.get(&(name.to_string(), labels(sink, worker, extra))).map(|a| a.load(Ordering::Relaxed))
}

fn gauge(name: &str, sink: &str, worker: usize) -> Option<f64> {
    let g = recorder().gauges.lock().unwrap();
    g.get(&(name.to_string(), labels(sink, worker, &[]))).map(|a| f64::from_bits(a.load(Ordering::Relaxed)))
}

fn histogram_count(name: &str, sink: &str, worker: usize) -> Option<usize> {
    let h = recorder().histograms.lock().unwrap();
    h.get(&(name.to_string(), labels(sink, worker, &[]))).map(|s| s.0.lock().unwrap().len())
}

type Value = (u64, u64);

/// A coordinated writer that counts the changes it was handed; its token is that count.
struct CountingWriter {
    changes: Arc<AtomicU64>,
    pending: u64,
}

impl SinkWriter<u64, Value, u64> for CountingWriter {
    type Error = OperatorError;
    fn resume(&mut self, _: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        Ok(Frontier::minimum())
    }
    fn write(&mut self, _: &u64, changes: &mut Vec<Change<u64, Value>>) -> Result<(), OperatorError> {
        self.pending += changes.len() as u64;
        self.changes.fetch_add(changes.len() as u64, Ordering::Relaxed);
        changes.clear();
        Ok(())
    }
    fn commit(&mut self, _: &Frontier<u64>) -> Result<(), OperatorError> {
        Ok(())
    }
}

impl CoordinatedWriter<u64, Value, u64> for CountingWriter {
    type Prepared = u64;
    fn prepare(&mut self, _: &Frontier<u64>) -> Result<u64, OperatorError> {
        Ok(std::mem::take(&mut self.pending))
    }
}

/// Counts its own commits.
struct CountingCommitter(Arc<AtomicU64>);

impl Committer<u64, u64> for CountingCommitter {
    type Error = OperatorError;
    fn resume(&mut self, _: usize) -> Result<Vec<Frontier<u64>>, OperatorError> {
        Ok(Vec::new())
    }
    fn commit(&mut self, _: Vec<Prepared<u64, u64>>, _: &[Frontier<u64>]) -> Result<(), OperatorError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_coordinated_sink_records_per_worker_counts_and_the_committers_commits_on_worker_0() {
    const SINK: &str = "facade-coordinated";
    recorder();
    let shared = Arc::new(SinkMetrics::default());
    let commits = Arc::new(AtomicU64::new(0));
    let per_worker: Arc<Vec<Arc<AtomicU64>>> = Arc::new((0..2).map(|_| Arc::default()).collect());
    let (m2, c2, w2) = (Arc::clone(&shared), Arc::clone(&commits), Arc::clone(&per_worker));
    // 40 keys at time 0, then 10 updates at each of times 1..=4: 80 changes, fed by worker 0.
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let (m2, c2) = (Arc::clone(&m2), Arc::clone(&c2));
        let writer = CountingWriter { changes: Arc::clone(&w2[index]), pending: 0 };
        let (mut input, probe, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new(SINK);
            config.metrics = m2;
            let out = rows.sink_coordinated(config, |v: &Value| v.0, writer, move || Ok(CountingCommitter(c2)));
            (input, out.committed.probe().0, out.handle)
        });
        for t in 0..5u64 {
            if index == 0 {
                if t == 0 {
                    (0..40).for_each(|k| input.insert((k, 0)));
                } else {
                    for k in 0..10 {
                        input.remove((k, t - 1));
                        input.insert((k, t));
                    }
                }
            }
            input.advance_to(t + 1);
            input.flush();
            handle.step_until_committed(worker, &probe, &(t + 1)).unwrap();
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .unwrap()
    .join()
    .into_iter()
    .for_each(|r| r.unwrap());

    let snap = shared.snapshot();
    let commits = commits.load(Ordering::Relaxed);
    assert!(commits >= 5, "a commit per time at least: {commits}");
    assert_eq!(counter("dsink_commits_total", SINK, 0, &[]), Some(commits), "the committer's commits, on worker 0");
    assert_eq!(counter("dsink_commits_total", SINK, 1, &[]), Some(0), "worker 1 commits nothing itself");
    assert_eq!(histogram_count("dsink_commit_seconds", SINK, 0), Some(commits as usize));
    assert_eq!(snap.commits, commits);
    let mut changes = 0;
    for w in 0..2 {
        let seen = per_worker[w].load(Ordering::Relaxed);
        assert_eq!(counter("dsink_changes_out_total", SINK, w, &[]), Some(seen), "worker {w}: what its writer got");
        changes += seen;
    }
    assert_eq!((changes, snap.changes_out), (80, 80));
    let updates_in: u64 = (0..2).filter_map(|w| counter("dsink_updates_in_total", SINK, w, &[])).sum();
    assert_eq!((updates_in, snap.updates_in), (120, 120));
    // The lag is tracked where the committed frontier is known: worker 0; complete at the end.
    assert_eq!(gauge("dsink_frontier_lag", SINK, 0), Some(0.0));
    assert_eq!(gauge("dsink_frontier_lag", SINK, 1), None, "no gauge where the lag is not known");
}

/// Steps `worker` until `done`, for at most 30 seconds.
fn step_until(worker: &mut timely::worker::Worker, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        worker.step();
    }
}

#[test]
fn key_violations_are_counted_by_policy_and_the_lag_follows_the_input() {
    const SINK: &str = "facade-violations";
    recorder();
    let shared = Arc::new(SinkMetrics::default());
    let m2 = Arc::clone(&shared);
    let lag = || gauge("dsink_frontier_lag", SINK, 0);
    timely::execute_directly(move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Value, isize>();
            let mut config = SinkConfig::new(SINK);
            config.metrics = m2;
            config.violations = ViolationPolicy::Skip;
            // No commit before the input ends: the committed frontier stays at 0 meanwhile.
            config.commit = CommitPolicy { max_changes: None, interval: Duration::from_secs(3600) };
            let writer = CountingWriter { changes: Arc::default(), pending: 0 };
            let out = rows.sink_with(config, |v: &Value| v.0, writer);
            (input, out.committed.probe().0)
        });
        // Keys 0 and 1 get two rows at once at time 0: two violations, skipped.
        for (k, v) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)] {
            input.insert((k, v));
        }
        input.advance_to(1);
        input.flush();
        step_until(worker, "the lag is 1", || lag() == Some(1.0));
        input.advance_to(10);
        input.flush();
        step_until(worker, "the lag is 10", || lag() == Some(10.0));
        input.close();
        while !probe.done() {
            worker.step();
        }
    });
    assert_eq!(lag(), Some(0.0), "everything committed at the end");
    let snap = shared.snapshot();
    assert_eq!(counter("dsink_commits_total", SINK, 0, &[]), Some(1));
    assert_eq!(counter("dsink_key_violations_total", SINK, 0, &[("policy", "skip")]), Some(2));
    assert_eq!(counter("dsink_key_violations_total", SINK, 0, &[("policy", "fail")]), Some(0));
    assert_eq!(counter("dsink_key_violations_total", SINK, 0, &[("policy", "dead_letter")]), Some(0));
    assert_eq!(snap.violations_skipped, 2);
    assert_eq!(counter("dsink_changes_out_total", SINK, 0, &[]), Some(1));
}
