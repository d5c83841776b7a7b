//! Options of the database connector: the connection URL (password kept out of every printout),
//! the target table, batching, timeouts, retries and TLS.

use crate::connectors::bounds::TxnBounds;
use crate::delivery::RetryPolicy;
use crate::error::{Error, Result};
use crate::options::{Alias, Options};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// RisingWave's names for the options named otherwise here (`jdbc.url`, `user`, `password`,
/// `table.name` and `schema.name` are the same in both). RisingWave's `jdbc.query.timeout`
/// (seconds) bounds each statement; here it bounds one commit attempt, which holds all of that
/// commit's statements (`jdbc.transaction.timeout.ms`).
pub(crate) const RISINGWAVE_ALIASES: &[Alias] =
    &[Alias::seconds_as_millis("jdbc.transaction.timeout.ms", "jdbc.query.timeout")];

/// Which wire protocol and SQL dialect the URL selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL (`postgres://`, `postgresql://`, `jdbc:postgresql://`).
    Postgres,
    /// MySQL, MariaDB and TiDB (`mysql://`, `mariadb://`, `jdbc:mysql://`, `jdbc:mariadb://`).
    Mysql,
}

impl Dialect {
    /// The dialect's name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
        }
    }
}

/// How a PostgreSQL upsert sink moves a commit's rows into the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgUpsertMethod {
    /// `INSERT … SELECT … FROM unnest($1::text[], …) ON CONFLICT …`: one array per column, one
    /// statement per `jdbc.batch.size` rows (the default: as fast as `Copy` within the noise of
    /// `examples/jdbc_bench.rs`, and it needs no temporary table).
    Unnest,
    /// `COPY` into a temporary staging table, then `INSERT … SELECT … ON CONFLICT …` from it.
    Copy,
}

pub use crate::secret::Secret;

/// TLS use, from `sslmode` / `ssl-mode` in the URL or `jdbc.ssl.mode`, as libpq's `sslmode`
/// (MySQL's `ssl-mode` spellings map onto the same modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (`disable`, MySQL `DISABLED`).
    Disable,
    /// TLS if the server offers it, else plain TCP; the certificate is not checked (`prefer`,
    /// `allow`, MySQL `PREFERRED`).
    Prefer,
    /// TLS or no connection; the certificate is not checked (`require`, MySQL `REQUIRED`).
    Require,
    /// TLS, and the server's certificate chain must lead to a trusted root; the host name is not
    /// compared (`verify-ca`, MySQL `VERIFY_CA`).
    VerifyCa,
    /// TLS, a trusted chain, and a certificate that names the host connected to (`verify-full`,
    /// MySQL `VERIFY_IDENTITY`).
    VerifyFull,
}

impl TlsMode {
    /// The mode's name, as in `sslmode`.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// True for the modes that check the server's certificate.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// Where and how the database connector writes.
#[derive(Clone)]
pub struct JdbcConfig {
    /// The protocol.
    pub dialect: Dialect,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The user.
    pub user: String,
    /// The password, if any.
    pub password: Option<Secret>,
    /// The database (PostgreSQL: the database to connect to; MySQL: the default schema).
    pub database: Option<String>,
    /// The schema that holds the table (PostgreSQL default `public`; MySQL: the database).
    pub schema: Option<String>,
    /// The target table.
    pub table: String,
    /// The table that records each worker's committed frontier.
    pub progress_table: String,
    /// Rows per statement.
    pub batch_size: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one commit attempt (the whole transaction) may take before it is abandoned and
    /// retried on a new connection.
    pub transaction_timeout: Duration,
    /// Retries of connection losses, deadlocks and serialization failures.
    pub retry: RetryPolicy,
    /// When a transaction is committed early, inside a time (`transaction.max.records`,
    /// `transaction.max.bytes`: staged rows and their staged bytes).
    pub transaction: TxnBounds,
    /// PostgreSQL upsert path.
    pub pg_upsert: PgUpsertMethod,
    /// TLS.
    pub tls: TlsMode,
    /// PEM file of the roots a `verify-*` mode trusts (`jdbc.ssl.root.cert`, `sslrootcert`); the
    /// system's store when unset.
    pub tls_root_cert: Option<PathBuf>,
    /// PEM file of the client certificate chain (`jdbc.ssl.cert`, `sslcert`).
    pub tls_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (`jdbc.ssl.key`, `sslkey`).
    pub tls_client_key: Option<PathBuf>,
}

/// The default bounds of one transaction: a million staged rows or 64 MiB of staged bytes.
pub const DEFAULT_TRANSACTION: TxnBounds = TxnBounds { max_records: 1_000_000, max_bytes: 64 << 20 };

impl fmt::Debug for JdbcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JdbcConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("progress_table", &self.progress_table)
            .field("batch_size", &self.batch_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("transaction_timeout", &self.transaction_timeout)
            .field("retry", &self.retry)
            .field("transaction", &self.transaction)
            .field("pg_upsert", &self.pg_upsert)
            .field("tls", &self.tls)
            .field("tls_root_cert", &self.tls_root_cert)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .finish()
    }
}

