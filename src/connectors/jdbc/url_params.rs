//! Parameters of Java JDBC driver URLs (MySQL Connector/J, pgjdbc) that have nothing to do here,
//! so that a `jdbc.url` copied from RisingWave or a Java application is accepted: each is
//! ignored with a warning saying why. Only parameters that cannot change what is stored or how
//! the connection is secured are on the list; anything else unknown is still refused, and the
//! TLS switches of the Java drivers are refused with the `sslmode` spelling to use instead, since
//! ignoring them would silently change the connection's security.

/// `(parameter, why it has no effect here)`, matched without regard to case.
const IGNORED: &[(&str, &str)] = &[
    // MySQL Connector/J.
    ("nullCatalogMeansCurrent", "table metadata is always read from the URL's database"),
    ("useUnicode", "text is always sent as UTF-8 (utf8mb4)"),
    ("characterEncoding", "text is always sent as UTF-8 (utf8mb4)"),
    ("allowPublicKeyRetrieval", "the client's own authentication plugins are used"),
    ("rewriteBatchedStatements", "rows are already written in multi-row statements"),
    ("useServerPrepStmts", "statement preparation is the client's own"),
    ("cachePrepStmts", "statement preparation is the client's own"),
    ("prepStmtCacheSize", "statement preparation is the client's own"),
    ("prepStmtCacheSqlLimit", "statement preparation is the client's own"),
    ("useLocalSessionState", "the session's state is the sink's own"),
    ("autoReconnect", "a lost connection is retried by the sink, transaction and all"),
    ("maxReconnects", "a lost connection is retried by the sink until `jdbc.retry.deadline.ms`"),
    ("tinyInt1isBit", "it changes how values are read, and the sink reads none"),
    ("zeroDateTimeBehavior", "it changes how values are read, and the sink reads none"),
    // pgjdbc.
    ("reWriteBatchedInserts", "rows are already written with `unnest` or `COPY`"),
    ("stringtype", "every value is sent as text and typed by the server from the column"),
    ("prepareThreshold", "statement preparation is the client's own"),
    ("binaryTransfer", "every value is sent as text"),
    ("ApplicationName", "the session is not named"),
    ("assumeMinServerVersion", "the server's version is not assumed"),
    ("tcpKeepAlive", "the client's own keepalive settings are used"),
    // Both.
    ("socketTimeout", "a commit attempt is bounded by `jdbc.transaction.timeout.ms`"),
    ("loginTimeout", "connecting is bounded by `jdbc.connect.timeout.ms` or `connect_timeout`"),
];

/// Java drivers' TLS switches, refused with what to write instead.
const TLS_SWITCHES: &[&str] = &["useSSL", "requireSSL", "verifyServerCertificate", "ssl", "sslfactory"];

/// Why `name` is ignored, when it is a Java driver parameter with no effect here.
pub(crate) fn ignored(name: &str) -> Option<&'static str> {
    IGNORED.iter().find(|(p, _)| p.eq_ignore_ascii_case(name)).map(|(_, why)| *why)
}

/// True for the Java drivers' TLS switches.
pub(crate) fn is_tls_switch(name: &str) -> bool {
    TLS_SWITCHES.iter().any(|p| p.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::jdbc::JdbcConfig;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Runs `f` with a subscriber that keeps every log line; returns `f`'s result and the lines.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || out.clone()).finish();
        let r = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (r, text)
    }

    #[test]
    fn java_driver_parameters_are_ignored_with_a_warning() {
        let url = "jdbc:mysql://h:3306/db?user=u&nullCatalogMeansCurrent=true&useUnicode=true&characterEncoding=UTF-8";
        let (c, log) = logged(|| JdbcConfig::new(url, "t"));
        let c = c.unwrap();
        assert_eq!((c.host.as_str(), c.user.as_str(), c.database.as_deref()), ("h", "u", Some("db")));
        for p in ["nullCatalogMeansCurrent", "useUnicode", "characterEncoding"] {
            assert!(log.contains("WARN") && log.contains(&format!("`{p}`")), "{p} not warned about: {log}");
        }
        let (c, log) =
            logged(|| JdbcConfig::new("postgres://h/db?reWriteBatchedInserts=true&stringtype=unspecified", "t"));
        assert!(c.is_ok() && log.contains("`reWriteBatchedInserts`") && log.contains("`stringtype`"), "{log}");
        let (c, log) = logged(|| JdbcConfig::new("postgres://h/db?sslmode=require", "t"));
        assert!(c.is_ok() && log.is_empty(), "{log}");
    }

    #[test]
    fn unknown_and_tls_parameters_are_still_refused() {
        let e = JdbcConfig::new("mysql://h/db?serverTimezone=UTC", "t").unwrap_err().to_string();
        assert!(e.contains("`serverTimezone`") && e.contains("jdbc.url"), "{e}");
        let e = JdbcConfig::new("mysql://u:pw-secret@h/db?useSSL=true", "t").unwrap_err().to_string();
        assert!(e.contains("`useSSL`") && e.contains("sslmode") && !e.contains("pw-secret"), "{e}");
        let e = JdbcConfig::new("postgres://h/db?ssl=true", "t").unwrap_err().to_string();
        assert!(e.contains("`ssl`") && e.contains("sslmode"), "{e}");
    }

    #[test]
    fn connect_timeouts_keep_each_drivers_unit() {
        let mysql = JdbcConfig::new("mysql://h/db?connectTimeout=2500", "t").unwrap();
        assert_eq!(mysql.connect_timeout, Duration::from_millis(2500));
        let pg = JdbcConfig::new("postgres://h/db?connectTimeout=7", "t").unwrap();
        assert_eq!(pg.connect_timeout, Duration::from_secs(7));
        let libpq = JdbcConfig::new("mysql://h/db?connect_timeout=3", "t").unwrap();
        assert_eq!(libpq.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn lookups_ignore_case() {
        assert!(ignored("nullcatalogmeanscurrent").is_some());
        assert!(ignored("nullCatalogMeansCurrent").is_some());
        assert!(ignored("serverTimezone").is_none(), "it can change stored values: not ignored");
        assert!(is_tls_switch("useSSL") && is_tls_switch("SSL") && !is_tls_switch("sslmode"));
        assert!(IGNORED.iter().all(|(n, _)| !is_tls_switch(n)));
    }
}
