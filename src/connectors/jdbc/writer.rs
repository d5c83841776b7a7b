//! The database writer: per-commit batches, one transaction per commit with the progress row,
//! retries of the whole transaction, and the search for the row a database refused.

use super::catalog::{self, TableColumn, TableInfo};
use super::config::{Dialect, JdbcConfig, PgUpsertMethod};
use super::encode::{Cells, RowEncoder};
use super::mysql::MyConn;
use super::postgres::PgConn;
use crate::connectors::resumed_frontier;
use crate::delivery::Backoff;
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkMetrics, SinkTime, SinkWriter, WorkerContext,
};
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a pending row does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// Insert or replace by key.
    Upsert,
    /// Delete by key (its cells are the key columns).
    Delete,
    /// Insert.
    Append,
}

/// One pending row: its operation, key (for messages and de-duplication) and first cell.
#[derive(Clone, Debug)]
pub struct PendingRow {
    /// What to do.
    pub op: RowOp,
    /// The key.
    pub key: Key,
    /// Index of its first cell in [`Batch::cells`].
    pub first: u32,
    /// An upsert of a key the collection did not hold before this commit (its first change in
    /// the commit was an insert): the table should not hold it either, so a plain insert will do
    /// (a conflict falls back to the upsert).
    pub fresh: bool,
}

/// Everything written since the last commit: for upserts only the last change of each key.
#[derive(Debug, Default)]
pub struct Batch {
    /// Cell text.
    pub cells: Cells,
    /// Rows in arrival order (a key's later change replaces its earlier one in place).
    pub rows: Vec<PendingRow>,
    index: HashMap<Key, usize>,
}

impl Batch {
    /// Indices of the rows doing `op`.
    pub fn rows_of(&self, op: RowOp) -> impl Iterator<Item = usize> + '_ {
        self.rows.iter().enumerate().filter(move |(_, r)| r.op == op).map(|(i, _)| i)
    }

    /// Indices of the upserts of keys new in this commit (`fresh`) or not.
    pub fn upserts(&self, fresh: bool) -> impl Iterator<Item = usize> + '_ {
        self.rows.iter().enumerate().filter(move |(_, r)| r.op == RowOp::Upsert && r.fresh == fresh).map(|(i, _)| i)
    }

    /// The first `width` cells of `rows`, one array per column.
    pub fn column_arrays(&self, rows: &[usize], width: usize) -> Vec<Vec<Option<&str>>> {
        let mut arrays: Vec<Vec<Option<&str>>> = (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
        for &r in rows {
            let first = self.rows[r].first as usize;
            for (i, a) in arrays.iter_mut().enumerate() {
                a.push(self.cells.get(first + i));
            }
        }
        arrays
    }

    fn clear(&mut self) {
        self.cells.clear();
        self.rows.clear();
        self.index.clear();
    }

    /// A batch of the single row `i` of `self`, for the row-by-row search.
    fn single(&self, i: usize, width: usize) -> Batch {
        let r = &self.rows[i];
        let mut b = Batch::default();
        for c in 0..width {
            let (s, e) = match self.cells.get(r.first as usize + c) {
                Some(v) => {
                    let s = b.cells.text.len() as u32;
                    b.cells.text.push_str(v);
                    (s, b.cells.text.len() as u32)
                }
                None => super::encode::NULL,
            };
            b.cells.ranges.push((s, e));
        }
        b.rows.push(PendingRow { op: r.op, key: r.key.clone(), first: 0, fresh: false });
        b
    }
}

/// The fixed facts of one writer's target.
#[derive(Clone, Debug)]
pub struct Target {
    /// The schema (PostgreSQL) or database (MySQL).
    pub schema: String,
    /// The table.
    pub table: String,
    /// `schema.table`.
    pub qualified: String,
    /// The columns written, in cell order.
    pub columns: Vec<TableColumn>,
    /// Positions (in `columns`) of the primary key columns.
    pub pk: Vec<usize>,
    /// The progress table (in `schema`).
    pub progress_table: String,
    /// The sink's name.
    pub sink: String,
    /// Rows per statement.
    pub batch_size: usize,
    /// PostgreSQL upsert path.
    pub pg_upsert: PgUpsertMethod,
}

