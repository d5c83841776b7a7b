//! Options of the ClickHouse connector.

use crate::connectors::http::{base_url, Secret};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::secret::split_userinfo;
use std::time::Duration;

/// Where and how the ClickHouse connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// The user (default: the server's `default` user).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// The database (default `default`).
    pub database: String,
    /// The target table.
    pub table: String,
    /// A `UInt8` column set to 1 on rows that stand for deletes (ReplacingMergeTree upserts).
    pub delete_column: Option<String>,
    /// The table holding each worker's committed frontier (created if missing).
    pub progress_table: String,
    /// Cut an insert block at this many rows.
    pub batch_rows: usize,
    /// Cut an insert block at this many bytes of encoded rows.
    pub batch_bytes: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ClickHouseConfig {
    /// Writes to `database.table` at `url` with defaults for everything else. Credentials in the
    /// URL (`http://user:password@host:8123`) are taken out of it into `user` and `password`.
    pub fn new(url: impl Into<String>, database: impl Into<String>, table: impl Into<String>) -> Self {
        let (url, credentials) = split_userinfo(url.into().trim_end_matches('/'));
        let (user, password) = credentials.map_or((None, None), |(u, p)| (Some(u), p));
        ClickHouseConfig {
            url,
            user,
            password,
            database: database.into(),
            table: table.into(),
            delete_column: None,
            progress_table: "dsink_progress".into(),
            batch_rows: 500_000,
            batch_bytes: 64 << 20,
            timeout: Duration::from_secs(300),
        }
    }
    /// The delete column (see [`delete_column`](Self::delete_column)).
    pub fn delete_column(mut self, column: impl Into<String>) -> Self {
        self.delete_column = Some(column.into());
        self
    }
    /// The user and password.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(Secret::new(password));
        self
    }
    /// The progress table's name (in the same database).
    pub fn progress_table(mut self, table: impl Into<String>) -> Self {
        self.progress_table = table.into();
        self
    }
    /// Block size limits.
    pub fn batch(mut self, rows: usize, bytes: usize) -> Self {
        self.batch_rows = rows.max(1);
        self.batch_bytes = bytes.max(1);
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        let url = opts.require("clickhouse.url", "the HTTP interface, e.g. clickhouse.url=http://127.0.0.1:8123")?;
        let table = opts.require("clickhouse.table", "the target table, e.g. clickhouse.table=orders")?;
        let database = opts.take("clickhouse.database").unwrap_or_else(|| "default".into());
        let mut c = ClickHouseConfig::new(base_url("clickhouse.url", &url)?, database, table);
        if let Some(u) = opts.take("clickhouse.user") {
            c.user = Some(u);
        }
        if let Some(p) = opts.take("clickhouse.password") {
            c.password = Some(Secret::new(p));
        }
        c.delete_column = opts.take("clickhouse.delete.column");
        if let Some(p) = opts.take("clickhouse.progress.table") {
            c.progress_table = p;
        }
        if let Some(n) = opts.take_parsed::<usize>("clickhouse.batch.rows", "a row count")? {
            c.batch_rows = n.max(1);
        }
        if let Some(n) = opts.take_parsed::<usize>("clickhouse.batch.bytes", "a byte count")? {
            c.batch_bytes = n.max(1);
        }
        if let Some(s) = opts.take_parsed::<u64>("clickhouse.timeout.ms", "milliseconds")? {
            c.timeout = Duration::from_millis(s.max(1));
        }
        for (what, name) in [("clickhouse.table", &c.table), ("clickhouse.database", &c.database)] {
            if name.is_empty() || name.contains('`') {
                return Err(Error::config(format!("option `{what}` = `{name}` is not a valid identifier")));
            }
        }
        Ok(c)
    }
}
