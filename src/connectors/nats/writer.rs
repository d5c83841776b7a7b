//! The NATS connector's writer: publishes records on core NATS or JetStream, awaits their acks
//! at commit, then records the committed frontier in the progress stream ([`super::progress`]).

use super::config::{ConnectMode, NatsConfig, ProgressStore};
use super::progress::ProgressStream;
use crate::delivery::{retry::retry, AsyncRecordWriter, Bridge, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Record, RecordBatch};
use crate::settings::SinkSettings;
use crate::stable_hash::digest128;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use bytes::Bytes;
use differential_sinks_operators::{resolve_resume, Frontier, ResumePoint, WorkerContext, WorkerMetrics};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Header carrying the record's encoded key (keyed formats).
pub const KEY_HEADER: &str = "Dsink-Key";
/// Header carrying the operation: `c`, `u` or `d`.
pub const OP_HEADER: &str = "Dsink-Op";
/// Header carrying the record's logical time.
pub const TIME_HEADER: &str = "Dsink-Time";
/// The header JetStream deduplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Counters of one sink's NATS delivery, shared by its workers.
#[derive(Debug, Default)]
pub struct NatsStats {
    /// Publishes acknowledged by JetStream as duplicates (replays the stream dropped).
    pub duplicates: AtomicU64,
    /// Publishes sent again after a retriable failure.
    pub retries: AtomicU64,
}

/// Opens a worker's NATS writer: the async client runs behind a [`Bridge`].
pub fn open(config: &NatsConfig, spec: &SinkSettings, stats: Arc<NatsStats>) -> Result<Bridge> {
    let w = NatsWriter {
        config: config.clone(),
        sink: spec.name().to_string(),
        keyed: spec.primary_key().is_some() || spec.key_by_function,
        stats,
        metrics: spec.worker_metrics(),
        conn: None,
        ctx: None,
        point: None,
        in_flight: VecDeque::new(),
        held: VecDeque::new(),
        next_batch: 0,
        backoff: None,
        scratch: String::new(),
    };
    Bridge::spawn(spec.name(), 4, w)
}

struct Conn {
    client: async_nats::Client,
    js: Option<jetstream::Context>,
    /// The progress stream, with this sink's subjects in it.
    progress: Option<ProgressStream>,
}

/// One worker's asynchronous NATS writer.
struct NatsWriter {
    config: NatsConfig,
    sink: String,
    keyed: bool,
    stats: Arc<NatsStats>,
    /// Where retries are counted.
    metrics: WorkerMetrics,
    conn: Option<Conn>,
    ctx: Option<WorkerContext>,
    point: Option<ResumePoint<u64>>,
    /// Publishes whose ack is outstanding: (batch number, record index, ack).
    in_flight: VecDeque<(u64, u32, PublishAckFuture)>,
    /// Batches with outstanding acks, kept to publish a record again if its ack fails.
    held: VecDeque<(u64, Arc<RecordBatch>)>,
    next_batch: u64,
    /// Retries since the last acknowledged publish (`None`: no failure since).
    backoff: Option<crate::delivery::Backoff>,
    scratch: String,
}

fn transport(what: &str, e: impl std::fmt::Display, retriable: bool) -> Error {
    let kind = if retriable { ErrorKind::Retriable } else { ErrorKind::Fatal };
    Error::new(kind, format!("NATS: {what}: {e}"))
}

/// A failed connection: a refused login or a TLS failure stops the sink (retrying cannot cure it)
/// with the options to check; anything else is retried.
fn connect_error(server_url: &str, e: async_nats::ConnectError) -> Error {
    use async_nats::ConnectErrorKind as K;
    let what = format!("NATS: connecting to {}", crate::secret::redact_url(server_url));
    let text = e.to_string();
    match e.kind() {
        K::Authentication | K::AuthorizationViolation => Error::new(
            ErrorKind::Config,
            format!("{what}: {text}; check `connect_mode` and `username` / `password` (or the URL's user and password), or `jwt` / `nkey`"),
        ),
        K::Tls => Error::new(ErrorKind::Config, format!("{what}: {text}; {TLS_HINT}")),
        _ if text.to_ascii_lowercase().contains("certificate") => Error::new(ErrorKind::Config, format!("{what}: {text}; {TLS_HINT}")),
        K::ServerParse => transport("connecting", e, false),
        _ => Error::new(ErrorKind::Retriable, format!("{what}: {text}")),
    }
}

