//! The Iceberg committer on worker 0: one snapshot per commit round with every worker's data
//! files (a fast append, or, for upserts, a row delta with the position-delete files the workers
//! wrote), its summary recording every worker's frontier, fenced against a second run of the
//! same sink.

use super::catalog::{iceberg_error, ident, CatalogHandle};
use super::config::IcebergConfig;
use super::position_deletes::RowDelta;
use super::progress::{frontier_text, latest_commit, progress_property, CommitRecord, SUMMARY_PREFIX};
use super::table::TablePlan;
use super::writer::IcebergFiles;
use crate::connectors::lakehouse::small_files;
use crate::connectors::resumed_frontier;
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Committer, Frontier, Layout, Prepared, SinkTime, WorkerContext, WorkerMetrics,
};
use iceberg::spec::{deserialize_data_file_from_json, DataFile, Operation};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use std::collections::HashMap;
use std::sync::Mutex;

/// The committer on worker 0: one fast-append snapshot per round, holding every worker's data
/// files, its summary recording every worker's frontier.
pub struct IcebergCommitter {
    config: IcebergConfig,
    sink: String,
    plan: TablePlan,
    catalog: Option<CatalogHandle>,
    peers: usize,
    /// How this run routes keys and writes the table, recorded with every commit.
    layout: Layout,
    generation: u64,
    base: Frontier<u64>,
    committed: Frontier<u64>,
    /// The snapshot of this sink's latest commit, as this committer knows it.
    last: Option<i64>,
    /// Upserts: every commit is a row delta, with the workers' position-delete files.
    upserts: bool,
    /// Upserts: the latest snapshot known to leave the workers' indexes right (this run's last).
    verified: Option<i64>,
    metrics: WorkerMetrics,
}

impl IcebergCommitter {
    pub(crate) fn open(config: &IcebergConfig, spec: &SinkSettings, plan: TablePlan, layout: Layout) -> Result<Self> {
        Ok(IcebergCommitter {
            config: config.clone(),
            sink: spec.name().to_string(),
            plan,
            catalog: None,
            peers: 0,
            layout,
            generation: 0,
            base: Frontier::minimum(),
            committed: Frontier::minimum(),
            last: None,
            upserts: matches!(spec.format(), Format::Upsert),
            verified: None,
            metrics: spec.worker_metrics(),
        })
    }

    /// Upserts: one snapshot with every worker's data files and position-delete files.
    fn commit_row_delta(
        &mut self,
        data: Vec<DataFile>,
        deletes: Vec<DataFile>,
        deleted: u64,
        read_at: Vec<Option<i64>>,
        record: CommitRecord,
    ) -> Result<()> {
        let name = self.name();
        let upper = record.to;
        // Snapshots already checked: up to this run's last commit, or else those the workers'
        // indexes were read at.
        let known: Vec<Option<i64>> = match self.verified {
            Some(id) => vec![Some(id)],
            None => read_at,
        };
        let h = self.handle()?;
        let delta = RowDelta {
            data,
            deletes,
            summary: record.properties(),
            properties: HashMap::from([(progress_property(&self.sink), frontier_text(&upper))]),
        };
        let (sink, expected) = (self.sink.clone(), self.last);
        let committed = delta.commit(h, &ident(&self.config)?, &name, |t| {
            let now = latest_commit(t.metadata(), &sink)?.map(|(id, _)| id);
            if now != expected {
                return Err(Error::new(
                    ErrorKind::Fenced,
                    format!(
                        "Iceberg table `{name}`: another run of sink `{sink}` committed snapshot {now:?} since this \
                         run resumed; stop one of them"
                    ),
                ));
            }
            no_files_rewritten(t, &sink, &known, &name)
        })?;
        let (id, _) = latest_commit(committed.metadata(), &self.sink)?.ok_or_else(|| {
            Error::new(ErrorKind::Fatal, format!("Iceberg table `{}`: the commit left no snapshot", self.name()))
        })?;
        tracing::debug!(sink = %self.sink, snapshot = id, upper = ?upper, deletes = deleted, "committed upserts to Iceberg");
        self.last = Some(id);
        self.verified = Some(id);
        self.metrics.files_committed(record.files as u64);
        self.metrics.small_files(record.small_files);
        self.committed = upper;
        Ok(())
    }

