//! The ClickHouse writer: the encoder's blocks inserted over HTTP — streamed while they are
//! encoded where no deduplication token is needed — and, once a commit's blocks are
//! acknowledged, its progress row. Commits are pipelined where the engine takes inserts in any
//! order (see the module docs).

use super::client::{Chunk, ChunkBody, ClickHouse, Stream, HOLD_BACK, STREAM_CHUNK};
use super::config::ClickHouseConfig;
use super::encoder::{Block, Blocks, ClickHouseEncoder};
use super::progress::{self, progress_sql, progress_table};
use super::table::{plan, Mode, TablePlan};
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
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A commit under way: its last block's insert, then its progress row.
struct PendingCommit {
    upper: Frontier<u64>,
    block: Option<JoinHandle<Result<()>>>,
    progress: Option<JoinHandle<Result<()>>>,
    /// The progress row is written (CollapsingMergeTree commits are made in place).
    written: bool,
}

/// One worker's writer into a ClickHouse table.
pub struct ClickHouseWriter<V> {
    rt: tokio::runtime::Runtime,
    ch: ClickHouse,
    sink: String,
    spec: SinkSettings,
    mode: Mode,
    /// The target as the progress table records it (`database.table`, unquoted): a sink's
    /// progress rows are found by its name *and* its table.
    target_id: String,
    progress: String,
    tokens: bool,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    /// The encoder for the table's plan (made in `resume`).
    encoder: Option<ClickHouseEncoder<V>>,
    /// The encoded blocks not yet sent.
    out: Blocks,
    blocks_in_commit: u64,
    inflight: Option<JoinHandle<Result<()>>>,
    /// Commits started and not yet durable, oldest first (see `durable`).
    commits: VecDeque<PendingCommit>,
    /// Whether blocks are sent while they are encoded (only without deduplication tokens, whose
    /// value depends on the block's last time).
    streaming: bool,
    stream: Option<Stream>,
    batch_rows: usize,
    batch_bytes: usize,
    metrics: WorkerMetrics,
}

impl<V> ClickHouseWriter<V> {
    /// Opens a writer (the table is read again in `resume`).
    pub fn open(cfg: &ClickHouseConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(ClickHouseWriter {
            rt: runtime(1, spec.name())?,
            ch: ClickHouse::new(cfg)?.counting_retries(spec.worker_metrics()),
            sink: spec.name().to_string(),
            spec: spec.clone(),
            mode: Mode::Plain,
            target_id: format!("{}.{}", cfg.database, cfg.table),
            progress: progress_table(cfg),
            tokens: false,
            ctx: None,
            resume: None,
            encoder: None,
            out: Blocks::default(),
            blocks_in_commit: 0,
            inflight: None,
            commits: VecDeque::new(),
            streaming: false,
            stream: None,
            batch_rows: cfg.batch_rows,
            batch_bytes: cfg.batch_bytes,
            metrics: spec.worker_metrics(),
        })
    }

    /// Sends the blocks the encoder closed (a row with other columns than its block's).
    fn ship_done(&mut self) -> Result<()> {
        while let Some(block) = self.out.done.pop_front() {
            self.ship_block(block)?;
        }
        Ok(())
    }

    /// Sends the current block (after the previous one has been acknowledged: blocks of a worker
    /// reach the table in time order, which CollapsingMergeTree needs).
    fn ship(&mut self) -> Result<()> {
        if self.out.current.rows == 0 {
            return Ok(());
        }
        // The next block is likely as large as this one: allocate that much once, not by doubling.
        let capacity = self.out.current.data.len().clamp(1 << 20, self.batch_bytes);
        let block = self.out.take_current(capacity);
        self.ship_block(block)
    }

