//! The coordinated commit mode (one commit for all workers, as lakehouse tables need) and key
//! functions, against the reference model.
//!
//! In-process (a test writer and committer over a shared table, and the memory target): needs no
//! server. Runs go through the shared driver of `tests/drive`.

mod common;
mod drive;

use common::{keyed_history, state_before, Row};
use differential_dataflow::VecCollection;
use differential_sinks::operators::{
    resolve_resume, Change, Committer, CoordinatedWriter, Frontier, OperatorError, Prepared, SinkConfig, SinkExt,
    SinkWriter, WorkerContext, WorkerProgress,
};
use differential_sinks::{CommitPolicy, SinkCollection, SinkSpec};
use drive::{AtCommit, Drive, Pace};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A run that takes longer than this has hung (a normal run takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// A data file: each change's key and new row (`None`: deleted).
type File = Vec<(u32, Option<Row>)>;

/// A table that, like a lakehouse catalog, only changes by whole commits of prepared files.
#[derive(Default)]
struct Table {
    /// key → row, as committed.
    rows: BTreeMap<u32, Row>,
    /// Every worker's frontier, recorded with each commit.
    progress: Vec<WorkerProgress<u64>>,
    commits: Vec<usize>,
    fail_commit: Option<usize>,
    /// A writer failure to inject.
    fail_writer: Option<WriterFailure>,
    /// How many commits the table held when the writer failure was injected.
    commits_at_failure: Option<usize>,
    /// Writes made while a prepare was begun and not yet finished (the next round's).
    overlapped_writes: usize,
}

/// Which call of which worker's writer (or of the committer) fails.
#[derive(Clone, Copy, Debug)]
enum WriterFailure {
    /// The `resume` of worker `w`'s writer.
    Resume { w: usize },
    /// The committer's `resume` (on worker 0).
    CommitterResume,
    /// The `n`th (from 0) `write` of worker `w`.
    Write { w: usize, n: usize },
    /// The `n`th (from 0) `prepare` of worker `w`.
    Prepare { w: usize, n: usize },
}

/// Per-worker writer: "files" are the changes written since the last prepare.
struct FileWriter {
    file: File,
    table: Arc<Mutex<Table>>,
    worker: usize,
    writes: usize,
    prepares: usize,
    /// A prepare begun (`begin_prepare`): its frontier and the writes it covers, as a file
    /// thread would have them; later writes are the next prepare's.
    begun: Option<(Frontier<u64>, File)>,
}

impl FileWriter {
    fn new(table: Arc<Mutex<Table>>) -> Self {
        FileWriter { file: Vec::new(), table, worker: 0, writes: 0, prepares: 0, begun: None }
    }
    /// Fails if `matches` picks this call for the injected failure.
    fn inject(&self, call: &str, matches: impl Fn(WriterFailure) -> bool) -> Result<(), OperatorError> {
        let mut t = self.table.lock().unwrap();
        if t.fail_writer.is_some_and(matches) {
            t.commits_at_failure = Some(t.commits.len());
            let message = format!("injected {call} failure on worker {}", self.worker);
            return Err(OperatorError::ResumeConflict { message });
        }
        Ok(())
    }
}

impl SinkWriter<u32, Row, u64> for FileWriter {
    type Error = OperatorError;
    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>, OperatorError> {
        self.worker = ctx.index;
        let worker = ctx.index;
        self.inject("resume", |f| matches!(f, WriterFailure::Resume { w } if w == worker))?;
        Ok(resolve_resume(&self.table.lock().unwrap().progress, ctx)?.frontier)
    }
    fn write(&mut self, t: &u64, changes: &mut Vec<Change<u32, Row>>) -> Result<(), OperatorError> {
        let (worker, n) = (self.worker, self.writes);
        self.writes += 1;
        self.inject("write", |f| matches!(f, WriterFailure::Write { w, n: m } if w == worker && m == n))?;
        // After a prepare was begun, only the next round's times may be written.
        if let Some((upper, _)) = &self.begun {
            if upper.is_beyond(t) {
                let message = format!("worker {worker} wrote time {t} into a prepare begun to {upper:?}");
                return Err(OperatorError::ResumeConflict { message });
            }
            self.table.lock().unwrap().overlapped_writes += 1;
        }
        self.file.extend(changes.drain(..).map(|c| (c.key, c.after)));
        Ok(())
    }
    fn commit(&mut self, _: &Frontier<u64>) -> Result<(), OperatorError> {
        unreachable!("coordinated writers never commit themselves")
    }
}

impl CoordinatedWriter<u32, Row, u64> for FileWriter {
    type Prepared = File;
    fn begin_prepare(&mut self, upper: &Frontier<u64>) -> Result<(), OperatorError> {
        if self.begun.is_none() {
            self.begun = Some((*upper, std::mem::take(&mut self.file)));
        }
        Ok(())
    }
    fn prepare(&mut self, upper: &Frontier<u64>) -> Result<Self::Prepared, OperatorError> {
        let (worker, n) = (self.worker, self.prepares);
        self.prepares += 1;
        self.inject("prepare", |f| matches!(f, WriterFailure::Prepare { w, n: m } if w == worker && m == n))?;
        match self.begun.take() {
            Some((begun, file)) if begun == *upper => Ok(file),
            Some((begun, _)) => Err(OperatorError::ResumeConflict {
                message: format!("worker {worker} began a prepare to {begun:?} and finished one to {upper:?}"),
            }),
            None => Ok(std::mem::take(&mut self.file)),
        }
    }
}

struct TableCommitter(Arc<Mutex<Table>>);

impl Committer<File, u64> for TableCommitter {
    type Error = OperatorError;
    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<u64>>, OperatorError> {
        let mut t = self.0.lock().unwrap();
        if matches!(t.fail_writer, Some(WriterFailure::CommitterResume)) {
            t.commits_at_failure = Some(t.commits.len());
            let message = "injected committer resume failure on worker 0".to_string();
            return Err(OperatorError::ResumeConflict { message });
        }
        (0..peers).map(|index| Ok(resolve_resume(&t.progress, WorkerContext::new(index, peers))?.frontier)).collect()
    }
    fn commit(&mut self, prepared: Vec<Prepared<File, u64>>, frontiers: &[Frontier<u64>]) -> Result<(), OperatorError> {
        let mut t = self.0.lock().unwrap();
        if t.fail_commit == Some(t.commits.len()) {
            return Err(OperatorError::ResumeConflict { message: "injected commit failure".into() });
        }
        // A worker's tokens arrive in order; apply them in that order (keys belong to one worker).
        let files = prepared.len();
        for p in prepared {
            for (k, row) in p.token {
                match row {
                    Some(r) => t.rows.insert(k, r),
                    None => t.rows.remove(&k),
                };
            }
        }
        let peers = frontiers.len();
        t.progress = frontiers
            .iter()
            .enumerate()
            .map(|(worker, f)| WorkerProgress {
                worker,
                peers,
                generation: 0,
                base: Frontier::minimum(),
                frontier: *f,
                layout: Default::default(),
            })
            .collect();
        t.commits.push(files);
        Ok(())
    }
}

/// Runs the history through a coordinated sink on `peers` workers; returns the errors the workers
/// reported, as (worker, message), in worker order. Panics if the run does not end by
/// [`DEADLINE`] (a hung worker), rather than hanging the test.
fn run_coordinated(history: &[(Row, u64, isize)], table: &Arc<Mutex<Table>>, peers: usize) -> Vec<(usize, String)> {
    let (reference, checked) = (Arc::new(history.to_vec()), table.clone());
    // Every worker waits for the coordinator's commit of every other time; worker 0 then checks
    // that the table holds exactly the state at the committed frontier (which may be beyond
    // t + 1 when an earlier run got further).
    let check = move |at: AtCommit| {
        if at.worker == 0 {
            let upper = at.committed.unwrap_or(u64::MAX);
            assert!(upper > at.time);
            let got = checked.lock().unwrap().rows.clone();
            assert_eq!(got, state_before(&reference, upper), "table at frontier {upper}");
        }
    };
    let table = table.clone();
    let report = Drive::new(peers).pace(Pace::Commit(2)).deadline(DEADLINE).at_commit(check).run_with(
        history,
        move |rows: VecCollection<'_, u64, Row, isize>| {
            let mut config = SinkConfig::new("coordinated");
            config.commit = CommitPolicy::default();
            let (writer, t2) = (FileWriter::new(table.clone()), table.clone());
            vec![rows.sink_coordinated(config, |r: &Row| r.k, writer, move || Ok(TableCommitter(t2)))]
        },
    );
    let mut e: Vec<(usize, String)> = report.errors.into_iter().map(|(w, e)| (w, e.to_string())).collect();
    e.sort();
    e
}