    fn name(&self) -> String {
        self.config.qualified()
    }

    fn handle(&self) -> Result<&CatalogHandle> {
        self.catalog.as_ref().ok_or_else(|| Error::config("the iceberg committer was used before resume"))
    }

    fn load(&self) -> Result<Table> {
        let h = self.handle()?;
        let id = ident(&self.config)?;
        h.block_on(h.catalog().load_table(&id)).map_err(|e| iceberg_error("loading", &self.name(), e))
    }
}

impl<T: SinkTime> Committer<IcebergFiles, T> for IcebergCommitter {
    type Error = Error;

    fn resume(&mut self, peers: usize) -> Result<Vec<Frontier<T>>> {
        let h = CatalogHandle::open(&self.config, false)?
            .ok_or_else(|| Error::config(format!("the catalog of Iceberg table `{}` disappeared", self.name())))?;
        self.catalog = Some(h);
        let table = self.load()?;
        let latest = latest_commit(table.metadata(), &self.sink)?;
        self.peers = peers;
        let records = latest.as_ref().map(|(_, r)| r.progress()).unwrap_or_default();
        self.last = latest.as_ref().map(|(id, _)| *id);
        let point = resolve_resume(&records, WorkerContext { index: 0, peers, layout: self.layout })?;
        self.generation = point.generation;
        self.base = point.base;
        let Some((_, record)) = latest else { return Ok(Vec::new()) };
        let frontiers: Vec<Frontier<u64>> = if record.peers == peers && point.generation == record.generation {
            record.frontiers.clone()
        } else {
            vec![point.frontier; peers]
        };
        self.committed = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        frontiers.into_iter().map(resumed_frontier).collect()
    }

    fn commit(&mut self, prepared: Vec<Prepared<IcebergFiles, T>>, frontiers: &[Frontier<T>]) -> Result<()> {
        let frontiers: Vec<Frontier<u64>> = frontiers.iter().map(Frontier::to_u64_frontier).collect();
        let upper = frontiers.iter().min().copied().unwrap_or_else(Frontier::minimum);
        let rows: u64 = prepared.iter().map(|p| p.token.rows).sum();
        let name = self.name();
        let read = |json: &String| {
            deserialize_data_file_from_json(json, self.plan.spec_id, &self.plan.partition_type, &self.plan.schema)
                .map_err(|e| iceberg_error("reading a worker's data file record", &name, e))
        };
        let files = prepared.iter().flat_map(|p| &p.token.files).map(read).collect::<Result<Vec<_>>>()?;
        let deletes = prepared.iter().flat_map(|p| &p.token.deletes).map(read).collect::<Result<Vec<_>>>()?;
        let deleted: u64 = prepared.iter().map(|p| p.token.deleted).sum();
        let read_at: Vec<Option<i64>> = prepared.iter().map(|p| p.token.read_at).collect();
        drop(prepared);
        if files.is_empty() && deletes.is_empty() {
            // Nothing to add: the rounds had no rows. A snapshot per frontier advance would only
            // grow the metadata; a restart replays these times and writes nothing for them.
            return Ok(());
        }
        let record = CommitRecord {
            sink: self.sink.clone(),
            from: self.committed,
            to: upper,
            frontiers,
            peers: self.peers,
            generation: self.generation,
            base: self.base,
            files: files.len(),
            rows,
            small_files: small_files(files.iter().map(|f| f.file_size_in_bytes()), self.config.target_file_size),
            layout: self.layout,
        };
        let (committed_files, committed_small) = (record.files as u64, record.small_files);
        if self.upserts {
            return self.commit_row_delta(files, deletes, deleted, read_at, record);
        }
        let table = self.load()?;
        let tx = Transaction::new(&table);
        let append = tx
            .fast_append()
            // The files have fresh UUID names; checking every manifest of the table for them
            // would make each commit slower than the last.
            .with_check_duplicate(false)
            .add_data_files(files)
            .set_snapshot_properties(record.properties());
        // In the same metadata swap: the progress outlives the snapshot (see `latest_commit`).
        let progress = tx.update_table_properties().set(progress_property(&self.sink), frontier_text(&upper));
        let h = self.handle()?;
        let fenced =
            FencedCatalog { inner: h.catalog(), sink: &self.sink, expected: self.last, found: Mutex::new(None) };
        let committed = append
            .apply(tx)
            .and_then(|tx| progress.apply(tx))
            .map_err(|e| iceberg_error("preparing the snapshot", &name, e))
            .and_then(|tx| h.block_on(tx.commit(&fenced)).map_err(|e| iceberg_error("committing", &name, e)));
        if let Some(now) = *fenced.found.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::new(
                ErrorKind::Fenced,
                format!(
                    "Iceberg table `{name}`: another run of sink `{}` committed snapshot {now:?} since this run \
                     resumed; stop one of them",
                    self.sink
                ),
            ));
        }
        let committed = committed?;
        let (id, _) = latest_commit(committed.metadata(), &self.sink)?.ok_or_else(|| {
            Error::new(ErrorKind::Fatal, format!("Iceberg table `{name}`: the commit left no snapshot"))
        })?;
        tracing::debug!(sink = %self.sink, snapshot = id, upper = ?upper, "committed to Iceberg");
        self.last = Some(id);
        self.metrics.files_committed(committed_files);
        self.metrics.small_files(committed_small);
        self.committed = upper;
        Ok(())
    }
}

