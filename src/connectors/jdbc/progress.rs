//! Where a JDBC sink records its progress: one row per (sink, target table, generation, worker)
//! in the progress table (`jdbc.progress.table`, in the target's schema), written in the same
//! transaction as the rows it covers.
//!
//! A row holds `(peers, base, frontier, partial)`: a [`WorkerProgress`] (`NULL` is the complete
//! frontier) and how many changes of the time at `frontier` are committed too (0 unless a
//! transaction bound split that time). On resume every row of the sink and table is read back; on
//! commit the worker's own row is locked and compared with what this writer last committed
//! ([`check_stored`]), which tells a commit whose acknowledgement was lost from a second run of
//! the same sink. A progress table made before `partial` existed gains the column on start
//! and the layout columns ([`ADDED_COLUMNS`]). The statements of both dialects are here; the
//! sessions run them.

use super::config::Dialect;
use super::table::quote;
use crate::error::{Error, ErrorKind, Result};
use differential_sinks_operators::{Frontier, Layout, WorkerProgress};

/// The progress table and the key of this sink's rows in it.
#[derive(Clone, Debug)]
pub struct ProgressTable {
    /// The schema (PostgreSQL) or database (MySQL) that holds it: the target table's.
    pub schema: String,
    /// Its name.
    pub table: String,
    /// The sink's name (`sink_name` column).
    pub sink: String,
    /// The target table, `schema.table` (`target` column).
    pub target: String,
}

/// A column added to the progress table after its first version, with its type and default in
/// each dialect.
#[derive(Clone, Copy, Debug)]
pub struct AddedColumn {
    /// The column's name.
    pub name: &'static str,
    /// Its PostgreSQL type and default.
    pub postgres: &'static str,
    /// Its MySQL type and default.
    pub mysql: &'static str,
}

impl AddedColumn {
    /// Its type and default in `dialect`.
    pub fn ty(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Mysql => self.mysql,
        }
    }
}

/// The columns a progress table of an earlier version may lack, added on start: `partial`
/// (0: no time split) and the run's [`Layout`](differential_sinks_operators::Layout) (routing 0:
/// not recorded; format 1).
pub const ADDED_COLUMNS: [AddedColumn; 3] = [
    AddedColumn { name: "partial", postgres: "bigint NOT NULL DEFAULT 0", mysql: "BIGINT NOT NULL DEFAULT 0" },
    AddedColumn { name: "layout_routing", postgres: "bigint NOT NULL DEFAULT 0", mysql: "BIGINT NOT NULL DEFAULT 0" },
    AddedColumn { name: "layout_format", postgres: "integer NOT NULL DEFAULT 1", mysql: "INT NOT NULL DEFAULT 1" },
];

impl ProgressTable {
    fn quoted(&self, dialect: Dialect) -> (String, String) {
        (quote(dialect, &self.schema), quote(dialect, &self.table))
    }

