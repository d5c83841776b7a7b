//! The HTTP client of the Elasticsearch connector: `_bulk` requests sent until every item is
//! done, with what each item's status means (done, retry that item, or a refusal that stops
//! the sink naming the document).

use super::config::{ElasticsearchConfig, Versioning};
use super::encoder::Item;
use crate::connectors::http::{client, excerpt, status_kind, transport, Secret};
use crate::delivery::{Backoff, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::WorkerMetrics;
use serde::Deserialize;
use std::collections::HashMap;

/// A client of the server's HTTP API, for `_bulk` requests and progress documents.
#[derive(Clone)]
pub(crate) struct Bulk {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    /// Basic-auth user and password.
    pub(crate) auth: Option<(String, Option<Secret>)>,
    pub(crate) versioning: Versioning,
    pub(crate) policy: RetryPolicy,
    /// Where retries are counted (a writer's client).
    pub(crate) metrics: Option<WorkerMetrics>,
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
    /// A client of `cfg`'s server.
    pub(crate) fn new(cfg: &ElasticsearchConfig) -> Result<Self> {
        Ok(Bulk {
            http: client(cfg.timeout)?,
            url: cfg.url.clone(),
            auth: cfg.username.clone().map(|u| (u, cfg.password.clone())),
            versioning: cfg.versioning,
            policy: RetryPolicy::default(),
            metrics: None,
        })
    }

    /// A POST of `path`, with the credentials.
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.post(format!("{}{path}", self.url));
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, p.as_ref().map(Secret::expose)),
            None => r,
        }
    }

    /// Sends one `_bulk` body until every item is done, retrying the whole request on transport
    /// errors and 429/5xx, and only the 429/5xx items otherwise. Items refused for good (4xx)
    /// fail the request with their document ids.
    pub(crate) async fn send(&self, mut body: Vec<u8>, mut items: Vec<Item>) -> Result<()> {
        let mut backoff = Backoff::new(self.policy.clone()).counting(self.metrics.as_ref());
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
    }
}