/// Refuses an upsert commit onto `table` if another writer replaced, overwrote or deleted rows
/// since the snapshots in `known` (walking the current branch back until every one is passed;
/// `None` in `known`: a worker read an empty table, so back to the first snapshot). The workers'
/// indexes place keys in data files as they were then: a compaction or overwrite by another
/// engine removes those files, and deleting positions of removed files would leave the rewritten
/// rows in place, duplicating keys. Appends by others and this sink's own snapshots are fine.
fn no_files_rewritten(table: &Table, sink: &str, known: &[Option<i64>], name: &str) -> Result<()> {
    let meta = table.metadata();
    let mut waiting: std::collections::HashSet<i64> = known.iter().flatten().copied().collect();
    let to_root = known.iter().any(Option::is_none);
    let mut at = meta.current_snapshot();
    while let Some(s) = at {
        if waiting.remove(&s.snapshot_id()) {
            if waiting.is_empty() && !to_root {
                return Ok(());
            }
        } else {
            let summary = s.summary();
            let ours =
                summary.additional_properties.get(&format!("{SUMMARY_PREFIX}sink")).map(String::as_str) == Some(sink);
            if !ours && summary.operation != Operation::Append {
                return Err(Error::new(
                    ErrorKind::Retriable,
                    format!(
                        "Iceberg table `{name}`: another writer rewrote rows of the table (snapshot {}, operation \
                         `{}`) while sink `{sink}` was upserting into it, so the rows its keys were read at may be \
                         gone; nothing was committed — restart the sink to read the table's keys again",
                        s.snapshot_id(),
                        summary.operation.as_str()
                    ),
                ));
            }
        }
        at = s.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
    }
    Ok(())
}

/// The catalog as the committer's transaction sees it: every load of the table — the one a
/// commit attempt starts from, and those of its retries — first checks that the sink's latest
/// snapshot is still the one this run made last. The catalog's compare-and-swap of the metadata
/// location then guarantees nothing else committed between that load and the swap, so a second
/// run of the sink can never append the same times again.
#[derive(Debug)]
struct FencedCatalog<'a> {
    inner: &'a dyn Catalog,
    sink: &'a str,
    expected: Option<i64>,
    /// The sink's snapshot found instead of the expected one.
    found: Mutex<Option<Option<i64>>>,
}

#[async_trait::async_trait]
impl Catalog for FencedCatalog<'_> {
    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<iceberg::Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<iceberg::Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        let t = self.inner.load_table(table).await?;
        let now = latest_commit(t.metadata(), self.sink)
            .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))?
            .map(|(id, _)| id);
        if now != self.expected {
            *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
            // Not retryable: the transaction gives up at once.
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("another run of sink `{}` committed to the table", self.sink),
            ));
        }
        Ok(t)
    }
    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(&self, commit: iceberg::TableCommit) -> iceberg::Result<Table> {
        // Manifests written, the metadata pointer not yet swapped.
        crate::operators::crash_point("commit.mid");
        self.inner.update_table(commit).await
    }
}
