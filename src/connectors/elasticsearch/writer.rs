//! The Elasticsearch writer: `_bulk` requests per key lane, per-item outcomes, progress documents.

use super::config::{ElasticsearchConfig, Versioning};
use crate::connectors::http::{client, excerpt, runtime, status_kind, transport};
use crate::connectors::resumed_frontier;
use crate::delivery::{Backoff, RetryPolicy};
use crate::encode::json::encode_json;
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{Key, KeyColumns, KeyEncoding};
use crate::settings::SinkSettings;
use crate::stable_hash::scope_id;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkMetrics, SinkTime, SinkWriter, WorkerContext, WorkerProgress,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One action of a `_bulk` body: its lines' byte range and its document id's range (JSON text).
#[derive(Clone, Copy, Debug)]
struct Item {
    start: u32,
    end: u32,
    id: (u32, u32),
}

/// One lane's pending request.
#[derive(Default)]
struct Lane {
    body: Vec<u8>,
    items: Vec<Item>,
    inflight: Option<JoinHandle<Result<()>>>,
}

#[derive(Clone)]
struct Bulk {
    http: reqwest::Client,
    url: String,
    auth: Option<(String, Option<String>)>,
    versioning: Versioning,
    policy: RetryPolicy,
}

#[derive(Deserialize)]
struct Head {
    errors: bool,
}

#[derive(Deserialize)]
struct Full {
    #[serde(default)]
    items: Vec<HashMap<String, ItemResult>>,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// What one item's status means.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Retry,
    Failed,
}

fn outcome(action: &str, status: u16, versioning: Versioning) -> Outcome {
    match status {
        200..=299 => Outcome::Done,
        // Deleting a document that is not there leaves the index as wanted.
        404 if action == "delete" => Outcome::Done,
        // With external versions, a conflict means the index already holds this time's write (a
        // replay) or a later one: the wanted state is there.
        409 if versioning == Versioning::External => Outcome::Done,
        s if status_kind(s) == ErrorKind::Retriable => Outcome::Retry,
        _ => Outcome::Failed,
    }
}

impl Bulk {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.post(format!("{}{path}", self.url));
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, p.as_deref()),
            None => r,
        }
    }

    /// Sends one `_bulk` body until every item is done, retrying the whole request on transport
    /// errors and 429/5xx, and only the 429/5xx items otherwise. Items refused for good (4xx)
    /// fail the request with their document ids.
    async fn send(&self, mut body: Vec<u8>, mut items: Vec<Item>) -> Result<()> {
        let mut backoff = Backoff::new(self.policy.clone());
        loop {
            let what = format!("`_bulk` request of {} actions", items.len());
            let attempt = self
                .post("/_bulk")
                .header("Content-Type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| transport(&what, e));
            let retry_all = match attempt {
                Err(e) => Some(e),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp.bytes().await.map_err(|e| transport(&what, e));
                    match bytes {
                        Err(e) => Some(e),
                        Ok(bytes) if status != 200 => {
                            let e = Error::new(
                                status_kind(status),
                                format!("{what}: HTTP {status}: {}", excerpt(&String::from_utf8_lossy(&bytes))),
                            );
                            if !e.is_retriable() {
                                return Err(e);
                            }
                            Some(e)
                        }
                        Ok(bytes) => {
                            let head: Head = serde_json::from_slice(&bytes).map_err(|e| {
                                Error::new(ErrorKind::Fatal, format!("{what}: unreadable `_bulk` answer: {e}"))
                            })?;
                            if !head.errors {
                                return Ok(());
                            }
                            let full: Full = serde_json::from_slice(&bytes).map_err(|e| {
                                Error::new(ErrorKind::Fatal, format!("{what}: unreadable `_bulk` items: {e}"))
                            })?;
                            if full.items.len() != items.len() {
                                return Err(Error::new(
                                    ErrorKind::Fatal,
                                    format!(
                                        "{what}: the answer has {} items for {} actions",
                                        full.items.len(),
                                        items.len()
                                    ),
                                ));
                            }
                            let mut failed = Vec::new();
                            let mut again = Vec::new();
                            for (item, result) in items.iter().zip(&full.items) {
                                let Some((action, r)) = result.iter().next() else { continue };
                                match outcome(action, r.status, self.versioning) {
                                    Outcome::Done => {}
                                    Outcome::Retry => again.push(*item),
                                    Outcome::Failed => failed.push((*item, action.clone(), r)),
                                }
                            }
                            if !failed.is_empty() {
                                let shown: Vec<String> = failed
                                    .iter()
                                    .take(10)
                                    .map(|(it, action, r)| {
                                        let id = String::from_utf8_lossy(&body[it.id.0 as usize..it.id.1 as usize]);
                                        let reason = r
                                            .error
                                            .as_ref()
                                            .map(|e| {
                                                format!(
                                                    "{}: {}",
                                                    e["type"].as_str().unwrap_or("error"),
                                                    e["reason"].as_str().unwrap_or("")
                                                )
                                            })
                                            .unwrap_or_default();
                                        format!("{action} of document {id}: HTTP {} {reason}", r.status)
                                    })
                                    .collect();
                                return Err(Error::new(
                                    ErrorKind::Fatal,
                                    format!(
                                        "Elasticsearch refused {} of {} documents{}: {}",
                                        failed.len(),
                                        items.len(),
                                        if failed.len() > 10 { " (first 10 shown)" } else { "" },
                                        shown.join("; ")
                                    ),
                                ));
                            }
                            if again.is_empty() {
                                return Ok(());
                            }
                            // Rebuild the request from the items to retry.
                            let mut nb = Vec::with_capacity(body.len());
                            let mut ni = Vec::with_capacity(again.len());
                            for it in again {
                                let start = nb.len() as u32;
                                nb.extend_from_slice(&body[it.start as usize..it.end as usize]);
                                let shift = |x: u32| x - it.start + start;
                                ni.push(Item { start, end: nb.len() as u32, id: (shift(it.id.0), shift(it.id.1)) });
                            }
                            body = nb;
                            items = ni;
                            Some(Error::new(
                                ErrorKind::Retriable,
                                format!("{} documents were refused for now", items.len()),
                            ))
                        }
                    }
                }
            };
            if let Some(e) = retry_all {
                match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(error = %e, attempt = backoff.attempts(), "elasticsearch `_bulk`: retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => {
                        return Err(Error::new(
                            e.kind(),
                            format!("{what}: still failing after {} attempts: {e}", backoff.attempts() + 1),
                        ))
                    }
                }
            }
        }
    }
}