const TLS_HINT: &str = "check `ssl.root.cert` (the CA that signed the server's certificate), the host in `server_url` \
    against the certificate, and `ssl.cert` / `ssl.key` when the server verifies clients";

fn publish_error(e: async_nats::jetstream::context::PublishError, key: &[u8]) -> Error {
    match e.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            transport("publishing", e, true)
        }
        PublishErrorKind::MaxPayloadExceeded => Error::new(
            ErrorKind::Fatal,
            format!(
                "NATS: the record with key {} is larger than the server's max_payload ({e}); raise max_payload or shrink the row",
                String::from_utf8_lossy(key)
            ),
        ),
        PublishErrorKind::StreamNotFound => Error::new(
            ErrorKind::Fatal,
            format!("NATS: no JetStream stream takes this subject ({e}); create one or set `stream.create = true`"),
        ),
        _ => transport("publishing", e, false),
    }
}

/// The subject token for a key: the key itself when it is made of `[A-Za-z0-9_-]` (and does not
/// start with `~`), otherwise `~` followed by its URL-safe base64.
pub fn subject_token(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-') {
        String::from_utf8(key.to_vec()).expect("ascii")
    } else {
        format!("~{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
    }
}

/// The `Nats-Msg-Id` of a keyed record: sink, subject, time, the record's index among its key's
/// records at that time (a Debezium delete may be followed by a tombstone), and the key (or its
/// digest when longer than 96 bytes). It depends on the data alone, not on the worker that sends
/// it; the subject keeps two sinks of one name that publish to one stream apart.
pub fn message_id(out: &mut String, sink: &str, subject: &str, time: u64, nth: u32, key: &[u8]) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{sink}|{subject}|{time}|{nth}|");
    if key.len() <= 96 && !key.iter().any(|b| *b == b'\r' || *b == b'\n') {
        out.push_str(&String::from_utf8_lossy(key));
    } else {
        let _ = write!(out, "#{:032x}", digest128(key));
    }
}

/// The `Nats-Msg-Id` of an unkeyed record: sink, subject, time, the worker (and worker count)
/// and the record's position among that worker's records of the whole time — stable across
/// restarts with the same worker count, since a time's delivery order depends only on its
/// consolidated changes.
pub fn unkeyed_message_id(out: &mut String, sink: &str, subject: &str, time: u64, ctx: WorkerContext, pos: u64) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "{sink}|{subject}|{time}|w{}of{}|{pos}", ctx.index, ctx.peers);
}

impl NatsWriter {
    fn conn(&self) -> Result<&Conn> {
        self.conn.as_ref().ok_or_else(|| Error::config("NATS writer used before resume"))
    }

