//! The Doris writer: one Stream Load per commit, with a deterministic label.

use super::DorisConfig;
use crate::connectors::http::{client, excerpt, runtime, status_kind, transport};
use crate::connectors::resumed_frontier;
use crate::delivery::retry::retry;
use crate::delivery::RetryPolicy;
use crate::encode::json::encode_json;
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::secret::redact_url;
use crate::settings::SinkSettings;
use crate::stable_hash::scope_id;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkMetrics, SinkTime, SinkWriter, WorkerContext,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// The hidden column that marks deletes in unique-key tables.
pub const DELETE_SIGN: &str = "__DORIS_DELETE_SIGN__";

/// Stream Load's answer (the fields the sink reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadStatus {
    /// `Success`, `Publish Timeout`, `Label Already Exists` or `Fail`.
    pub status: String,
    /// What happened.
    #[serde(default)]
    pub message: String,
    /// For `Label Already Exists`: the earlier load's state (`FINISHED`, `RUNNING`, …).
    #[serde(default)]
    pub existing_job_status: Option<String>,
    /// Rows loaded.
    #[serde(default)]
    pub number_loaded_rows: u64,
    /// Where rejected rows are described.
    #[serde(default, rename = "ErrorURL")]
    pub error_url: Option<String>,
}

/// The label of the load that covers times `[lo, hi)` of one worker into `table`
/// (`database.table`): the same on every replay of the same commit. Doris keeps labels per
/// database, so the label names the table too (by a 64-bit digest of sink and table): two sinks
/// of one name into two tables never take each other's loads for replays. At most 126
/// characters (Doris allows 128).
pub fn label(
    sink: &str,
    table: &str,
    generation: u64,
    worker: usize,
    lo: &Frontier<u64>,
    hi: &Frontier<u64>,
) -> String {
    let clean: String = sink
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .take(32)
        .collect();
    let scope = scope_id(sink, table);
    let f = |f: &Frontier<u64>| f.to_u64().map_or("end".to_string(), |t| t.to_string());
    format!("dsink_{clean}_{}_g{generation}_w{worker}_{}_{}", &scope[..16], f(lo), f(hi))
}

/// What a load's answer means for the sink.
pub fn interpret(s: &LoadStatus, label: &str) -> Result<()> {
    match s.status.as_str() {
        // Publish Timeout: committed, becomes visible shortly.
        "Success" | "Publish Timeout" => Ok(()),
        "Label Already Exists" => match s.existing_job_status.as_deref() {
            // A replay of a load that went through: nothing to do (exactly-once).
            None | Some("FINISHED") | Some("VISIBLE") | Some("COMMITTED") => Ok(()),
            Some(other) => Err(Error::new(
                ErrorKind::Retriable,
                format!("Doris load `{label}` is already running ({other}); waiting for it"),
            )),
        },
        _ => Err(Error::new(
            ErrorKind::Fatal,
            format!(
                "Doris refused load `{label}`: {}{}",
                s.message,
                s.error_url.as_ref().map(|u| format!(" (rejected rows: {u})")).unwrap_or_default()
            ),
        )),
    }
}

/// One worker's writer into a Doris table.
pub struct DorisWriter<V> {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    cfg: Arc<DorisConfig>,
    sink: String,
    format: Format,
    body: Vec<u8>,
    rows: u64,
    lo: Frontier<u64>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    metrics: Arc<SinkMetrics>,
    _row: PhantomData<fn(&V)>,
}

impl<V> DorisWriter<V> {
    /// Opens a writer.
    pub fn open(cfg: &DorisConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(DorisWriter {
            rt: runtime(1, spec.name())?,
            http: client(cfg.timeout)?,
            cfg: Arc::new(cfg.clone()),
            sink: spec.name().to_string(),
            format: spec.format().clone(),
            body: Vec::with_capacity(1 << 20),
            rows: 0,
            lo: Frontier::minimum(),
            ctx: None,
            resume: None,
            metrics: Arc::clone(spec.metrics()),
            _row: PhantomData,
        })
    }
}