    /// The statement that creates the table if it is missing: `(sink_name, target, generation,
    /// worker)` → `(peers, base, frontier, partial, updated_at)`.
    pub fn create_sql(&self, dialect: Dialect) -> String {
        let (s, t) = self.quoted(dialect);
        match dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {s}.{t} (\
                 sink_name text NOT NULL, target text NOT NULL, generation bigint NOT NULL, worker integer NOT NULL, \
                 peers integer NOT NULL, base numeric(20,0), frontier numeric(20,0), partial bigint NOT NULL DEFAULT 0, \
                 layout_routing bigint NOT NULL DEFAULT 0, layout_format integer NOT NULL DEFAULT 1, \
                 updated_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (sink_name, target, generation, worker))"
            ),
            Dialect::Mysql => format!(
                "CREATE TABLE IF NOT EXISTS {s}.{t} (\
                 sink_name VARCHAR(191) NOT NULL, target VARCHAR(191) NOT NULL, generation BIGINT NOT NULL, \
                 worker INT NOT NULL, peers INT NOT NULL, base DECIMAL(20,0) NULL, frontier DECIMAL(20,0) NULL, \
                 partial BIGINT NOT NULL DEFAULT 0, layout_routing BIGINT NOT NULL DEFAULT 0, \
                 layout_format INT NOT NULL DEFAULT 1, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 PRIMARY KEY (sink_name, target, generation, worker)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ),
        }
    }

    /// A statement that fails (undefined column) exactly when the table lacks one of
    /// [`ADDED_COLUMNS`]: the cheap check made on every start, before looking for which one.
    pub fn probe_added_columns_sql(&self, dialect: Dialect) -> String {
        let (s, t) = self.quoted(dialect);
        let names: Vec<&str> = ADDED_COLUMNS.iter().map(|c| c.name).collect();
        format!("SELECT {} FROM {s}.{t} WHERE 1 = 0", names.join(", "))
    }

    /// The statement that tells whether the table has a column (parameters: schema, table,
    /// column): a table made by an earlier version lacks those of [`ADDED_COLUMNS`].
    pub fn has_column_sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => {
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 AND column_name = $3"
            }
            Dialect::Mysql => {
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_schema = ? AND table_name = ? AND column_name = ?"
            }
        }
    }

    /// The statement that adds `column` (one of [`ADDED_COLUMNS`]) to a table made before it
    /// existed; its rows read the column's default. Two workers adding it at once: the second
    /// fails with a duplicate column, which the sessions take as done.
    pub fn add_column_sql(&self, dialect: Dialect, column: &AddedColumn) -> String {
        let (s, t) = self.quoted(dialect);
        format!("ALTER TABLE {s}.{t} ADD COLUMN {} {}", column.name, column.ty(dialect))
    }

    /// The statement that reads every record of the sink and table (parameters: sink, target),
    /// frontiers as text.
    pub fn select_sql(&self, dialect: Dialect) -> String {
        let (s, t) = self.quoted(dialect);
        match dialect {
            Dialect::Postgres => format!(
                "SELECT generation, worker, peers, base::text, frontier::text, partial, layout_routing, layout_format \
                 FROM {s}.{t} WHERE sink_name = $1 AND target = $2"
            ),
            Dialect::Mysql => format!(
                "SELECT generation, worker, peers, CAST(base AS CHAR), CAST(frontier AS CHAR), partial, layout_routing, \
                 layout_format FROM {s}.{t} WHERE sink_name = ? AND target = ?"
            ),
        }
    }

    /// The statement that locks this worker's record of a generation for the commit and reads
    /// its frontier and partial count (parameters: sink, target, generation, worker).
    pub fn lock_sql(&self, dialect: Dialect) -> String {
        let (s, t) = self.quoted(dialect);
        match dialect {
            Dialect::Postgres => format!(
                "SELECT frontier::text, partial FROM {s}.{t} WHERE sink_name = $1 AND target = $2 AND generation = $3 AND worker = $4 FOR UPDATE"
            ),
            Dialect::Mysql => format!(
                "SELECT CAST(frontier AS CHAR), partial FROM {s}.{t} WHERE sink_name = ? AND target = ? AND generation = ? AND worker = ? FOR UPDATE"
            ),
        }
    }

    /// The statement that inserts or replaces this worker's record (parameters: sink, target,
    /// generation, worker, peers, base, frontier, partial).
    pub fn record_sql(&self, dialect: Dialect) -> String {
        let (s, t) = self.quoted(dialect);
        match dialect {
            Dialect::Postgres => format!(
                "INSERT INTO {s}.{t} (sink_name, target, generation, worker, peers, base, frontier, partial, \
                 layout_routing, layout_format, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, ($6::text)::numeric, ($7::text)::numeric, $8, $9, $10, now()) \
                 ON CONFLICT (sink_name, target, generation, worker) DO UPDATE SET peers = EXCLUDED.peers, \
                 base = EXCLUDED.base, frontier = EXCLUDED.frontier, partial = EXCLUDED.partial, \
                 layout_routing = EXCLUDED.layout_routing, layout_format = EXCLUDED.layout_format, \
                 updated_at = EXCLUDED.updated_at"
            ),
            Dialect::Mysql => format!(
                "INSERT INTO {s}.{t} (sink_name, target, generation, worker, peers, base, frontier, partial, \
                 layout_routing, layout_format, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE peers = VALUES(peers), \
                 base = VALUES(base), frontier = VALUES(frontier), partial = VALUES(partial), \
                 layout_routing = VALUES(layout_routing), layout_format = VALUES(layout_format), \
                 updated_at = VALUES(updated_at)"
            ),
        }
    }
}

