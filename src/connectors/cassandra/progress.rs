//! Where a Cassandra sink's progress is recorded: one row per worker and generation in the
//! progress table (`cassandra.progress_table`, created if missing), keyed by
//! [`progress_id`] — the sink's name and its table — so two sinks of one name into two tables
//! keep their progress apart.

use super::config::CassandraConfig;
use super::session::cql_err;
use super::statements::qualified;
use super::table::columns_of;
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::{Frontier, Layout, WorkerProgress};
use scylla::client::session::Session;

/// What the progress table's `sink` column holds for a sink: its name and its table
/// (`name@keyspace.table`), so two sinks of one name into two tables keep their progress apart.
pub(crate) fn progress_id(sink: &str, cfg: &CassandraConfig) -> String {
    format!("{sink}@{}.{}", cfg.keyspace, cfg.table)
}

/// Creates the progress table if missing and reads back the sink's rows there.
pub(crate) async fn read(s: &Session, cfg: &CassandraConfig, sink_name: &str) -> Result<Vec<WorkerProgress<u64>>> {
    let sink = progress_id(sink_name, cfg);
    let p = qualified(&cfg.keyspace, &cfg.progress_table);
    s.query_unpaged(
        format!(
            "CREATE TABLE IF NOT EXISTS {p} (sink text, generation bigint, worker int, peers int, base bigint, \
             base_complete boolean, frontier bigint, complete boolean, layout_routing bigint, layout_format int, \
             PRIMARY KEY ((sink), generation, worker))"
        ),
        (),
    )
    .await
    .map_err(|e| cql_err("creating the progress table", e))?;
    // A table made by an earlier version lacks the layout columns: add them; its rows read them
    // as null (routing not recorded, format 1).
    let have = columns_of(s, &cfg.keyspace, &cfg.progress_table).await?;
    for (name, ty) in [("layout_routing", "bigint"), ("layout_format", "int")] {
        if !have.iter().any(|c| c.name == name) {
            if let Err(e) = s.query_unpaged(format!("ALTER TABLE {p} ADD {name} {ty}"), ()).await {
                // Another worker may have added it first.
                if !columns_of(s, &cfg.keyspace, &cfg.progress_table).await?.iter().any(|c| c.name == name) {
                    return Err(cql_err("adding a layout column to the progress table", e));
                }
            }
        }
    }
    let r = s
        .query_unpaged(
            format!(
                "SELECT worker, peers, generation, base, base_complete, frontier, complete, layout_routing, layout_format \
                 FROM {p} WHERE sink = ?"
            ),
            (&sink,),
        )
        .await
        .map_err(|e| cql_err("reading progress", e))?;
    let rows = r.into_rows_result().map_err(|e| cql_err("reading progress", e))?;
    let mut records = Vec::new();
    type Row = (i32, i32, i64, i64, bool, i64, bool, Option<i64>, Option<i32>);
    for row in rows.rows::<Row>().map_err(|e| cql_err("reading progress", e))? {
        let (w, peers, g, b, bc, f, fc, routing, format) = row.map_err(|e| cql_err("reading progress", e))?;
        let (Ok(worker), Ok(peers), Ok(generation), Ok(b), Ok(f), Ok(format)) = (
            usize::try_from(w),
            usize::try_from(peers),
            u64::try_from(g),
            u64::try_from(b),
            u64::try_from(f),
            u32::try_from(format.unwrap_or(1)),
        ) else {
            return Err(Error::new(
                ErrorKind::Resume,
                format!(
                    "sink `{sink_name}`: the progress row (worker {w}, generation {g}) in {p} holds a negative \
                     number; delete the rows of sink `{sink}` there to start over"
                ),
            ));
        };
        let fr = |v: u64, c: bool| if c { Frontier::complete() } else { Frontier::at(v) };
        // The routing fingerprint is stored as its bits in a signed column.
        let layout = Layout { routing: routing.unwrap_or(0) as u64, format };
        records.push(WorkerProgress { worker, peers, generation, base: fr(b, bc), frontier: fr(f, fc), layout });
    }
    Ok(records)
}

/// Records a worker's progress `rec`.
pub(crate) async fn write(
    s: &Session,
    cfg: &CassandraConfig,
    sink_name: &str,
    rec: &WorkerProgress<u64>,
) -> Result<()> {
    let split = |f: &Frontier<u64>| (f.to_u64().unwrap_or(0) as i64, f.is_complete());
    let ((b, bc), (f, fc)) = (split(&rec.base), split(&rec.frontier));
    let cql = format!(
        "INSERT INTO {} (sink, generation, worker, peers, base, base_complete, frontier, complete, layout_routing, \
         layout_format) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        qualified(&cfg.keyspace, &cfg.progress_table)
    );
    let values = (
        progress_id(sink_name, cfg),
        rec.generation as i64,
        rec.worker as i32,
        rec.peers as i32,
        b,
        bc,
        f,
        fc,
        rec.layout.routing as i64,
        rec.layout.format as i32,
    );
    s.query_unpaged(cql, values).await.map(|_| ()).map_err(|e| cql_err("recording progress", e))
}