    /// Sends `block`, a block of the streamed insert under way if there is one.
    fn ship_block(&mut self, block: Block) -> Result<()> {
        if block.rows == 0 {
            return Ok(());
        }
        self.wait()?;
        let body = bytes::Bytes::from(block.data);
        let (lo, hi) = block.times.unwrap_or((0, 0));
        self.blocks_in_commit += 1;
        let token = self.tokens.then(|| {
            let ctx = self.ctx.unwrap_or(WorkerContext::new(0, 1));
            let generation = self.resume.as_ref().map_or(0, |r| r.generation);
            format!("{}-w{}-g{generation}-t{lo}-{hi}-b{}", self.sink, ctx.index, self.blocks_in_commit)
        });
        self.metrics.records_out(block.rows as u64);
        self.metrics.bytes_out(body.len() as u64);
        let (ch, sql) = (self.ch.clone(), block.sql);
        let Some(stream) = self.stream.take() else {
            self.inflight = Some(self.rt.spawn(async move { ch.insert(&sql, body, token.as_deref()).await }));
            return Ok(());
        };
        if stream.sent < body.len() {
            let _ = stream.tx.blocking_send(Chunk::Data(body.slice(stream.sent..)));
        }
        let _ = stream.tx.blocking_send(Chunk::End);
        self.inflight = Some(self.rt.spawn(async move {
            match stream.task.await {
                Ok(Ok(())) => Ok(()),
                // The streamed attempt failed: the whole block again, with the usual retries (a
                // request that failed after the server took the block is the same case as a retry
                // after a lost answer; see the delivery guarantee in the module docs).
                _ => ch.insert(&sql, body, token.as_deref()).await,
            }
        }));
        Ok(())
    }

    /// Hands the block's new rows to its streamed insert, starting the insert (after the previous
    /// block has been acknowledged) if it is not under way yet.
    fn stream_more(&mut self) -> Result<()> {
        if self.stream.is_none() {
            self.wait()?;
            let (tx, rx) = mpsc::channel(8);
            let (ch, sql) = (self.ch.clone(), self.out.current.sql.clone());
            let body = ChunkBody { rx: Mutex::new(rx) };
            let task = self.rt.spawn(async move { ch.insert_stream(&sql, body).await });
            self.stream = Some(Stream { tx, sent: 0, task });
        }
        let Some(s) = self.stream.as_mut() else { return Ok(()) };
        // The last two bytes (`}\n` of a JSON line, or the end of a RowBinary row, which has no
        // terminator) wait for the next chunk: whatever the server has received before the block
        // ends stops inside a row. If the request is cut off — the writer failed, or the process
        // died — the server, which takes the end of a cut-off body as the end of the data, fails to
        // parse it and inserts nothing, instead of inserting the rows before the cut.
        let data = &self.out.current.data;
        let end = data.len().saturating_sub(HOLD_BACK).max(s.sent);
        let chunk = bytes::Bytes::copy_from_slice(&data[s.sent..end]);
        s.sent = end;
        // A send fails only if the request has already ended (an error): `ship` then inserts the
        // whole block the ordinary way.
        let _ = s.tx.blocking_send(Chunk::Data(chunk));
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        if let Some(h) = self.inflight.take() {
            self.join(h)?;
        }
        Ok(())
    }

