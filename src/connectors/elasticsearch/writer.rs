//! The Elasticsearch writer: the encoder's `_bulk` actions spread over lanes by key (a key always
//! in the same lane, so its writes stay in time order), one request in flight per lane, and at
//! `commit` the progress document after every lane is acknowledged.

use super::client::Bulk;
use super::config::ElasticsearchConfig;
use super::encoder::{BulkBody, BulkEncoder};
use super::progress;
use crate::connectors::http::runtime;
use crate::connectors::resumed_frontier;
use crate::encode::ChangeEncoder;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerMetrics,
};
use serde::Serialize;
use tokio::task::JoinHandle;

/// One lane's pending request.
#[derive(Default)]
struct Lane {
    pending: BulkBody,
    inflight: Option<JoinHandle<Result<()>>>,
}

/// One worker's writer into Elasticsearch / OpenSearch.
pub struct ElasticsearchWriter<V> {
    rt: tokio::runtime::Runtime,
    bulk: Bulk,
    cfg: ElasticsearchConfig,
    sink: String,
    encoder: BulkEncoder<V>,
    lanes: Vec<Lane>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    metrics: WorkerMetrics,
}

impl<V> ElasticsearchWriter<V> {
    /// Opens a writer.
    pub fn open(cfg: &ElasticsearchConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(ElasticsearchWriter {
            rt: runtime(cfg.concurrent_requests.min(2), spec.name())?,
            bulk: Bulk { metrics: Some(spec.worker_metrics()), ..Bulk::new(cfg)? },
            cfg: cfg.clone(),
            sink: spec.name().to_string(),
            encoder: BulkEncoder::new(cfg, spec)?,
            lanes: (0..cfg.concurrent_requests.max(1)).map(|_| Lane::default()).collect(),
            ctx: None,
            resume: None,
            metrics: spec.worker_metrics(),
        })
    }

    fn ship(&mut self, lane: usize) -> Result<()> {
        self.wait(lane)?;
        let l = &mut self.lanes[lane];
        if l.pending.items.is_empty() {
            return Ok(());
        }
        let body = std::mem::replace(&mut l.pending.body, Vec::with_capacity(1 << 16));
        let items = std::mem::take(&mut l.pending.items);
        self.metrics.records_out(items.len() as u64);
        self.metrics.bytes_out(body.len() as u64);
        let bulk = self.bulk.clone();
        l.inflight = Some(self.rt.spawn(async move { bulk.send(body, items).await }));
        Ok(())
    }

    fn wait(&mut self, lane: usize) -> Result<()> {
        if let Some(h) = self.lanes[lane].inflight.take() {
            self.rt.block_on(h).map_err(|e| {
                Error::new(ErrorKind::Fatal, format!("sink `{}`: a `_bulk` task failed: {e}", self.sink))
            })??;
        }
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for ElasticsearchWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let records = self.rt.block_on(progress::read(&self.bulk, &self.cfg, &self.sink))?;
        let point = resolve_resume(&records, ctx)?;
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let t = time.to_u64();
        for change in changes.iter() {
            let lane = (change.key.stable_hash() % self.lanes.len() as u64) as usize;
            let l = &mut self.lanes[lane];
            self.encoder.encode(t, std::slice::from_ref(change), &mut l.pending)?;
            if l.pending.items.len() >= self.cfg.batch_num_messages
                || l.pending.body.len() >= self.cfg.batch_size_kb * 1024
            {
                self.ship(lane)?;
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.clone()) else {
            return Err(Error::config("commit before resume"));
        };
        for lane in 0..self.lanes.len() {
            self.ship(lane)?;
        }
        for lane in 0..self.lanes.len() {
            self.wait(lane)?;
        }
        // Documents written, the progress document not yet.
        crate::operators::crash_point("commit.mid");
        let record = point.record(ctx, upper.to_u64_frontier());
        self.rt.block_on(progress::write(&self.bulk, &self.cfg, &self.sink, ctx.index, point.generation, record))
    }
}
