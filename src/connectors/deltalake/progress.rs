//! Where the Delta Lake connector records its progress: `txn` (SetTransaction) actions in the
//! same log entry as the data files, one per app id (see the [connector's docs](super#exactly-once)),
//! and how a restart reads them back from the latest snapshot.

use super::table::delta_error;
use crate::error::{Error, ErrorKind, Result};
use deltalake::DeltaTable;
use differential_sinks_operators::{Frontier, Layout, WorkerProgress};
use std::sync::Arc;

/// The commit-info key under which each commit describes itself (see the module docs).
pub const COMMIT_INFO_KEY: &str = "dsink";

/// The progress a table holds for one sink, read from its `txn` actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableProgress {
    /// One record per worker of the latest generation.
    pub records: Vec<WorkerProgress<u64>>,
}

/// The app ids of `sink`'s `txn` actions: its frontier, worker count, generation, base, and
/// each of `peers` workers' frontiers.
pub(crate) fn app_ids(sink: &str, peers: usize) -> (String, String, String, String, Vec<String>) {
    (
        sink.to_string(),
        format!("{sink}.peers"),
        format!("{sink}.generation"),
        format!("{sink}.base"),
        (0..peers).map(|w| format!("{sink}.w{w}")).collect(),
    )
}

/// The app ids of `sink`'s `txn` actions recording its [`Layout`]: the routing fingerprint and
/// the format version (absent in tables written by earlier versions: routing not recorded,
/// format 1).
pub(crate) fn layout_ids(sink: &str) -> (String, String) {
    (format!("{sink}.routing"), format!("{sink}.format"))
}

/// A frontier as a `txn` version: its time, or `i64::MAX` once the input has ended.
pub fn frontier_version(f: &Frontier<u64>) -> Result<i64> {
    match f.time() {
        None => Ok(i64::MAX),
        Some(&t) => i64::try_from(t).ok().filter(|v| *v < i64::MAX).ok_or_else(|| {
            Error::new(ErrorKind::Resume, format!("time {t} is too large to record as a Delta transaction version"))
        }),
    }
}

/// The frontier a `txn` version records.
pub fn version_frontier(v: i64) -> Result<Frontier<u64>> {
    match v {
        i64::MAX => Ok(Frontier::complete()),
        v if v >= 0 => Ok(Frontier::at(v as u64)),
        v => Err(Error::new(ErrorKind::Resume, format!("transaction version {v} is not a frontier this sink wrote"))),
    }
}

/// Reads the sink's progress from the table's `txn` actions (empty when it never committed).
pub(crate) async fn read_progress(table: &DeltaTable, sink: &str) -> Result<TableProgress> {
    let location = table.table_url().to_string();
    let state = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
    let log = table.log_store();
    let get = |app: String| {
        let log = Arc::clone(&log);
        let location = location.clone();
        async move {
            state
                .transaction_version(log.as_ref(), &app)
                .await
                .map_err(|e| delta_error(&format!("reading transaction `{app}`"), &location, e))
        }
    };
    let (min_id, peers_id, gen_id, base_id, _) = app_ids(sink, 0);
    let Some(peers) = get(peers_id).await? else {
        if get(min_id.clone()).await?.is_some() {
            return Err(Error::new(
                ErrorKind::Resume,
                format!(
                    "the Delta table `{location}` has a transaction `{min_id}` this sink did not write (no worker \
                     count recorded beside it); use another `sink.name` or a fresh table"
                ),
            ));
        }
        return Ok(TableProgress { records: Vec::new() });
    };
    let bad = |what: &str| Error::new(ErrorKind::Resume, format!("the Delta table `{location}`: {what}"));
    let peers = usize::try_from(peers).map_err(|_| bad("the recorded worker count is negative"))?;
    let generation = get(gen_id).await?.ok_or_else(|| bad("the sink's generation is missing"))? as u64;
    let base = version_frontier(get(base_id).await?.ok_or_else(|| bad("the sink's base frontier is missing"))?)?;
    let (.., workers) = app_ids(sink, peers);
    let (routing_id, format_id) = layout_ids(sink);
    let layout = Layout {
        routing: get(routing_id)
            .await?
            .map_or(Ok(0), |v| u64::try_from(v).map_err(|_| bad("the routing is negative")))?,
        format: get(format_id)
            .await?
            .map_or(Ok(1), |v| u32::try_from(v).map_err(|_| bad("the format is out of range")))?,
    };
    let mut records = Vec::with_capacity(peers);
    for (worker, app) in workers.into_iter().enumerate() {
        let frontier = match get(app).await? {
            Some(v) => version_frontier(v)?,
            None => base,
        };
        records.push(WorkerProgress { worker, peers, generation, base, frontier, layout });
    }
    Ok(TableProgress { records })
}
