//! MySQL, MariaDB and TiDB: catalog queries, the progress table (its statements come from
//! `progress.rs`), and one commit as one transaction of multi-row prepared statements
//! (`DELETE … WHERE key IN (…)`, `INSERT … ON DUPLICATE KEY UPDATE`).

use super::tls::{self, TlsMaterial};
use super::Target;
use crate::connectors::jdbc::batch::{Batch, RowOp};
use crate::connectors::jdbc::config::{Dialect, JdbcConfig, TlsMode};
use crate::connectors::jdbc::progress::{
    check_stored, parse_frontier, parse_partial, record_from, ProgressRow, Record, Stored, ADDED_COLUMNS,
};
use crate::connectors::jdbc::table::{mysql_kind, quote, ColKind, TableColumn, TableInfo};
use crate::error::{Error, ErrorKind, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, DriverError, OptsBuilder, Params, SslOpts, Value};

/// The most placeholders one prepared statement may have.
const MAX_PARAMS: usize = 65_535;

fn q(s: &str) -> String {
    quote(Dialect::Mysql, s)
}

/// Server error codes a retry may cure: deadlock, lock wait timeout, too many connections,
/// shutdown, killed connection, and TiDB's write conflicts.
const RETRIABLE: &[u16] = &[1213, 1205, 1040, 1053, 1927, 8002, 8022, 8028, 9007];

/// Server error codes caused by a row's data: duplicates, nulls, ranges, truncation, bad dates or
/// JSON, check and foreign-key constraints, missing defaults.
const DATA: &[u16] = &[1048, 1062, 1136, 1264, 1265, 1292, 1366, 1364, 1406, 1451, 1452, 3140, 3819, 4025];

/// Turns a driver error into a sink error.
pub fn classify(e: mysql_async::Error, what: &str) -> Error {
    let kind = match &e {
        mysql_async::Error::Server(s) if RETRIABLE.contains(&s.code) => ErrorKind::Retriable,
        mysql_async::Error::Server(_) => ErrorKind::Fatal,
        mysql_async::Error::Url(_) => ErrorKind::Config,
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) | mysql_async::Error::Other(_) => {
            ErrorKind::Retriable
        }
    };
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

/// True for errors caused by the data of some row.
pub fn is_data_error(e: &Error) -> bool {
    use std::error::Error as _;
    matches!(
        e.source().and_then(|s| s.downcast_ref::<mysql_async::Error>()),
        Some(mysql_async::Error::Server(s)) if DATA.contains(&s.code)
    )
}

/// Why a session did not open.
enum Refusal {
    /// The server does not offer TLS.
    NoTls(Error),
    /// The TLS handshake failed; with a name the certificate holds if only the name differed.
    Tls(Error, Option<String>),
    Other(Error),
}

impl Refusal {
    fn into_error(self) -> Error {
        match self {
            Refusal::NoTls(e) | Refusal::Tls(e, _) | Refusal::Other(e) => e,
        }
    }
}

/// mysql_async's TLS options for `c`'s mode, trusting exactly `material`'s roots.
fn ssl_opts(c: &JdbcConfig, material: &TlsMaterial) -> SslOpts {
    // A buffer without PEM blocks is read as one DER certificate.
    let roots = material.roots.iter().map(|r| r.to_vec().into()).collect();
    let identity = match (&c.tls_client_cert, &c.tls_client_key) {
        (Some(cert), Some(key)) => Some(ClientIdentity::new(cert.clone().into(), key.clone().into())),
        _ => None,
    };
    SslOpts::default()
        .with_root_certs(roots)
        // mysql_async builds its verifier even when it accepts any certificate, and that needs a
        // root: the built-in ones serve there, and only there.
        .with_disable_built_in_roots(c.tls.verifies())
        .with_client_identity(identity)
        .with_danger_accept_invalid_certs(!c.tls.verifies())
}

/// An open MySQL session.
pub struct MyConn {
    conn: Option<Conn>,
}