#[test]
fn one_commit_covers_all_workers() {
    for peers in [1, 2, 4] {
        let history = keyed_history(peers as u64, 30, 8, 12);
        let table = Arc::new(Mutex::new(Table::default()));
        let errors = run_coordinated(&history, &table, peers);
        assert!(errors.is_empty(), "{errors:?}");
        let t = table.lock().unwrap();
        assert_eq!(t.rows, state_before(&history, u64::MAX));
        assert!(t.progress.iter().all(|p| p.frontier.is_complete()), "{:?}", t.progress);
        // Coordinated commits gather several workers' files: fewer commits than worker-rounds.
        assert!(t.commits.iter().any(|files| *files >= peers.min(2)), "{:?}", t.commits);
    }
}

/// A worker hands its writer a prepare and finishes it an activation later, having written the
/// next times meanwhile: those writes are the next round's, and every row lands exactly once.
#[test]
fn writes_while_a_prepare_is_begun_go_to_the_next_round() {
    for peers in [1, 2] {
        let history = keyed_history(7 + peers as u64, 30, 12, 10);
        let table = Arc::new(Mutex::new(Table::default()));
        let t = table.clone();
        let report = Drive::new(peers).pace(Pace::Step(1)).deadline(DEADLINE).run_with(
            &history,
            move |rows: VecCollection<'_, u64, Row, isize>| {
                let mut config = SinkConfig::new("coordinated");
                config.commit = CommitPolicy { max_changes: None, interval: Duration::ZERO };
                let (writer, t2) = (FileWriter::new(t.clone()), t.clone());
                vec![rows.sink_coordinated(config, |r: &Row| r.k, writer, move || Ok(TableCommitter(t2)))]
            },
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors.iter().map(|e| e.1.to_string()).collect::<Vec<_>>());
        let t = table.lock().unwrap();
        assert_eq!(t.rows, state_before(&history, u64::MAX));
        assert!(t.progress.iter().all(|p| p.frontier.is_complete()), "{:?}", t.progress);
        assert!(t.overlapped_writes > 0, "no write overlapped a begun prepare: the test tests nothing");
        assert!(t.commits.len() > 1, "{:?}", t.commits);
    }
}

