//! The Delta Lake committer on worker 0: one Delta commit per round, holding every worker's data
//! files, the deletion vectors of the positions the workers' upserts deleted, the sink's `txn` actions and a commit-info entry
//! describing the commit.

use super::deletion_vectors::{apply_deletes, deletion_vectors_enabled};
use super::progress::{app_ids, frontier_version, layout_ids, read_progress, COMMIT_INFO_KEY};
use super::table::{delta_error, open_or_create, storage_error, TablePlan};
use super::writer::{DataFile, DeltaFiles, OwnVector};
use super::DeltaLakeConfig;
use crate::connectors::lakehouse::small_files;
use crate::connectors::resumed_frontier;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::DeltaTable;
use differential_sinks_operators::{
    resolve_resume, Committer, Frontier, Layout, Prepared, SinkTime, WorkerContext, WorkerMetrics,
};
use tokio::runtime::Runtime;

/// The committer on worker 0: one Delta commit per round, holding every worker's data files, the
/// sink's `txn` actions and a commit-info entry describing the commit.
pub struct DeltaLakeCommitter {
    runtime: Runtime,
    config: DeltaLakeConfig,
    sink: String,
    plan: TablePlan,
    table: Option<DeltaTable>,
    peers: usize,
    /// How this run routes keys and writes the table, recorded with every commit.
    layout: Layout,
    generation: u64,
    base: Frontier<u64>,
    committed: Frontier<u64>,
    /// Upserts: the workers' deleted positions become deletion vectors.
    upserts: bool,
    metrics: WorkerMetrics,
}

impl DeltaLakeCommitter {
    pub(crate) fn open(config: &DeltaLakeConfig, spec: &SinkSettings, plan: TablePlan, layout: Layout) -> Result<Self> {
        Ok(DeltaLakeCommitter {
            upserts: matches!(spec.format(), Format::Upsert),
            metrics: spec.worker_metrics(),
            runtime: crate::delivery::runtime::current_thread("the Delta Lake sink")?,
            config: config.clone(),
            sink: spec.name().to_string(),
            plan,
            table: None,
            peers: 0,
            layout,
            generation: 0,
            base: Frontier::minimum(),
            committed: Frontier::minimum(),
        })
    }

    fn location(&self) -> String {
        self.config.location.display()
    }
}

impl<T: SinkTime> Committer<DeltaFiles, T> for DeltaLakeCommitter {
    type Error = Error;

    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>> {
        let table = self.runtime.block_on(open_or_create(&self.config, &self.plan, &self.sink))?;
        let progress = self.runtime.block_on(read_progress(&table, &self.sink))?;
        if self.upserts {
            let location = self.location();
            if !deletion_vectors_enabled(&table) {
                return Err(Error::config(format!(
                    "option `type` = `upsert`: the Delta table at `{location}` does not have deletion vectors, \
                     which the deltalake sink's upserts write; enable them on the table (table property \
                     `delta.enableDeletionVectors = true`, e.g. Spark's ALTER TABLE … SET TBLPROPERTIES), or \
                     let the sink create a new table"
                )));
            }
        }
        self.table = Some(table);
        self.peers = peers;
        let point = resolve_resume(&progress.records, WorkerContext { index: 0, peers, layout: self.layout })?;
        self.generation = point.generation;
        self.base = point.base;
        if progress.records.is_empty() {
            return Ok(Vec::new());
        }
        let frontiers: Vec<Frontier<u64>> =
            if progress.records[0].peers == peers && point.generation == progress.records[0].generation {
                progress.records.iter().map(|r| r.frontier).collect()
            } else {
                vec![point.frontier; peers]
            };
        self.committed = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        frontiers.into_iter().map(resumed_frontier).collect()
    }