impl MyConn {
    /// Connects, with the session in UTC, READ COMMITTED (no gap locks between workers) and
    /// strict SQL mode (bad values are errors, not warnings), over TLS as `c.tls` says.
    ///
    /// mysql_async builds its rustls configuration itself and its own "skip the host name"
    /// switch does not recognise the host name errors of current rustls, so `verify-ca` goes
    /// through `verify-full`: when the chain is trusted and only the name differs, the session is
    /// opened again, verifying the certificate against a name it holds.
    pub async fn connect(c: &JdbcConfig) -> Result<MyConn> {
        let what = format!("connecting to {}", c.redacted_url());
        let material = TlsMaterial::load(c)?;
        let Some(material) = material else {
            return Ok(MyConn { conn: Some(Self::open(c, None, &what).await.map_err(Refusal::into_error)?) });
        };
        tls::install_default_provider();
        let ssl = ssl_opts(c, &material);
        match Self::open(c, Some(ssl.clone()), &what).await {
            Ok(conn) => Ok(MyConn { conn: Some(conn) }),
            Err(Refusal::NoTls(_)) if c.tls == TlsMode::Prefer => {
                Ok(MyConn { conn: Some(Self::open(c, None, &what).await.map_err(Refusal::into_error)?) })
            }
            Err(Refusal::Tls(_, Some(name))) if c.tls == TlsMode::VerifyCa => {
                let ssl = ssl.with_danger_tls_hostname_override(Some(name));
                let conn = Self::open(c, Some(ssl), &what).await.map_err(Refusal::into_error)?;
                Ok(MyConn { conn: Some(conn) })
            }
            Err(r) => Err(r.into_error()),
        }
    }

    async fn open(c: &JdbcConfig, ssl: Option<SslOpts>, what: &str) -> std::result::Result<Conn, Refusal> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(c.host.clone())
            .tcp_port(c.port)
            .user(Some(c.user.clone()))
            .pass(c.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(c.database.clone())
            .prefer_socket(false)
            .ssl_opts(ssl)
            .init(vec![
                "SET NAMES utf8mb4",
                "SET time_zone = '+00:00'",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'",
            ]);
        let conn = tokio::time::timeout(c.connect_timeout, Conn::new(opts)).await.map_err(|_| {
            Refusal::Other(Error::new(
                ErrorKind::Retriable,
                format!("{what}: no answer within {:?}", c.connect_timeout),
            ))
        })?;
        conn.map_err(|e| {
            if matches!(e, mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) {
                let msg = format!(
                    "{what}: the server does not offer TLS (jdbc.ssl.mode = {}); enable TLS on the server, or \
                     use `prefer` or `disable`",
                    c.tls.name()
                );
                return Refusal::NoTls(Error::new(ErrorKind::Config, msg).with_source(e));
            }
            match tls::find_rustls_error(&e) {
                Some(r) => {
                    let name = tls::presented_names(r).and_then(tls::usable_name);
                    let msg = format!("{what}: {r}; {}", tls::hint(c, r));
                    Refusal::Tls(Error::new(ErrorKind::Config, msg).with_source(e), name)
                }
                None => Refusal::Other(classify(e, what)),
            }
        })
    }

    fn c(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("open until disconnected")
    }

