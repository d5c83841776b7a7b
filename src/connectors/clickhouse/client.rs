//! The HTTP client of the ClickHouse connector: queries, inserts with retries of transient
//! failures, and inserts whose body streams while its block is still being encoded.

use super::config::ClickHouseConfig;
use crate::connectors::http::{client, excerpt, transport};
use crate::delivery::retry::retry_counted;
use crate::delivery::RetryPolicy;
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::WorkerMetrics;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// ClickHouse exception codes after which the same request may succeed.
const RETRIABLE_CODES: &[u32] = &[159, 164, 202, 203, 209, 210, 241, 242, 252, 319, 425, 999];

/// A streamed insert starts once this many encoded bytes are waiting, and gets them in chunks of
/// at least this size.
pub(crate) const STREAM_CHUNK: usize = 256 << 10;

/// Bytes at the end of a streamed block's data that are held back until the block is complete.
pub(crate) const HOLD_BACK: usize = 2;

/// What the writer hands a streamed insert.
pub(crate) enum Chunk {
    /// More rows.
    Data(bytes::Bytes),
    /// The block is complete.
    End,
}

/// The body of an insert sent while its block is still being encoded. It ends cleanly only after
/// [`Chunk::End`]; if the writer stops midway (an error, a panic) the body fails and the request is
/// aborted. Every chunk before the last stops inside a row (see `HOLD_BACK`), so a block cut short
/// cannot parse and the server inserts none of it.
pub(crate) struct ChunkBody {
    // A Mutex only to make the body `Sync`, as reqwest asks; polling takes `&mut self`.
    pub(crate) rx: Mutex<mpsc::Receiver<Chunk>>,
}

/// The writer stopped before the end of a streamed block.
#[derive(Debug)]
pub(crate) struct Abandoned;

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
pub(crate) struct Stream {
    pub(crate) tx: mpsc::Sender<Chunk>,
    /// Bytes of the block handed over so far.
    pub(crate) sent: usize,
    pub(crate) task: JoinHandle<Result<()>>,
}

/// A connection to ClickHouse's HTTP interface.
#[derive(Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    pub(crate) cfg: Arc<ClickHouseConfig>,
    /// `cfg.url` with a trailing slash, parsed once.
    base: reqwest::Url,
    /// Where retries are counted (a writer's client).
    metrics: Option<WorkerMetrics>,
}

impl ClickHouse {
    /// A client for `cfg`'s server.
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self> {
        let base = crate::connectors::http::parse_url("clickhouse.url", &format!("{}/", cfg.url))?;
        Ok(ClickHouse { http: client(cfg.timeout)?, cfg: Arc::new(cfg.clone()), base, metrics: None })
    }

    /// This client, counting its retries in `metrics`.
    pub(crate) fn counting_retries(mut self, metrics: WorkerMetrics) -> Self {
        self.metrics = Some(metrics);
        self
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
        retry_counted(&RetryPolicy::default(), &what, self.metrics.as_ref(), || async {
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
    pub(crate) async fn insert(&self, sql: &str, body: bytes::Bytes, token: Option<&str>) -> Result<()> {
        let what = format!("inserting {} bytes with `{}`", body.len(), excerpt(sql));
        let mut extra = vec![("input_format_skip_unknown_fields", "0")];
        if let Some(t) = token {
            extra.push(("insert_deduplication_token", t));
        }
        let send = || self.send(&what, self.request(Some(sql), &extra).body(body.clone()));
        retry_counted(&RetryPolicy::default(), &what, self.metrics.as_ref(), send).await.map(|_| ())
    }

    /// One attempt at an insert whose body arrives as the block is encoded.
    pub(crate) async fn insert_stream(&self, sql: &str, body: ChunkBody) -> Result<()> {
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
}