/// The progress row a commit records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressRow {
    /// Generation.
    pub generation: u64,
    /// Worker.
    pub worker: usize,
    /// Workers of the generation.
    pub peers: usize,
    /// The generation's base frontier (`None`: complete).
    pub base: Option<u64>,
    /// The committed frontier (`None`: complete).
    pub frontier: Option<u64>,
    /// How many changes of the time at `frontier` are committed too (0: none).
    pub partial: u64,
    /// How the run routes keys and writes the table.
    pub layout: Layout,
}

/// One record read back: the worker's progress and its `partial` count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The progress.
    pub progress: WorkerProgress<u64>,
    /// Changes of the time at the frontier committed too.
    pub partial: u64,
}

/// What the progress table holds for this worker and generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// No row yet.
    Absent,
    /// The row's frontier (`None`: complete) and partial count.
    At(Option<u64>, u64),
}

/// Compares the locked progress row with what this writer last committed. `Some(false)`: the
/// row already holds this commit (an earlier attempt went through but its acknowledgement was
/// lost), so apply nothing; `None`: go ahead; an error: another writer committed in between.
pub fn check_stored(
    p: &ProgressTable,
    progress: &ProgressRow,
    expected: &Stored,
    stored: &Stored,
) -> Result<Option<bool>> {
    if *stored == Stored::At(progress.frontier, progress.partial) && stored != expected {
        return Ok(Some(false));
    }
    if stored != expected {
        return Err(Error::new(
            ErrorKind::Fenced,
            format!(
                "sink `{}` worker {}: the progress row in {}.{} holds {stored:?}, but this writer last saw \
                 {expected:?}: another run of the same sink is writing to {}; stop it (or give one of them \
                 another `sink.name`)",
                p.sink, progress.worker, p.schema, p.table, p.target
            ),
        ));
    }
    Ok(None)
}

/// A frontier as recorded: `NULL` is the complete frontier.
pub fn parse_frontier(v: Option<String>) -> Result<Option<u64>> {
    v.map(|s| {
        s.parse::<u64>().map_err(|_| {
            Error::new(ErrorKind::Resume, format!("the progress table holds frontier `{s}`, which is not a time"))
        })
    })
    .transpose()
}

/// A `partial` count as recorded.
pub fn parse_partial(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::new(ErrorKind::Resume, format!("the progress table holds partial count {v}, which is negative"))
    })
}

/// One record read back from its columns.
pub fn record_from(
    generation: i64,
    worker: i64,
    peers: i64,
    base: Option<String>,
    frontier: Option<String>,
    partial: i64,
    (routing, format): (i64, i64),
) -> Result<Record> {
    let mut progress = progress_from(generation, worker, peers, base, frontier)?;
    let (Ok(routing), Ok(format)) = (u64::try_from(routing), u32::try_from(format)) else {
        return Err(Error::new(
            ErrorKind::Resume,
            format!("a progress row holds an impossible layout (routing {routing}, format {format})"),
        ));
    };
    progress.layout = Layout { routing, format };
    Ok(Record { progress, partial: parse_partial(partial)? })
}

