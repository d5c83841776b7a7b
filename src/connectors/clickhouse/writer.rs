//! The ClickHouse writer: RowBinary insert blocks over HTTP (JSONEachRow for tables with a column
//! type the RowBinary encoder cannot write), and the progress table.

use super::table::{check_field, check_fields, check_row, plan, Mode, TableColumn, TableInfo};
use super::ClickHouseConfig;
use crate::connectors::http::{client, excerpt, runtime, transport};
use crate::connectors::resumed_frontier;
use crate::delivery::retry::retry;
use crate::delivery::RetryPolicy;
use crate::encode::json::encode_json;
use crate::encode::rowbinary::{EncodeError, Encoded, RowBinaryEncoder};
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkMetrics, SinkTime, SinkWriter, WorkerContext, WorkerProgress,
};
use serde::Serialize;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Quotes an identifier for ClickHouse SQL.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Quotes a string literal for ClickHouse SQL.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Adds the `target` column to a progress table made before progress rows named their table.
/// Rows written before that have an empty target and are not read: such a sink starts again
/// (a replay, harmless on ReplacingMergeTree tables).
async fn ensure_target_column(ch: &ClickHouse, database: &str, table: &str, progress: &str) -> Result<()> {
    let has = |ch: &ClickHouse| {
        let sql = format!(
            "SELECT count() FROM system.columns WHERE database = {} AND table = {} AND name = 'target' FORMAT TSVRaw",
            literal(database),
            literal(table)
        );
        let ch = ch.clone();
        async move { Ok::<_, Error>(ch.query(&sql).await?.trim() != "0") }
    };
    if has(ch).await? {
        return Ok(());
    }
    if let Err(e) = ch.query(&format!("ALTER TABLE {progress} ADD COLUMN target String")).await {
        // Another worker may have added it first.
        if !has(ch).await? {
            return Err(e);
        }
    }
    Ok(())
}

/// ClickHouse exception codes after which the same request may succeed.
const RETRIABLE_CODES: &[u32] = &[159, 164, 202, 203, 209, 210, 241, 242, 252, 319, 425, 999];

/// A streamed insert starts once this many encoded bytes are waiting, and gets them in chunks of
/// at least this size.
const STREAM_CHUNK: usize = 256 << 10;

/// Bytes at the end of a streamed block's data that are held back until the block is complete.
const HOLD_BACK: usize = 2;

/// What the writer hands a streamed insert.
enum Chunk {
    /// More rows.
    Data(bytes::Bytes),
    /// The block is complete.
    End,
}

/// The body of an insert sent while its block is still being encoded. It ends cleanly only after
/// [`Chunk::End`]; if the writer stops midway (an error, a panic) the body fails and the request is
/// aborted. Every chunk before the last stops inside a row (see `HOLD_BACK`), so a block cut short
/// cannot parse and the server inserts none of it.
struct ChunkBody {
    // A Mutex only to make the body `Sync`, as reqwest asks; polling takes `&mut self`.
    rx: Mutex<mpsc::Receiver<Chunk>>,
}

/// The writer stopped before the end of a streamed block.
#[derive(Debug)]
struct Abandoned;

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the block was abandoned before its end")
    }
}

impl std::error::Error for Abandoned {}

impl http_body::Body for ChunkBody {
    type Data = bytes::Bytes;
    type Error = Abandoned;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<bytes::Bytes>, Abandoned>>> {
        let rx = self.get_mut().rx.get_mut().unwrap_or_else(|e| e.into_inner());
        rx.poll_recv(cx).map(|c| match c {
            Some(Chunk::Data(b)) => Some(Ok(http_body::Frame::data(b))),
            Some(Chunk::End) => None,
            None => Some(Err(Abandoned)),
        })
    }
}

/// The insert of the block being encoded, under way since its first chunk.
struct Stream {
    tx: mpsc::Sender<Chunk>,
    /// Bytes of the block handed over so far.
    sent: usize,
    task: JoinHandle<Result<()>>,
}

/// A connection to ClickHouse's HTTP interface.
#[derive(Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    cfg: Arc<ClickHouseConfig>,
    /// `cfg.url` with a trailing slash, parsed once.
    base: reqwest::Url,
}

