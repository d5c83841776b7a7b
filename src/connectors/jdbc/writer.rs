//! The JDBC writer: one worker's [`SinkWriter`] into a database table. It stages each commit's
//! rows through the [`JdbcEncoder`], then applies them with the progress row in one transaction
//! of a [`Session`], retrying the whole transaction on a new session when the failure is
//! retriable, and looking for the row the database refused when it is not. When the staged rows
//! reach the transaction bounds inside a time, it commits them early with a progress row saying
//! how many of the time's changes are in (`partial`), and on restart skips that many of the
//! re-delivered time (see the [module docs](super)).

use super::batch::Batch;
use super::config::JdbcConfig;
use super::encoder::{JdbcEncoder, Mode};
use super::progress::{ProgressRow, ProgressTable, Record, Stored};
use super::session::{self, Session, Target};
use super::table;
use crate::connectors::bounds::PartialTime;
use crate::connectors::resumed_frontier;
use crate::delivery::{runtime, Backoff};
use crate::encode::ChangeEncoder;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    reroutes, resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
};
use serde::Serialize;

/// One worker's writer into a database table. See the [module docs](super).
pub struct JdbcWriter<V> {
    config: JdbcConfig,
    spec: SinkSettings,
    rt: tokio::runtime::Runtime,
    session: Option<Session>,
    target: Option<Target>,
    encoder: Option<JdbcEncoder<V>>,
    batch: Batch,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    stored: Stored,
    metrics: WorkerMetrics,
    /// The time being written: how many of its changes were handed over so far (skipped ones
    /// included: a time may come in several `write` calls), and how many an earlier run
    /// committed.
    partial: PartialTime,
}

impl<V> Drop for JdbcWriter<V> {
    fn drop(&mut self) {
        if let Some(c) = self.session.take() {
            self.rt.block_on(c.close());
        }
    }
}

fn before_resume() -> Error {
    Error::config("the database writer was used before resume")
}

impl<V: Serialize> JdbcWriter<V> {
    /// A writer for `spec` (whose connector is `config`); it connects when resumed.
    pub fn open(config: &JdbcConfig, spec: &SinkSettings) -> Result<Self> {
        Mode::of(spec.format())?;
        Ok(JdbcWriter {
            config: config.clone(),
            spec: spec.clone(),
            rt: runtime::current_thread("the database connector")?,
            session: None,
            target: None,
            encoder: None,
            batch: Batch::default(),
            ctx: None,
            point: None,
            stored: Stored::Absent,
            metrics: spec.worker_metrics(),
            partial: PartialTime::default(),
        })
    }

    /// Connects (retrying retriable failures), describes the table and checks the rules.
    fn setup(&mut self) -> Result<()> {
        let (config, spec, metrics) = (&self.config, &self.spec, &self.metrics);
        let schema = config.schema_name()?;
        let (session, info) =
            self.rt.block_on(session::connect_described(config, spec.name(), &schema, Some(metrics)))?;
        table::check(config, spec, &info)?;
        let encoder = JdbcEncoder::new(config.dialect, spec, &info)?;
        self.target = Some(Target {
            schema: schema.clone(),
            table: config.table.clone(),
            qualified: info.qualified.clone(),
            columns: encoder.columns().to_vec(),
            pk: encoder.key_columns().to_vec(),
            batch_size: config.rows_per_statement(),
            pg_upsert: config.pg_upsert,
            progress: ProgressTable {
                schema,
                table: config.progress_table.clone(),
                sink: spec.name().to_string(),
                target: info.qualified,
            },
        });
        self.encoder = Some(encoder);
        self.session = Some(session);
        Ok(())
    }

    fn target(&self) -> Result<&Target> {
        self.target.as_ref().ok_or_else(before_resume)
    }

    /// Whether the staged rows fill a transaction.
    fn full(&self) -> bool {
        !self.batch.rows.is_empty()
            && self.config.transaction.reached(self.batch.rows.len() as u64, self.batch.staged_bytes())
    }

