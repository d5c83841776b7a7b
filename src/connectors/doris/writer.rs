//! The Doris writer: the changes of a commit encoded into Stream Load bodies of at most
//! `doris.load.max.bytes` (one, unless the commit is larger), each loaded under the label of the
//! places it starts and ends at: a full part from `write`, the rest at `commit`.

use super::config::DorisConfig;
use super::encoder::{DorisEncoder, LoadBody};
use super::load::{interpret, stream_load};
use super::progress::{part_label, Position};
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
    /// Where the body being built starts.
    start: Position,
    /// The time being written, and how many of its changes were handed over so far (a time may
    /// come in several `write` calls).
    cur_time: Option<u64>,
    cur_count: u64,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    metrics: WorkerMetrics,
}

/// The capacity a new body starts with.
const BODY_CAPACITY: usize = 1 << 20;

impl<V> DorisWriter<V> {
    /// Opens a writer.
    pub fn open(cfg: &DorisConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(DorisWriter {
            rt: runtime(1, spec.name())?,
            http: client(cfg.timeout)?,
            cfg: Arc::new(cfg.clone()),
            sink: spec.name().to_string(),
            encoder: DorisEncoder::new(spec),
            body: LoadBody { data: Vec::with_capacity(BODY_CAPACITY.min(cfg.load_max_bytes as usize)), rows: 0 },
            start: Position::at(Frontier::minimum()),
            cur_time: None,
            cur_count: 0,
            ctx: None,
            resume: None,
            metrics: spec.worker_metrics(),
        })
    }

    /// Loads `body`, the changes from `self.start` to `end`, under their label, and moves the
    /// start to `end`.
    fn load(&mut self, body: LoadBody, end: Position) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let table = format!("{}.{}", self.cfg.database, self.cfg.table);
        let label = part_label(&self.sink, &table, point.generation, ctx.index, &self.start, &end);
        let bytes = bytes::Bytes::from(body.data);
        self.metrics.records_out(body.rows);
        self.metrics.bytes_out(bytes.len() as u64);
        let (http, cfg, upsert) = (self.http.clone(), Arc::clone(&self.cfg), self.encoder.upsert());
        let metrics = &self.metrics;
        self.rt.block_on(async move {
            let what = format!("Doris load `{label}`");
            retry_counted(&RetryPolicy::default(), &what, Some(metrics), || async {
                let status = stream_load(&http, &cfg, &label, upsert, bytes.clone()).await?;
                interpret(&status, &label)
            })
            .await
        })?;
        // The load is in; the writer has not moved on.
        crate::operators::crash_point("commit.mid");
        self.start = end;
        Ok(())
    }

    fn fresh_body(&self) -> LoadBody {
        LoadBody { data: Vec::with_capacity(BODY_CAPACITY.min(self.cfg.load_max_bytes as usize)), rows: 0 }
    }
}

impl<V: Serialize + 'static> DorisWriter<V> {
    /// Encodes the changes of `time` one by one; when a change takes the body past
    /// `doris.load.max.bytes`, the body before it is loaded as a part and the change starts the
    /// next one.
    fn write_u64(&mut self, time: u64, changes: &[Change<Key, V>]) -> Result<()> {
        if self.cur_time != Some(time) {
            self.cur_time = Some(time);
            self.cur_count = 0;
        }
        for change in changes {
            let (len, rows) = (self.body.data.len(), self.body.rows);
            self.encoder.encode(time, std::slice::from_ref(change), &mut self.body)?;
            if self.body.data.len() as u64 > self.cfg.load_max_bytes && rows > 0 {
                let tail = LoadBody { data: self.body.data.split_off(len), rows: self.body.rows - rows };
                let mut head = std::mem::replace(&mut self.body, tail);
                head.rows = rows;
                self.load(head, Position { frontier: Frontier::at(time), partial: self.cur_count })?;
            }
            self.cur_count += 1;
        }
        Ok(())
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
        self.start = Position::at(point.frontier);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let r = self.write_u64(time.to_u64(), changes);
        changes.clear();
        r
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        if self.ctx.is_none() {
            return Err(Error::config("commit before resume"));
        }
        let hi = Position::at(upper.to_u64_frontier());
        if self.body.rows > 0 {
            let fresh = self.fresh_body();
            let body = std::mem::replace(&mut self.body, fresh);
            self.load(body, hi)?;
        }
        self.start = hi;
        Ok(())
    }
}
