//! Where an Elasticsearch sink's progress is recorded: one document per worker and generation in
//! the progress index (`progress_index`), `<progress_index>/_doc/<sink>.<scope>.w<worker>.g<generation>`,
//! where `scope` is a digest of the sink's name and its index ([`target_of`]). A resume reads
//! the sink's documents back with one `_search` for its scope; a sink with more documents than
//! one search returns is refused, never resumed from some of them.

use super::client::Bulk;
use super::config::ElasticsearchConfig;
use crate::connectors::http::{excerpt, status_kind, transport};
use crate::error::{Error, ErrorKind, Result};
use crate::stable_hash::scope_id;
use differential_sinks_operators::WorkerProgress;
use serde::{Deserialize, Serialize};

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
pub(crate) fn target_of(cfg: &ElasticsearchConfig) -> String {
    match (&cfg.index, &cfg.index_column) {
        (Some(index), _) => index.clone(),
        (None, Some(column)) => format!("column:{column}"),
        (None, None) => String::new(),
    }
}

/// Reads sink `sink`'s progress documents back (none if the progress index does not exist).
pub(crate) async fn read(bulk: &Bulk, cfg: &ElasticsearchConfig, sink: &str) -> Result<Vec<WorkerProgress<u64>>> {
    let path = format!("/{}/_search", cfg.progress_index);
    let (target, scope) = (target_of(cfg), scope_id(sink, &target_of(cfg)));
    let query = serde_json::json!({"size": MAX_PROGRESS_DOCS, "query": {"term": {"scope": scope}}}).to_string();
    let answer: Option<serde_json::Value> = {
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
            200 => Some(serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Resume, e.to_string()))?),
            404 => None,
            s => return Err(Error::new(status_kind(s), format!("{what}: HTTP {s}: {}", excerpt(&text)))),
        }
    };
    let mut records = Vec::new();
    if let Some(v) = answer {
        let hits = v["hits"]["hits"].as_array().map_or(&[][..], |h| h.as_slice());
        let total = v["hits"]["total"]["value"].as_u64().or_else(|| v["hits"]["total"].as_u64());
        if total.is_some_and(|t| t > hits.len() as u64) || hits.len() >= MAX_PROGRESS_DOCS {
            return Err(Error::new(
                ErrorKind::Resume,
                format!(
                    "sink `{sink}`: {} holds more than {MAX_PROGRESS_DOCS} progress documents for index `{target}`; \
                     delete this sink's documents there (scope {scope}) to start over",
                    cfg.progress_index
                ),
            ));
        }
        for hit in hits {
            let doc = serde_json::from_value::<ProgressDoc>(hit["_source"].clone())
                .ok()
                .filter(|d| d.sink == sink && d.target == target && d.scope == scope)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Resume,
                        format!(
                            "sink `{sink}`: progress document {} in {} is damaged or not this sink's; delete it to \
                             start over",
                            hit["_id"], cfg.progress_index
                        ),
                    )
                })?;
            records.push(doc.progress);
        }
    }
    Ok(records)
}

/// Writes worker `worker`'s progress document of `generation` holding `progress`.
pub(crate) async fn write(
    bulk: &Bulk,
    cfg: &ElasticsearchConfig,
    sink: &str,
    worker: usize,
    generation: u64,
    progress: WorkerProgress<u64>,
) -> Result<()> {
    let target = target_of(cfg);
    let scope = scope_id(sink, &target);
    let id = format!("{sink}.{scope}.w{worker}.g{generation}");
    let doc = ProgressDoc { sink: sink.to_string(), target, scope, progress };
    let path = format!("/{}/_doc/{}?refresh=true", cfg.progress_index, urlencode(&id));
    let body =
        serde_json::to_vec(&doc).map_err(|e| Error::encode(format!("cannot encode a progress document: {e}")))?;
    let what = "writing the sink's progress document";
    crate::delivery::retry::retry_counted(&bulk.policy, what, bulk.metrics.as_ref(), || async {
        let r =
            bulk.http.put(format!("{}{path}", bulk.url)).header("Content-Type", "application/json").body(body.clone());
        let r = match &bulk.auth {
            Some((u, p)) => r.basic_auth(u, p.as_ref().map(|p| p.expose())),
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
    fn ids_are_url_encoded() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