    fn join<R>(&self, h: JoinHandle<Result<R>>) -> Result<R> {
        self.rt
            .block_on(h)
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("sink `{}`: an insert task failed: {e}", self.sink)))?
    }

    /// The statement recording this worker's progress at `upper`.
    fn progress_sql(&self, upper: Frontier<u64>) -> Result<String> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        Ok(progress_sql(&self.progress, &self.sink, &self.target_id, &point.record(ctx, upper)))
    }

    /// Carries the oldest open commit forward: its block acknowledged, then its progress row
    /// written (rows of later commits only after it, so progress never runs ahead of data).
    /// Returns whether it is durable; without `wait`, never blocks on the server.
    fn advance_oldest(&mut self, wait: bool) -> Result<bool> {
        let Some(mut c) = self.commits.pop_front() else { return Ok(false) };
        let ready = |h: &JoinHandle<_>| wait || h.is_finished();
        if c.block.as_ref().is_some_and(|h| !ready(h)) {
            self.commits.push_front(c);
            return Ok(false);
        }
        if let Some(h) = c.block.take() {
            self.join(h)?;
        }
        if !c.written {
            if c.progress.is_none() {
                // The block is in, its progress row not yet.
                crate::operators::crash_point("commit.mid");
                let (ch, sql) = (self.ch.clone(), self.progress_sql(c.upper)?);
                c.progress = Some(self.rt.spawn(async move { ch.query(&sql).await.map(drop) }));
            }
            if c.progress.as_ref().is_some_and(|h| !ready(h)) {
                self.commits.push_front(c);
                return Ok(false);
            }
            if let Some(h) = c.progress.take() {
                self.join(h)?;
            }
        }
        self.commits.push_front(c);
        Ok(true)
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for ClickHouseWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let ch = self.ch.clone();
        let (sink, target) = (self.sink.clone(), self.target_id.clone());
        let (table, version, timezone, records) = self.rt.block_on(async move {
            let table = ch.table().await?;
            let version = ch.version().await?;
            let tz = ch.timezone().await?;
            let records = progress::read(&ch, &sink, &target).await?;
            Ok::<_, Error>((table, version, tz, records))
        })?;
        let point = resolve_resume(&records, ctx)?;
        // The spec was checked at creation; the table may have changed since.
        let mode = plan(&self.spec, &self.ch.cfg, &table)?;
        self.tokens = version >= (22, 2);
        self.streaming = !self.tokens;
        let encoder =
            ClickHouseEncoder::new(&self.spec, &self.ch.cfg, &TablePlan { table, mode: mode.clone(), timezone });
        self.out = encoder.output();
        self.encoder = Some(encoder);
        self.mode = mode;
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let t = time.to_u64();
        for change in changes.iter() {
            let Some(encoder) = self.encoder.as_mut() else {
                return Err(Error::config("write before resume"));
            };
            encoder.encode(t, std::slice::from_ref(change), &mut self.out)?;
            self.ship_done()?;
            let block = &self.out.current;
            if block.rows >= self.batch_rows || block.data.len() >= self.batch_bytes {
                self.ship()?;
            } else if self.streaming && block.data.len() - self.stream.as_ref().map_or(0, |s| s.sent) >= STREAM_CHUNK {
                self.stream_more()?;
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let upper = upper.to_u64_frontier();
        self.ship_done()?;
        self.ship()?;
        self.blocks_in_commit = 0;
        // ReplacingMergeTree takes replays and any order of inserts (the version decides), and so
        // do plain tables with deduplication tokens. A cancelling row of CollapsingMergeTree must
        // follow the row it cancels, and a plain table without tokens would count every block
        // acknowledged ahead of its progress row twice after a crash: those commit here, in
        // order, as one insert window (the operator learns of them at its next poll).
        let in_place = match self.mode {
            Mode::Replacing { .. } => false,
            Mode::Plain => !self.tokens,
            Mode::Collapsing { .. } => true,
        };
        if in_place {
            self.wait()?;
            // The blocks are in, the progress row not yet.
            crate::operators::crash_point("commit.mid");
            let (ch, sql) = (self.ch.clone(), self.progress_sql(upper)?);
            self.rt.block_on(async move { ch.query(&sql).await })?;
            self.commits.push_back(PendingCommit { upper, block: None, progress: None, written: true });
            return Ok(());
        }
        // The last block's insert runs on while later times are encoded and their blocks sent.
        let block = self.inflight.take();
        self.commits.push_back(PendingCommit { upper, block, progress: None, written: false });
        Ok(())
    }

    fn pipelined(&self) -> bool {
        true
    }

    fn durable(&mut self, wait: bool) -> Result<Option<Frontier<T>>> {
        let mut durable = None;
        while self.advance_oldest(wait)? {
            // `advance_oldest` put the durable commit back in front.
            let Some(c) = self.commits.pop_front() else { break };
            durable = Some(c.upper);
        }
        Ok(durable.and_then(Frontier::from_u64_frontier))
    }
}