/// A worker's progress document. `scope` ([`scope_id`] of the sink and its target index) is
/// what a resume searches for: one lowercase hex token, matched by a `term` query whether the
/// progress index maps it as `keyword` or as analysed text.
#[derive(Serialize, Deserialize)]
struct ProgressDoc {
    sink: String,
    target: String,
    scope: String,
    progress: WorkerProgress<u64>,
}

/// The most progress documents one sink may have (one per worker and generation); a resume that
/// finds more refuses rather than read some of them.
const MAX_PROGRESS_DOCS: usize = 10_000;

/// What a sink's progress documents name as its target: its index, or the column that names
/// each row's index.
fn target_of(cfg: &ElasticsearchConfig) -> String {
    match (&cfg.index, &cfg.index_column) {
        (Some(index), _) => index.clone(),
        (None, Some(column)) => format!("column:{column}"),
        (None, None) => String::new(),
    }
}

/// One worker's writer into Elasticsearch / OpenSearch.
pub struct ElasticsearchWriter<V> {
    rt: tokio::runtime::Runtime,
    bulk: Bulk,
    cfg: ElasticsearchConfig,
    sink: String,
    format: Format,
    /// Extracts the document id when the sink's key encoding is not already text with the
    /// configured delimiter.
    ids: Option<KeyColumns>,
    keyed: bool,
    lanes: Vec<Lane>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    scratch: Vec<u8>,
    index_json: Vec<u8>,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V> ElasticsearchWriter<V> {
    /// Opens a writer.
    pub fn open(cfg: &ElasticsearchConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        let text = KeyEncoding::Text { delimiter: cfg.delimiter.clone() };
        let ids = match spec.primary_key() {
            Some(pk) if *spec.key_encoding() != text => Some(KeyColumns::new(pk.to_vec(), text)?),
            _ => None,
        };
        let index_json = cfg.index.as_ref().map(|i| serde_json::to_vec(i).expect("string encodes")).unwrap_or_default();
        Ok(ElasticsearchWriter {
            rt: runtime(cfg.concurrent_requests.min(2), spec.name())?,
            bulk: Bulk {
                http: client(cfg.timeout)?,
                url: cfg.url.clone(),
                auth: cfg.username.clone().map(|u| (u, cfg.password.as_ref().map(|p| p.expose().to_string()))),
                versioning: cfg.versioning,
                policy: RetryPolicy::default(),
            },
            cfg: cfg.clone(),
            sink: spec.name().to_string(),
            format: spec.format().clone(),
            ids,
            keyed: spec.primary_key().is_some() || spec.format().is_keyed(),
            lanes: (0..cfg.concurrent_requests.max(1)).map(|_| Lane::default()).collect(),
            ctx: None,
            resume: None,
            scratch: Vec::with_capacity(256),
            index_json,
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        })
    }

    fn ship(&mut self, lane: usize) -> Result<()> {
        self.wait(lane)?;
        let l = &mut self.lanes[lane];
        if l.items.is_empty() {
            return Ok(());
        }
        let body = std::mem::replace(&mut l.body, Vec::with_capacity(1 << 16));
        let items = std::mem::take(&mut l.items);
        SinkMetrics::add(&self.metrics.records_out, items.len() as u64);
        SinkMetrics::add(&self.metrics.bytes_out, body.len() as u64);
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

/// Reads a string-ish field of a row for index / routing columns.
fn field_text(row: &serde_json::Value, column: &str, option: &str) -> Result<String> {
    match row.get(column) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v) if !v.is_null() => Ok(v.to_string()),
        _ => Err(Error::schema(format!(
            "option `{option}` names column `{column}`, but a row has no value for it: {row}"
        ))),
    }
}

impl<V: Serialize + 'static> ElasticsearchWriter<V> {
    /// Appends one action (and its source, unless a delete) to the lane of `key`.
    fn push(&mut self, key: &Key, time: u64, row: &V, delete: bool) -> Result<()> {
        let lane = (key.stable_hash() % self.lanes.len() as u64) as usize;
        // The row's JSON first (the index / routing columns may need it).
        self.scratch.clear();
        encode_json(row, &mut self.scratch)?;
        let parsed = if self.cfg.index_column.is_some() || self.cfg.routing_column.is_some() {
            Some(serde_json::from_slice::<serde_json::Value>(&self.scratch).map_err(|e| Error::encode(e.to_string()))?)
        } else {
            None
        };
        let id: Option<Vec<u8>> = if self.keyed {
            let text = match &self.ids {
                Some(cols) => cols.extract(row).bytes()?.to_vec(),
                None => {
                    let b = key.bytes()?;
                    // A key function's JSON string: the id is the string itself.
                    match serde_json::from_slice::<String>(b) {
                        Ok(s) => s.into_bytes(),
                        Err(_) => b.to_vec(),
                    }
                }
            };
            Some(text)
        } else {
            None
        };
        let l = &mut self.lanes[lane];
        let start = l.body.len() as u32;
        let b = &mut l.body;
        let action = match (delete, self.cfg.versioning) {
            (true, _) => "delete",
            (false, Versioning::External) => "index",
            (false, Versioning::None) if id.is_some() => "update",
            (false, Versioning::None) => "index",
        };
        b.extend_from_slice(b"{\"");
        b.extend_from_slice(action.as_bytes());
        b.extend_from_slice(b"\":{\"_index\":");
        match (&self.cfg.index_column, &parsed) {
            (Some(col), Some(v)) => {
                serde_json::to_writer(&mut *b, &field_text(v, col, "index_column")?).expect("string encodes")
            }
            _ => b.extend_from_slice(&self.index_json),
        }
        let mut id_range = (0, 0);
        if let Some(id) = &id {
            b.extend_from_slice(b",\"_id\":");
            let s = b.len() as u32;
            serde_json::to_writer(&mut *b, &String::from_utf8_lossy(id)).expect("string encodes");
            id_range = (s, b.len() as u32);
            if self.cfg.versioning == Versioning::External {
                b.extend_from_slice(b",\"version\":");
                b.extend_from_slice(time.to_string().as_bytes());
                b.extend_from_slice(b",\"version_type\":\"external\"");
            } else if action == "update" {
                b.extend_from_slice(b",\"retry_on_conflict\":");
                b.extend_from_slice(self.cfg.retry_on_conflict.to_string().as_bytes());
            }
        }
        if let (Some(col), Some(v)) = (&self.cfg.routing_column, &parsed) {
            b.extend_from_slice(b",\"routing\":");
            serde_json::to_writer(&mut *b, &field_text(v, col, "routing_column")?).expect("string encodes");
        }
        b.extend_from_slice(b"}}\n");
        if !delete {
            if action == "update" {
                b.extend_from_slice(b"{\"doc\":");
                b.extend_from_slice(&self.scratch);
                b.extend_from_slice(b",\"doc_as_upsert\":true}\n");
            } else {
                b.extend_from_slice(&self.scratch);
                b.push(b'\n');
            }
        }
        l.items.push(Item { start, end: b.len() as u32, id: id_range });
        if l.items.len() >= self.cfg.batch_num_messages || l.body.len() >= self.cfg.batch_size_kb * 1024 {
            self.ship(lane)?;
        }
        Ok(())
    }
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for ElasticsearchWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let bulk = self.bulk.clone();
        let path = format!("/{}/_search", self.cfg.progress_index);
        let (target, scope) = (target_of(&self.cfg), scope_id(&self.sink, &target_of(&self.cfg)));
        let query = serde_json::json!({"size": MAX_PROGRESS_DOCS, "query": {"term": {"scope": scope}}}).to_string();
        let answer: Result<Option<serde_json::Value>> = self.rt.block_on(async move {
            let what = "reading the sink's progress documents";
            let r = bulk
                .post(&path)
                .header("Content-Type", "application/json")
                .body(query)
                .send()
                .await
                .map_err(|e| transport(what, e))?;
            let status = r.status().as_u16();
            let text = r.text().await.map_err(|e| transport(what, e))?;
            match status {
                200 => Ok(Some(serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Resume, e.to_string()))?)),
                404 => Ok(None),
                s => Err(Error::new(status_kind(s), format!("{what}: HTTP {s}: {}", excerpt(&text)))),
            }
        });
        let mut records = Vec::new();
        if let Some(v) = answer? {
            let hits = v["hits"]["hits"].as_array().map_or(&[][..], |h| h.as_slice());
            let total = v["hits"]["total"]["value"].as_u64().or_else(|| v["hits"]["total"].as_u64());
            if total.is_some_and(|t| t > hits.len() as u64) || hits.len() >= MAX_PROGRESS_DOCS {
                return Err(Error::new(
                    ErrorKind::Resume,
                    format!(
                        "sink `{}`: {} holds more than {MAX_PROGRESS_DOCS} progress documents for index `{target}`; \
                         delete this sink's documents there (scope {scope}) to start over",
                        self.sink, self.cfg.progress_index
                    ),
                ));
            }
            for hit in hits {
                let doc = serde_json::from_value::<ProgressDoc>(hit["_source"].clone())
                    .ok()
                    .filter(|d| d.sink == self.sink && d.target == target && d.scope == scope)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Resume,
                            format!(
                                "sink `{}`: progress document {} in {} is damaged or not this sink's; delete it to \
                                 start over",
                                self.sink, hit["_id"], self.cfg.progress_index
                            ),
                        )
                    })?;
                records.push(doc.progress);
            }
        }
        let point = resolve_resume(&records, ctx)?;
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let t = time.to_u64();
        if t > i64::MAX as u64 {
            return Err(Error::encode(format!(
                "time {t} does not fit an Elasticsearch version (a signed 64-bit number)"
            )));
        }
        for change in changes.iter() {
            match &self.format {
                Format::Upsert => match (&change.before, &change.after) {
                    (_, Some(after)) => self.push(&change.key, t, after, false)?,
                    (Some(before), None) => self.push(&change.key, t, before, true)?,
                    (None, None) => {}
                },
                format => {
                    let mut rows: Vec<&V> = Vec::with_capacity(1);
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        self.push(&change.key, t, r, false)?;
                    }
                }
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
        let up = upper.to_u64_frontier();
        let target = target_of(&self.cfg);
        let scope = scope_id(&self.sink, &target);
        let id = format!("{}.{scope}.w{}.g{}", self.sink, ctx.index, point.generation);
        let doc = ProgressDoc { sink: self.sink.clone(), target, scope, progress: point.record(ctx, up) };
        let path = format!("/{}/_doc/{}?refresh=true", self.cfg.progress_index, urlencode(&id));
        let body = serde_json::to_vec(&doc).expect("progress encodes");
        let bulk = self.bulk.clone();
        self.rt.block_on(async move {
            let what = "writing the sink's progress document";
            crate::delivery::retry::retry(&bulk.policy, what, || async {
                let r = bulk
                    .http
                    .put(format!("{}{path}", bulk.url))
                    .header("Content-Type", "application/json")
                    .body(body.clone());
                let r = match &bulk.auth {
                    Some((u, p)) => r.basic_auth(u, p.as_deref()),
                    None => r,
                };
                let resp = r.send().await.map_err(|e| transport(what, e))?;
                let s = resp.status().as_u16();
                if (200..300).contains(&s) {
                    Ok(())
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    Err(Error::new(status_kind(s), format!("{what}: HTTP {s}: {}", excerpt(&text))))
                }
            })
            .await
        })
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_outcomes() {
        let ext = Versioning::External;
        assert_eq!(outcome("index", 201, ext), Outcome::Done);
        assert_eq!(outcome("index", 409, ext), Outcome::Done);
        assert_eq!(outcome("index", 409, Versioning::None), Outcome::Failed);
        assert_eq!(outcome("delete", 404, ext), Outcome::Done);
        assert_eq!(outcome("index", 404, ext), Outcome::Failed);
        assert_eq!(outcome("index", 429, ext), Outcome::Retry);
        assert_eq!(outcome("index", 503, ext), Outcome::Retry);
        assert_eq!(outcome("index", 400, ext), Outcome::Failed);
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