/// Sends one Stream Load, following the frontend's redirect to a backend with the same
/// credentials, headers and body (HTTP clients drop credentials on a cross-host redirect).
/// A redirect is followed only to the scheme of the configured URL: credentials sent over
/// `https://` are never re-sent in the clear to an `http://` backend (nor, from an `http://`
/// frontend, to anything but `http://`).
async fn stream_load(
    http: &reqwest::Client,
    cfg: &DorisConfig,
    label: &str,
    upsert: bool,
    body: bytes::Bytes,
) -> Result<LoadStatus> {
    let what = format!("Doris Stream Load `{label}`");
    let mut url = crate::connectors::http::parse_url(
        "doris.url",
        &format!("{}/api/{}/{}/_stream_load", cfg.url, cfg.database, cfg.table),
    )?;
    let scheme = url.scheme().to_string();
    for _ in 0..4 {
        let mut r = http
            .put(url.clone())
            .basic_auth(&cfg.user, cfg.password.as_ref().map(|p| p.expose()))
            .header("Expect", "100-continue")
            .header("label", label)
            .header("format", "json")
            .header("read_json_by_line", "true")
            .body(body.clone());
        if upsert {
            r = r.header("hidden_columns", DELETE_SIGN);
        }
        if cfg.partial_update {
            r = r.header("partial_columns", "true");
        }
        let resp = r.send().await.map_err(|e| transport(&what, e))?;
        let status = resp.status().as_u16();
        if matches!(status, 301 | 302 | 307 | 308) {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::new(ErrorKind::Fatal, format!("{what}: redirect without a Location")))?;
            let next = url.join(to).map_err(|e| {
                Error::new(ErrorKind::Fatal, format!("{what}: unreadable redirect `{}`: {e}", redact_url(to)))
            })?;
            if next.scheme() != scheme {
                return Err(Error::new(
                    ErrorKind::Fatal,
                    format!(
                        "{what}: the frontend redirected from {scheme}:// to `{}`; the sink follows redirects only \
                         to the scheme of `doris.url`, so that credentials never travel over another one",
                        redact_url(next.as_str())
                    ),
                ));
            }
            url = next;
            continue;
        }
        let text = resp.text().await.map_err(|e| transport(&what, e))?;
        if status != 200 {
            return Err(Error::new(status_kind(status), format!("{what}: HTTP {status}: {}", excerpt(&text))));
        }
        return serde_json::from_str(&text)
            .map_err(|e| Error::new(ErrorKind::Fatal, format!("{what}: unreadable answer ({e}): {}", excerpt(&text))));
    }
    Err(Error::new(ErrorKind::Fatal, format!("{what}: too many redirects")))
}

impl<V: Serialize + 'static> DorisWriter<V> {
    fn push(&mut self, row: &V, delete: Option<bool>) -> Result<()> {
        let start = self.body.len();
        encode_json(row, &mut self.body)?;
        if let Some(d) = delete {
            if self.body.last() != Some(&b'}') {
                return Err(Error::schema("rows for Doris must serialize as JSON objects"));
            }
            self.body.pop();
            if self.body.len() > start + 1 {
                self.body.push(b',');
            }
            self.body.extend_from_slice(format!("\"{DELETE_SIGN}\":{}}}", u8::from(d)).as_bytes());
        }
        self.body.push(b'\n');
        self.rows += 1;
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
        self.lo = point.frontier;
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, _time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        for change in changes.iter() {
            match &self.format {
                Format::Upsert => match (&change.before, &change.after) {
                    (_, Some(after)) => self.push(after, Some(false))?,
                    (Some(before), None) => self.push(before, Some(true))?,
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
                        self.push(r, None)?;
                    }
                }
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        let (Some(ctx), Some(point)) = (self.ctx, self.resume.as_ref()) else {
            return Err(Error::config("commit before resume"));
        };
        let hi = upper.to_u64_frontier();
        if self.rows > 0 {
            let table = format!("{}.{}", self.cfg.database, self.cfg.table);
            let label = label(&self.sink, &table, point.generation, ctx.index, &self.lo, &hi);
            let body = bytes::Bytes::from(std::mem::replace(&mut self.body, Vec::with_capacity(1 << 20)));
            SinkMetrics::add(&self.metrics.records_out, self.rows);
            SinkMetrics::add(&self.metrics.bytes_out, body.len() as u64);
            self.rows = 0;
            let (http, cfg, upsert) = (self.http.clone(), Arc::clone(&self.cfg), self.format == Format::Upsert);
            self.rt.block_on(async move {
                retry(&RetryPolicy::default(), &format!("Doris load `{label}`"), || async {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_answers() {
        let l = label("my sink/1", "db.t", 0, 3, &Frontier::at(5), &Frontier::complete());
        assert!(l.starts_with("dsink_my_sink_1_") && l.ends_with("_g0_w3_5_end"), "{l}");
        assert_ne!(l, label("my sink/1", "db.u", 0, 3, &Frontier::at(5), &Frontier::complete()));
        let long =
            label(&"x".repeat(300), "db.t", u64::MAX, 99_999, &Frontier::at(u64::MAX - 1), &Frontier::at(u64::MAX));
        assert!(long.len() <= 128, "{} characters", long.len());
        let st = |s: &str, e: Option<&str>| LoadStatus {
            status: s.into(),
            message: "boom".into(),
            existing_job_status: e.map(Into::into),
            number_loaded_rows: 0,
            error_url: Some("http://be/err".into()),
        };
        assert!(interpret(&st("Success", None), "l").is_ok());
        assert!(interpret(&st("Label Already Exists", Some("FINISHED")), "l").is_ok());
        assert!(interpret(&st("Label Already Exists", Some("RUNNING")), "l").unwrap_err().is_retriable());
        let e = interpret(&st("Fail", None), "l").unwrap_err();
        assert!(e.to_string().contains("boom") && e.to_string().contains("http://be/err"));
    }
}
