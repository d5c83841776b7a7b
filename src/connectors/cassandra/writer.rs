//! The Cassandra writer on the `scylla` driver.

use super::statements::{check_table, delete_cql, insert_cql, insert_json, qualified, write_timestamp, CqlColumn};
use super::CassandraConfig;
use crate::connectors::resumed_frontier;
use crate::encode::json::encode_json;
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::{
    resolve_resume, Change, Frontier, ResumePoint, SinkTime, SinkWriter, WorkerContext, WorkerProgress,
};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use serde::Serialize;
use std::marker::PhantomData;

fn cql_err(what: &str, e: impl std::fmt::Display) -> Error {
    // Driver errors after connecting are mostly timeouts and unavailable replicas: retriable.
    Error::new(ErrorKind::Retriable, format!("{what}: {e}"))
}

/// Whether the server refused the statement itself (syntax, an unknown column, a value of the
/// wrong type, authorization, configuration) or the driver could not serialize it: a retry
/// cannot fix those, so the sink stops at once with the server's message.
fn is_permanent(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::AuthenticationError
                | DbError::FunctionFailure { .. }
        ),
        _ => false,
    }
}

fn exec_err(what: &str, e: ExecutionError) -> Error {
    if is_permanent(&e) {
        let text = e.to_string();
        let hint = if text.contains("Batch too large") {
            "; the server's batch_size_fail_threshold is below `cassandra.max_batch_bytes`: lower the option"
        } else {
            ""
        };
        Error::new(ErrorKind::Fatal, format!("{what}: the server refused the statement: {text}{hint}"))
    } else {
        cql_err(what, e)
    }
}

async fn connect(cfg: &CassandraConfig) -> Result<Session> {
    // The timeout bounds every request, not only connecting: the driver's own default is 30 s.
    let profile = ExecutionProfile::builder().request_timeout(Some(cfg.request_timeout)).build();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.url)
        .connection_timeout(cfg.request_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some((u, p)) = &cfg.credentials {
        b = b.user(u, p);
    }
    b.build().await.map_err(|e| cql_err(&format!("connecting to Cassandra at {}", cfg.url.join(",")), e))
}

async fn table_columns(s: &Session, cfg: &CassandraConfig) -> Result<Vec<CqlColumn>> {
    let r = s
        .query_unpaged(
            "SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (&cfg.keyspace, &cfg.table),
        )
        .await
        .map_err(|e| cql_err("reading system_schema.columns", e))?;
    let rows = r.into_rows_result().map_err(|e| cql_err("reading system_schema.columns", e))?;
    let mut out = Vec::new();
    for row in rows.rows::<(String, String, i32, String)>().map_err(|e| cql_err("reading system_schema.columns", e))? {
        let (name, kind, position, ty) = row.map_err(|e| cql_err("reading system_schema.columns", e))?;
        out.push(CqlColumn { name, kind, position, ty });
    }
    Ok(out)
}

/// A statement's data size as Cassandra counts it against `batch_size_fail_threshold_in_kb`,
/// over- rather than underestimated: the bound text, plus 20 bytes per JSON field (the cell's
/// timestamp and lengths; every `:` is counted, even inside strings) and 32 for the row.
fn estimated_size(values: &[CqlValue]) -> usize {
    32 + values
        .iter()
        .map(|v| match v {
            CqlValue::Text(t) => t.len() + 20 * t.bytes().filter(|b| *b == b':').count(),
            _ => 8,
        })
        .sum::<usize>()
}

/// Splits statements into batches of at most `rows` statements and `bytes` estimated bytes
/// (a statement larger than `bytes` goes alone).
fn batches(pending: &[(bool, Vec<CqlValue>)], rows: usize, bytes: usize) -> Vec<&[(bool, Vec<CqlValue>)]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (_, v)) in pending.iter().enumerate() {
        let s = estimated_size(v);
        if i > start && (i - start >= rows || size + s > bytes) {
            out.push(&pending[start..i]);
            (start, size) = (i, 0);
        }
        size += s;
    }
    if start < pending.len() {
        out.push(&pending[start..]);
    }
    out
}

/// Checks the table at creation.
pub(crate) fn validate(cfg: &CassandraConfig, spec: &SinkSettings) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime to check the Cassandra table", e))?;
    let cols = rt.block_on(async {
        let s = connect(cfg).await?;
        table_columns(&s, cfg).await
    })?;
    check_table(spec, &cfg.keyspace, &cfg.table, &cols)
}