fn percent_decode(s: &str, what: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return Err(Error::config(format!("option `jdbc.url`: bad percent escape in the {what}"))),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("option `jdbc.url`: the {what} is not UTF-8")))
}

fn parse_tls(value: &str, option: &str) -> Result<TlsMode> {
    match value.to_ascii_lowercase().replace('_', "-").as_str() {
        "disable" | "disabled" | "false" => Ok(TlsMode::Disable),
        "allow" | "prefer" | "preferred" => Ok(TlsMode::Prefer),
        "require" | "required" | "true" => Ok(TlsMode::Require),
        "verify-ca" => Ok(TlsMode::VerifyCa),
        "verify-full" | "verify-identity" => Ok(TlsMode::VerifyFull),
        _ => Err(Error::config(format!(
            "option `{option}` = `{value}` is not a TLS mode: use disable, prefer, require, verify-ca or \
             verify-full (MySQL spellings DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY are accepted)"
        ))),
    }
}

impl JdbcConfig {
    /// A configuration for `url` (see the module docs for the accepted forms) and `table`, with
    /// the defaults of every other option.
    ///
    /// ```
    /// use differential_sinks::connectors::jdbc::JdbcConfig;
    /// let c = JdbcConfig::new("postgres://app:s3cret@db.local:5433/shop?sslmode=disable", "orders").unwrap();
    /// assert_eq!((c.host.as_str(), c.port, c.database.as_deref()), ("db.local", 5433, Some("shop")));
    /// assert!(!format!("{c:?}").contains("s3cret"));
    /// ```
    pub fn new(url: &str, table: impl Into<String>) -> Result<Self> {
        let mut c = JdbcConfig {
            dialect: Dialect::Postgres,
            host: String::new(),
            port: 0,
            user: String::new(),
            password: None,
            database: None,
            schema: None,
            table: table.into(),
            progress_table: "dsink_progress".into(),
            batch_size: 0,
            connect_timeout: Duration::from_secs(10),
            transaction_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            transaction: DEFAULT_TRANSACTION,
            pg_upsert: PgUpsertMethod::Unnest,
            tls: TlsMode::Disable,
            tls_root_cert: None,
            tls_client_cert: None,
            tls_client_key: None,
        };
        c.parse_url(url)?;
        if c.table.is_empty() {
            return Err(Error::config("option `table.name` is required: the table to write"));
        }
        Ok(c)
    }

