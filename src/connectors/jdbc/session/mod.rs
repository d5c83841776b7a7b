//! Database sessions: one [`Session`] type over the two dialects — PostgreSQL
//! ([`postgres`], through `tokio-postgres`) and MySQL / MariaDB / TiDB ([`mysql`], through
//! `mysql_async`) — each opened over TLS as [`tls`] says.
//!
//! A session reads the table's description, creates and reads the progress table, and applies
//! one commit's [`Batch`] together with its progress row in one transaction. The statements of
//! each dialect live in its own file; what both need to know about the target is [`Target`].
//!
//! ```text
//!  JdbcWriter ──► Session ──┬─► postgres: unnest arrays, COPY, ON CONFLICT
//!                           └─► mysql:    multi-row INSERT … ON DUPLICATE KEY UPDATE
//! ```

pub mod mysql;
pub mod postgres;
pub(crate) mod tls;

use self::mysql::MyConn;
use self::postgres::PgConn;
use super::batch::{Batch, RowOp};
use super::config::{Dialect, JdbcConfig, PgUpsertMethod};
use super::progress::{ProgressRow, ProgressTable, Record, Stored};
use super::table::{TableColumn, TableInfo};
use crate::delivery::{runtime, Backoff};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use differential_sinks_operators::WorkerMetrics;

/// The fixed facts of one writer's target, as its statements need them.
#[derive(Clone, Debug)]
pub struct Target {
    /// The schema (PostgreSQL) or database (MySQL).
    pub schema: String,
    /// The table.
    pub table: String,
    /// `schema.table`.
    pub qualified: String,
    /// The columns written, in cell order.
    pub columns: Vec<TableColumn>,
    /// Positions (in `columns`) of the primary key columns.
    pub pk: Vec<usize>,
    /// Rows per statement.
    pub batch_size: usize,
    /// PostgreSQL upsert path.
    pub pg_upsert: PgUpsertMethod,
    /// Where the sink's progress is recorded.
    pub progress: ProgressTable,
}

/// An open session of either dialect.
pub enum Session {
    /// PostgreSQL.
    Pg(PgConn),
    /// MySQL.
    My(MyConn),
}

impl Session {
    /// Connects to the configured server for sink `sink`.
    pub async fn connect(c: &JdbcConfig, sink: &str) -> Result<Session> {
        Ok(match c.dialect {
            Dialect::Postgres => {
                // PostgreSQL keeps 63 bytes of the name.
                let mut name = format!("dsink {sink}");
                while name.len() > 63 {
                    name.pop();
                }
                Session::Pg(PgConn::connect(c, &name).await?)
            }
            Dialect::Mysql => Session::My(MyConn::connect(c).await?),
        })
    }

    /// Reads the target table's description.
    pub async fn table_info(&mut self, schema: &str, table: &str) -> Result<TableInfo> {
        match self {
            Session::Pg(c) => c.table_info(schema, table).await,
            Session::My(c) => c.table_info(schema, table).await,
        }
    }

    /// Creates the progress table if it is missing.
    pub async fn ensure_progress(&mut self, t: &Target) -> Result<()> {
        match self {
            Session::Pg(c) => c.ensure_progress(t).await,
            Session::My(c) => c.ensure_progress(t).await,
        }
    }

    /// Every progress record of the sink and table.
    pub async fn read_progress(&mut self, t: &Target) -> Result<Vec<Record>> {
        match self {
            Session::Pg(c) => c.read_progress(t).await,
            Session::My(c) => c.read_progress(t).await,
        }
    }

    /// Applies `batch` and the progress row in one transaction; `false` when an earlier attempt
    /// had already committed this progress (nothing is applied twice).
    pub async fn commit(
        &mut self,
        t: &Target,
        batch: &Batch,
        progress: &ProgressRow,
        expected: &Stored,
    ) -> Result<bool> {
        match self {
            Session::Pg(c) => c.commit(t, batch, progress, expected).await,
            Session::My(c) => c.commit(t, batch, progress, expected).await,
        }
    }

