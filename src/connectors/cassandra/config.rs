//! Options of the Cassandra / ScyllaDB connector: contact points, the target table, batching,
//! timeouts, the write-timestamp offset and credentials, parsed and checked on their own.

use crate::error::{Error, Result};
use crate::options::{Alias, Options};
use crate::secret::Secret;
use std::time::Duration;

/// RisingWave's names for the options named otherwise here (`cassandra.url`,
/// `cassandra.keyspace`, `cassandra.table`, `cassandra.password`, `cassandra.datacenter`,
/// `cassandra.max_batch_rows` and `cassandra.request_timeout_ms` are the same in both).
pub(crate) const RISINGWAVE_ALIASES: &[Alias] = &[Alias::same("cassandra.user", "cassandra.username")];

/// Where and how the Cassandra connector writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub url: Vec<String>,
    /// The keyspace.
    pub keyspace: String,
    /// The table.
    pub table: String,
    /// Statements per unlogged batch.
    pub batch_size: usize,
    /// Estimated data bytes per unlogged batch: Cassandra refuses a multi-partition batch above
    /// `batch_size_fail_threshold_in_kb` (50 KiB by default) with "Batch too large".
    pub batch_bytes: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Added to every write timestamp (microseconds); the timestamp is this plus the logical time.
    pub timestamp_offset: i64,
    /// The table holding each worker's committed frontier (in the same keyspace).
    pub progress_table: String,
    /// User and password (the password is never printed).
    pub credentials: Option<(String, Secret)>,
    /// The local datacenter (`cassandra.datacenter`): requests go only to its nodes (the driver's
    /// default policy with this preferred datacenter and no failover to others), and a cluster
    /// without a node in it is refused at creation. `None`: every node is local.
    pub datacenter: Option<String>,
}

impl CassandraConfig {
    /// Writes into `keyspace.table` through `url` (comma-separated `host:port`).
    pub fn new(url: &str, keyspace: impl Into<String>, table: impl Into<String>) -> Self {
        CassandraConfig {
            url: url.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            keyspace: keyspace.into(),
            table: table.into(),
            batch_size: 100,
            batch_bytes: 32 * 1024,
            request_timeout: Duration::from_secs(30),
            timestamp_offset: 0,
            progress_table: "dsink_progress".into(),
            credentials: None,
            datacenter: None,
        }
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        opts.resolve_aliases(RISINGWAVE_ALIASES)?;
        let url = opts.require("cassandra.url", "contact points, e.g. cassandra.url=127.0.0.1:9042")?;
        let keyspace = opts.require("cassandra.keyspace", "the keyspace, e.g. cassandra.keyspace=demo")?;
        let table = opts.require("cassandra.table", "the table, e.g. cassandra.table=orders")?;
        let mut c = CassandraConfig::new(&url, keyspace, table);
        if let Some(n) = opts.take_parsed::<usize>("cassandra.max_batch_rows", "a row count")? {
            c.batch_size = n.clamp(1, 65535);
        }
        if let Some(n) = opts.take_parsed::<usize>("cassandra.max_batch_bytes", "a byte count")? {
            c.batch_bytes = n.max(1);
        }
        if let Some(ms) = opts.take_parsed::<u64>("cassandra.request_timeout_ms", "milliseconds")? {
            c.request_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(o) = opts.take_parsed::<i64>("cassandra.timestamp_offset", "microseconds")? {
            c.timestamp_offset = o;
        }
        if let Some(p) = opts.take("cassandra.progress_table") {
            c.progress_table = p;
        }
        c.datacenter = opts.take("cassandra.datacenter");
        if c.datacenter.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(Error::config(
                "option `cassandra.datacenter` is empty: name the local datacenter (e.g. datacenter1) or remove it",
            ));
        }
        if let Some(user) = opts.take("cassandra.user") {
            c.credentials = Some((user, Secret::new(opts.take("cassandra.password").unwrap_or_default())));
        }
        for (what, v) in [
            ("cassandra.keyspace", &c.keyspace),
            ("cassandra.table", &c.table),
            ("cassandra.progress_table", &c.progress_table),
        ] {
            if v.is_empty() || !v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                return Err(Error::config(format!("option `{what}` = `{v}` must be a plain CQL identifier")));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<CassandraConfig> {
        let base = ["cassandra.url=h:9042", "cassandra.keyspace=ks", "cassandra.table=t"];
        let mut o = Options::parse_pairs([&base[..], extra].concat()).unwrap();
        let c = CassandraConfig::parse(&mut o)?;
        o.finish("cassandra")?;
        Ok(c)
    }

    #[test]
    fn risingwave_names_are_ours() {
        let theirs = parse(&["cassandra.username=ann", "cassandra.password=pw", "cassandra.datacenter=dc1"]).unwrap();
        let ours = parse(&["cassandra.user=ann", "cassandra.password=pw", "cassandra.datacenter=dc1"]).unwrap();
        assert_eq!(theirs, ours);
        assert_eq!(theirs.credentials.as_ref().map(|(u, p)| (u.as_str(), p.expose())), Some(("ann", "pw")));
        assert_eq!(theirs.datacenter.as_deref(), Some("dc1"));
        assert_eq!(parse(&[]).unwrap().datacenter, None);
        let e = parse(&["cassandra.username=ann", "cassandra.user=bob"]).unwrap_err().to_string();
        assert!(e.contains("`cassandra.user`") && e.contains("`cassandra.username`"), "{e}");
        let e = parse(&["cassandra.datacenter= "]).unwrap_err().to_string();
        assert!(e.contains("`cassandra.datacenter`"), "{e}");
    }
}
