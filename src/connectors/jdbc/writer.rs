//! The JDBC writer: one worker's [`SinkWriter`] into a database table. It stages each commit's
//! rows through the [`JdbcEncoder`], then applies them with the progress row in one transaction
//! of a [`Session`], retrying the whole transaction on a new session when the failure is
//! retriable, and looking for the row the database refused when it is not.

use super::batch::Batch;
use super::config::JdbcConfig;
use super::encoder::{JdbcEncoder, Mode};
use super::progress::{ProgressRow, ProgressTable, Stored};
use super::session::{Session, Target};
use super::table;
use crate::connectors::resumed_frontier;
use crate::delivery::{runtime, Backoff};
use crate::encode::ChangeEncoder;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
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
        })
    }

    /// Connects (retrying retriable failures), describes the table and checks the rules.
    fn setup(&mut self) -> Result<()> {
        let (config, spec, metrics) = (&self.config, &self.spec, &self.metrics);
        let schema = config.schema_name()?;
        let (session, info) = self.rt.block_on(async {
            let mut backoff = Backoff::new(config.retry.clone()).counting(Some(metrics));
            loop {
                let r = async {
                    let mut c = Session::connect(config, spec.name()).await?;
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
        let session = self.session.as_mut().ok_or_else(before_resume)?;
        let records = self.rt.block_on(async {
            session.ensure_progress(&target).await?;
            session.read_progress(&target).await
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

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let encoder = self.encoder.as_mut().ok_or_else(before_resume)?;
        let before = self.batch.rows.len();
        let staged = encoder.encode(time.to_u64(), changes, &mut self.batch);
        changes.clear();
        staged?;
        self.metrics.records_out(self.batch.rows.len().saturating_sub(before) as u64);
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.commit_u64(upper.to_u64())
    }
}