    /// True for errors caused by the data of some row (constraint violations, bad values).
    pub fn is_data_error(&self, e: &Error) -> bool {
        match self {
            Session::Pg(_) => postgres::is_data_error(e),
            Session::My(_) => mysql::is_data_error(e),
        }
    }

    /// Applies the rows one at a time in a transaction that is rolled back, and returns the
    /// first row the database refuses, with its error.
    pub async fn find_refused(&mut self, t: &Target, batch: &Batch) -> Option<(Key, Error)> {
        let begun = match self {
            Session::Pg(c) => c.begin().await,
            Session::My(c) => c.begin().await,
        };
        if begun.is_err() {
            return None;
        }
        let mut found = None;
        for i in 0..batch.rows.len() {
            let width = match batch.rows[i].op {
                RowOp::Delete => t.pk.len(),
                _ => t.columns.len(),
            };
            let one = batch.single(i, width);
            let r = match self {
                Session::Pg(c) => c.apply(t, &one, 1, true).await,
                Session::My(c) => c.apply(t, &one, 1).await,
            };
            if let Err(e) = r {
                found = Some((batch.rows[i].key.clone(), e));
                break;
            }
        }
        match self {
            Session::Pg(c) => c.abort().await,
            Session::My(c) => c.abort().await,
        }
        found
    }

    /// Closes the session politely.
    pub async fn close(self) {
        match self {
            Session::Pg(_) => {}
            Session::My(c) => c.disconnect().await,
        }
    }

    /// True when the session is known to be gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Session::Pg(c) => c.is_closed(),
            Session::My(_) => false,
        }
    }
}

/// Reads the description of `config`'s table over a session of its own, for sink `sink`. With
/// `check_tls`, unreadable or invalid certificates are refused before any connection is tried.
pub(crate) fn describe(config: &JdbcConfig, sink: &str, check_tls: bool) -> Result<TableInfo> {
    let schema = config.schema_name()?;
    if check_tls {
        tls::TlsMaterial::load(config)?.map(|m| m.client_config(config.tls)).transpose()?;
    }
    block_on_fresh(async {
        let mut conn = Session::connect(config, sink).await?;
        let info = conn.table_info(&schema, &config.table).await;
        conn.close().await;
        info
    })?
}

/// Opens a session and reads the description of `config`'s table (schema `schema`), retrying
/// retriable failures under `config`'s retry policy (counted in `metrics`).
pub(crate) async fn connect_described(
    config: &JdbcConfig,
    sink: &str,
    schema: &str,
    metrics: Option<&WorkerMetrics>,
) -> Result<(Session, TableInfo)> {
    let mut backoff = Backoff::new(config.retry.clone()).counting(metrics);
    loop {
        let r = async {
            let mut c = Session::connect(config, sink).await?;
            let info = c.table_info(schema, &config.table).await?;
            Ok::<_, Error>((c, info))
        }
        .await;
        match r {
            Err(e) if e.is_retriable() => match backoff.next_delay() {
                Some(d) => {
                    tracing::warn!(sink = %sink, error = %e, "connecting: retrying");
                    tokio::time::sleep(d).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// Reads the description of `config`'s table as [`connect_described`] does, on a runtime of its
/// own, closing the session.
pub(crate) fn describe_retrying(config: &JdbcConfig, sink: &str) -> Result<TableInfo> {
    let schema = config.schema_name()?;
    block_on_fresh(async {
        let (conn, info) = connect_described(config, sink, &schema, None).await?;
        conn.close().await;
        Ok(info)
    })?
}

/// Reads the description of `config`'s table (for tools and tests).
pub fn describe_table(config: &JdbcConfig) -> Result<TableInfo> {
    describe(config, "describe", false)
}

/// Runs `fut` to completion on a runtime of its own, off any runtime the caller may be in.
fn block_on_fresh<F: std::future::Future + Send>(fut: F) -> Result<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| Ok(runtime::current_thread("the database connector")?.block_on(fut)))
            .join()
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Fatal, "the database connector's thread panicked")))
    })
}