/// The progress row a commit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressRow {
    /// Generation.
    pub generation: u64,
    /// Worker.
    pub worker: usize,
    /// Workers of the generation.
    pub peers: usize,
    /// The generation's base frontier (`None`: complete).
    pub base: Option<u64>,
    /// The committed frontier (`None`: complete).
    pub frontier: Option<u64>,
}

/// What the progress table holds for this worker and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// No row yet.
    Absent,
    /// The row's frontier (`None`: complete).
    Frontier(Option<u64>),
}

/// Compares the locked progress row with what this writer last committed. `Some(false)`: the
/// row already holds this commit (an earlier attempt went through but its acknowledgement was
/// lost), so apply nothing; `None`: go ahead; an error: another writer committed in between.
pub fn check_stored(t: &Target, progress: &ProgressRow, expected: &Stored, stored: &Stored) -> Result<Option<bool>> {
    if *stored == Stored::Frontier(progress.frontier) && stored != expected {
        return Ok(Some(false));
    }
    if stored != expected {
        return Err(Error::new(
            ErrorKind::Fenced,
            format!(
                "sink `{}` worker {}: the progress row in {}.{} holds {stored:?}, but this writer last saw \
                 {expected:?}: another run of the same sink is writing to {}; stop it (or give one of them \
                 another `sink.name`)",
                t.sink, progress.worker, t.schema, t.progress_table, t.qualified
            ),
        ));
    }
    Ok(None)
}

/// An open session of either dialect.
pub enum Conn {
    /// PostgreSQL.
    Pg(PgConn),
    /// MySQL.
    My(MyConn),
}

impl Conn {
    /// Connects to the configured server for sink `sink`.
    pub async fn connect(c: &JdbcConfig, sink: &str) -> Result<Conn> {
        Ok(match c.dialect {
            Dialect::Postgres => {
                // PostgreSQL keeps 63 bytes of the name.
                let mut name = format!("dsink {sink}");
                while name.len() > 63 {
                    name.pop();
                }
                Conn::Pg(PgConn::connect(c, &name).await?)
            }
            Dialect::Mysql => Conn::My(MyConn::connect(c).await?),
        })
    }

    /// Reads the target table's description.
    pub async fn table_info(&mut self, schema: &str, table: &str) -> Result<TableInfo> {
        match self {
            Conn::Pg(c) => c.table_info(schema, table).await,
            Conn::My(c) => c.table_info(schema, table).await,
        }
    }

    async fn ensure_progress(&mut self, t: &Target) -> Result<()> {
        match self {
            Conn::Pg(c) => c.ensure_progress(t).await,
            Conn::My(c) => c.ensure_progress(t).await,
        }
    }

    async fn read_progress(&mut self, t: &Target) -> Result<Vec<differential_sinks_operators::WorkerProgress<u64>>> {
        match self {
            Conn::Pg(c) => c.read_progress(t).await,
            Conn::My(c) => c.read_progress(t).await,
        }
    }

    async fn commit(&mut self, t: &Target, batch: &Batch, progress: &ProgressRow, expected: &Stored) -> Result<bool> {
        match self {
            Conn::Pg(c) => c.commit(t, batch, progress, expected).await,
            Conn::My(c) => c.commit(t, batch, progress, expected).await,
        }
    }

    fn is_data_error(&self, e: &Error) -> bool {
        match self {
            Conn::Pg(_) => super::postgres::is_data_error(e),
            Conn::My(_) => super::mysql::is_data_error(e),
        }
    }