    /// Closes the session politely.
    pub async fn disconnect(mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.disconnect().await;
        }
    }

    /// Reads the table's columns and primary key; a missing table is a schema error.
    pub async fn table_info(&mut self, schema: &str, table: &str) -> Result<TableInfo> {
        let qualified = format!("{schema}.{table}");
        let what = format!("reading the columns of table {qualified}");
        type ColRow = (String, String, String, String, Option<String>, String, String);
        let rows: Vec<ColRow> = self
            .c()
            .exec(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
                        CAST(IS_NULLABLE AS CHAR), CAST(COLUMN_DEFAULT AS CHAR), CAST(EXTRA AS CHAR), \
                        CAST(COLUMN_KEY AS CHAR) \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (schema, table),
            )
            .await
            .map_err(|e| classify(e, &what))?;
        if rows.is_empty() {
            return Err(Error::schema(format!(
                "table {qualified} does not exist in MySQL; create it first, or fix `table.name` / `schema.name`"
            )));
        }
        // MariaDB's JSON is LONGTEXT with a json_valid() check; find those columns.
        let checks: Vec<String> = self
            .c()
            .exec(
                "SELECT CAST(CHECK_CLAUSE AS CHAR) FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (schema, table),
            )
            .await
            .unwrap_or_default();
        let pk: Vec<String> = self
            .c()
            .exec(
                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (schema, table),
            )
            .await
            .map_err(|e| classify(e, &what))?;
        let mut info = TableInfo { qualified, columns: Vec::new(), primary_key: pk };
        for (name, data_type, column_type, nullable, default, extra, _key) in rows {
            let json_checked = checks.iter().any(|c| {
                let c = c.to_ascii_lowercase();
                c.contains("json_valid") && c.contains(&format!("`{}`", name.to_ascii_lowercase()))
            });
            let extra_l = extra.to_ascii_lowercase();
            let kind = mysql_kind(&data_type, &column_type, json_checked);
            info.columns.push(TableColumn {
                cast_type: data_type.clone(),
                sql_type: if kind == ColKind::Json && data_type != "json" { "json".into() } else { column_type },
                kind,
                nullable: nullable == "YES",
                has_default: default.is_some() || extra_l.contains("auto_increment"),
                generated: extra_l.contains("generated")
                    || extra_l.contains("virtual")
                    || extra_l.contains("persistent")
                    || extra_l.contains("stored"),
                name,
            });
        }
        Ok(info)
    }

    /// Creates the progress table if it is missing, and adds the columns of [`ADDED_COLUMNS`] to one made
    /// before they existed (found by a probe that fails only then).
    pub async fn ensure_progress(&mut self, t: &Target) -> Result<()> {
        let sql = t.progress.create_sql(Dialect::Mysql);
        let what = || format!("creating the progress table {}.{}", t.schema, t.progress.table);
        self.c().query_drop(sql).await.map_err(|e| classify(e, &what()))?;
        match self.c().query_drop(t.progress.probe_added_columns_sql(Dialect::Mysql)).await {
            Ok(()) => return Ok(()),
            // ER_BAD_FIELD_ERROR: a table of an earlier version.
            Err(mysql_async::Error::Server(e)) if e.code == 1054 => {}
            Err(e) => return Err(classify(e, &what())),
        }
        for column in &ADDED_COLUMNS {
            let has: Option<i64> = self
                .c()
                .exec_first(
                    t.progress.has_column_sql(Dialect::Mysql),
                    (t.schema.as_str(), t.progress.table.as_str(), column.name),
                )
                .await
                .map_err(|e| classify(e, &what()))?;
            if has.unwrap_or(0) > 0 {
                continue;
            }
            match self.c().query_drop(t.progress.add_column_sql(Dialect::Mysql, column)).await {
                Ok(()) => {
                    tracing::info!(table = %t.progress.table, column = column.name, "added a column to the progress table")
                }
                // ER_DUP_FIELDNAME: another worker added it first.
                Err(mysql_async::Error::Server(e)) if e.code == 1060 => {}
                Err(e) => {
                    return Err(classify(
                        e,
                        &format!(
                            "adding the column `{}` to the progress table {}.{}",
                            column.name, t.schema, t.progress.table
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Every progress record of this sink and table.
    pub async fn read_progress(&mut self, t: &Target) -> Result<Vec<Record>> {
        let sql = t.progress.select_sql(Dialect::Mysql);
        type P = (i64, i64, i64, Option<String>, Option<String>, i64, i64, i64);
        let rows: Vec<P> = self
            .c()
            .exec(sql, (t.progress.sink.as_str(), t.progress.target.as_str()))
            .await
            .map_err(|e| classify(e, "reading the sink's progress"))?;
        rows.into_iter().map(|(g, w, p, b, f, n, r, v)| record_from(g, w, p, b, f, n, (r, v))).collect()
    }

    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<()> {
        self.c().query_drop("START TRANSACTION").await.map_err(|e| classify(e, "starting a transaction"))
    }

    /// Rolls back the open transaction.
    pub async fn abort(&mut self) {
        let _ = self.c().query_drop("ROLLBACK").await;
    }

    /// Applies `batch` and the progress row in one transaction; `false` when an earlier attempt
    /// had already committed this progress.
    pub async fn commit(
        &mut self,
        t: &Target,
        batch: &Batch,
        progress: &ProgressRow,
        expected: &Stored,
    ) -> Result<bool> {
        self.begin().await?;
        match self.commit_inner(t, batch, progress, expected).await {
            Ok(true) => {
                crate::operators::crash_point("commit.mid");
                self.c().query_drop("COMMIT").await.map_err(|e| classify(e, "committing"))?;
                Ok(true)
            }
            Ok(false) => {
                self.abort().await;
                Ok(false)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn commit_inner(
        &mut self,
        t: &Target,
        batch: &Batch,
        progress: &ProgressRow,
        expected: &Stored,
    ) -> Result<bool> {
        let lock = t.progress.lock_sql(Dialect::Mysql);
        let key =
            (t.progress.sink.as_str(), t.progress.target.as_str(), progress.generation as i64, progress.worker as i64);
        let rows: Vec<(Option<String>, i64)> =
            self.c().exec(lock, key).await.map_err(|e| classify(e, "locking the progress row"))?;
        let stored = match rows.into_iter().next() {
            None => Stored::Absent,
            Some((f, n)) => Stored::At(parse_frontier(f)?, parse_partial(n)?),
        };
        if let Some(done) = check_stored(&t.progress, progress, expected, &stored)? {
            return Ok(done);
        }
        self.apply(t, batch, t.batch_size).await?;
        let sql = t.progress.record_sql(Dialect::Mysql);
        let params: Vec<Value> = vec![
            t.progress.sink.as_str().into(),
            t.progress.target.as_str().into(),
            (progress.generation as i64).into(),
            (progress.worker as i64).into(),
            (progress.peers as i64).into(),
            progress.base.map(|v| v.to_string()).into(),
            progress.frontier.map(|v| v.to_string()).into(),
            i64::try_from(progress.partial).unwrap_or(i64::MAX).into(),
            // The routing fingerprint is below 2^63 (see `routing_fingerprint`).
            (progress.layout.routing as i64).into(),
            i64::from(progress.layout.format).into(),
        ];
        self.c()
            .exec_drop(sql, Params::Positional(params))
            .await
            .map_err(|e| classify(e, "recording the sink's progress"))?;
        Ok(true)
    }

    /// Applies every row of `batch`, at most `chunk` rows per statement.
    pub async fn apply(&mut self, t: &Target, batch: &Batch, chunk: usize) -> Result<()> {
        let ncols = t.columns.len().max(1);
        let chunk = chunk.clamp(1, MAX_PARAMS / ncols);
        let deletes: Vec<usize> = batch.rows_of(RowOp::Delete).collect();
        for part in deletes.chunks(chunk.min(MAX_PARAMS / t.pk.len().max(1))) {
            let sql = delete_sql(t, part.len());
            let params = params_of(batch, part, t, true);
            self.c()
                .exec_drop(sql, Params::Positional(params))
                .await
                .map_err(|e| classify(e, &format!("deleting from {}", t.qualified)))?;
        }
        for (op, upsert) in [(RowOp::Upsert, true), (RowOp::Append, false)] {
            let rows: Vec<usize> = batch.rows_of(op).collect();
            for part in rows.chunks(chunk) {
                let sql = insert_sql(t, part.len(), upsert);
                let params = params_of(batch, part, t, false);
                self.c()
                    .exec_drop(sql, Params::Positional(params))
                    .await
                    .map_err(|e| classify(e, &format!("writing to {}", t.qualified)))?;
            }
        }
        Ok(())
    }
}

fn placeholder(c: &TableColumn) -> &'static str {
    if c.kind == ColKind::Bytes {
        "UNHEX(?)"
    } else {
        "?"
    }
}

fn delete_sql(t: &Target, rows: usize) -> String {
    let keys: Vec<&TableColumn> = t.pk.iter().map(|&i| &t.columns[i]).collect();
    let tuple = if keys.len() == 1 {
        placeholder(keys[0]).to_string()
    } else {
        format!("({})", keys.iter().map(|c| placeholder(c)).collect::<Vec<_>>().join(", "))
    };
    let lhs = if keys.len() == 1 {
        q(&keys[0].name)
    } else {
        format!("({})", keys.iter().map(|c| q(&c.name)).collect::<Vec<_>>().join(", "))
    };
    let list = vec![tuple; rows].join(", ");
    format!("DELETE FROM {}.{} WHERE {lhs} IN ({list})", q(&t.schema), q(&t.table))
}

fn insert_sql(t: &Target, rows: usize, upsert: bool) -> String {
    let cols: Vec<String> = t.columns.iter().map(|c| q(&c.name)).collect();
    let tuple = format!("({})", t.columns.iter().map(placeholder).collect::<Vec<_>>().join(", "));
    let mut sql = format!(
        "INSERT INTO {}.{} ({}) VALUES {}",
        q(&t.schema),
        q(&t.table),
        cols.join(", "),
        vec![tuple; rows].join(", ")
    );
    if upsert {
        let rest: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !t.pk.contains(i))
            .map(|(_, c)| format!("{0} = VALUES({0})", q(&c.name)))
            .collect();
        if rest.is_empty() {
            // Every column is in the key: an existing row already holds the value.
            let k = q(&t.columns[t.pk[0]].name);
            sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {k} = {k}"));
        } else {
            sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", rest.join(", ")));
        }
    }
    sql
}

fn params_of(batch: &Batch, rows: &[usize], t: &Target, keys_only: bool) -> Vec<Value> {
    let width = if keys_only { t.pk.len() } else { t.columns.len() };
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        let first = batch.rows[r].first as usize;
        for i in 0..width {
            out.push(match batch.cells.get(first + i) {
                Some(s) => Value::Bytes(s.as_bytes().to_vec()),
                None => Value::NULL,
            });
        }
    }
    out
}