/// One worker's writer into a Cassandra / ScyllaDB table.
pub struct CassandraWriter<V> {
    rt: tokio::runtime::Runtime,
    cfg: CassandraConfig,
    sink: String,
    format: Format,
    key: Vec<String>,
    session: Option<Session>,
    insert: Option<PreparedStatement>,
    delete: Option<PreparedStatement>,
    pending: Vec<(bool, Vec<CqlValue>)>,
    ctx: Option<WorkerContext>,
    resume: Option<ResumePoint<u64>>,
    _row: PhantomData<fn(&V)>,
}

impl<V> CassandraWriter<V> {
    /// Opens a writer (connects in `resume`).
    pub fn open(cfg: &CassandraConfig, spec: &SinkSettings, _ctx: WorkerContext) -> Result<Self> {
        Ok(CassandraWriter {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting the Cassandra runtime", e))?,
            cfg: cfg.clone(),
            sink: spec.name().to_string(),
            format: spec.format().clone(),
            key: spec.primary_key().map(<[String]>::to_vec).unwrap_or_default(),
            session: None,
            insert: None,
            delete: None,
            pending: Vec::new(),
            ctx: None,
            resume: None,
            _row: PhantomData,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (Some(s), Some(ins), Some(del)) = (&self.session, &self.insert, &self.delete) else {
            return Err(Error::config("write before resume"));
        };
        let pending = std::mem::take(&mut self.pending);
        let what = format!("Cassandra batch into {}.{}", self.cfg.keyspace, self.cfg.table);
        self.rt.block_on(async {
            for chunk in batches(&pending, self.cfg.batch_size, self.cfg.batch_bytes) {
                let mut batch = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(chunk.len());
                for (is_insert, v) in chunk {
                    batch.append_statement(if *is_insert { ins.clone() } else { del.clone() });
                    values.push(v.clone());
                }
                crate::delivery::retry::retry(&Default::default(), "Cassandra batch", || async {
                    s.batch(&batch, &values).await.map(|_| ()).map_err(|e| exec_err(&what, e))
                })
                .await?;
            }
            Ok::<_, Error>(())
        })
    }
}

/// What the progress table's `sink` column holds for a sink: its name and its table
/// (`name@keyspace.table`), so two sinks of one name into two tables keep their progress apart.
fn progress_id(sink: &str, cfg: &CassandraConfig) -> String {
    format!("{sink}@{}.{}", cfg.keyspace, cfg.table)
}

impl<V: Serialize + 'static, T: SinkTime> SinkWriter<Key, V, T> for CassandraWriter<V> {
    type Error = Error;

    fn resume(&mut self, ctx: WorkerContext) -> Result<Frontier<T>> {
        let cfg = self.cfg.clone();
        let key = self.key.clone();
        let sink = progress_id(&self.sink, &self.cfg);
        let sink_name = self.sink.clone();
        let (session, ins, del, records) = self.rt.block_on(async move {
            let s = connect(&cfg).await?;
            let p = qualified(&cfg.keyspace, &cfg.progress_table);
            s.query_unpaged(
                format!(
                    "CREATE TABLE IF NOT EXISTS {p} (sink text, generation bigint, worker int, peers int, base bigint, \
                     base_complete boolean, frontier bigint, complete boolean, PRIMARY KEY ((sink), generation, worker))"
                ),
                (),
            )
            .await
            .map_err(|e| cql_err("creating the progress table", e))?;
            let r = s
                .query_unpaged(
                    format!("SELECT worker, peers, generation, base, base_complete, frontier, complete FROM {p} WHERE sink = ?"),
                    (&sink,),
                )
                .await
                .map_err(|e| cql_err("reading progress", e))?;
            let rows = r.into_rows_result().map_err(|e| cql_err("reading progress", e))?;
            let mut records = Vec::new();
            for row in rows
                .rows::<(i32, i32, i64, i64, bool, i64, bool)>()
                .map_err(|e| cql_err("reading progress", e))?
            {
                let (w, peers, g, b, bc, f, fc) = row.map_err(|e| cql_err("reading progress", e))?;
                let (Ok(worker), Ok(peers), Ok(generation), Ok(b), Ok(f)) =
                    (usize::try_from(w), usize::try_from(peers), u64::try_from(g), u64::try_from(b), u64::try_from(f))
                else {
                    return Err(Error::new(
                        ErrorKind::Resume,
                        format!(
                            "sink `{sink_name}`: the progress row (worker {w}, generation {g}) in {p} holds a negative \
                             number; delete the rows of sink `{sink}` there to start over"
                        ),
                    ));
                };
                let fr = |v: u64, c: bool| if c { Frontier::complete() } else { Frontier::at(v) };
                records.push(WorkerProgress { worker, peers, generation, base: fr(b, bc), frontier: fr(f, fc) });
            }
            let ins = s.prepare(insert_cql(&cfg.keyspace, &cfg.table)).await.map_err(|e| cql_err("preparing insert", e))?;
            let del = s
                .prepare(delete_cql(&cfg.keyspace, &cfg.table, &key))
                .await
                .map_err(|e| cql_err("preparing delete", e))?;
            Ok::<_, Error>((s, ins, del, records))
        })?;
        let point = resolve_resume(&records, ctx)?;
        self.session = Some(session);
        self.insert = Some(ins);
        self.delete = Some(del);
        self.ctx = Some(ctx);
        let f = point.frontier;
        self.resume = Some(point);
        resumed_frontier(f)
    }

    fn write(&mut self, time: &T, changes: &mut Vec<Change<Key, V>>) -> Result<()> {
        let ts = write_timestamp(time.to_u64(), self.cfg.timestamp_offset)?;
        let mut json = Vec::with_capacity(256);
        for change in changes.iter() {
            let (row, insert) = match (&self.format, &change.before, &change.after) {
                (Format::Upsert, _, Some(after)) => (after, true),
                (Format::Upsert, Some(before), None) => (before, false),
                (Format::Upsert, None, None) => continue,
                (format, _, _) => {
                    let mut rows: Vec<&V> = Vec::new();
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        json.clear();
                        encode_json(r, &mut json)?;
                        self.pending.push((true, vec![CqlValue::Text(insert_json(&json)?), CqlValue::BigInt(ts)]));
                    }
                    continue;
                }
            };
            json.clear();
            encode_json(row, &mut json)?;
            let value: serde_json::Value = serde_json::from_slice(&json).map_err(|e| Error::encode(e.to_string()))?;
            if insert {
                self.pending.push((true, vec![CqlValue::Text(insert_json(&json)?), CqlValue::BigInt(ts)]));
            } else {
                let mut v = vec![CqlValue::BigInt(ts)];
                for k in &self.key {
                    v.push(CqlValue::Text(value.get(k).cloned().unwrap_or_default().to_string()));
                }
                self.pending.push((false, v));
            }
            if self.pending.len() >= self.cfg.batch_size * 16 {
                self.flush()?;
            }
        }
        changes.clear();
        Ok(())
    }

