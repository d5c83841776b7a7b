//! The JDBC connector's pure encoder: one time's per-key changes into the rows a commit sends
//! ([`Batch`]): text cells per written column (rendered by [`encode`](super::encode)) and per
//! row an upsert, a delete (its key columns only) or an append.
//!
//! An upsert sink keeps each key's last change of the commit; a key whose first change in the
//! commit is an insert is *fresh* (the table should not hold it, so a plain insert will do). An
//! append-only sink refuses a retraction unless `force_append_only` is set, in which case deletes
//! are dropped and updates become inserts.

use super::batch::{Batch, RowOp};
use super::config::Dialect;
use super::encode::{Cells, RowEncoder};
use super::table::{written_columns, TableColumn, TableInfo};
use crate::encode::ChangeEncoder;
use crate::encoded_row::EncodedRow;
use crate::envelope::Format;
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::any::Any;
use std::marker::PhantomData;

/// Upsert or append, as the sink's format says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Upsert,
    Append { force: bool },
}

impl Mode {
    /// The mode of `format`; Debezium has no meaning for a table.
    pub(crate) fn of(format: &Format) -> Result<Mode> {
        match format {
            Format::Upsert => Ok(Mode::Upsert),
            Format::AppendOnly { force } => Ok(Mode::Append { force: *force }),
            Format::Debezium { .. } => {
                Err(Error::config("`type = debezium` does not apply to a table: use upsert or append-only"))
            }
        }
    }
}

/// Turns changes into a [`Batch`] of rows for one table: an upsert sink keeps each key's last
/// change of the commit (a delete carries the key columns only); an append-only sink refuses
/// retractions unless `force_append_only` is set. See the [connector's docs](super).
pub struct JdbcEncoder<V> {
    mode: Mode,
    sink: String,
    qualified: String,
    columns: Vec<TableColumn>,
    pk: Vec<usize>,
    rows: RowEncoder,
    _row: PhantomData<fn(&V)>,
}

