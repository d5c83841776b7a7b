//! Where a ClickHouse sink's progress is recorded: one row per commit in the progress table
//! (`clickhouse.progress.table`, default `dsink_progress`, created if missing), naming the sink,
//! its target table, the worker, the generation and the committed frontier. A resume reads back
//! the latest row of each worker and generation for the sink and its table.

use super::client::ClickHouse;
use super::config::ClickHouseConfig;
use super::sql::{ident, literal};
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::{Frontier, Layout, WorkerProgress};

/// The progress table of `cfg`, quoted (`database`.`table`).
pub(crate) fn progress_table(cfg: &ClickHouseConfig) -> String {
    format!("{}.{}", ident(&cfg.database), ident(&cfg.progress_table))
}

/// Adds column `name` of type `ty` (with its default) to a progress table made by an earlier
/// version. Rows written before it read the default: an empty `target` is not read (such a sink
/// starts again, a replay that ReplacingMergeTree tables absorb); `layout_routing` 0 means *not
/// recorded* and `layout_format` 1 is the format those versions wrote.
async fn ensure_column(
    ch: &ClickHouse,
    database: &str,
    table: &str,
    progress: &str,
    name: &str,
    ty: &str,
) -> Result<()> {
    let has = |ch: &ClickHouse| {
        let sql = format!(
            "SELECT count() FROM system.columns WHERE database = {} AND table = {} AND name = {} FORMAT TSVRaw",
            literal(database),
            literal(table),
            literal(name)
        );
        let ch = ch.clone();
        async move { Ok::<_, Error>(ch.query(&sql).await?.trim() != "0") }
    };
    if has(ch).await? {
        return Ok(());
    }
    if let Err(e) = ch.query(&format!("ALTER TABLE {progress} ADD COLUMN {name} {ty}")).await {
        // Another worker may have added it first.
        if !has(ch).await? {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates the progress table if missing and reads the rows of sink `sink` into `target`
/// (`database.table`, unquoted), the latest of each worker and generation.
pub(crate) async fn read(ch: &ClickHouse, sink: &str, target: &str) -> Result<Vec<WorkerProgress<u64>>> {
    let cfg = ch.cfg.clone();
    let progress = progress_table(&cfg);
    ch.query(&format!(
        "CREATE TABLE IF NOT EXISTS {progress} (sink String, target String, worker UInt32, peers UInt32, \
         generation UInt64, base UInt64, base_complete UInt8, frontier UInt64, complete UInt8, \
         layout_routing UInt64 DEFAULT 0, layout_format UInt32 DEFAULT 1) \
         ENGINE = MergeTree ORDER BY (sink, generation, worker)"
    ))
    .await?;
    for (name, ty) in
        [("target", "String"), ("layout_routing", "UInt64 DEFAULT 0"), ("layout_format", "UInt32 DEFAULT 1")]
    {
        ensure_column(ch, &cfg.database, &cfg.progress_table, &progress, name, ty).await?;
    }
    let records = ch
        .query(&format!(
            "SELECT worker, peers, generation, base, base_complete, frontier, complete, layout_routing, layout_format FROM {progress} \
             WHERE sink = {} AND target = {} \
             ORDER BY complete DESC, frontier DESC LIMIT 1 BY generation, worker FORMAT TSVRaw",
            literal(sink),
            literal(target)
        ))
        .await?;
    parse(&records, sink, &progress)
}

/// Parses the progress rows `records` (TSV) read from `progress` for sink `sink`.
fn parse(records: &str, sink: &str, progress: &str) -> Result<Vec<WorkerProgress<u64>>> {
    let mut out = Vec::new();
    for line in records.lines() {
        let unreadable = || {
            Error::new(
                ErrorKind::Resume,
                format!(
                    "sink `{sink}`: unreadable progress record `{line}` in {progress}; delete this sink's rows there to start over"
                ),
            )
        };
        let f: Vec<u64> = line.split('\t').map(|x| x.parse().map_err(|_| unreadable())).collect::<Result<_>>()?;
        if f.len() != 9 || f[4] > 1 || f[6] > 1 || u32::try_from(f[0]).is_err() || u32::try_from(f[1]).is_err() {
            return Err(unreadable());
        }
        let format = u32::try_from(f[8]).map_err(|_| unreadable())?;
        let fr = |v: u64, complete: u64| if complete == 1 { Frontier::complete() } else { Frontier::at(v) };
        out.push(WorkerProgress {
            worker: f[0] as usize,
            peers: f[1] as usize,
            generation: f[2],
            base: fr(f[3], f[4]),
            frontier: fr(f[5], f[6]),
            layout: Layout { routing: f[7], format },
        });
    }
    Ok(out)
}

/// The statement recording `rec` for sink `sink` into `target` in `progress`.
pub(crate) fn progress_sql(progress: &str, sink: &str, target: &str, rec: &WorkerProgress<u64>) -> String {
    let split = |f: &Frontier<u64>| (f.to_u64().unwrap_or(0), u8::from(f.is_complete()));
    let ((b, bc), (f, fc)) = (split(&rec.base), split(&rec.frontier));
    format!(
        "INSERT INTO {progress} (sink, target, worker, peers, generation, base, base_complete, frontier, complete, \
         layout_routing, layout_format) VALUES ({}, {}, {}, {}, {}, {b}, {bc}, {f}, {fc}, {}, {})",
        literal(sink),
        literal(target),
        rec.worker,
        rec.peers,
        rec.generation,
        rec.layout.routing,
        rec.layout.format
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rows_read_back_and_damage_is_refused() {
        let rows = parse("0\t2\t1\t0\t0\t7\t0\t9\t1\n1\t2\t1\t0\t0\t0\t1\t0\t1\n", "s", "p").unwrap();
        assert_eq!(rows[0].frontier, Frontier::at(7));
        assert_eq!(rows[1].frontier, Frontier::complete());
        assert_eq!((rows[1].worker, rows[1].peers, rows[1].generation), (1, 2, 1));
        assert_eq!((rows[0].layout, rows[1].layout), (Layout { routing: 9, format: 1 }, Layout::default()));
        let e = parse("0\t2\t1\t0\t5\t7\t0\t0\t1\n", "s", "p").unwrap_err().to_string();
        assert!(e.contains("unreadable progress record") && e.contains("sink `s`"), "{e}");
        let sql = progress_sql("`db`.`p`", "s", "db.t", &rows[0]);
        assert!(
            sql.starts_with("INSERT INTO `db`.`p` (sink, target,")
                && sql.ends_with("VALUES ('s', 'db.t', 0, 2, 1, 0, 0, 7, 0, 9, 1)"),
            "{sql}"
        );
    }
}