    async fn connect(&self, ctx: WorkerContext) -> Result<Conn> {
        let c = &self.config;
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("dsink-{}-w{}", self.sink, ctx.index))
            .connection_timeout(c.timeout)
            .request_timeout(Some(c.timeout));
        let wants_tls = c.tls.required || c.server_url.split(',').any(|u| u.trim().starts_with("tls://"));
        if wants_tls {
            opts = opts.require_tls(true);
        }
        // Always our own rustls configuration (the `ring` provider): left to itself, the client
        // would ask rustls for a process-wide provider, which panics when a build enables two.
        match c.tls_config() {
            Ok(config) => opts = opts.tls_client_config((*config).clone()),
            Err(e) if wants_tls || c.tls.root_cert.is_some() || c.tls.client.is_some() => return Err(e),
            Err(_) => {} // no system roots, and TLS not asked for
        }
        opts = match &c.connect_mode {
            ConnectMode::Plain => match c.url_credentials() {
                Some((user, password)) => opts.user_and_password(user, password.expose().to_string()),
                None => opts,
            },
            ConnectMode::UserAndPassword { username, password } => {
                opts.user_and_password(username.clone(), password.expose().to_string())
            }
            ConnectMode::Credential { jwt, nkey } => {
                let kp = Arc::new(
                    nkeys::KeyPair::from_seed(nkey.expose())
                        .map_err(|e| Error::config(format!("option `nkey` is not an nkey seed: {e}")))?,
                );
                opts.jwt(jwt.expose().to_string(), move |nonce| {
                    let kp = Arc::clone(&kp);
                    async move { kp.sign(&nonce).map_err(async_nats::AuthError::new) }
                })
            }
        };
        let client = opts.connect(c.server_url.as_str()).await.map_err(|e| connect_error(&c.server_url, e))?;
        let needs_js = c.stream.is_some() || matches!(c.progress, ProgressStore::Stream(_));
        let js = needs_js.then(|| {
            jetstream::context::ContextBuilder::new()
                .timeout(c.timeout)
                .max_ack_inflight(c.max_inflight)
                .backpressure_on_inflight(true)
                .build(client.clone())
        });
        if let (Some(js), Some(name)) = (&js, &c.stream) {
            self.check_stream(js, name).await?;
        }
        let progress = match (&js, &c.progress) {
            (Some(js), ProgressStore::Stream(name)) => {
                Some(ProgressStream::open(js, name, &self.sink, &self.config).await?)
            }
            _ => None,
        };
        Ok(Conn { client, js, progress })
    }

    async fn check_stream(&self, js: &jetstream::Context, name: &str) -> Result<()> {
        let c = &self.config;
        let found = js.get_stream(name).await;
        let info = match found {
            Ok(s) => s.cached_info().clone(),
            Err(e) if c.create_stream => {
                tracing::info!(stream = name, error = %e, "creating the JetStream stream");
                let subjects = if c.key_suffix { vec![format!("{}.>", c.subject)] } else { vec![c.subject.clone()] };
                let cfg = stream::Config {
                    name: name.to_string(),
                    subjects,
                    duplicate_window: c.duplicate_window,
                    ..Default::default()
                };
                js.get_or_create_stream(cfg)
                    .await
                    .map_err(|e| transport(&format!("creating stream `{name}`"), e, true))?
                    .cached_info()
                    .clone()
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "NATS: JetStream stream `{name}` is not available ({e}): create it for subject `{}` or set `stream.create = true`",
                    c.subject
                )))
            }
        };
        if info.config.duplicate_window.is_zero() {
            return Err(Error::config(format!(
                "NATS: stream `{name}` has no duplicate window, so replays after a restart would not be dropped; \
                 give it one (e.g. 2 minutes)"
            )));
        }
        Ok(())
    }

    /// Publishes record `idx` of `batch` (again, if it was sent before: the message id is the same).
    async fn publish(
        &mut self,
        batch: &RecordBatch,
        idx: u32,
        nth: u32,
        rec: Record<'_>,
    ) -> Result<Option<PublishAckFuture>> {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(OP_HEADER), HeaderValue::from(rec.op.code()));
        headers.insert(HeaderName::from_static(TIME_HEADER), batch.time.to_string().as_str());
        let key = rec.key;
        if self.keyed {
            let k = std::str::from_utf8(key).map_err(|_| Error::encode("NATS: a key is not UTF-8"))?;
            if k.contains(['\r', '\n']) {
                return Err(Error::encode(format!("NATS: key {k:?} contains a line break and cannot go in a header")));
            }
            headers.insert(HeaderName::from_static(KEY_HEADER), k);
        }
        let subject = if self.config.key_suffix && self.keyed {
            format!("{}.{}", self.config.subject, subject_token(key))
        } else {
            self.config.subject.clone()
        };
        let payload = Bytes::copy_from_slice(rec.value.unwrap_or(b""));
        let conn = self.conn.as_ref().expect("resumed");
        match (&conn.js, &self.config.stream) {
            (Some(js), Some(_)) => {
                if self.keyed {
                    message_id(&mut self.scratch, &self.sink, &self.config.subject, batch.time, nth, key);
                } else {
                    let (ctx, pos) = (self.ctx.expect("resumed"), batch.first + u64::from(idx));
                    unkeyed_message_id(&mut self.scratch, &self.sink, &self.config.subject, batch.time, ctx, pos);
                }
                headers.insert(HeaderName::from_static(MSG_ID_HEADER), self.scratch.as_str());
                let msg = jetstream::message::PublishMessage::build().payload(payload).headers(headers);
                js.send_publish(subject, msg).await.map(Some).map_err(|e| publish_error(e, key))
            }
            _ => conn
                .client
                .publish_with_headers(subject, headers, payload)
                .await
                .map(|_| None)
                .map_err(|e| transport("publishing", e, true)),
        }
    }

    /// The delay before the next retry after `err`, or the error once the retry policy gives up.
    fn next_delay(&mut self, err: Error) -> Result<std::time::Duration> {
        let metrics = &self.metrics;
        let backoff = self
            .backoff
            .get_or_insert_with(|| crate::delivery::Backoff::new(RetryPolicy::default()).counting(Some(metrics)));
        match backoff.next_delay() {
            Some(delay) => {
                tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "NATS publish: retrying");
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                Ok(delay)
            }
            None => Err(Error::new(
                err.kind(),
                format!("NATS publish: still failing after {} attempts: {err}", backoff.attempts()),
            )),
        }
    }

    /// The batch numbered `bn`, kept until its acks settle.
    fn held(&self, bn: u64) -> Result<Arc<RecordBatch>> {
        self.held
            .iter()
            .find(|(n, _)| *n == bn)
            .map(|(_, b)| Arc::clone(b))
            .ok_or_else(|| Error::new(ErrorKind::Fatal, format!("NATS writer: batch {bn} released before its acks")))
    }

    /// Publishes record `idx` of batch `bn` — retrying a retriable failure after a backoff — and
    /// queues its ack.
    async fn send(&mut self, batch: &RecordBatch, bn: u64, idx: u32) -> Result<()> {
        let rec = batch
            .get(idx as usize)
            .ok_or_else(|| Error::new(ErrorKind::Fatal, format!("NATS writer: no record {idx} in batch {bn}")))?;
        let nth = nth_of(batch, idx as usize);
        loop {
            match self.publish(batch, idx, nth, rec).await {
                Ok(Some(ack)) => {
                    self.in_flight.push_back((bn, idx, ack));
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(e) if e.is_retriable() => tokio::time::sleep(self.next_delay(e)?).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Awaits the oldest outstanding ack. When it fails retriably, every ack still outstanding
    /// was sent before the failure and is as likely lost (a reconnect drops them all, and each
    /// would otherwise be waited out one timeout after another): all of them are published
    /// again after a backoff delay, under the same message ids, so JetStream keeps one copy of
    /// each. Failures in a row are bounded by the retry policy.
    async fn settle_one(&mut self) -> Result<()> {
        let Some((bn, idx, ack)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match ack.await {
            Ok(ack) => {
                self.backoff = None;
                if ack.duplicate {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                let oldest = self.in_flight.front().map_or(u64::MAX, |f| f.0);
                while self.held.front().is_some_and(|(n, _)| *n < oldest) {
                    self.held.pop_front();
                }
                Ok(())
            }
            Err(e) => {
                let batch = self.held(bn)?;
                let err = publish_error(e, batch.get(idx as usize).map_or(&b""[..], |r| r.key));
                if !err.is_retriable() {
                    return Err(err);
                }
                tokio::time::sleep(self.next_delay(err)?).await;
                let mut again = vec![(bn, idx)];
                again.extend(self.in_flight.drain(..).map(|(b, i, _)| (b, i)));
                for (b, i) in again {
                    let batch = if b == bn { Arc::clone(&batch) } else { self.held(b)? };
                    self.send(&batch, b, i).await?;
                }
                Ok(())
            }
        }
    }
}

/// The index of record `idx` among the records of the same key before it in `batch` (a key's
/// records are adjacent).
fn nth_of(batch: &RecordBatch, idx: usize) -> u32 {
    let Some(key) = batch.get(idx).map(|r| r.key) else {
        return 0;
    };
    (0..idx).rev().take_while(|&i| batch.get(i).is_some_and(|r| r.key == key)).count() as u32
}

impl AsyncRecordWriter for NatsWriter {
    async fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<u64>> {
        let policy = RetryPolicy::default();
        let conn = retry(&policy, "NATS connect", || self.connect(ctx)).await?;
        self.conn = Some(conn);
        self.ctx = Some(ctx);
        let records = match &self.conn()?.progress {
            Some(p) => retry(&policy, "reading NATS progress records", || p.read()).await?,
            None => Vec::new(),
        };
        let point = resolve_resume(&records, ctx)?;
        let f = point.frontier;
        self.point = Some(point);
        Ok(f)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let bn = self.next_batch;
        self.next_batch += 1;
        let batch = Arc::new(batch);
        // Held from the start: a failed ack publishes its record again from here.
        self.held.push_back((bn, Arc::clone(&batch)));
        let limit = (self.config.max_inflight / 2).max(1);
        for i in 0..batch.len() as u32 {
            self.send(&batch, bn, i).await?;
            while self.in_flight.len() > limit {
                self.settle_one().await?;
            }
        }
        if self.in_flight.is_empty() {
            self.held.clear();
        }
        Ok(())
    }

    async fn commit(&mut self, upper: Frontier<u64>) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        self.held.clear();
        crate::operators::crash_point("commit.mid");
        let conn = self.conn()?;
        if conn.js.is_none() || self.config.stream.is_none() {
            conn.client.flush().await.map_err(|e| transport("flushing", e, true))?;
        }
        if let (Some(progress), Some(js)) = (&conn.progress, &conn.js) {
            let (Some(ctx), Some(point)) = (self.ctx, self.point.as_ref()) else {
                return Err(Error::config("NATS writer committed before resume"));
            };
            progress.record(js, &point.record(ctx, upper)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Op;

    #[test]
    fn tokens_and_ids() {
        assert_eq!(subject_token(b"abc-1_2"), "abc-1_2");
        assert!(subject_token(br#"{"k":1}"#).starts_with('~'));
        assert!(!subject_token(br#"{"k":1}"#).contains(['.', '*', '>', ' ']));
        let mut s = String::new();
        message_id(&mut s, "orders", "o.all", 7, 0, br#"{"k":1}"#);
        assert_eq!(s, r#"orders|o.all|7|0|{"k":1}"#);
        message_id(&mut s, "orders", "o.all", 7, 1, &[b'x'; 200]);
        assert!(s.starts_with("orders|o.all|7|1|#") && s.len() < 70, "{s}");
        unkeyed_message_id(&mut s, "orders", "o.all", 7, WorkerContext::new(1, 2), 70_000);
        assert_eq!(s, "orders|o.all|7|w1of2|70000");
    }

    #[test]
    fn nth_counts_same_key_records() {
        let mut b = RecordBatch::new(1);
        for k in [&b"a"[..], b"b", b"b", b"c"] {
            b.push::<fn(&mut Vec<u8>) -> Result<()>>(k, None, Op::Delete).unwrap();
        }
        assert_eq!((0..4).map(|i| nth_of(&b, i)).collect::<Vec<_>>(), [0, 0, 1, 0]);
    }
}