impl<V> JdbcEncoder<V> {
    /// The encoder of `sink`'s rows into `table` (as the database described it) in `dialect`.
    pub fn new(dialect: Dialect, sink: &SinkSettings, table: &TableInfo) -> Result<Self> {
        let mode = Mode::of(sink.format())?;
        let columns = written_columns(sink, table);
        let pk_names: &[String] = match (mode, sink.primary_key()) {
            (Mode::Upsert, Some(pk)) => pk,
            _ => &[],
        };
        let pk = pk_names
            .iter()
            .map(|n| {
                columns.iter().position(|c| &c.name == n).ok_or_else(|| {
                    Error::schema(format!(
                        "sink `{}`: primary key column `{n}` of table {} is not among the columns written",
                        sink.name(),
                        table.qualified
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JdbcEncoder {
            mode,
            sink: sink.name().to_string(),
            qualified: table.qualified.clone(),
            rows: RowEncoder::new(dialect, &table.qualified, &columns),
            columns,
            pk,
            _row: PhantomData,
        })
    }

    /// The columns written, in cell order.
    pub fn columns(&self) -> &[TableColumn] {
        &self.columns
    }

    /// Positions (in [`columns`](Self::columns)) of the key columns a delete carries.
    pub fn key_columns(&self) -> &[usize] {
        &self.pk
    }
}

impl<V: Serialize + 'static> JdbcEncoder<V> {
    /// Stages one change into `batch`.
    fn stage(&mut self, change: &Change<Key, V>, batch: &mut Batch) -> Result<()> {
        let key = &change.key;
        let (sink, table) = (&self.sink, &self.qualified);
        let with_key =
            |e: Error| Error::new(e.kind(), format!("sink `{sink}`, table {table}, key {key:?}: {}", e.message()));
        match self.mode {
            Mode::Upsert => {
                key.bytes()?;
                let first = batch.next_cell();
                let op = match (&change.after, &change.before) {
                    (Some(row), _) => {
                        cells(&mut self.rows, row, None, true, &mut batch.cells).map_err(with_key)?;
                        RowOp::Upsert
                    }
                    (None, Some(before)) => {
                        cells(&mut self.rows, before, Some(&self.pk), false, &mut batch.cells).map_err(with_key)?;
                        RowOp::Delete
                    }
                    // A change of neither side carries nothing to write.
                    (None, None) => return Ok(()),
                };
                batch.record(key, op, first, change.before.is_none());
            }
            Mode::Append { force } => {
                if change.before.is_some() && !force {
                    return Err(Error::new(
                        ErrorKind::AppendOnly,
                        format!(
                            "sink `{sink}`: the collection retracted key {key:?}, but the sink into {table} is \
                             append-only; set `force_append_only = true` to drop deletes and turn updates into \
                             inserts, or use `type = upsert`"
                        ),
                    ));
                }
                if let Some(row) = &change.after {
                    let first = batch.next_cell();
                    cells(&mut self.rows, row, None, true, &mut batch.cells).map_err(with_key)?;
                    batch.record(key, RowOp::Append, first, false);
                }
            }
        }
        Ok(())
    }
}

/// Appends the cells of `row` for `pick` (see [`RowEncoder::encode`]); a row encoded where it was
/// produced has its cells copied ([`RowEncoder::decode_described`]).
fn cells<V: Serialize + 'static>(
    rows: &mut RowEncoder,
    row: &V,
    pick: Option<&[usize]>,
    strict: bool,
    out: &mut Cells,
) -> Result<()> {
    match (row as &dyn Any).downcast_ref::<EncodedRow>() {
        Some(encoded) => match encoded.encoded() {
            Ok(bytes) => rows.decode_described(bytes, pick, strict, out),
            Err(e) => Err(Error::schema(e.message().to_string())),
        },
        None => rows.encode(row, pick, strict, out),
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for JdbcEncoder<V> {
    type Output = Batch;

    /// Appends the rows of `changes` to the commit's batch; the time plays no part (a commit
    /// may span several times, and a key's later change replaces its earlier one).
    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut Batch) -> Result<()> {
        let _ = time;
        for change in changes {
            self.stage(change, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::jdbc::table::ColKind;

    #[derive(Serialize)]
    struct Item {
        id: i64,
        name: Option<&'static str>,
    }

    fn column(name: &str, kind: ColKind) -> TableColumn {
        TableColumn {
            name: name.into(),
            sql_type: String::new(),
            cast_type: String::new(),
            kind,
            nullable: true,
            has_default: false,
            generated: false,
        }
    }

    fn table() -> TableInfo {
        TableInfo {
            qualified: "public.items".into(),
            columns: vec![column("id", ColKind::Int), column("name", ColKind::Text)],
            primary_key: vec!["id".into()],
        }
    }

    fn key(id: i64) -> Key {
        Key::from_bytes(id.to_string().into_bytes())
    }

    fn change(id: i64, before: Option<&'static str>, after: Option<&'static str>) -> Change<Key, Item> {
        Change {
            key: key(id),
            before: before.map(|n| Item { id, name: Some(n) }),
            after: after.map(|n| Item { id, name: Some(n) }),
        }
    }

    fn cells(b: &Batch, row: usize, width: usize) -> Vec<Option<&str>> {
        (0..width).map(|i| b.cells.get(b.rows[row].first as usize + i)).collect()
    }

    /// Upserts keep each key's last change in the key's first place; a delete carries the key
    /// columns only; a key first inserted in the commit stays fresh.
    #[test]
    fn upserts_keep_the_last_change_of_each_key() {
        let sink = SinkSettings::for_test(Format::Upsert, &["id"], None);
        let mut enc = JdbcEncoder::<Item>::new(Dialect::Postgres, &sink, &table()).expect("encoder");
        assert_eq!(enc.key_columns(), &[0]);
        let mut batch = Batch::default();
        enc.encode(1, &[change(1, None, Some("a")), change(2, Some("b"), None)], &mut batch).expect("encode");
        enc.encode(2, &[change(1, Some("a"), Some("c")), change(3, Some("x"), Some("y"))], &mut batch).expect("encode");
        let ops: Vec<_> = batch.rows.iter().map(|r| (r.key.clone(), r.op, r.fresh)).collect();
        assert_eq!(
            ops,
            vec![(key(1), RowOp::Upsert, true), (key(2), RowOp::Delete, false), (key(3), RowOp::Upsert, false)]
        );
        assert_eq!(cells(&batch, 0, 2), vec![Some("1"), Some("c")]);
        assert_eq!(cells(&batch, 1, 1), vec![Some("2")]);
        assert_eq!(batch.upserts(true).collect::<Vec<_>>(), vec![0]);
        assert_eq!(batch.rows_of(RowOp::Delete).collect::<Vec<_>>(), vec![1]);
    }

    /// An append-only sink refuses a retraction, unless forced: then deletes are dropped and
    /// updates become inserts.
    #[test]
    fn append_only_refuses_retractions_unless_forced() {
        let strict = SinkSettings::for_test(Format::AppendOnly { force: false }, &[], None);
        let mut enc = JdbcEncoder::<Item>::new(Dialect::Mysql, &strict, &table()).expect("encoder");
        let mut batch = Batch::default();
        let e = enc.encode(1, &[change(1, Some("a"), Some("b"))], &mut batch).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AppendOnly);

        let forced = SinkSettings::for_test(Format::AppendOnly { force: true }, &[], None);
        let mut enc = JdbcEncoder::<Item>::new(Dialect::Mysql, &forced, &table()).expect("encoder");
        let mut batch = Batch::default();
        let changes = [change(1, None, Some("a")), change(1, Some("a"), Some("b")), change(2, Some("c"), None)];
        enc.encode(1, &changes, &mut batch).expect("encode");
        let ops: Vec<_> = batch.rows.iter().map(|r| (r.key.clone(), r.op)).collect();
        assert_eq!(ops, vec![(key(1), RowOp::Append), (key(1), RowOp::Append)]);
        assert_eq!(cells(&batch, 1, 2), vec![Some("1"), Some("b")]);
    }

    /// A field the table has no column for names the sink, the table and the key; Debezium is
    /// refused when the encoder is made.
    #[test]
    fn refusals_name_the_key_and_debezium_is_refused() {
        #[derive(Serialize)]
        struct Other {
            id: i64,
            colour: &'static str,
        }
        let sink = SinkSettings::for_test(Format::Upsert, &["id"], None);
        let mut enc = JdbcEncoder::<Other>::new(Dialect::Postgres, &sink, &table()).expect("encoder");
        let bad = Change { key: key(7), before: None, after: Some(Other { id: 7, colour: "red" }) };
        let e = enc.encode(1, &[bad], &mut Batch::default()).unwrap_err();
        assert!(e.message().contains("public.items") && e.message().contains("colour"), "{e}");

        let debezium = SinkSettings::for_test(Format::Debezium { tombstone_after_delete: false }, &["id"], None);
        assert!(JdbcEncoder::<Item>::new(Dialect::Postgres, &debezium, &table()).is_err());
    }

    /// Rows encoded where they were produced (described cells) stage the cells typed rows stage;
    /// a field naming no column refuses an upsert, as for a typed row, but not a delete (which
    /// takes the key's cells); cells rendered for other columns are refused.
    #[test]
    fn described_rows_stage_the_cells_typed_rows_stage() {
        use crate::encoded_row::EncodedRows;
        #[derive(Serialize)]
        struct Extra {
            id: i64,
            name: &'static str,
            color: &'static str,
        }
        let sink = SinkSettings::for_test(Format::Upsert, &["id"], None);
        let mut producer = RowEncoder::new(Dialect::Postgres, "public.items", &table().columns);
        fn described<T: Serialize>(producer: &mut RowEncoder, row: &T) -> EncodedRow {
            let mut rows = EncodedRows::default();
            let at = rows.push_with(|buf| producer.encode_described(row, buf).map_err(|e| e.message().to_string()));
            rows.finish().take(at)
        }
        let typed = [change(1, None, Some("a")), change(2, Some("b"), None), change(1, Some("a"), Some("c\td"))];
        let encoded: Vec<Change<Key, EncodedRow>> = typed
            .iter()
            .map(|c| Change {
                key: c.key.clone(),
                before: c.before.as_ref().map(|r| described(&mut producer, r)),
                after: c.after.as_ref().map(|r| described(&mut producer, r)),
            })
            .collect();
        let mut by_type = JdbcEncoder::<Item>::new(Dialect::Postgres, &sink, &table()).unwrap();
        let mut by_bytes = JdbcEncoder::<EncodedRow>::new(Dialect::Postgres, &sink, &table()).unwrap();
        let (mut a, mut b) = (Batch::default(), Batch::default());
        by_type.encode(1, &typed, &mut a).unwrap();
        by_bytes.encode(1, &encoded, &mut b).unwrap();
        // The same rows and cells (a typed delete leaves its other fields' text unused in the
        // batch; a described one copies the key's cells only).
        let staged = |b: &Batch| {
            (0..b.rows.len())
                .map(|i| {
                    let r = &b.rows[i];
                    let width = if r.op == RowOp::Delete { 1 } else { 2 };
                    (
                        r.key.clone(),
                        r.op,
                        r.fresh,
                        cells(b, i, width).into_iter().map(|c| c.map(str::to_string)).collect(),
                    )
                })
                .collect::<Vec<(Key, RowOp, bool, Vec<Option<String>>)>>()
        };
        assert_eq!(staged(&b), staged(&a));
        // A NULL stays NULL.
        let null = described(&mut producer, &Item { id: 4, name: None });
        by_bytes.encode(2, &[Change { key: key(4), before: None, after: Some(null) }], &mut b).unwrap();
        assert_eq!(cells(&b, 2, 2), vec![Some("4"), None]);

        // A field naming no column: the upsert is refused naming it, the delete goes ahead.
        let extra = described(&mut producer, &Extra { id: 5, name: "n", color: "red" });
        let insert = Change { key: key(5), before: None, after: Some(extra.clone()) };
        let e = by_bytes.encode(3, &[insert], &mut b).unwrap_err();
        assert!(e.message().contains("key") && e.message().contains("`color`"), "{e}");
        let typed_e = by_type
            .encode(3, &[Change { key: key(5), before: None, after: Some(Item { id: 5, name: None }) }], &mut a)
            .map(|_| ());
        assert!(typed_e.is_ok());
        by_bytes.encode(4, &[Change { key: key(5), before: Some(extra), after: None }], &mut b).unwrap();
        assert_eq!(b.rows.last().map(|r| r.op), Some(RowOp::Delete));

        // Cells rendered for other columns (the table was altered since) are refused.
        let mut altered = table();
        altered.columns[1].kind = ColKind::Json;
        let mut other = JdbcEncoder::<EncodedRow>::new(Dialect::Postgres, &sink, &altered).unwrap();
        let e = other.encode(5, &encoded[..1], &mut Batch::default()).unwrap_err();
        assert!(e.message().contains("altered"), "{e}");
    }
}
