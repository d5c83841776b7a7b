//! The Doris writer: the changes of a commit encoded into one Stream Load body, loaded at
//! `commit` under the commit's label.

use super::config::DorisConfig;
use super::encoder::{DorisEncoder, LoadBody};
use super::load::{interpret, stream_load};
use super::progress::label;
use crate::connectors::http::{client, runtime};
use crate::connectors::resumed_frontier;
use crate::delivery::retry::retry_counted;
use crate::delivery::RetryPolicy;
use crate::encode::ChangeEncoder;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
};
use serde::Serialize;
use std::sync::Arc;

/// One worker's writer into a Doris table.
pub struct DorisWriter<V> {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    cfg: Arc<DorisConfig>,
    sink: String,
    encoder: DorisEncoder<V>,
    body: LoadBody,
    lo: Frontier<u64>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    metrics: WorkerMetrics,
}

impl<V> DorisWriter<V> {
    /// Opens a writer.
    pub fn open(cfg: &DorisConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(DorisWriter {
            rt: runtime(1, spec.name())?,
            http: client(cfg.timeout)?,
            cfg: Arc::new(cfg.clone()),
            sink: spec.name().to_string(),
            encoder: DorisEncoder::new(spec),
            body: LoadBody { data: Vec::with_capacity(1 << 20), rows: 0 },
            lo: Frontier::minimum(),
            ctx: None,
            resume: None,
            metrics: spec.worker_metrics(),
        })
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for DorisWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        // Doris keeps no progress record the sink can read over HTTP: a restart replays from the
        // beginning, and every load it repeats carries the label of the original, which Doris
        // refuses as `Label Already Exists` (see the module docs).
        let point = resolve_resume(&[], ctx)?;
        self.ctx = Some(ctx);
        self.lo = point.frontier;
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        self.encoder.encode(time.to_u64(), changes, &mut self.body)?;
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let hi = upper.to_u64_frontier();
        if self.body.rows > 0 {
            let table = format!("{}.{}", self.cfg.database, self.cfg.table);
            let label = label(&self.sink, &table, point.generation, ctx.index, &self.lo, &hi);
            let full = std::mem::replace(&mut self.body, LoadBody { data: Vec::with_capacity(1 << 20), rows: 0 });
            let body = bytes::Bytes::from(full.data);
            self.metrics.records_out(full.rows);
            self.metrics.bytes_out(body.len() as u64);
            let (http, cfg, upsert) = (self.http.clone(), Arc::clone(&self.cfg), self.encoder.upsert());
            let metrics = &self.metrics;
            self.rt.block_on(async move {
                let what = format!("Doris load `{label}`");
                retry_counted(&RetryPolicy::default(), &what, Some(metrics), || async {
                    let status = stream_load(&http, &cfg, &label, upsert, body.clone()).await?;
                    interpret(&status, &label)
                })
                .await
            })?;
            // The load is in; the writer has not moved on.
            crate::operators::crash_point("commit.mid");
        }
        self.lo = hi;
        Ok(())
    }
}