    /// Applies the rows one at a time in a transaction that is rolled back, and returns the
    /// first row the database refuses, with its error.
    async fn find_refused(&mut self, t: &Target, batch: &Batch) -> Option<(Key, Error)> {
        let begun = match self {
            Conn::Pg(c) => c.begin().await,
            Conn::My(c) => c.begin().await,
        };
        if begun.is_err() {
            return None;
        }
        let mut found = None;
        for i in 0..batch.rows.len() {
            let width = match batch.rows[i].op {
                RowOp::Delete => t.pk.len(),
                _ => t.columns.len(),
            };
            let one = batch.single(i, width);
            let r = match self {
                Conn::Pg(c) => c.apply(t, &one, 1, true).await,
                Conn::My(c) => c.apply(t, &one, 1).await,
            };
            if let Err(e) = r {
                found = Some((batch.rows[i].key.clone(), e));
                break;
            }
        }
        match self {
            Conn::Pg(c) => c.abort().await,
            Conn::My(c) => c.abort().await,
        }
        found
    }

    async fn close(self) {
        match self {
            Conn::Pg(_) => {}
            Conn::My(c) => c.disconnect().await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Conn::Pg(c) => c.is_closed(),
            Conn::My(_) => false,
        }
    }
}

/// Runs `fut` to completion on a runtime of its own, off any runtime the caller may be in.
pub(crate) fn block_on_fresh<F: std::future::Future + Send>(fut: F) -> Result<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting a runtime for the database connector", e))?;
            Ok(rt.block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Fatal, "the database connector's thread panicked")))
    })
}

/// Creation-time checks: connects, reads the table from the catalog and applies the rules of
/// [`catalog::check`].
pub(crate) fn validate(config: &JdbcConfig, spec: &SinkSettings) -> Result<()> {
    if spec.key_by_function && spec.format().is_keyed() {
        return Err(Error::config(format!(
            "sink `{}`: the jdbc sink deletes and upserts by the table's key columns: declare them with \
             `primary_key` instead of a key function",
            spec.name()
        )));
    }
    let schema = config.schema_name()?;
    // Unreadable or invalid certificates are refused before any connection is tried.
    super::tls::TlsMaterial::load(config)?.map(|m| m.client_config(config.tls)).transpose()?;
    block_on_fresh(async {
        let mut conn = Conn::connect(config, spec.name()).await?;
        let info = conn.table_info(&schema, &config.table).await;
        conn.close().await;
        catalog::check(config, spec, &info?)
    })?
}

/// Upsert or append, as the format says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Upsert,
    Append { force: bool },
}

/// One worker's writer into a database table. See the [module docs](super).
pub struct JdbcWriter<V> {
    config: JdbcConfig,
    spec: SinkSettings,
    mode: Mode,
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
    target: Option<Target>,
    encoder: Option<RowEncoder>,
    pk_pick: Vec<usize>,
    batch: Batch,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    stored: Stored,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V> Drop for JdbcWriter<V> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.rt.block_on(c.close());
        }
    }
}

