//! Shared pieces of the HTTP connectors (ClickHouse, Elasticsearch, Doris): a client, a runtime
//! the synchronous writer contract can block on, error classification and secrets.
//!
//! Each writer owns a small multi-threaded tokio runtime (one or two threads): requests are
//! spawned on it so encoding on the timely worker overlaps with the target's work, and `commit`
//! blocks until every request it covers has been acknowledged.

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

pub use crate::secret::Secret;

/// A runtime for one writer's requests.
pub(crate) fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime> {
    crate::delivery::runtime::multi_thread(threads, name, "the sink's HTTP client")
}

/// An HTTP client that follows no redirects (connectors that need them follow them explicitly,
/// keeping credentials and body) and gives up on a request after `timeout`.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(16)
        .build()
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot build an HTTP client: {e}")))
}

/// A transport failure (connect, timeout, reset): retriable.
pub(crate) fn transport(what: &str, e: reqwest::Error) -> Error {
    // reqwest's message may include the URL, never credentials (those travel in headers).
    Error::new(ErrorKind::Retriable, format!("{what}: {e}")).with_source(e)
}

/// Classifies an HTTP status: 408, 429 and 5xx may succeed later.
pub(crate) fn status_kind(status: u16) -> ErrorKind {
    if status == 408 || status == 429 || status >= 500 {
        ErrorKind::Retriable
    } else {
        ErrorKind::Fatal
    }
}

/// Shortens a server's reply for an error message.
pub(crate) fn excerpt(body: &str) -> String {
    let t = body.trim();
    if t.len() <= 600 {
        t.to_string()
    } else {
        let mut end = 600;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &t[..end])
    }
}

/// `url` without a trailing slash, checked to be an `http://` or `https://` URL that parses
/// (credentials in it, `user:password@`, are left for the connector's config to take out).
pub(crate) fn base_url(option: &str, url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    let shown = crate::secret::redact_url(u);
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(Error::config(format!("option `{option}` = `{shown}` must be an http:// or https:// URL")));
    }
    parse_url(option, u)?;
    Ok(u.to_string())
}

/// Parses a connector's base URL (without credentials); the error names the option.
pub(crate) fn parse_url(option: &str, url: &str) -> Result<reqwest::Url> {
    let shown = crate::secret::redact_url(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::config(format!("option `{option}` = `{shown}` is not a valid URL: {e}")))?;
    if parsed.cannot_be_a_base() || parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("option `{option}` = `{shown}` names no host")));
    }
    Ok(parsed)
}