impl ClickHouse {
    /// A client for `cfg`'s server.
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self> {
        let base = crate::connectors::http::parse_url("clickhouse.url", &format!("{}/", cfg.url))?;
        Ok(ClickHouse { http: client(cfg.timeout)?, cfg: Arc::new(cfg.clone()), base })
    }

    /// A request whose SQL is `query` in the URL (for inserts, whose body is data) or, when
    /// `None`, in the body.
    fn request(&self, query: Option<&str>, extra: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut params: Vec<(&str, &str)> = vec![("database", &self.cfg.database)];
        if let Some(q) = query {
            params.push(("query", q));
        }
        params.extend_from_slice(extra);
        let mut url = self.base.clone();
        url.query_pairs_mut().extend_pairs(&params);
        let mut r = self.http.post(url);
        if let Some(u) = &self.cfg.user {
            r = r.header("X-ClickHouse-User", u);
            if let Some(p) = &self.cfg.password {
                r = r.header("X-ClickHouse-Key", p.expose());
            }
        }
        r
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<String> {
        let resp = req.send().await.map_err(|e| transport(what, e))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| transport(what, e))?;
        if status == 200 {
            return Ok(body);
        }
        let code = body
            .strip_prefix("Code: ")
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse::<u32>().ok());
        let kind = match code {
            Some(c) if RETRIABLE_CODES.contains(&c) => ErrorKind::Retriable,
            Some(_) => ErrorKind::Fatal,
            None => crate::connectors::http::status_kind(status),
        };
        Err(Error::new(kind, format!("{what}: ClickHouse answered HTTP {status}: {}", excerpt(&body))))
    }

    /// Runs a query and returns its output (retrying transient failures).
    pub async fn query(&self, sql: &str) -> Result<String> {
        let what = format!("ClickHouse query `{}`", excerpt(sql));
        // A read of `system.tables` / `system.columns` can meet another table that is being
        // dropped at that moment, and older servers then fail the whole read with code 60
        // (unknown table): a race with someone else's DDL, so worth another try.
        let system = sql.contains("FROM system.");
        retry(&RetryPolicy::default(), &what, || async {
            match self.send(&what, self.request(None, &[]).body(sql.to_string())).await {
                Err(e) if system && e.kind() == ErrorKind::Fatal && e.to_string().contains("Code: 60,") => {
                    Err(Error::new(ErrorKind::Retriable, e.to_string()))
                }
                r => r,
            }
        })
        .await
    }

    /// Inserts `body` with `sql` (`INSERT INTO <table> … FORMAT …`).
    async fn insert(&self, sql: &str, body: bytes::Bytes, token: Option<&str>) -> Result<()> {
        let what = format!("inserting {} bytes with `{}`", body.len(), excerpt(sql));
        let mut extra = vec![("input_format_skip_unknown_fields", "0")];
        if let Some(t) = token {
            extra.push(("insert_deduplication_token", t));
        }
        retry(&RetryPolicy::default(), &what, || self.send(&what, self.request(Some(sql), &extra).body(body.clone())))
            .await
            .map(|_| ())
    }

    /// One attempt at an insert whose body arrives as the block is encoded.
    async fn insert_stream(&self, sql: &str, body: ChunkBody) -> Result<()> {
        let what = format!("streaming an insert with `{}`", excerpt(sql));
        let req = self.request(Some(sql), &[("input_format_skip_unknown_fields", "0")]);
        self.send(&what, req.body(reqwest::Body::wrap(body))).await.map(|_| ())
    }

    /// The server's time zone (`DateTime` columns without their own use it).
    pub async fn timezone(&self) -> Result<String> {
        Ok(self.query("SELECT timezone()").await?.trim().to_string())
    }

    /// The server's version as (major, minor).
    pub async fn version(&self) -> Result<(u32, u32)> {
        let v = self.query("SELECT version()").await?;
        let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
    }

    /// Reads the target table's engine and columns.
    pub async fn table(&self) -> Result<TableInfo> {
        let (db, t) = (&self.cfg.database, &self.cfg.table);
        let name = format!("{db}.{t}");
        let row = self
            .query(&format!(
                "SELECT engine, engine_full FROM system.tables WHERE database = {} AND name = {} FORMAT TSVRaw",
                literal(db),
                literal(t)
            ))
            .await?;
        let Some((engine, engine_full)) = row.trim_end_matches('\n').split_once('\t') else {
            return Err(Error::schema(format!(
                "ClickHouse table `{name}` does not exist; create it first (e.g. ENGINE = ReplacingMergeTree(ver) \
                 ORDER BY <primary key>) or fix `clickhouse.database` / `clickhouse.table`"
            )));
        };
        // system.columns lists a table's columns in table order.
        let cols = self
            .query(&format!(
                "SELECT name, type, is_in_sorting_key, default_kind FROM system.columns WHERE database = {} AND table = {} \
                 FORMAT TSVRaw",
                literal(db),
                literal(t)
            ))
            .await?;
        let columns = cols
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4).then(|| TableColumn {
                    name: f[0].to_string(),
                    ty: f[1].to_string(),
                    in_sorting_key: f[2] == "1",
                    has_default: !f[3].is_empty(),
                })
            })
            .collect();
        Ok(TableInfo { name, engine: engine.to_string(), engine_full: engine_full.to_string(), columns })
    }
}