    fn commit(&mut self, mut prepared: Vec<Prepared<DeltaFiles, T>>, frontiers: &[Frontier<T>]) -> Result<()> {
        let frontiers: Vec<Frontier<u64>> = frontiers.iter().map(Frontier::to_u64_frontier).collect();
        let upper = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        let rows: u64 = prepared.iter().map(|p| p.token.rows).sum();
        let location = self.location();
        let deleted: u64 = prepared.iter().map(|p| p.token.deleted).sum();
        let deletes: Vec<(String, Vec<u64>)> =
            prepared.iter_mut().flat_map(|p| std::mem::take(&mut p.token.deletes)).collect();
        let vectors: Vec<_> = prepared
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.token.vectors))
            .map(OwnVector::into_descriptor)
            .collect();
        let mut adds: Vec<Add> = prepared.into_iter().flat_map(|p| p.token.files).map(DataFile::into_add).collect();
        let mut files: Vec<Action> = Vec::new();
        if !deletes.is_empty() || !vectors.is_empty() {
            let table = self.table.as_ref().ok_or_else(|| Error::config("commit before resume"))?;
            files = self.runtime.block_on(apply_deletes(table, deletes, vectors, &mut adds, &location))?;
        }
        let data_files = adds.len();
        let small = small_files(adds.iter().map(|a| a.size.max(0) as u64), self.config.target_file_size);
        files.extend(adds.into_iter().map(Action::Add));
        if files.is_empty() {
            // Nothing to add: the rounds had no rows. Recording the frontier alone would make a
            // table version per frontier advance; a restart replays these times and writes
            // nothing for them, so skipping the commit loses and duplicates nothing.
            return Ok(());
        }
        let (min_id, peers_id, gen_id, base_id, workers) = app_ids(&self.sink, self.peers);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let txn = |app: String, v: i64| Transaction::new_with_last_update(app, v, Some(now));
        let mut txns = vec![
            txn(min_id, frontier_version(&upper)?),
            txn(peers_id, self.peers as i64),
            txn(gen_id, self.generation as i64),
            txn(base_id, frontier_version(&self.base)?),
            txn(layout_ids(&self.sink).0, self.layout.routing as i64),
            txn(layout_ids(&self.sink).1, i64::from(self.layout.format)),
        ];
        for (app, f) in workers.into_iter().zip(&frontiers) {
            txns.push(txn(app, frontier_version(f)?));
        }
        let info = serde_json::json!({
            "sink": self.sink,
            "from": self.committed.to_u64(),
            "to": upper.to_u64(),
            "peers": self.peers,
            "generation": self.generation,
            "frontiers": frontiers.iter().map(|f| f.to_u64()).collect::<Vec<_>>(),
            "files": data_files,
            "small_files": small,
            "rows": rows,
            "deleted": deleted,
        });
        let props = CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata([(COMMIT_INFO_KEY.to_string(), info)]);
        let table = self.table.as_mut().ok_or_else(|| Error::config("commit before resume"))?;
        let partition_by = (!self.plan.partition_columns.is_empty()).then(|| self.plan.partition_columns.clone());
        let operation = if self.upserts {
            // What streaming engines record for an update-mode micro-batch.
            DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Update,
                query_id: self.sink.clone(),
                epoch_id: frontier_version(&upper)?,
            }
        } else {
            DeltaOperation::Write { mode: SaveMode::Append, partition_by, predicate: None }
        };
        // Data files (and deletion vectors) written, the log entry not yet.
        crate::operators::crash_point("commit.mid");
        let config = &self.config;
        let finalized = self.runtime.block_on(async {
            let snapshot = table.snapshot().map_err(|e| delta_error("reading the snapshot", &location, e))?;
            CommitBuilder::from(props)
                .with_actions(files)
                .build(Some(snapshot), table.log_store(), operation)
                .await
                .map_err(|e| storage_error(config, delta_error("committing", &location, e)))
        })?;
        table.state = Some(finalized.snapshot());
        self.metrics.files_committed(data_files as u64);
        self.metrics.small_files(small);
        tracing::debug!(sink = %self.sink, version = finalized.version(), upper = ?upper, "committed to Delta");
        self.committed = upper;
        Ok(())
    }
}