impl<V: Serialize> JdbcWriter<V> {
    /// A writer for `spec` (whose connector is `config`); it connects when resumed.
    pub fn open(config: &JdbcConfig, spec: &SinkSettings) -> Result<Self> {
        let mode = match spec.format() {
            Format::Upsert => Mode::Upsert,
            Format::AppendOnly { force } => Mode::Append { force: *force },
            Format::Debezium { .. } => {
                return Err(Error::config("`type = debezium` does not apply to a table: use upsert or append-only"))
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the database connector's runtime", e))?;
        Ok(JdbcWriter {
            config: config.clone(),
            spec: spec.clone(),
            mode,
            rt,
            conn: None,
            target: None,
            encoder: None,
            pk_pick: Vec::new(),
            batch: Batch::default(),
            ctx: None,
            point: None,
            stored: Stored::Absent,
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        })
    }

    /// Connects (retrying retriable failures), describes the table and checks the rules.
    fn setup(&mut self) -> Result<()> {
        let (config, spec) = (&self.config, &self.spec);
        let schema = config.schema_name()?;
        let (conn, info) = self.rt.block_on(async {
            let mut backoff = Backoff::new(config.retry.clone());
            loop {
                let r = async {
                    let mut c = Conn::connect(config, spec.name()).await?;
                    let info = c.table_info(&schema, &config.table).await?;
                    Ok::<_, Error>((c, info))
                }
                .await;
                match r {
                    Err(e) if e.is_retriable() => match backoff.next_delay() {
                        Some(d) => {
                            tracing::warn!(sink = %spec.name(), error = %e, "connecting: retrying");
                            tokio::time::sleep(d).await;
                        }
                        None => return Err(e),
                    },
                    other => return other,
                }
            }
        })?;
        catalog::check(config, spec, &info)?;
        let columns = catalog::written_columns(spec, &info);
        let pk_names: Vec<String> = match (self.mode, spec.primary_key()) {
            (Mode::Upsert, Some(pk)) => pk.to_vec(),
            _ => Vec::new(),
        };
        let pk: Vec<usize> = pk_names
            .iter()
            .map(|n| {
                columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                    Error::schema(format!(
                        "sink `{}`: primary key column `{n}` of table {} is not among the columns written",
                        spec.name(),
                        info.qualified
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let target = Target {
            schema,
            table: config.table.clone(),
            qualified: info.qualified.clone(),
            columns,
            pk: pk.clone(),
            progress_table: config.progress_table.clone(),
            sink: spec.name().to_string(),
            batch_size: config.rows_per_statement(),
            pg_upsert: config.pg_upsert,
        };
        self.encoder = Some(RowEncoder::new(config.dialect, &info.qualified, &target.columns));
        self.pk_pick = pk;
        self.target = Some(target);
        self.conn = Some(conn);
        Ok(())
    }

    fn target(&self) -> Result<&Target> {
        self.target.as_ref().ok_or_else(|| Error::config("the database writer was used before resume"))
    }

    /// Stages one change.
    fn stage(&mut self, change: Change<Key, V>) -> Result<()> {
        let enc = self.encoder.as_mut().ok_or_else(|| Error::config("the database writer was used before resume"))?;
        let batch = &mut self.batch;
        let table = &self.target.as_ref().expect("set with the encoder").qualified;
        let key = change.key;
        let with_key = |e: Error, key: &Key| {
            Error::new(e.kind(), format!("sink `{}`, table {table}, key {key:?}: {}", self.spec.name(), e.message()))
        };
        match self.mode {
            Mode::Upsert => {
                key.bytes()?;
                let first = batch.cells.ranges.len() as u32;
                let op = match &change.after {
                    Some(row) => {
                        enc.encode(row, None, true, &mut batch.cells).map_err(|e| with_key(e, &key))?;
                        RowOp::Upsert
                    }
                    None => {
                        let before = change.before.as_ref().expect("a change has a side");
                        enc.encode(before, Some(&self.pk_pick), false, &mut batch.cells)
                            .map_err(|e| with_key(e, &key))?;
                        RowOp::Delete
                    }
                };
                match batch.index.get(&key) {
                    Some(&i) => {
                        // `fresh` stays as the key's first change in the commit set it.
                        batch.rows[i].op = op;
                        batch.rows[i].first = first;
                    }
                    None => {
                        batch.index.insert(key.clone(), batch.rows.len());
                        batch.rows.push(PendingRow { op, key, first, fresh: change.before.is_none() });
                    }
                }
            }
            Mode::Append { force } => {
                if change.before.is_some() && !force {
                    return Err(Error::new(
                        ErrorKind::AppendOnly,
                        format!(
                            "sink `{}`: the collection retracted key {key:?}, but the sink into {table} is append-only; \
                             set `force_append_only = true` to drop deletes and turn updates into inserts, or use \
                             `type = upsert`",
                            self.spec.name()
                        ),
                    ));
                }
                if let Some(row) = &change.after {
                    let first = batch.cells.ranges.len() as u32;
                    enc.encode(row, None, true, &mut batch.cells).map_err(|e| with_key(e, &key))?;
                    batch.rows.push(PendingRow { op: RowOp::Append, key, first, fresh: false });
                }
            }
        }
        Ok(())
    }

    fn commit_u64(&mut self, upper: Option<u64>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.point.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let progress = ProgressRow {
            generation: point.generation,
            worker: ctx.index,
            peers: ctx.peers,
            base: point.base.to_u64(),
            frontier: upper,
        };
        let target = self.target()?.clone();
        let (config, batch, conn_slot, expected) = (&self.config, &self.batch, &mut self.conn, &self.stored);
        let sink = self.spec.name().to_string();
        let applied = self.rt.block_on(async {
            let mut backoff = Backoff::new(config.retry.clone());
            loop {
                let attempt = async {
                    if conn_slot.as_ref().is_none_or(Conn::is_closed) {
                        *conn_slot = Some(Conn::connect(config, &sink).await?);
                    }
                    let conn = conn_slot.as_mut().expect("connected above");
                    tokio::time::timeout(
                        config.transaction_timeout,
                        conn.commit(&target, batch, &progress, expected),
                    )
                    .await
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Retriable,
                            format!(
                                "the transaction into {} took longer than {:?} (jdbc.transaction.timeout.ms)",
                                target.qualified, config.transaction_timeout
                            ),
                        )
                    })?
                }
                .await;
                match attempt {
                    Ok(applied) => return Ok(applied),
                    Err(e) if e.is_retriable() => {
                        // The session may be in any state: start over on a new one.
                        if let Some(c) = conn_slot.take() {
                            c.close().await;
                        }
                        match backoff.next_delay() {
                            Some(d) => {
                                tracing::warn!(sink = %sink, table = %target.qualified, error = %e, attempt = backoff.attempts(), "commit failed: retrying the transaction");
                                tokio::time::sleep(d).await;
                            }
                            None => {
                                return Err(Error::new(
                                    e.kind(),
                                    format!(
                                        "sink `{sink}`: committing into {} still failed after {} attempts: {e}",
                                        target.qualified,
                                        backoff.attempts() + 1
                                    ),
                                ))
                            }
                        }
                    }
                    Err(e) => {
                        let Some(conn) = conn_slot.as_mut() else {
                            return Err(Error::new(
                                e.kind(),
                                format!("sink `{sink}`: {e}"),
                            ));
                        };
                        if conn.is_data_error(&e) {
                            if let Some((key, row_err)) = conn.find_refused(&target, batch).await {
                                return Err(Error::new(
                                    ErrorKind::Fatal,
                                    format!(
                                        "sink `{sink}`: table {} refused the row with key {key:?}: {}; fix the row \
                                         or the table, then restart (nothing of this commit was applied)",
                                        target.qualified,
                                        row_err.message()
                                    ),
                                ));
                            }
                        }
                        return Err(Error::new(
                            e.kind(),
                            format!("sink `{sink}`: {e}; nothing of this commit was applied"),
                        ));
                    }
                }
            }
        })?;
        if !applied {
            tracing::info!(sink = %self.spec.name(), "an earlier attempt of this commit had gone through");
        }
        self.stored = Stored::Frontier(upper);
        self.batch.clear();
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for JdbcWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        self.setup()?;
        let target = self.target()?.clone();
        let conn = self.conn.as_mut().expect("connected by setup");
        let records = self.rt.block_on(async {
            conn.ensure_progress(&target).await?;
            conn.read_progress(&target).await
        })?;
        let point = resolve_resume(&records, ctx)?;
        self.stored = records
            .iter()
            .find(|r| r.generation == point.generation && r.worker == ctx.index)
            .map_or(Stored::Absent, |r| Stored::Frontier(r.frontier.to_u64()));
        let f = point.frontier;
        self.ctx = Some(ctx);
        self.point = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, _time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let before = self.batch.rows.len();
        for change in changes.drain(..) {
            self.stage(change)?;
        }
        SinkMetrics::add(&self.metrics.records_out, self.batch.rows.len().saturating_sub(before) as u64);
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.commit_u64(upper.to_u64())
    }
}

/// Reads the description of `config`'s table (for tools and tests).
pub fn describe_table(config: &JdbcConfig) -> Result<TableInfo> {
    let schema = config.schema_name()?;
    block_on_fresh(async {
        let mut conn = Conn::connect(config, "describe").await?;
        let info = conn.table_info(&schema, &config.table).await;
        conn.close().await;
        info
    })?
}
