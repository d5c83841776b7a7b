//! PostgreSQL: catalog queries, the progress table (its statements come from `progress.rs`), and
//! one commit as one transaction (deletes through `unnest` arrays, updates through a
//! `COPY`-filled staging table or `unnest` arrays, inserts of new keys and appends through
//! `COPY`).

use super::tls::{self, TlsMaterial};
use super::Target;
use crate::connectors::jdbc::batch::{Batch, RowOp};
use crate::connectors::jdbc::config::{Dialect, JdbcConfig, PgUpsertMethod, TlsMode};
use crate::connectors::jdbc::encode::copy_escape;
use crate::connectors::jdbc::progress::{
    check_stored, parse_frontier, parse_partial, record_from, ProgressRow, Record, Stored, ADDED_COLUMNS,
};
use crate::connectors::jdbc::table::{pg_kind, quote, TableColumn, TableInfo};
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use std::collections::HashMap;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// An open PostgreSQL session.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

fn q(s: &str) -> String {
    quote(Dialect::Postgres, s)
}

/// Turns a driver error into a sink error: connection losses, serialization failures and
/// deadlocks are retriable, everything else is fatal.
pub fn classify(e: tokio_postgres::Error, what: &str) -> Error {
    let kind = match e.code() {
        _ if e.is_closed() => ErrorKind::Retriable,
        None => ErrorKind::Retriable,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::LOCK_NOT_AVAILABLE
                || c.code().starts_with("08") =>
        {
            ErrorKind::Retriable
        }
        Some(_) => ErrorKind::Fatal,
    };
    let msg = match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{what}: {} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            if let Some(c) = db.column() {
                m.push_str(&format!("; column {c}"));
            }
            m
        }
        None => format!("{what}: {e}"),
    };
    Error::new(kind, msg).with_source(e)
}

/// As [`classify`], but a refused TLS handshake is a `Config` error that says which option to
/// look at: a retry meets the same certificate.
fn classify_connect(c: &JdbcConfig, e: tokio_postgres::Error, what: &str) -> Error {
    match tls::find_rustls_error(&e) {
        Some(r) => Error::new(ErrorKind::Config, format!("{what}: {r}; {}", tls::hint(c, r))).with_source(e),
        None => classify(e, what),
    }
}

/// Runs a session's connection task until the session ends.
fn drive<T>(connection: tokio_postgres::Connection<tokio_postgres::Socket, T>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
}

fn is_unique_violation(e: &Error) -> bool {
    use std::error::Error as _;
    e.source().and_then(|s| s.downcast_ref::<tokio_postgres::Error>()).and_then(|e| e.code())
        == Some(&SqlState::UNIQUE_VIOLATION)
}

/// True for errors caused by the data of some row (constraint violations, bad values).
pub fn is_data_error(e: &Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.code())
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

impl PgConn {
    /// Connects, with the session in UTC, named `application_name` (shown in `pg_stat_activity`),
    /// over TLS as `c.tls` says.
    pub async fn connect(c: &JdbcConfig, application_name: &str) -> Result<PgConn> {
        let mut pc = tokio_postgres::Config::new();
        pc.host(&c.host)
            .port(c.port)
            .user(&c.user)
            .connect_timeout(c.connect_timeout)
            .application_name(application_name)
            .ssl_mode(match c.tls {
                TlsMode::Disable => SslMode::Disable,
                TlsMode::Prefer => SslMode::Prefer,
                // The certificate checks of the verify modes are the rustls configuration's.
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
            });
        if let Some(db) = &c.database {
            pc.dbname(db);
        }
        if let Some(p) = &c.password {
            pc.password(p.expose());
        }
        let what = format!("connecting to {}", c.redacted_url());
        let client = match TlsMaterial::load(c)? {
            None => {
                let (client, connection) = pc.connect(NoTls).await.map_err(|e| classify(e, &what))?;
                drive(connection);
                client
            }
            Some(material) => {
                let tls = MakeRustlsConnect::new(material.client_config(c.tls)?);
                let (client, connection) = pc.connect(tls).await.map_err(|e| classify_connect(c, e, &what))?;
                drive(connection);
                client
            }
        };
        client.batch_execute("SET TIME ZONE 'UTC'").await.map_err(|e| classify(e, "setting the session time zone"))?;
        Ok(PgConn { client, statements: HashMap::new() })
    }