/// One progress record from its columns.
pub fn progress_from(
    generation: i64,
    worker: i64,
    peers: i64,
    base: Option<String>,
    frontier: Option<String>,
) -> Result<WorkerProgress<u64>> {
    let f = |v: Option<u64>| match v {
        Some(t) => Frontier::at(t),
        None => Frontier::complete(),
    };
    let (Ok(worker), Ok(peers), Ok(generation)) =
        (usize::try_from(worker), usize::try_from(peers), u64::try_from(generation))
    else {
        return Err(Error::new(
            ErrorKind::Resume,
            format!("a progress row holds a negative worker ({worker}), worker count ({peers}) or generation ({generation})"),
        ));
    };
    Ok(WorkerProgress {
        worker,
        peers,
        generation,
        base: f(parse_frontier(base)?),
        frontier: f(parse_frontier(frontier)?),
        layout: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProgressTable {
        ProgressTable {
            schema: "public".into(),
            table: "dsink_progress".into(),
            sink: "s".into(),
            target: "public.t".into(),
        }
    }
    fn row(frontier: Option<u64>) -> ProgressRow {
        ProgressRow {
            generation: 0,
            worker: 1,
            peers: 2,
            base: Some(0),
            frontier,
            partial: 0,
            layout: Layout::default(),
        }
    }

    #[test]
    fn an_expected_row_goes_ahead_a_done_commit_is_skipped_and_another_writer_is_fenced() {
        let t = table();
        assert_eq!(check_stored(&t, &row(Some(5)), &Stored::Absent, &Stored::Absent).unwrap(), None);
        assert_eq!(check_stored(&t, &row(Some(5)), &Stored::At(Some(3), 0), &Stored::At(Some(3), 0)).unwrap(), None);
        assert_eq!(
            check_stored(&t, &row(Some(5)), &Stored::At(Some(3), 0), &Stored::At(Some(5), 0)).unwrap(),
            Some(false)
        );
        let e = check_stored(&t, &row(Some(5)), &Stored::At(Some(3), 0), &Stored::At(Some(4), 0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fenced);
        // Early commits inside time 5: the count tells a lost acknowledgement from another writer.
        let part = |n| ProgressRow { partial: n, ..row(Some(5)) };
        assert_eq!(check_stored(&t, &part(7), &Stored::At(Some(5), 3), &Stored::At(Some(5), 3)).unwrap(), None);
        assert_eq!(check_stored(&t, &part(7), &Stored::At(Some(5), 3), &Stored::At(Some(5), 7)).unwrap(), Some(false));
        let e = check_stored(&t, &part(7), &Stored::At(Some(5), 3), &Stored::At(Some(5), 4)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fenced);
    }

    #[test]
    fn statements_name_the_quoted_table_of_each_dialect() {
        let t = table();
        for sql in [t.create_sql(Dialect::Postgres), t.select_sql(Dialect::Postgres), t.lock_sql(Dialect::Postgres)] {
            assert!(sql.contains("\"public\".\"dsink_progress\""), "{sql}");
        }
        for sql in [
            t.create_sql(Dialect::Mysql),
            t.record_sql(Dialect::Mysql),
            t.add_column_sql(Dialect::Mysql, &ADDED_COLUMNS[0]),
        ] {
            assert!(sql.contains("`public`.`dsink_progress`"), "{sql}");
        }
        for d in [Dialect::Postgres, Dialect::Mysql] {
            for sql in [t.create_sql(d), t.select_sql(d), t.lock_sql(d), t.record_sql(d)] {
                assert!(sql.contains("partial"), "{sql}");
            }
            // Every column a table of an earlier version may lack is created, read and written.
            for c in &ADDED_COLUMNS {
                for sql in [t.create_sql(d), t.select_sql(d), t.record_sql(d)] {
                    assert!(sql.contains(c.name), "{}: {sql}", c.name);
                }
                assert!(t.add_column_sql(d, c).ends_with(&format!("ADD COLUMN {} {}", c.name, c.ty(d))));
            }
        }
    }

    #[test]
    fn recorded_values_are_read_back_or_refused() {
        assert_eq!(parse_frontier(None).unwrap(), None);
        assert_eq!(parse_frontier(Some("42".into())).unwrap(), Some(42));
        assert_eq!(parse_frontier(Some("x".into())).unwrap_err().kind(), ErrorKind::Resume);
        let p = progress_from(1, 0, 2, Some("3".into()), None).unwrap();
        assert_eq!((p.generation, p.worker, p.peers), (1, 0, 2));
        assert_eq!(p.base, Frontier::at(3));
        assert_eq!(p.frontier, Frontier::complete());
        assert_eq!(progress_from(1, -1, 2, None, None).unwrap_err().kind(), ErrorKind::Resume);
        let r = record_from(1, 0, 2, None, Some("4".into()), 9, (77, 1)).unwrap();
        assert_eq!((r.partial, r.progress.layout), (9, Layout { routing: 77, format: 1 }));
        assert_eq!(record_from(1, 0, 2, None, None, -1, (0, 1)).unwrap_err().kind(), ErrorKind::Resume);
        assert_eq!(record_from(1, 0, 2, None, None, 0, (-3, 1)).unwrap_err().kind(), ErrorKind::Resume);
    }
}