#[test]
fn a_failed_coordinated_commit_resumes_exactly() {
    let history = keyed_history(5, 30, 8, 12);
    let table = Arc::new(Mutex::new(Table { fail_commit: Some(2), ..Table::default() }));
    let errors = run_coordinated(&history, &table, 2);
    // The coordinator's failure stops every worker, each with the committer's error.
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1], "{errors:?}");
    assert!(errors.iter().all(|e| e.1.contains("injected commit failure")), "{errors:?}");
    let partial = table.lock().unwrap().progress.clone();
    assert!(partial.iter().all(|p| !p.frontier.is_complete()));
    table.lock().unwrap().fail_commit = None;
    let errors = run_coordinated(&history, &table, 2);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(table.lock().unwrap().rows, state_before(&history, u64::MAX));
}

/// A writer failure on a worker other than the coordinator stops the sink on every worker: each
/// one's `step_until_committed` returns an error naming the failure (no worker hangs, none
/// reports success), nothing more is committed once it happened, and a rerun resumes exactly.
#[test]
fn a_failing_worker_stops_every_worker() {
    let cases = [
        (2, WriterFailure::Write { w: 1, n: 4 }),
        (2, WriterFailure::Prepare { w: 1, n: 2 }),
        (2, WriterFailure::Prepare { w: 1, n: 0 }),
        // Worker 2 neither fails nor coordinates: it too must hear of worker 1's failure.
        (3, WriterFailure::Prepare { w: 1, n: 3 }),
        (3, WriterFailure::Write { w: 2, n: 2 }),
        // Failures before the first round, while the operators are built.
        (2, WriterFailure::Resume { w: 1 }),
        (3, WriterFailure::CommitterResume),
    ];
    for (peers, failure) in cases {
        let history = keyed_history(11, 30, 8, 12);
        let table = Arc::new(Mutex::new(Table { fail_writer: Some(failure), ..Table::default() }));
        let errors = run_coordinated(&history, &table, peers);
        let case = format!("{peers} workers, {failure:?}: {errors:?}");
        let reported: BTreeSet<usize> = errors.iter().map(|e| e.0).collect();
        assert_eq!(reported, (0..peers).collect(), "every worker reports an error; {case}");
        let w = match failure {
            WriterFailure::Write { w, .. } | WriterFailure::Prepare { w, .. } | WriterFailure::Resume { w } => w,
            WriterFailure::CommitterResume => 0,
        };
        let needle = format!("failure on worker {w}");
        assert!(errors.iter().all(|e| e.1.contains(&needle)), "every error names the failure; {case}");
        let source = match failure {
            WriterFailure::CommitterResume => "the committer on worker 0 failed".to_string(),
            _ => format!("worker {w} failed"),
        };
        assert!(errors.iter().all(|e| e.0 == w || e.1.contains(&source)), "the others name who failed; {case}");
        {
            let t = table.lock().unwrap();
            assert_eq!(t.commits_at_failure, Some(t.commits.len()), "a commit after the failure; {case}");
            assert!(t.progress.iter().all(|p| !p.frontier.is_complete()), "{case}");
        }
        // The table is consistent with its recorded frontiers: a rerun completes it exactly.
        table.lock().unwrap().fail_writer = None;
        let errors = run_coordinated(&history, &table, peers);
        assert!(errors.is_empty(), "rerun after {failure:?}: {errors:?}");
        assert_eq!(table.lock().unwrap().rows, state_before(&history, u64::MAX));
    }
}

#[test]
fn key_function_keys_the_sink() {
    use differential_sinks::connectors::memory::MemoryTarget;
    let history = keyed_history(3, 20, 6, 8);
    let target = MemoryTarget::new();
    let spec = SinkSpec::builder("by_fn", target.clone()).upsert().key_by_function().build().unwrap();
    assert!(SinkSpec::builder("x", target.clone()).upsert().build().is_err(), "upsert without any key is refused");
    Drive::new(2).pace(Pace::Unflushed).run_with(&history, move |rows: VecCollection<'_, u64, Row, isize>| {
        assert!(rows.clone().sink(&spec).is_err(), "a key-function spec refuses column keys");
        vec![rows.sink_keyed_by(&spec, |r: &Row| r.k).unwrap()]
    });
    let mut state = BTreeMap::new();
    for r in target.records() {
        let k: u32 = serde_json::from_slice(&r.key).unwrap();
        match r.value {
            Some(v) => state.insert(k, serde_json::from_slice::<Row>(&v).unwrap()),
            None => state.remove(&k),
        };
    }
    assert_eq!(state, state_before(&history, u64::MAX));
}