    fn parse_url(&mut self, url: &str) -> Result<()> {
        let bad = |why: &str| {
            Error::config(format!(
                "option `jdbc.url` ({}) {why}; expected postgres://user:password@host:port/database or \
                 mysql://user:password@host:port/database (a `jdbc:` prefix is accepted)",
                redact_url(url)
            ))
        };
        let rest = url.strip_prefix("jdbc:").unwrap_or(url);
        let (scheme, rest) = rest.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        self.dialect = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" | "tidb" => Dialect::Mysql,
            other => return Err(bad(&format!("has scheme `{other}`, which is not supported"))),
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = userinfo {
            let (user, pass) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            };
            self.user = percent_decode(user, "user")?;
            self.password = pass.map(|p| percent_decode(p, "password").map(Secret::new)).transpose()?;
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| bad("has an unclosed `[`"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("names no host"));
        }
        self.host = host;
        self.port = match port {
            Some(p) => p.parse().map_err(|_| bad(&format!("has port `{p}`, which is not a number")))?,
            None => match self.dialect {
                Dialect::Postgres => 5432,
                Dialect::Mysql => 3306,
            },
        };
        if !path.is_empty() {
            self.database = Some(percent_decode(path, "database")?);
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v, k)?;
            match k {
                "user" => self.user = v,
                "password" => self.password = Some(Secret::new(v)),
                "sslmode" | "ssl-mode" | "sslMode" => self.tls = parse_tls(&v, "jdbc.url` parameter `sslmode")?,
                "sslrootcert" => self.tls_root_cert = Some(v.into()),
                "sslcert" => self.tls_client_cert = Some(v.into()),
                "sslkey" => self.tls_client_key = Some(v.into()),
                // MySQL Connector/J's `connectTimeout` is in milliseconds; libpq's `connect_timeout`
                // and pgjdbc's `connectTimeout` in seconds.
                "connect_timeout" | "connectTimeout" => {
                    let ms = k == "connectTimeout" && self.dialect == Dialect::Mysql;
                    let unit = if ms { "milliseconds" } else { "seconds" };
                    let n: u64 = v.parse().map_err(|_| bad(&format!("has {k} `{v}`, not a number of {unit}")))?;
                    self.connect_timeout = if ms { Duration::from_millis(n) } else { Duration::from_secs(n) };
                }
                "currentSchema" | "search_path" => self.schema = Some(v),
                other if super::url_params::is_tls_switch(other) => {
                    return Err(bad(&format!(
                        "has the Java driver's TLS switch `{other}`: use `sslmode` instead (disable, prefer, \
                         require, verify-ca or verify-full), or `jdbc.ssl.mode`"
                    )))
                }
                other => match super::url_params::ignored(other) {
                    Some(why) => tracing::warn!(
                        parameter = other,
                        "option `jdbc.url`: ignoring the Java driver parameter `{other}`: {why}"
                    ),
                    None => {
                        return Err(bad(&format!(
                            "has parameter `{other}`, which is not supported (supported: user, password, sslmode, \
                             sslrootcert, sslcert, sslkey, connect_timeout, currentSchema; Java driver settings \
                             such as nullCatalogMeansCurrent are ignored with a warning)"
                        )))
                    }
                },
            }
        }
        if self.user.is_empty() {
            self.user = match self.dialect {
                Dialect::Postgres => "postgres".into(),
                Dialect::Mysql => "root".into(),
            };
        }
        Ok(())
    }

    /// The URL with the password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        let scheme = match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        };
        let pass = if self.password.is_some() { ":<redacted>" } else { "" };
        format!("{scheme}://{}{pass}@{}:{}/{}", self.user, self.host, self.port, self.database.as_deref().unwrap_or(""))
    }

    /// The schema (PostgreSQL) or database (MySQL) that holds the table.
    pub fn schema_name(&self) -> Result<String> {
        match (&self.schema, self.dialect) {
            (Some(s), _) => Ok(s.clone()),
            (None, Dialect::Postgres) => Ok("public".into()),
            (None, Dialect::Mysql) => self.database.clone().ok_or_else(|| {
                Error::config(format!(
                    "the MySQL URL {} names no database and `schema.name` is not set: say which database holds table `{}`",
                    self.redacted_url(),
                    self.table
                ))
            }),
        }
    }

    /// `schema.table`, as in messages and progress records.
    pub fn qualified_table(&self) -> String {
        format!("{}.{}", self.schema_name().unwrap_or_else(|_| "?".into()), self.table)
    }

    /// Rows per statement (0 = the dialect's default).
    pub fn rows_per_statement(&self) -> usize {
        match (self.batch_size, self.dialect) {
            (0, Dialect::Postgres) => 50_000,
            (0, Dialect::Mysql) => 2_000,
            (n, _) => n,
        }
    }

    /// Sets the schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets rows per statement.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Sets the bounds of one transaction: it is committed early, inside a time, once it holds
    /// `rows` staged rows or `bytes` staged bytes (each at least 1).
    pub fn max_transaction(mut self, rows: u64, bytes: u64) -> Self {
        self.transaction = TxnBounds { max_records: rows.max(1), max_bytes: bytes.max(1) };
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the TLS mode.
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }

    /// Sets the PEM file of the roots a `verify-*` mode trusts.
    pub fn tls_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(path.into());
        self
    }

    /// Sets the PEM files of the client certificate chain and its private key.
    pub fn tls_client_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_client_cert = Some(cert.into());
        self.tls_client_key = Some(key.into());
        self
    }

    /// Sets the PostgreSQL upsert path.
    pub fn pg_upsert(mut self, method: PgUpsertMethod) -> Self {
        self.pg_upsert = method;
        self
    }

    pub(crate) fn parse(opts: &mut Options) -> Result<Self> {
        opts.resolve_aliases(RISINGWAVE_ALIASES)?;
        let url = opts.require(
            "jdbc.url",
            "the database URL, e.g. jdbc.url=postgres://user@host:5432/db or mysql://user@host:3306/db",
        )?;
        let table = opts.require("table.name", "the table to write, e.g. table.name=orders")?;
        let mut c = JdbcConfig::new(&url, table)?;
        if let Some(u) = opts.take("user") {
            c.user = u;
        }
        if let Some(p) = opts.take("password") {
            c.password = Some(Secret::new(p));
        }
        if let Some(s) = opts.take("schema.name") {
            c.schema = Some(s);
        }
        if let Some(t) = opts.take("jdbc.progress.table") {
            c.progress_table = t;
        }
        if let Some(n) = opts.take_parsed::<usize>("jdbc.batch.size", "a number of rows")? {
            c.batch_size = n;
        }
        let ms = |o: &mut Options, k: &str| o.take_parsed::<u64>(k, "milliseconds");
        if let Some(v) = ms(opts, "jdbc.connect.timeout.ms")? {
            c.connect_timeout = Duration::from_millis(v);
        }
        if let Some(v) = ms(opts, "jdbc.transaction.timeout.ms")? {
            c.transaction_timeout = Duration::from_millis(v);
        }
        if let Some(v) = ms(opts, "jdbc.retry.initial.ms")? {
            c.retry.initial = Duration::from_millis(v);
        }
        if let Some(v) = ms(opts, "jdbc.retry.max.ms")? {
            c.retry.max_delay = Duration::from_millis(v);
        }
        if let Some(v) = ms(opts, "jdbc.retry.deadline.ms")? {
            c.retry.deadline = Duration::from_millis(v);
        }
        c.transaction = TxnBounds::parse(opts, c.transaction)?;
        if let Some(m) = opts.take("jdbc.ssl.mode") {
            c.tls = parse_tls(&m, "jdbc.ssl.mode")?;
        }
        if let Some(p) = opts.take("jdbc.ssl.root.cert") {
            c.tls_root_cert = Some(p.into());
        }
        if let Some(p) = opts.take("jdbc.ssl.cert") {
            c.tls_client_cert = Some(p.into());
        }
        if let Some(p) = opts.take("jdbc.ssl.key") {
            c.tls_client_key = Some(p.into());
        }
        if let Some(m) = opts.take("jdbc.postgres.upsert") {
            c.pg_upsert = match m.as_str() {
                "unnest" => PgUpsertMethod::Unnest,
                "copy" => PgUpsertMethod::Copy,
                other => {
                    return Err(Error::config(format!("option `jdbc.postgres.upsert` = `{other}`: use unnest or copy")))
                }
            };
        }
        if c.table.contains('.') && c.schema.is_none() {
            return Err(Error::config(format!(
                "option `table.name` = `{}` contains a dot: put the schema in `schema.name` and the bare table name in `table.name`",
                c.table
            )));
        }
        Ok(c)
    }
}