    fn commit(&mut self, upper: &Frontier<T>) -> Result<()> {
        self.flush()?;
        // Rows written, the progress row not yet.
        crate::operators::crash_point("commit.mid");
        let (Some(ctx), Some(point), Some(s)) = (self.ctx, self.resume.as_ref(), &self.session) else {
            return Err(Error::config("commit before resume"));
        };
        let up = upper.to_u64_frontier();
        let rec = point.record(ctx, up);
        let split = |f: &Frontier<u64>| (f.to_u64().unwrap_or(0) as i64, f.is_complete());
        let ((b, bc), (f, fc)) = (split(&rec.base), split(&rec.frontier));
        let cql = format!(
            "INSERT INTO {} (sink, generation, worker, peers, base, base_complete, frontier, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            qualified(&self.cfg.keyspace, &self.cfg.progress_table)
        );
        let values = (
            progress_id(&self.sink, &self.cfg),
            rec.generation as i64,
            rec.worker as i32,
            rec.peers as i32,
            b,
            bc,
            f,
            fc,
        );
        self.rt.block_on(async {
            s.query_unpaged(cql, values).await.map(|_| ()).map_err(|e| cql_err("recording progress", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_rows_and_by_estimated_bytes() {
        let st =
            |n: usize| (true, vec![CqlValue::Text(format!("{{\"s\":\"{}\"}}", "x".repeat(n))), CqlValue::BigInt(1)]);
        let pending: Vec<_> = (0..10).map(|_| st(1000)).collect();
        let sizes = |b: Vec<&[(bool, Vec<CqlValue>)]>| b.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&pending, 4, 1 << 20)), vec![4, 4, 2]);
        assert_eq!(sizes(batches(&pending, 100, 3 * 1100)), vec![3, 3, 3, 1]);
        assert_eq!(sizes(batches(&pending, 100, 10)), vec![1; 10], "an oversized statement goes alone");
        assert!(batches(&[], 100, 100).is_empty());
    }
}
