//! Options of the Doris connector: where the frontend is, the target table, credentials and
//! timeouts, parsed and checked on their own (the checks against the sink are in `table.rs`).

use crate::connectors::http::{base_url, Secret};
use crate::error::{Error, Result};
use crate::options::{Alias, Options};
use crate::secret::split_userinfo;
use std::time::Duration;

/// RisingWave's names for the options named otherwise here (`doris.url`, `doris.password`,
/// `doris.database` and `doris.table` are the same in both).
pub(crate) const RISINGWAVE_ALIASES: &[Alias] =
    &[Alias::same("doris.user", "doris.username"), Alias::same("doris.partial_update", "doris.partial_column")];

/// Where and how the Doris connector loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DorisConfig {
    /// The frontend's HTTP address, e.g. `http://127.0.0.1:8030`.
    pub url: String,
    /// The user (default `root`).
    pub user: String,
    /// The password.
    pub password: Option<Secret>,
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// Load only the columns the rows have (`partial_columns: true`, unique-key merge-on-write tables).
    pub partial_update: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The largest Stream Load body: a commit's body past it is sent in parts.
    pub load_max_bytes: u64,
}

/// The default of `doris.load.max.bytes`: 64 MiB.
pub const DEFAULT_LOAD_MAX_BYTES: u64 = 64 << 20;

impl DorisConfig {
    /// Loads into `database.table` through the frontend at `url`. Credentials in the URL
    /// (`http://user:password@fe:8030`) are taken out of it into `user` and `password`.
    pub fn new(url: impl Into<String>, database: impl Into<String>, table: impl Into<String>) -> Self {
        let (url, credentials) = split_userinfo(url.into().trim_end_matches('/'));
        let (user, password) = credentials.map_or(("root".to_string(), None), |(u, p)| (u, p));
        DorisConfig {
            url,
            user,
            password,
            database: database.into(),
            table: table.into(),
            partial_update: false,
            timeout: Duration::from_secs(600),
            load_max_bytes: DEFAULT_LOAD_MAX_BYTES,
        }
    }
    /// The largest Stream Load body (at least 1 byte): a commit's body past it is sent in parts.
    pub fn load_max_bytes(mut self, bytes: u64) -> Self {
        self.load_max_bytes = bytes.max(1);
        self
    }
    /// Credentials.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = user.into();
        self.password = Some(Secret::new(password));
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        opts.resolve_aliases(RISINGWAVE_ALIASES)?;
        let url = opts.require("doris.url", "the frontend's HTTP address, e.g. doris.url=http://127.0.0.1:8030")?;
        let database = opts.require("doris.database", "the database, e.g. doris.database=demo")?;
        let table = opts.require("doris.table", "the table, e.g. doris.table=orders")?;
        let mut c = DorisConfig::new(base_url("doris.url", &url)?, database, table);
        if let Some(u) = opts.take("doris.user") {
            c.user = u;
        }
        if let Some(p) = opts.take("doris.password") {
            c.password = Some(Secret::new(p));
        }
        c.partial_update = opts.take_bool("doris.partial_update")?.unwrap_or(false);
        if let Some(ms) = opts.take_parsed::<u64>("doris.timeout.ms", "milliseconds")? {
            c.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = opts.take("doris.load.max.bytes") {
            let n = crate::options::parse_bytes("doris.load.max.bytes", &v)? as u64;
            if n == 0 {
                return Err(Error::config(
                    "option `doris.load.max.bytes` = 0: a load needs room for at least one row; give a positive \
                     size such as 64MiB (the default)",
                ));
            }
            c.load_max_bytes = n;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<DorisConfig> {
        let base = ["doris.url=http://fe:8030", "doris.database=d", "doris.table=t"];
        let mut o = Options::parse_pairs([&base[..], extra].concat()).unwrap();
        let c = DorisConfig::parse(&mut o)?;
        o.finish("doris")?;
        Ok(c)
    }

    #[test]
    fn risingwave_names_are_ours() {
        let theirs = parse(&["doris.username=ann", "doris.password=pw", "doris.partial_column=true"]).unwrap();
        let ours = parse(&["doris.user=ann", "doris.password=pw", "doris.partial_update=true"]).unwrap();
        assert_eq!(theirs, ours);
        assert_eq!((theirs.user.as_str(), theirs.partial_update), ("ann", true));
        assert!(!parse(&["doris.partial_column=false"]).unwrap().partial_update);
        let e = parse(&["doris.partial_column=true", "doris.partial_update=false"]).unwrap_err().to_string();
        assert!(e.contains("`doris.partial_update`") && e.contains("`doris.partial_column`"), "{e}");
        let e = parse(&["doris.username=ann", "doris.user=bob"]).unwrap_err().to_string();
        assert!(e.contains("`doris.user`") && e.contains("`doris.username`"), "{e}");
    }

    #[test]
    fn load_size_is_bounded_by_a_positive_size() {
        assert_eq!(parse(&[]).unwrap().load_max_bytes, DEFAULT_LOAD_MAX_BYTES);
        assert_eq!(parse(&["doris.load.max.bytes=16MiB"]).unwrap().load_max_bytes, 16 << 20);
        assert_eq!(parse(&["doris.load.max.bytes=1000"]).unwrap().load_max_bytes, 1000);
        for bad in ["doris.load.max.bytes=0", "doris.load.max.bytes=big", "doris.load.max.bytes=-5"] {
            let e = parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains("doris.load.max.bytes"), "{bad}: {e}");
        }
    }
}
