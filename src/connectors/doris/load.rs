//! One Stream Load over HTTP: the `PUT` to the frontend, the redirect to a backend followed with
//! the same credentials, headers and body, and what the answer means for the sink.
//!
//! A load is atomic in Doris and carries a label; a second load under a label Doris still keeps
//! is refused as `Label Already Exists`, which [`interpret`] reads as done when the first load
//! finished (a replay) and as "try again" while it runs.

use super::config::DorisConfig;
use super::table::DELETE_SIGN;
use crate::connectors::http::{excerpt, status_kind, transport};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::redact_url;
use serde::Deserialize;

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

/// Sends one Stream Load, following the frontend's redirect to a backend with the same
/// credentials, headers and body (HTTP clients drop credentials on a cross-host redirect).
/// A redirect is followed only to the scheme of the configured URL: credentials sent over
/// `https://` are never re-sent in the clear to an `http://` backend (nor, from an `http://`
/// frontend, to anything but `http://`).
pub(crate) async fn stream_load(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
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