    /// Commits the staged rows with the progress `(upper, partial)`: every time before `upper`,
    /// and the first `partial` changes of the time at `upper`, are in.
    fn commit_u64(&mut self, upper: Option<u64>, partial: u64) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.point.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let progress = ProgressRow {
            generation: point.generation,
            worker: ctx.index,
            peers: ctx.peers,
            base: point.base.to_u64(),
            frontier: upper,
            partial,
            layout: ctx.layout,
        };
        let target = self.target()?.clone();
        let (config, batch, slot, expected) = (&self.config, &self.batch, &mut self.session, &self.stored);
        let metrics = &self.metrics;
        let sink = self.spec.name().to_string();
        let applied = self.rt.block_on(async {
            let mut backoff = Backoff::new(config.retry.clone()).counting(Some(metrics));
            loop {
                let attempt = async {
                    let session = match slot.take().filter(|s| !s.is_closed()) {
                        Some(s) => slot.insert(s),
                        None => slot.insert(Session::connect(config, &sink).await?),
                    };
                    tokio::time::timeout(config.transaction_timeout, session.commit(&target, batch, &progress, expected))
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
                        if let Some(c) = slot.take() {
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
                        let Some(session) = slot.as_mut() else {
                            return Err(Error::new(e.kind(), format!("sink `{sink}`: {e}")));
                        };
                        if session.is_data_error(&e) {
                            if let Some((key, row_err)) = session.find_refused(&target, batch).await {
                                return Err(Error::new(
                                    ErrorKind::Fatal,
                                    format!(
                                        "sink `{sink}`: table {} refused the row with key {key:?}: {}; fix the row \
                                         or the table, then restart (nothing of this transaction was applied)",
                                        target.qualified,
                                        row_err.message()
                                    ),
                                ));
                            }
                        }
                        return Err(Error::new(
                            e.kind(),
                            format!("sink `{sink}`: {e}; nothing of this transaction was applied"),
                        ));
                    }
                }
            }
        })?;
        if !applied {
            tracing::info!(sink = %self.spec.name(), "an earlier attempt of this commit had gone through");
        }
        self.stored = Stored::At(upper, partial);
        self.batch.clear();
        Ok(())
    }
}

impl<V: Serialize + 'static> JdbcWriter<V> {
    /// Stages the changes of `time` (a time may come in several calls, in a deterministic
    /// order), skipping those an earlier run committed, and commits early whenever the staged
    /// rows fill a transaction.
    fn write_u64(&mut self, time: u64, changes: &[Change<Key, V>]) -> Result<()> {
        self.partial.enter(time);
        let skipped = self.partial.skip_committed(changes.len());
        let mut staged = 0;
        let r = (|| {
            for i in skipped..changes.len() {
                if self.full() {
                    // Every earlier time, and `count` changes of this one, are staged or in.
                    self.commit_u64(Some(time), self.partial.count())?;
                }
                let encoder = self.encoder.as_mut().ok_or_else(before_resume)?;
                let before = self.batch.rows.len();
                encoder.encode(time, &changes[i..=i], &mut self.batch)?;
                self.partial.advance();
                staged += self.batch.rows.len().saturating_sub(before) as u64;
            }
            Ok(())
        })();
        self.metrics.records_out(staged);
        r
    }
}

/// Refuses a restart that routes keys to other workers (another worker count, another key)
/// while a worker of the latest generation committed part of a time: the new workers could not
/// tell which of the time's changes are in.
fn refuse_split_regrouping(sink: &str, records: &[Record], ctx: WorkerContext) -> Result<()> {
    let progress: Vec<_> = records.iter().map(|r| r.progress.clone()).collect();
    if !reroutes(&progress, ctx) {
        return Ok(());
    }
    let latest = records.iter().map(|r| r.progress.generation).max();
    match records.iter().find(|r| Some(r.progress.generation) == latest && r.partial > 0) {
        None => Ok(()),
        Some(r) => Err(Error::new(
            ErrorKind::Resume,
            format!(
                "sink `{sink}`: worker {} of the earlier run committed {} changes of time {:?} but not all of it (a \
                 transaction bound, `transaction.max.records` / `transaction.max.bytes`, split it), and this run \
                 routes keys to workers differently (another worker count, or another key); restart it with the \
                 earlier {} workers and key settings until they commit a whole time, then change them",
                r.progress.worker, r.partial, r.progress.frontier, r.progress.peers
            ),
        )),
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for JdbcWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        self.setup()?;
        let target = self.target()?.clone();
        let session = self.session.as_mut().ok_or_else(before_resume)?;
        let records = self.rt.block_on(async {
            session.ensure_progress(&target).await?;
            session.read_progress(&target).await
        })?;
        refuse_split_regrouping(self.spec.name(), &records, ctx)?;
        let progress: Vec<_> = records.iter().map(|r| r.progress.clone()).collect();
        let point = resolve_resume(&progress, ctx)?;
        let own = records.iter().find(|r| r.progress.generation == point.generation && r.progress.worker == ctx.index);
        self.stored = own.map_or(Stored::Absent, |r| Stored::At(r.progress.frontier.to_u64(), r.partial));
        let partial = own.filter(|r| r.progress.frontier == point.frontier).map_or(0, |r| r.partial);
        self.partial = PartialTime::resumed(point.frontier.to_u64(), partial);
        let f = point.frontier;
        self.ctx = Some(ctx);
        self.point = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let r = self.write_u64(time.to_u64(), changes);
        changes.clear();
        r
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.commit_u64(upper.to_u64(), 0)
    }
}