/// `url` with any password replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = url.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = url[auth_start..].find('/').map_or(url.len(), |i| auth_start + i);
        if let Some(at) = url[auth_start..auth_end].rfind('@') {
            let userinfo = &url[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out = format!("{}:<redacted>{}", &url[..auth_start + colon], &url[auth_start + at..]);
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if crate::options::is_secret_key(k) => format!("{k}=<redacted>"),
                _ => p.to_string(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risingwave_query_timeout_is_the_transaction_timeout() {
        let parse = |extra: &[&str]| {
            let mut pairs = vec!["jdbc.url=postgres://h/db", "table.name=t"];
            pairs.extend_from_slice(extra);
            let mut o = Options::parse_pairs(pairs).unwrap();
            let c = JdbcConfig::parse(&mut o)?;
            o.finish("jdbc").map(|()| c)
        };
        let theirs = parse(&["jdbc.query.timeout=45"]).unwrap();
        let ours = parse(&["jdbc.transaction.timeout.ms=45000"]).unwrap();
        assert_eq!(theirs.transaction_timeout, Duration::from_secs(45));
        // No `PartialEq` (secrets): every field is in `Debug`.
        assert_eq!(format!("{theirs:?}"), format!("{ours:?}"));
        let both = parse(&["jdbc.query.timeout=45", "jdbc.transaction.timeout.ms=45000"]).unwrap();
        assert_eq!(format!("{both:?}"), format!("{ours:?}"));
        let e = parse(&["jdbc.query.timeout=45", "jdbc.transaction.timeout.ms=1000"]).unwrap_err().to_string();
        assert!(e.contains("`jdbc.transaction.timeout.ms`") && e.contains("`jdbc.query.timeout`"), "{e}");
        let e = parse(&["jdbc.query.timeout=1.5"]).unwrap_err().to_string();
        assert!(e.contains("`jdbc.query.timeout` = `1.5`"), "{e}");
    }

    #[test]
    fn urls() {
        let c = JdbcConfig::new("jdbc:mysql://u:p%40ss@h/db?sslmode=prefer", "t").unwrap();
        assert_eq!(c.dialect, Dialect::Mysql);
        assert_eq!(c.port, 3306);
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.tls, TlsMode::Prefer);
        assert_eq!(c.schema_name().unwrap(), "db");
        let d = format!("{c:?}");
        assert!(!d.contains("p@ss") && !d.contains("p%40ss"), "{d}");
        let c = JdbcConfig::new("postgresql://[::1]:6000/x?user=me&password=pw", "t").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.user.as_str()), ("::1", 6000, "me"));
        assert!(!format!("{c:?}").contains("pw"));
        let c = JdbcConfig::new("postgres://h/db?sslmode=require", "t").unwrap();
        assert_eq!(c.tls, TlsMode::Require);
        let e = JdbcConfig::new("oracle://u:secret@h/db", "t").unwrap_err();
        assert!(!e.to_string().contains("secret") && e.to_string().contains("oracle"), "{e}");
        assert_eq!(
            redact_url("postgres://u:secret@h:1/db?password=x&sslmode=disable"),
            "postgres://u:<redacted>@h:1/db?password=<redacted>&sslmode=disable"
        );
    }

    #[test]
    fn tls_modes_and_files() {
        let mode = |q: &str| JdbcConfig::new(&format!("mysql://h/db?{q}"), "t").map(|c| c.tls);
        for (spelling, want) in [
            ("sslmode=disable", TlsMode::Disable),
            ("ssl-mode=DISABLED", TlsMode::Disable),
            ("sslmode=allow", TlsMode::Prefer),
            ("ssl-mode=PREFERRED", TlsMode::Prefer),
            ("sslmode=require", TlsMode::Require),
            ("sslMode=REQUIRED", TlsMode::Require),
            ("sslmode=verify-ca", TlsMode::VerifyCa),
            ("ssl-mode=VERIFY_CA", TlsMode::VerifyCa),
            ("sslmode=verify-full", TlsMode::VerifyFull),
            ("ssl-mode=VERIFY_IDENTITY", TlsMode::VerifyFull),
        ] {
            assert_eq!(mode(spelling).unwrap(), want, "{spelling}");
        }
        assert_eq!(mode("").unwrap(), TlsMode::Disable, "the default");
        let e = mode("sslmode=verify").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(e.to_string().contains("`verify` is not a TLS mode") && e.to_string().contains("verify-full"), "{e}");

        let c = JdbcConfig::new(
            "postgres://u:pw-secret@h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k%20ey.pem",
            "t",
        )
        .unwrap();
        assert_eq!(c.tls, TlsMode::VerifyFull);
        assert_eq!(c.tls_root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(c.tls_client_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
        assert_eq!(c.tls_client_key.as_deref(), Some(std::path::Path::new("/k ey.pem")));
        let shown = format!("{c:?}");
        assert!(shown.contains("/k ey.pem") && shown.contains("VerifyFull") && !shown.contains("pw-secret"), "{shown}");

        // The options override the URL.
        let mut opts = Options::parse_pairs([
            "jdbc.url=mysql://h/db?sslmode=require&sslrootcert=/url.pem".to_string(),
            "table.name=t".into(),
            "jdbc.ssl.mode=VERIFY_CA".into(),
            "jdbc.ssl.root.cert=/opt.pem".into(),
            "jdbc.ssl.cert=/c.pem".into(),
            "jdbc.ssl.key=/k.pem".into(),
        ])
        .unwrap();
        let c = JdbcConfig::parse(&mut opts).unwrap();
        assert_eq!(c.tls, TlsMode::VerifyCa);
        assert_eq!(c.tls_root_cert.as_deref(), Some(std::path::Path::new("/opt.pem")));
        assert_eq!(c.tls_client_key.as_deref(), Some(std::path::Path::new("/k.pem")));
        let mut opts = Options::parse_pairs([
            "jdbc.url=mysql://h/db".to_string(),
            "table.name=t".into(),
            "jdbc.ssl.mode=on".into(),
        ])
        .unwrap();
        let e = JdbcConfig::parse(&mut opts).unwrap_err();
        assert!(e.to_string().contains("option `jdbc.ssl.mode` = `on`"), "{e}");
    }
}