    /// True when the session is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn statement(&mut self, sql: &str, types: &[Type]) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare_typed(sql, types).await.map_err(|e| classify(e, &format!("preparing `{sql}`")))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Reads the table's columns and primary key; a missing table is a schema error.
    pub async fn table_info(&self, schema: &str, table: &str) -> Result<TableInfo> {
        let qualified = format!("{schema}.{table}");
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), format_type(a.atttypid, NULL), \
                        t.typname::text, NOT a.attnotnull, a.atthasdef, a.attgenerated <> '', \
                        coalesce(a.attnum = ANY(i.indkey), false) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
                   AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&schema, &table],
            )
            .await
            .map_err(|e| classify(e, &format!("reading the columns of table {qualified}")))?;
        if rows.is_empty() {
            return Err(Error::schema(format!(
                "table {qualified} does not exist in PostgreSQL (or has no columns); create it first, or fix \
                 `table.name` / `schema.name`"
            )));
        }
        let mut info = TableInfo { qualified, columns: Vec::new(), primary_key: Vec::new() };
        for r in rows {
            let name: String = r.get(0);
            let typname: String = r.get(3);
            // Domains, enums and arrays are `Other`: they take their text form.
            let kind = pg_kind(&typname);
            if r.get::<_, bool>(7) {
                info.primary_key.push(name.clone());
            }
            info.columns.push(TableColumn {
                name,
                sql_type: r.get(1),
                cast_type: r.get(2),
                kind,
                nullable: r.get(4),
                has_default: r.get(5),
                generated: r.get(6),
            });
        }
        Ok(info)
    }

    /// Creates the progress table if it is missing, and adds the columns of [`ADDED_COLUMNS`] to one made
    /// before they existed, found by a probe that fails only then (concurrent creators are fine).
    pub async fn ensure_progress(&self, t: &Target) -> Result<()> {
        let sql = t.progress.create_sql(Dialect::Postgres);
        let what = || format!("creating the progress table {}.{}", t.schema, t.progress.table);
        match self.client.batch_execute(&sql).await {
            Ok(()) => {}
            // Two workers creating it at once: one wins, the other sees a duplicate table or
            // row type (42P07, 42710) or the unique index of the type names (23505).
            Err(e)
                if [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_TABLE, SqlState::DUPLICATE_OBJECT]
                    .iter()
                    .any(|c| e.code() == Some(c)) => {}
            Err(e) => return Err(classify(e, &what())),
        }
        match self.client.batch_execute(&t.progress.probe_added_columns_sql(Dialect::Postgres)).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_COLUMN) => {}
            Err(e) => return Err(classify(e, &what())),
        }
        for column in &ADDED_COLUMNS {
            let has = self
                .client
                .query_one(t.progress.has_column_sql(Dialect::Postgres), &[&t.schema, &t.progress.table, &column.name])
                .await
                .map_err(|e| classify(e, &what()))?;
            if has.try_get::<_, i64>(0).unwrap_or(0) > 0 {
                continue;
            }
            match self.client.batch_execute(&t.progress.add_column_sql(Dialect::Postgres, column)).await {
                Ok(()) => {
                    tracing::info!(table = %t.progress.table, column = column.name, "added a column to the progress table")
                }
                Err(e) if e.code() == Some(&SqlState::DUPLICATE_COLUMN) => {}
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
    pub async fn read_progress(&self, t: &Target) -> Result<Vec<Record>> {
        let sql = t.progress.select_sql(Dialect::Postgres);
        let rows = self
            .client
            .query(&sql, &[&t.progress.sink, &t.progress.target])
            .await
            .map_err(|e| classify(e, "reading the sink's progress"))?;
        // A progress table made by something else may have other column types: refuse it with
        // its name instead of panicking on a row.
        let unreadable = |e: tokio_postgres::Error| {
            Error::new(
                ErrorKind::Resume,
                format!(
                    "the progress table {}.{} does not have the columns this sink writes ({e}); name another with \
                     `jdbc.progress.table`, or drop it to let the sink create it",
                    t.schema, t.progress.table
                ),
            )
        };
        rows.iter()
            .map(|r| {
                record_from(
                    r.try_get::<_, i64>(0).map_err(unreadable)?,
                    i64::from(r.try_get::<_, i32>(1).map_err(unreadable)?),
                    i64::from(r.try_get::<_, i32>(2).map_err(unreadable)?),
                    r.try_get::<_, Option<String>>(3).map_err(unreadable)?,
                    r.try_get::<_, Option<String>>(4).map_err(unreadable)?,
                    r.try_get::<_, i64>(5).map_err(unreadable)?,
                    (
                        r.try_get::<_, i64>(6).map_err(unreadable)?,
                        i64::from(r.try_get::<_, i32>(7).map_err(unreadable)?),
                    ),
                )
            })
            .collect()
    }

    async fn rollback(&self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }

    /// Applies `batch` and the progress row in one transaction. Returns `false` if the progress
    /// row already held `progress` (an earlier attempt committed, its acknowledgement was lost):
    /// nothing is applied twice.
    pub async fn commit(
        &mut self,
        t: &Target,
        batch: &Batch,
        progress: &ProgressRow,
        expected: &Stored,
    ) -> Result<bool> {
        self.client.batch_execute("BEGIN").await.map_err(|e| classify(e, "starting a transaction"))?;
        let r = self.commit_inner(t, batch, progress, expected).await;
        match r {
            Ok(true) => {
                crate::operators::crash_point("commit.mid");
                self.client.batch_execute("COMMIT").await.map_err(|e| classify(e, "committing"))?;
                Ok(true)
            }
            Ok(false) => {
                self.rollback().await;
                Ok(false)
            }
            Err(e) => {
                self.rollback().await;
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
        let lock = t.progress.lock_sql(Dialect::Postgres);
        let gen = progress.generation as i64;
        let worker = progress.worker as i32;
        let rows = self
            .client
            .query(&lock, &[&t.progress.sink, &t.progress.target, &gen, &worker])
            .await
            .map_err(|e| classify(e, "locking the progress row"))?;
        let unreadable = |e: tokio_postgres::Error| {
            Error::new(ErrorKind::Resume, format!("reading {}.{}: {e}", t.schema, t.progress.table))
        };
        let stored = match rows.first() {
            None => Stored::Absent,
            Some(r) => Stored::At(
                parse_frontier(r.try_get::<_, Option<String>>(0).map_err(unreadable)?)?,
                parse_partial(r.try_get::<_, i64>(1).map_err(unreadable)?)?,
            ),
        };
        if let Some(done) = check_stored(&t.progress, progress, expected, &stored)? {
            return Ok(done);
        }
        self.apply(t, batch, t.batch_size, false).await?;
        let upsert = t.progress.record_sql(Dialect::Postgres);
        let (peers, base, frontier) =
            (progress.peers as i32, progress.base.map(|v| v.to_string()), progress.frontier.map(|v| v.to_string()));
        let partial = i64::try_from(progress.partial).unwrap_or(i64::MAX);
        // The routing fingerprint is below 2^63 (see `routing_fingerprint`); formats are small.
        let (routing, format) = (progress.layout.routing as i64, progress.layout.format as i32);
        self.client
            .execute(
                &upsert,
                &[
                    &t.progress.sink,
                    &t.progress.target,
                    &gen,
                    &worker,
                    &peers,
                    &base,
                    &frontier,
                    &partial,
                    &routing,
                    &format,
                ],
            )
            .await
            .map_err(|e| classify(e, "recording the sink's progress"))?;
        Ok(true)
    }

    /// Applies every row of `batch`, `chunk` rows per statement; `single` forces statements
    /// (no COPY), as the search for an offending row needs.
    pub async fn apply(&mut self, t: &Target, batch: &Batch, chunk: usize, single: bool) -> Result<()> {
        let chunk = chunk.max(1);
        let deletes: Vec<usize> = batch.rows_of(RowOp::Delete).collect();
        let appends: Vec<usize> = batch.rows_of(RowOp::Append).collect();
        for part in deletes.chunks(chunk) {
            self.delete(t, batch, part).await?;
        }
        if single {
            let upserts: Vec<usize> = batch.rows_of(RowOp::Upsert).collect();
            for part in upserts.chunks(chunk) {
                self.insert_unnest(t, batch, part, true).await?;
            }
        } else {
            let updates: Vec<usize> = batch.upserts(false).collect();
            self.upsert(t, batch, &updates, chunk).await?;
            // Keys new to the collection in this commit go in by COPY, the fastest path; should
            // the table hold one already (rows written by someone else), the COPY is undone and
            // those rows take the upsert path.
            let fresh: Vec<usize> = batch.upserts(true).collect();
            if !fresh.is_empty() {
                self.exec("SAVEPOINT dsink_fresh").await?;
                let sql = format!("COPY {}.{} ({}) FROM STDIN", q(&t.schema), q(&t.table), column_list(t));
                match self.copy(&sql, t, batch, &fresh).await {
                    Ok(()) => self.exec("RELEASE SAVEPOINT dsink_fresh").await?,
                    Err(e) if is_unique_violation(&e) => {
                        self.exec("ROLLBACK TO SAVEPOINT dsink_fresh").await?;
                        // Not through the staging table: it still holds this commit's updates.
                        for part in fresh.chunks(chunk) {
                            self.insert_unnest(t, batch, part, true).await?;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if !appends.is_empty() {
            if single {
                for part in appends.chunks(chunk) {
                    self.insert_unnest(t, batch, part, false).await?;
                }
            } else {
                let cols = column_list(t);
                let sql = format!("COPY {}.{} ({cols}) FROM STDIN", q(&t.schema), q(&t.table));
                self.copy(&sql, t, batch, &appends).await?;
            }
        }
        Ok(())
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).await.map_err(|e| classify(e, sql))
    }

    async fn upsert(&mut self, t: &Target, batch: &Batch, rows: &[usize], chunk: usize) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if t.pg_upsert == PgUpsertMethod::Copy {
            return self.upsert_copy(t, batch, rows).await;
        }
        for part in rows.chunks(chunk) {
            self.insert_unnest(t, batch, part, true).await?;
        }
        Ok(())
    }

    async fn delete(&mut self, t: &Target, batch: &Batch, rows: &[usize]) -> Result<()> {
        let n = t.pk.len();
        let aliases: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let params: Vec<String> = (0..n).map(|i| format!("${}::text[]", i + 1)).collect();
        let cond: Vec<String> =
            t.pk.iter()
                .enumerate()
                .map(|(i, &c)| {
                    let col = &t.columns[c];
                    format!("t.{} = d.c{i}::{}", q(&col.name), col.cast_type)
                })
                .collect();
        let sql = format!(
            "DELETE FROM {}.{} AS t USING unnest({}) AS d({}) WHERE {}",
            q(&t.schema),
            q(&t.table),
            params.join(", "),
            aliases.join(", "),
            cond.join(" AND ")
        );
        let stmt = self.statement(&sql, &vec![Type::TEXT_ARRAY; n]).await?;
        let arrays = batch.column_arrays(rows, n);
        let refs: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client.execute(&stmt, &refs).await.map_err(|e| classify(e, &format!("deleting from {}", t.qualified)))?;
        Ok(())
    }

    async fn insert_unnest(&mut self, t: &Target, batch: &Batch, rows: &[usize], upsert: bool) -> Result<()> {
        let n = t.columns.len();
        let aliases: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let params: Vec<String> = (0..n).map(|i| format!("${}::text[]", i + 1)).collect();
        let select: Vec<String> =
            t.columns.iter().enumerate().map(|(i, c)| format!("u.c{i}::{}", c.cast_type)).collect();
        let sql = format!(
            "INSERT INTO {}.{} ({}) SELECT {} FROM unnest({}) AS u({}){}",
            q(&t.schema),
            q(&t.table),
            column_list(t),
            select.join(", "),
            params.join(", "),
            aliases.join(", "),
            if upsert { on_conflict(t) } else { String::new() }
        );
        let stmt = self.statement(&sql, &vec![Type::TEXT_ARRAY; n]).await?;
        let arrays = batch.column_arrays(rows, n);
        let refs: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client.execute(&stmt, &refs).await.map_err(|e| classify(e, &format!("writing to {}", t.qualified)))?;
        Ok(())
    }

    async fn upsert_copy(&mut self, t: &Target, batch: &Batch, rows: &[usize]) -> Result<()> {
        let cols = column_list(t);
        // Created in the transaction (a rollback takes it away again); emptied at commit.
        let sql = format!(
            "CREATE TEMP TABLE IF NOT EXISTS dsink_staging ON COMMIT DELETE ROWS AS SELECT {cols} FROM {}.{} WITH NO DATA",
            q(&t.schema),
            q(&t.table)
        );
        self.client.batch_execute(&sql).await.map_err(|e| classify(e, "creating the staging table"))?;
        self.copy(&format!("COPY dsink_staging ({cols}) FROM STDIN"), t, batch, rows).await?;
        let sql = format!(
            "INSERT INTO {}.{} ({cols}) SELECT {cols} FROM dsink_staging{}",
            q(&t.schema),
            q(&t.table),
            on_conflict(t)
        );
        self.client.batch_execute(&sql).await.map_err(|e| classify(e, &format!("merging into {}", t.qualified)))
    }

    async fn copy(&mut self, sql: &str, t: &Target, batch: &Batch, rows: &[usize]) -> Result<()> {
        let what = format!("copying into {}", t.qualified);
        let sink = self.client.copy_in::<_, Bytes>(sql).await.map_err(|e| classify(e, &what))?;
        futures_util::pin_mut!(sink);
        let n = t.columns.len();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        for &r in rows {
            let first = batch.rows[r].first as usize;
            for i in 0..n {
                if i > 0 {
                    buf.push(b'\t');
                }
                match batch.cells.get(first + i) {
                    Some(s) => copy_escape(&mut buf, s),
                    None => buf.extend_from_slice(b"\\N"),
                }
            }
            buf.push(b'\n');
            if buf.len() >= 1 << 20 {
                let chunk = Bytes::from(std::mem::replace(&mut buf, Vec::with_capacity(1 << 20)));
                sink.send(chunk).await.map_err(|e| classify(e, &what))?;
            }
        }
        if !buf.is_empty() {
            sink.send(Bytes::from(buf)).await.map_err(|e| classify(e, &what))?;
        }
        sink.finish().await.map_err(|e| classify(e, &what))?;
        Ok(())
    }

    /// Begins a transaction for a row-by-row search.
    pub async fn begin(&self) -> Result<()> {
        self.client.batch_execute("BEGIN").await.map_err(|e| classify(e, "starting a transaction"))
    }

    /// Rolls back the open transaction.
    pub async fn abort(&self) {
        self.rollback().await;
    }
}

fn column_list(t: &Target) -> String {
    t.columns.iter().map(|c| q(&c.name)).collect::<Vec<_>>().join(", ")
}

fn on_conflict(t: &Target) -> String {
    let keys: Vec<String> = t.pk.iter().map(|&i| q(&t.columns[i].name)).collect();
    let rest: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !t.pk.contains(i))
        .map(|(_, c)| format!("{0} = EXCLUDED.{0}", q(&c.name)))
        .collect();
    if rest.is_empty() {
        format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", "))
    } else {
        format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), rest.join(", "))
    }
}
