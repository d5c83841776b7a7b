//! The Cassandra writer on the `scylla` driver: the encoder's statements sent in unlogged
//! batches, and at `commit` the progress row after every batch is acknowledged.

use super::batch::batches;
use super::config::CassandraConfig;
use super::encoder::{BoundStatement, CassandraEncoder};
use super::progress;
use super::session::{connect, cql_err, exec_err};
use super::statements::{delete_cql, insert_cql};
use crate::connectors::resumed_frontier;
use crate::delivery::runtime;
use crate::encode::ChangeEncoder;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use serde::Serialize;

/// One worker's writer into a Cassandra / ScyllaDB table.
pub struct CassandraWriter<V> {
    rt: tokio::runtime::Runtime,
    cfg: CassandraConfig,
    sink: String,
    key: Vec<String>,
    encoder: CassandraEncoder<V>,
    session: Option<Session>,
    insert: Option<PreparedStatement>,
    delete: Option<PreparedStatement>,
    pending: Vec<BoundStatement>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    metrics: WorkerMetrics,
}

impl<V> CassandraWriter<V> {
    /// Opens a writer (connects in `resume`).
    pub fn open(cfg: &CassandraConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(CassandraWriter {
            rt: runtime::multi_thread(1, spec.name(), "the Cassandra sink")?,
            cfg: cfg.clone(),
            sink: spec.name().to_string(),
            key: spec.primary_key().map(<[String]>::to_vec).unwrap_or_default(),
            encoder: CassandraEncoder::new(spec, cfg.timestamp_offset),
            session: None,
            insert: None,
            delete: None,
            pending: Vec::new(),
            ctx: None,
            resume: None,
            metrics: spec.worker_metrics(),
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (Some(s), Some(ins), Some(del)) = (&self.session, &self.insert, &self.delete) else {
            return Err(Error::config("write before resume"));
        };
        let pending = std::mem::take(&mut self.pending);
        let what = format!("Cassandra batch into {}.{}", self.cfg.keyspace, self.cfg.table);
        self.rt.block_on(async {
            for chunk in batches(&pending, self.cfg.batch_size, self.cfg.batch_bytes) {
                let mut batch = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(chunk.len());
                for st in chunk {
                    batch.append_statement(if st.insert { ins.clone() } else { del.clone() });
                    values.push(st.values.clone());
                }
                let metrics = Some(&self.metrics);
                crate::delivery::retry::retry_counted(&Default::default(), "Cassandra batch", metrics, || async {
                    s.batch(&batch, &values).await.map(|_| ()).map_err(|e| exec_err(&what, e))
                })
                .await?;
            }
            Ok::<_, Error>(())
        })
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for CassandraWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let cfg = self.cfg.clone();
        let key = self.key.clone();
        let sink_name = self.sink.clone();
        let (session, ins, del, records) = self.rt.block_on(async move {
            let s = connect(&cfg).await?;
            let records = progress::read(&s, &cfg, &sink_name).await?;
            let ins =
                s.prepare(insert_cql(&cfg.keyspace, &cfg.table)).await.map_err(|e| cql_err("preparing insert", e))?;
            let del = s
                .prepare(delete_cql(&cfg.keyspace, &cfg.table, &key))
                .await
                .map_err(|e| cql_err("preparing delete", e))?;
            Ok::<_, Error>((s, ins, del, records))
        })?;
        let point = resolve_resume(&records, ctx)?;
        self.session = Some(session);
        self.insert = Some(ins);
        self.delete = Some(del);
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let t = time.to_u64();
        let limit = self.cfg.batch_size * 16;
        // In chunks, so that no more than about `limit` statements wait for a flush.
        for chunk in changes.chunks(limit.max(1)) {
            self.encoder.encode(t, chunk, &mut self.pending)?;
            if self.pending.len() >= limit {
                self.flush()?;
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.flush()?;
        // Rows written, the progress row not yet.
        crate::operators::crash_point("commit.mid");
        let (Some(ctx), Some(point), Some(s)) = (self.ctx, self.resume.as_ref(), &self.session) else {
            return Err(Error::config("commit before resume"));
        };
        let rec = point.record(ctx, upper.to_u64_frontier());
        self.rt.block_on(progress::write(s, &self.cfg, &self.sink, &rec))
    }
}