/// Reads the table and checks the spec against it (at sink creation).
pub(crate) fn validate(cfg: &ClickHouseConfig, spec: &SinkSettings) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime to check the ClickHouse table", e))?;
    let ch = ClickHouse::new(cfg)?;
    let table = rt.block_on(ch.table())?;
    plan(spec, cfg, &table).map(|_| ())
}

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
    format: Format,
    table: Option<TableInfo>,
    mode: Mode,
    target: String,
    /// The target as the progress table records it (`database.table`, unquoted): a sink's
    /// progress rows are found by its name *and* its table.
    target_id: String,
    progress: String,
    tokens: bool,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    checked: bool,
    block: Vec<u8>,
    /// The RowBinary encoder, or `None` when the table is written as JSONEachRow.
    rowbinary: Option<RowBinaryEncoder>,
    /// The insert statement of the current block (its columns, for RowBinary).
    insert_sql: String,
    rows: usize,
    block_times: Option<(u64, u64)>,
    blocks_in_commit: u64,
    inflight: Option<JoinHandle<Result<()>>>,
    /// Commits started and not yet durable, oldest first (see `durable`).
    commits: VecDeque<PendingCommit>,
    /// Whether blocks are sent while they are encoded (only without deduplication tokens, whose
    /// value depends on the block's last time).
    streaming: bool,
    stream: Option<Stream>,
    /// What the sink appends to each row for the current time, as (insert, delete): the
    /// version / delete / sign columns, as `,"ver":t,"del":0` for JSONEachRow or their bytes for
    /// RowBinary.
    suffix: (Vec<u8>, Vec<u8>),
    batch_rows: usize,
    batch_bytes: usize,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V> ClickHouseWriter<V> {
    /// Opens a writer (the table is read again in `resume`).
    pub fn open(cfg: &ClickHouseConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(ClickHouseWriter {
            rt: runtime(1, spec.name())?,
            ch: ClickHouse::new(cfg)?,
            sink: spec.name().to_string(),
            spec: spec.clone(),
            format: spec.format().clone(),
            table: None,
            mode: Mode::Plain,
            target: format!("{}.{}", ident(&cfg.database), ident(&cfg.table)),
            target_id: format!("{}.{}", cfg.database, cfg.table),
            progress: format!("{}.{}", ident(&cfg.database), ident(&cfg.progress_table)),
            tokens: false,
            ctx: None,
            resume: None,
            checked: spec.schema().is_some(),
            block: Vec::with_capacity(1 << 20),
            rowbinary: None,
            insert_sql: String::new(),
            rows: 0,
            block_times: None,
            blocks_in_commit: 0,
            inflight: None,
            commits: VecDeque::new(),
            streaming: false,
            stream: None,
            suffix: (Vec::new(), Vec::new()),
            batch_rows: cfg.batch_rows,
            batch_bytes: cfg.batch_bytes,
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        })
    }

    fn set_time(&mut self, time: u64) -> Result<()> {
        let (ins, del) = (&mut self.suffix.0, &mut self.suffix.1);
        ins.clear();
        del.clear();
        if self.rowbinary.is_some() {
            // The types were checked by `plan`: version UInt64 or Int64, delete UInt8 or Int8, sign Int8.
            match &self.mode {
                Mode::Plain => {}
                Mode::Replacing { version, delete } => {
                    let signed = self.table.as_ref().and_then(|t| t.columns.iter().find(|c| &c.name == version));
                    if signed.is_some_and(|c| c.ty == "Int64") && time > i64::MAX as u64 {
                        return Err(Error::encode(format!(
                            "logical time {time} does not fit the Int64 version column `{version}`; make it UInt64"
                        )));
                    }
                    ins.extend_from_slice(&time.to_le_bytes());
                    del.extend_from_slice(&time.to_le_bytes());
                    if delete.is_some() {
                        ins.push(0);
                        del.push(1);
                    }
                }
                Mode::Collapsing { .. } => {
                    ins.push(1);
                    del.push(-1i8 as u8);
                }
            }
            return Ok(());
        }
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.push(b',');
            serde_json::to_writer(&mut *out, name).expect("string encodes");
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        let t = time.to_string();
        match &self.mode {
            Mode::Plain => {}
            Mode::Replacing { version, delete } => {
                field(ins, version, &t);
                field(del, version, &t);
                if let Some(d) = delete {
                    field(ins, d, "0");
                    field(del, d, "1");
                }
            }
            Mode::Collapsing { sign } => {
                field(ins, sign, "1");
                field(del, sign, "-1");
            }
        }
        Ok(())
    }

    /// Appends one row, as `insert` (true) or as the row that cancels / deletes it.
    fn push<R: Serialize + ?Sized>(&mut self, key: &Key, row: &R, insert: bool) -> Result<()> {
        if self.rowbinary.is_some() {
            self.push_rowbinary(key, row, insert)
        } else {
            self.push_json(row, insert)
        }
    }

    /// Appends one row as RowBinary. A row with other fields than the block's columns ends the
    /// block and starts one with its columns.
    fn push_rowbinary<R: Serialize + ?Sized>(&mut self, key: &Key, row: &R, insert: bool) -> Result<()> {
        for _ in 0..2 {
            let enc = self.rowbinary.as_mut().expect("RowBinary encoder");
            let columns = match enc.encode(row, &mut self.block) {
                Ok(Encoded::Written) => {
                    self.block.extend_from_slice(if insert { &self.suffix.0 } else { &self.suffix.1 });
                    self.rows += 1;
                    return Ok(());
                }
                Ok(Encoded::Columns(columns)) => columns,
                Err(e) => return Err(self.row_error(key, e)),
            };
            let table = self.table.as_ref().ok_or_else(|| Error::config("write before resume"))?;
            if !self.checked {
                check_fields(table, &self.mode, &columns.iter().map(|&i| enc.name(i)).collect::<Vec<_>>())?;
                self.checked = true;
            }
            let list: Vec<String> =
                columns.iter().map(|&i| enc.name(i)).chain(self.mode.managed()).map(ident).collect();
            enc.set_columns(columns);
            self.ship()?;
            self.insert_sql = format!("INSERT INTO {} ({}) FORMAT RowBinary", self.target, list.join(", "));
        }
        Err(Error::new(ErrorKind::Fatal, "a row's columns changed while it was encoded"))
    }

    fn row_error(&self, key: &Key, e: EncodeError) -> Error {
        let table = self.table.as_ref().map_or("?", |t| t.name.as_str());
        if let (EncodeError::UnknownColumn(c), Some(t)) = (&e, &self.table) {
            if let Err(e) = check_field(t, &self.mode, c) {
                return e;
            }
        }
        let key = match key.bytes() {
            Ok([]) => String::new(),
            _ => format!(" with key {key:?}"),
        };
        Error::encode(format!("sink `{}`: the row{key} does not fit ClickHouse table `{table}`: {e}", self.sink))
    }

    /// Appends one row as a JSONEachRow line.
    fn push_json<R: Serialize + ?Sized>(&mut self, row: &R, insert: bool) -> Result<()> {
        let start = self.block.len();
        encode_json(row, &mut self.block)?;
        if !self.checked {
            let table = self.table.as_ref().ok_or_else(|| Error::config("write before resume"))?;
            let v: serde_json::Value = serde_json::from_slice(&self.block[start..])
                .map_err(|e| Error::encode(format!("a row's JSON does not parse back: {e}")))?;
            check_row(table, &self.mode, &v)?;
            self.checked = true;
        }
        let suffix = if insert { &self.suffix.0 } else { &self.suffix.1 };
        if !suffix.is_empty() {
            if self.block.last() != Some(&b'}') {
                return Err(Error::schema("rows for ClickHouse must serialize as JSON objects"));
            }
            self.block.pop();
            let s = if self.block.len() == start + 1 { &suffix[1..] } else { &suffix[..] };
            self.block.extend_from_slice(s);
            self.block.push(b'}');
        }
        self.block.push(b'\n');
        self.rows += 1;
        Ok(())
    }

    /// Sends the current block (after the previous one has been acknowledged: blocks of a worker
    /// reach the table in time order, which CollapsingMergeTree needs).
    fn ship(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        self.wait()?;
        // The next block is likely as large as this one: allocate that much once, not by doubling.
        let capacity = self.block.len().clamp(1 << 20, self.batch_bytes);
        let body = bytes::Bytes::from(std::mem::replace(&mut self.block, Vec::with_capacity(capacity)));
        let (lo, hi) = self.block_times.take().unwrap_or((0, 0));
        self.blocks_in_commit += 1;
        let token = self.tokens.then(|| {
            let ctx = self.ctx.unwrap_or(WorkerContext { index: 0, peers: 1 });
            let generation = self.resume.as_ref().map_or(0, |r| r.generation);
            format!("{}-w{}-g{generation}-t{lo}-{hi}-b{}", self.sink, ctx.index, self.blocks_in_commit)
        });
        SinkMetrics::add(&self.metrics.records_out, self.rows as u64);
        SinkMetrics::add(&self.metrics.bytes_out, body.len() as u64);
        self.rows = 0;
        let (ch, sql) = (self.ch.clone(), self.insert_sql.clone());
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
            let (ch, sql) = (self.ch.clone(), self.insert_sql.clone());
            let body = ChunkBody { rx: Mutex::new(rx) };
            let task = self.rt.spawn(async move { ch.insert_stream(&sql, body).await });
            self.stream = Some(Stream { tx, sent: 0, task });
        }
        let s = self.stream.as_mut().expect("started above");
        // The last two bytes (`}\n` of a JSON line, or the end of a RowBinary row, which has no
        // terminator) wait for the next chunk: whatever the server has received before the block
        // ends stops inside a row. If the request is cut off — the writer failed, or the process
        // died — the server, which takes the end of a cut-off body as the end of the data, fails to
        // parse it and inserts nothing, instead of inserting the rows before the cut.
        let end = self.block.len().saturating_sub(HOLD_BACK).max(s.sent);
        let chunk = bytes::Bytes::copy_from_slice(&self.block[s.sent..end]);
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
        let rec = point.record(ctx, upper);
        let split = |f: &Frontier<u64>| (f.to_u64().unwrap_or(0), u8::from(f.is_complete()));
        let ((b, bc), (f, fc)) = (split(&rec.base), split(&rec.frontier));
        Ok(format!(
            "INSERT INTO {} (sink, target, worker, peers, generation, base, base_complete, frontier, complete) VALUES ({}, {}, {}, {}, {}, {b}, {bc}, {f}, {fc})",
            self.progress,
            literal(&self.sink),
            literal(&self.target_id),
            rec.worker,
            rec.peers,
            rec.generation
        ))
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
        let (progress, sink, target) = (self.progress.clone(), self.sink.clone(), self.target_id.clone());
        let cfg = self.ch.cfg.clone();
        let (table, version, tz, records) = self.rt.block_on(async move {
            let table = ch.table().await?;
            let version = ch.version().await?;
            let tz = ch.timezone().await?;
            ch.query(&format!(
                "CREATE TABLE IF NOT EXISTS {progress} (sink String, target String, worker UInt32, peers UInt32, \
                 generation UInt64, base UInt64, base_complete UInt8, frontier UInt64, complete UInt8) \
                 ENGINE = MergeTree ORDER BY (sink, generation, worker)"
            ))
            .await?;
            ensure_target_column(&ch, &cfg.database, &cfg.progress_table, &progress).await?;
            let rows = ch
                .query(&format!(
                    "SELECT worker, peers, generation, base, base_complete, frontier, complete FROM {progress} \
                     WHERE sink = {} AND target = {} \
                     ORDER BY complete DESC, frontier DESC LIMIT 1 BY generation, worker FORMAT TSVRaw",
                    literal(&sink),
                    literal(&target)
                ))
                .await?;
            Ok::<_, Error>((table, version, tz, rows))
        })?;
        let mut progress = Vec::new();
        for line in records.lines() {
            let unreadable = || {
                Error::new(
                    ErrorKind::Resume,
                    format!(
                        "sink `{}`: unreadable progress record `{line}` in {}; delete this sink's rows there to start over",
                        self.sink, self.progress
                    ),
                )
            };
            let f: Vec<u64> = line.split('\t').map(|x| x.parse().map_err(|_| unreadable())).collect::<Result<_>>()?;
            if f.len() != 7 || f[4] > 1 || f[6] > 1 || u32::try_from(f[0]).is_err() || u32::try_from(f[1]).is_err() {
                return Err(unreadable());
            }
            let fr = |v: u64, complete: u64| if complete == 1 { Frontier::complete() } else { Frontier::at(v) };
            progress.push(WorkerProgress {
                worker: f[0] as usize,
                peers: f[1] as usize,
                generation: f[2],
                base: fr(f[3], f[4]),
                frontier: fr(f[5], f[6]),
            });
        }
        let point = resolve_resume(&progress, ctx)?;
        // The spec was checked at creation; the table may have changed since.
        self.mode = plan(&self.spec, &self.ch.cfg, &table)?;
        self.tokens = version >= (22, 2);
        self.streaming = !self.tokens;
        let managed = self.mode.managed();
        let columns = table.columns.iter().filter(|c| !managed.contains(&c.name.as_str()));
        self.rowbinary = match RowBinaryEncoder::new(columns.map(|c| (c.name.as_str(), c.ty.as_str())), &tz) {
            Ok(enc) => Some(enc),
            Err(unsupported) => {
                let list: Vec<String> = unsupported.iter().map(|(c, t)| format!("`{c}` {t}")).collect();
                tracing::info!(
                    sink = %self.sink,
                    "ClickHouse table `{}` has column(s) {} that the RowBinary encoder cannot write; inserting \
                     JSONEachRow instead",
                    table.name,
                    list.join(", ")
                );
                None
            }
        };
        self.insert_sql = format!("INSERT INTO {} FORMAT JSONEachRow", self.target);
        self.table = Some(table);
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let t = time.to_u64();
        self.set_time(t)?;
        self.block_times = Some(self.block_times.map_or((t, t), |(lo, _)| (lo, t)));
        for change in changes.iter() {
            match (&self.format, &self.mode) {
                (Format::Upsert, Mode::Replacing { .. }) => match (&change.before, &change.after) {
                    (_, Some(after)) => self.push(&change.key, after, true)?,
                    (Some(before), None) => self.push(&change.key, before, false)?,
                    (None, None) => {}
                },
                (Format::Upsert, _) => {
                    if let Some(before) = &change.before {
                        self.push(&change.key, before, false)?;
                    }
                    if let Some(after) = &change.after {
                        self.push(&change.key, after, true)?;
                    }
                }
                (format, _) => {
                    let mut rows: Vec<&V> = Vec::with_capacity(1);
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        self.push(&change.key, r, true)?;
                    }
                }
            }
            if self.rows >= self.batch_rows || self.block.len() >= self.batch_bytes {
                self.ship()?;
            } else if self.streaming && self.block.len() - self.stream.as_ref().map_or(0, |s| s.sent) >= STREAM_CHUNK {
                self.stream_more()?;
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let upper = upper.to_u64_frontier();
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
            let c = self.commits.pop_front().expect("advanced");
            durable = Some(c.upper);
        }
        Ok(durable.and_then(Frontier::from_u64_frontier))
    }
}
