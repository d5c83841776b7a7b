//! Options of the Elasticsearch / OpenSearch connector (RisingWave's option names), parsed and
//! checked on their own (the checks against the sink are in `table.rs`).

use crate::connectors::http::{base_url, Secret};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::secret::split_userinfo;
use std::time::Duration;

/// How documents are versioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versioning {
    /// `version_type=external` with the logical time as the version: a replayed or older write
    /// is refused by the server (409) and counted as done, so replays are no-ops.
    External,
    /// No versions: upserts are `update` with `doc_as_upsert` and `retry_on_conflict`; replays
    /// rewrite documents (at-least-once).
    None,
}

/// Where and how the Elasticsearch connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElasticsearchConfig {
    /// The server, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// The index every document goes to (or use `index_column`).
    pub index: Option<String>,
    /// A column whose value names each row's index.
    pub index_column: Option<String>,
    /// A column whose value is each document's routing.
    pub routing_column: Option<String>,
    /// The separator of composite document ids (default `_`).
    pub delimiter: String,
    /// `retry_on_conflict` of `update` actions (versioning `none`).
    pub retry_on_conflict: u32,
    /// Cut a `_bulk` request at this many documents.
    pub batch_num_messages: usize,
    /// Cut a `_bulk` request at this many KiB.
    pub batch_size_kb: usize,
    /// Requests in flight per worker (documents are spread over them by key, so each key's
    /// writes stay in order).
    pub concurrent_requests: usize,
    /// Document versioning.
    pub versioning: Versioning,
    /// The index holding each worker's committed frontier.
    pub progress_index: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ElasticsearchConfig {
    /// Writes into `index` at `url`, with defaults for everything else. Credentials in the URL
    /// (`https://user:password@host:9200`) are taken out of it into `username` and `password`.
    pub fn new(url: impl Into<String>, index: impl Into<String>) -> Self {
        let (url, credentials) = split_userinfo(url.into().trim_end_matches('/'));
        let (username, password) = credentials.map_or((None, None), |(u, p)| (Some(u), p));
        ElasticsearchConfig {
            url,
            username,
            password,
            index: Some(index.into()),
            index_column: None,
            routing_column: None,
            delimiter: "_".into(),
            retry_on_conflict: 3,
            batch_num_messages: 5000,
            batch_size_kb: 5 * 1024,
            concurrent_requests: 2,
            versioning: Versioning::External,
            progress_index: "dsink_progress".into(),
            timeout: Duration::from_secs(120),
        }
    }
    /// Batch limits.
    pub fn batch(mut self, docs: usize, kb: usize) -> Self {
        self.batch_num_messages = docs.max(1);
        self.batch_size_kb = kb.max(1);
        self
    }
    /// Requests in flight per worker.
    pub fn concurrent_requests(mut self, n: usize) -> Self {
        self.concurrent_requests = n.max(1);
        self
    }
    /// The index named by each row's `column` instead of a fixed index.
    pub fn index_column(mut self, column: impl Into<String>) -> Self {
        self.index = None;
        self.index_column = Some(column.into());
        self
    }
    /// Routing by each row's `column`.
    pub fn routing_column(mut self, column: impl Into<String>) -> Self {
        self.routing_column = Some(column.into());
        self
    }
    /// The progress index.
    pub fn progress_index(mut self, index: impl Into<String>) -> Self {
        self.progress_index = index.into();
        self
    }
    /// Document versioning.
    pub fn versioning(mut self, v: Versioning) -> Self {
        self.versioning = v;
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let url = opts.require("url", "the Elasticsearch / OpenSearch server, e.g. url=http://127.0.0.1:9200")?;
        let mut c = ElasticsearchConfig::new(base_url("url", &url)?, "");
        c.index = opts.take("index");
        c.index_column = opts.take("index_column");
        c.routing_column = opts.take("routing_column");
        if let Some(u) = opts.take("username") {
            c.username = Some(u);
        }
        if let Some(p) = opts.take("password") {
            c.password = Some(Secret::new(p));
        }
        if let Some(d) = opts.take("delimiter") {
            c.delimiter = d;
        }
        if let Some(n) = opts.take_parsed("retry_on_conflict", "a count")? {
            c.retry_on_conflict = n;
        }
        if let Some(n) = opts.take_parsed::<usize>("batch_num_messages", "a document count")? {
            c.batch_num_messages = n.max(1);
        }
        if let Some(n) = opts.take_parsed::<usize>("batch_size_kb", "KiB")? {
            c.batch_size_kb = n.max(1);
        }
        if let Some(n) = opts.take_parsed::<usize>("concurrent_requests", "a count")? {
            c.concurrent_requests = n.max(1);
        }
        if let Some(ms) = opts.take_parsed::<u64>("timeout.ms", "milliseconds")? {
            c.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(p) = opts.take("progress_index") {
            c.progress_index = p;
        }
        c.versioning = match opts.take("version_type").as_deref() {
            None | Some("external") => Versioning::External,
            Some("none") => Versioning::None,
            Some(other) => {
                return Err(Error::config(format!("option `version_type` = `{other}`: use external (default) or none")))
            }
        };
        Ok(c)
    }
}
