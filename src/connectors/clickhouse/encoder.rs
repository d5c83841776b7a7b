//! The ClickHouse encoder: per-key changes into insert blocks for the table's plan — RowBinary
//! rows (JSONEachRow lines for a table with a column type the RowBinary encoder cannot write),
//! each followed by the columns the sink fills itself (the version and delete marker of a
//! ReplacingMergeTree, the sign of a CollapsingMergeTree).
//!
//! | format, engine | a change becomes |
//! |---|---|
//! | upsert, ReplacingMergeTree | the new row (`ver` = time, `del` = 0), or the old row of a delete (`del` = 1) |
//! | upsert, CollapsingMergeTree | the old row with sign −1, then the new row with sign +1 |
//! | append-only | its rows (with `ver` = time or sign +1 where the engine has them) |
//!
//! A RowBinary block names its columns; a row with other fields than the block's closes the
//! block ([`Blocks::done`]) and starts one with its columns. A value that does not fit its column
//! is an error naming the column, its type and the row's key.

use super::config::ClickHouseConfig;
use super::sql::ident;
use super::table::{check_field, check_fields, check_row, Mode, TableInfo, TablePlan};
use crate::encode::json::encode_row;
use crate::encode::rowbinary::{EncodeError, Encoded, RowBinaryEncoder};
use crate::encode::ChangeEncoder;
use crate::encoded_row::EncodedRow;
use crate::envelope::{Emission, Format};
use crate::error::{Error, ErrorKind, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;

/// One insert block: its statement, its encoded rows, and the times they are of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// `INSERT INTO <table> (<columns>) FORMAT RowBinary` or `… FORMAT JSONEachRow`.
    pub sql: String,
    /// The encoded rows.
    pub data: Vec<u8>,
    /// How many rows `data` holds.
    pub rows: usize,
    /// The first and last time of its rows.
    pub times: Option<(u64, u64)>,
}

/// What the encoder appends to: the block being filled, and blocks it closed before it.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Closed blocks, oldest first (a RowBinary row with other columns than its block's closes it).
    pub done: VecDeque<Block>,
    /// The block being filled.
    pub current: Block,
}

impl Blocks {
    /// Takes the block being filled, leaving an empty one with the same statement and room for
    /// `capacity` bytes.
    pub fn take_current(&mut self, capacity: usize) -> Block {
        let next = Block { sql: self.current.sql.clone(), data: Vec::with_capacity(capacity), rows: 0, times: None };
        std::mem::replace(&mut self.current, next)
    }
}

/// Encodes changes as insert blocks for a [`TablePlan`]. See the [connector's docs](super).
pub struct ClickHouseEncoder<V> {
    sink: String,
    format: Format,
    table: TableInfo,
    mode: Mode,
    /// `database`.`table`, quoted.
    target: String,
    /// Whether the rows' fields have been checked against the table (always, with a schema).
    checked: bool,
    /// The RowBinary encoder, or `None` when the table is written as JSONEachRow.
    rowbinary: Option<RowBinaryEncoder>,
    /// Rows encoded where they were produced: the bitmap of the columns of the block being filled.
    described: Option<Vec<u8>>,
    /// The time `suffix` is for.
    time: Option<u64>,
    /// What the sink appends to each row for the current time, as (insert, delete): the
    /// version / delete / sign columns, as `,"ver":t,"del":0` for JSONEachRow or their bytes for
    /// RowBinary.
    suffix: (Vec<u8>, Vec<u8>),
    _row: PhantomData<fn(&V)>,
}

impl<V> ClickHouseEncoder<V> {
    /// The encoder of `sink`'s rows into `cfg`'s table as `plan` says.
    pub fn new(sink: &SinkSettings, cfg: &ClickHouseConfig, plan: &TablePlan) -> Self {
        let rowbinary = match plan.rowbinary() {
            Ok(enc) => Some(enc),
            Err(unsupported) => {
                let list: Vec<String> = unsupported.iter().map(|(c, t)| format!("`{c}` {t}")).collect();
                tracing::info!(
                    sink = %sink.name(),
                    "ClickHouse table `{}` has column(s) {} that the RowBinary encoder cannot write; inserting \
                     JSONEachRow instead",
                    plan.table.name,
                    list.join(", ")
                );
                None
            }
        };
        ClickHouseEncoder {
            sink: sink.name().to_string(),
            format: sink.format().clone(),
            table: plan.table.clone(),
            mode: plan.mode.clone(),
            target: format!("{}.{}", ident(&cfg.database), ident(&cfg.table)),
            checked: sink.schema().is_some(),
            rowbinary,
            described: None,
            time: None,
            suffix: (Vec::new(), Vec::new()),
            _row: PhantomData,
        }
    }

    /// An empty output, its first block's statement set.
    pub fn output(&self) -> Blocks {
        let sql = format!("INSERT INTO {} FORMAT JSONEachRow", self.target);
        Blocks {
            done: VecDeque::new(),
            current: Block { sql, data: Vec::with_capacity(1 << 20), rows: 0, times: None },
        }
    }

    fn set_time(&mut self, time: u64) -> Result<()> {
        let (ins, del) = (&mut self.suffix.0, &mut self.suffix.1);
        ins.clear();
        del.clear();
        if self.rowbinary.is_some() {
            // The types were checked by `plan`: version UInt64 or Int64, delete UInt8 or Int8, sign Int8.
            match &self.mode {
                Mode::Plain => {}
                Mode::Replacing { version, delete } => {
                    let signed = self.table.columns.iter().find(|c| &c.name == version);
                    if signed.is_some_and(|c| c.ty == "Int64") && time > i64::MAX as u64 {
                        return Err(Error::encode(format!(
                            "logical time {time} does not fit the Int64 version column `{version}`; make it UInt64"
                        )));
                    }
                    ins.extend_from_slice(&time.to_le_bytes());
                    del.extend_from_slice(&time.to_le_bytes());
                    if delete.is_some() {
                        ins.push(0);
                        del.push(1);
                    }
                }
                Mode::Collapsing { .. } => {
                    ins.push(1);
                    del.push(-1i8 as u8);
                }
            }
            self.time = Some(time);
            return Ok(());
        }
        let field = |out: &mut Vec<u8>, name: &str, value: &str| -> Result<()> {
            out.push(b',');
            serde_json::to_writer(&mut *out, name).map_err(|e| Error::encode(e.to_string()))?;
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
            Ok(())
        };
        let t = time.to_string();
        match &self.mode {
            Mode::Plain => {}
            Mode::Replacing { version, delete } => {
                field(ins, version, &t)?;
                field(del, version, &t)?;
                if let Some(d) = delete {
                    field(ins, d, "0")?;
                    field(del, d, "1")?;
                }
            }
            Mode::Collapsing { sign } => {
                field(ins, sign, "1")?;
                field(del, sign, "-1")?;
            }
        }
        self.time = Some(time);
        Ok(())
    }

    /// Appends one row, as `insert` (true) or as the row that cancels / deletes it.
    fn push<R: Serialize + 'static>(&mut self, key: &Key, row: &R, insert: bool, out: &mut Blocks) -> Result<()> {
        if self.rowbinary.is_some() {
            match (row as &dyn Any).downcast_ref::<EncodedRow>() {
                Some(encoded) => self.push_described(key, encoded, insert, out)?,
                None => self.push_rowbinary(key, row, insert, out)?,
            }
        } else {
            self.push_json(row, insert, &mut out.current)?;
        }
        let t = self.time.unwrap_or(0);
        let b = &mut out.current;
        b.times = Some(b.times.map_or((t, t), |(lo, _)| (lo, t)));
        Ok(())
    }

    /// Appends one row as RowBinary. A row with other fields than the block's columns closes the
    /// block and starts one with its columns.
    fn push_rowbinary<R: Serialize + ?Sized>(
        &mut self,
        key: &Key,
        row: &R,
        insert: bool,
        out: &mut Blocks,
    ) -> Result<()> {
        for _ in 0..2 {
            let Some(enc) = self.rowbinary.as_mut() else {
                return Err(Error::new(ErrorKind::Fatal, "no RowBinary encoder"));
            };
            let block = &mut out.current;
            let columns = match enc.encode(row, &mut block.data) {
                Ok(Encoded::Written) => {
                    block.data.extend_from_slice(if insert { &self.suffix.0 } else { &self.suffix.1 });
                    block.rows += 1;
                    return Ok(());
                }
                Ok(Encoded::Columns(columns)) => columns,
                Err(e) => return Err(self.row_error(key, e)),
            };
            if !self.checked {
                check_fields(&self.table, &self.mode, &columns.iter().map(|&i| enc.name(i)).collect::<Vec<_>>())?;
                self.checked = true;
            }
            let list: Vec<String> =
                columns.iter().map(|&i| enc.name(i)).chain(self.mode.managed()).map(ident).collect();
            enc.set_columns(columns);
            let sql = format!("INSERT INTO {} ({}) FORMAT RowBinary", self.target, list.join(", "));
            if out.current.rows > 0 {
                let capacity = out.current.data.len().max(1 << 20);
                let closed = out.take_current(capacity);
                out.done.push_back(closed);
            }
            out.current.sql = sql;
        }
        Err(Error::new(ErrorKind::Fatal, "a row's columns changed while it was encoded"))
    }

    /// Appends one row encoded where it was produced (a described RowBinary row): its values are
    /// copied, after closing the block if the row fills other columns than the block's.
    fn push_described(&mut self, key: &Key, row: &EncodedRow, insert: bool, out: &mut Blocks) -> Result<()> {
        let Some(enc) = self.rowbinary.as_ref() else {
            return Err(Error::new(ErrorKind::Fatal, "no RowBinary encoder"));
        };
        let bytes = row.encoded().map_err(|e| self.row_error(key, EncodeError::from_reason(e.message())))?;
        let (bitmap, values) = enc.described(bytes).map_err(|e| self.row_error(key, e))?;
        if self.described.as_deref() != Some(bitmap) {
            let columns: Vec<&str> = enc.columns_of(bitmap).into_iter().map(|i| enc.name(i)).collect();
            if !self.checked {
                check_fields(&self.table, &self.mode, &columns)?;
            }
            let list: Vec<String> = columns.into_iter().chain(self.mode.managed()).map(ident).collect();
            let sql = format!("INSERT INTO {} ({}) FORMAT RowBinary", self.target, list.join(", "));
            self.checked = true;
            self.described = Some(bitmap.to_vec());
            if out.current.rows > 0 {
                let capacity = out.current.data.len().max(1 << 20);
                let closed = out.take_current(capacity);
                out.done.push_back(closed);
            }
            out.current.sql = sql;
        }
        let block = &mut out.current;
        block.data.extend_from_slice(values);
        block.data.extend_from_slice(if insert { &self.suffix.0 } else { &self.suffix.1 });
        block.rows += 1;
        Ok(())
    }

    fn row_error(&self, key: &Key, e: EncodeError) -> Error {
        if let EncodeError::UnknownColumn(c) = &e {
            if let Err(e) = check_field(&self.table, &self.mode, c) {
                return e;
            }
        }
        let key = match key.bytes() {
            Ok([]) => String::new(),
            _ => format!(" with key {key:?}"),
        };
        Error::encode(format!(
            "sink `{}`: the row{key} does not fit ClickHouse table `{}`: {e}",
            self.sink, self.table.name
        ))
    }

    /// Appends one row as a JSONEachRow line.
    fn push_json<R: Serialize + 'static>(&mut self, row: &R, insert: bool, block: &mut Block) -> Result<()> {
        if let Some(encoded) = (row as &dyn Any).downcast_ref::<EncodedRow>() {
            // Encoded where it was produced: JSON unless the table read then had only types the
            // RowBinary encoder writes (it was altered since).
            if encoded.encoded().is_ok_and(|b| b.first().is_some_and(|c| *c >= 0x80)) {
                return Err(Error::encode(format!(
                    "sink `{}`: rows were encoded as RowBinary for ClickHouse table `{}`, whose columns have changed \
                     since (was the table altered while the sink started?); restart the sink",
                    self.sink, self.table.name
                )));
            }
        }
        let data = &mut block.data;
        let start = data.len();
        encode_row(row, data)?;
        if !self.checked {
            let v: serde_json::Value = serde_json::from_slice(&data[start..])
                .map_err(|e| Error::encode(format!("a row's JSON does not parse back: {e}")))?;
            if let Err(e) = check_row(&self.table, &self.mode, &v) {
                data.truncate(start);
                return Err(e);
            }
            self.checked = true;
        }
        let suffix = if insert { &self.suffix.0 } else { &self.suffix.1 };
        if !suffix.is_empty() {
            if data.last() != Some(&b'}') {
                data.truncate(start);
                return Err(Error::schema("rows for ClickHouse must serialize as JSON objects"));
            }
            data.pop();
            let s = if data.len() == start + 1 { &suffix[1..] } else { &suffix[..] };
            data.extend_from_slice(s);
            data.push(b'}');
        }
        data.push(b'\n');
        block.rows += 1;
        Ok(())
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for ClickHouseEncoder<V> {
    type Output = Blocks;

    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut Blocks) -> Result<()> {
        if self.time != Some(time) {
            self.set_time(time)?;
        }
        for change in changes {
            match (&self.format, &self.mode) {
                (Format::Upsert, Mode::Replacing { .. }) => match (&change.before, &change.after) {
                    (_, Some(after)) => self.push(&change.key, after, true, out)?,
                    (Some(before), None) => self.push(&change.key, before, false, out)?,
                    (None, None) => {}
                },
                (Format::Upsert, _) => {
                    if let Some(before) = &change.before {
                        self.push(&change.key, before, false, out)?;
                    }
                    if let Some(after) = &change.after {
                        self.push(&change.key, after, true, out)?;
                    }
                }
                (format, _) => {
                    let mut rows: Vec<&V> = Vec::with_capacity(1);
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row)
                        }
                    })?;
                    for r in rows {
                        self.push(&change.key, r, true, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::clickhouse::table::{plan, TableColumn};

    #[derive(Serialize)]
    struct R {
        k: u32,
        v: u32,
    }

    fn table(engine_full: &str, cols: &[(&str, &str, bool)]) -> TableInfo {
        TableInfo {
            name: "db.t".into(),
            engine: engine_full.split(['(', ' ']).next().unwrap_or_default().into(),
            engine_full: engine_full.into(),
            columns: cols
                .iter()
                .map(|(n, t, k)| TableColumn {
                    name: n.to_string(),
                    ty: t.to_string(),
                    in_sorting_key: *k,
                    has_default: false,
                })
                .collect(),
        }
    }

    /// An upsert sink keyed by `k` into a ReplacingMergeTree `(k, v, ver, del)` with a delete column.
    fn replacing() -> (ClickHouseConfig, SinkSettings, TablePlan) {
        let cfg = ClickHouseConfig::new("http://x", "db", "t").delete_column("del");
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        let t = table(
            "ReplacingMergeTree(ver) ORDER BY k",
            &[("k", "UInt32", true), ("v", "UInt32", false), ("ver", "UInt64", false), ("del", "UInt8", false)],
        );
        let mode = plan(&sink, &cfg, &t).unwrap();
        (cfg, sink, TablePlan { table: t, mode, timezone: "UTC".into() })
    }

    fn change(before: Option<R>, after: Option<R>) -> Change<Key, R> {
        Change { key: Key::from_bytes(b"1".to_vec()), before, after }
    }

    #[test]
    fn replacing_upserts_are_rowbinary_with_version_and_delete_marker() {
        let (cfg, sink, plan) = replacing();
        let mut enc = ClickHouseEncoder::<R>::new(&sink, &cfg, &plan);
        let mut out = enc.output();
        enc.encode(7, &[change(None, Some(R { k: 1, v: 2 })), change(Some(R { k: 3, v: 4 }), None)], &mut out).unwrap();
        assert!(out.done.is_empty());
        let b = &out.current;
        assert_eq!(b.sql, "INSERT INTO `db`.`t` (`k`, `v`, `ver`, `del`) FORMAT RowBinary");
        assert_eq!((b.rows, b.times), (2, Some((7, 7))));
        let row =
            |k: u32, v: u32, del: u8| [&k.to_le_bytes()[..], &v.to_le_bytes(), &7u64.to_le_bytes(), &[del]].concat();
        assert_eq!(b.data, [row(1, 2, 0), row(3, 4, 1)].concat());
    }

    /// A block's deduplication token names the times of its rows: a block cut off inside a time
    /// (the writer ships full blocks mid-write) and the block after it each carry their own
    /// times, never a placeholder range that two commits could share.
    #[test]
    fn blocks_cut_inside_a_time_carry_the_times_of_their_own_rows() {
        let (cfg, sink, plan) = replacing();
        let mut enc = ClickHouseEncoder::<R>::new(&sink, &cfg, &plan);
        let mut out = enc.output();
        enc.encode(5, &[change(None, Some(R { k: 1, v: 1 }))], &mut out).unwrap();
        let first = out.take_current(1 << 10);
        enc.encode(5, &[change(None, Some(R { k: 2, v: 2 }))], &mut out).unwrap();
        enc.encode(6, &[change(None, Some(R { k: 3, v: 3 }))], &mut out).unwrap();
        let second = out.take_current(1 << 10);
        enc.encode(9, &[change(None, Some(R { k: 4, v: 4 }))], &mut out).unwrap();
        assert_eq!((first.rows, first.times), (1, Some((5, 5))));
        assert_eq!((second.rows, second.times), (2, Some((5, 6))));
        assert_eq!((out.current.rows, out.current.times), (1, Some((9, 9))));
    }

    #[test]
    fn collapsing_updates_cancel_then_add_and_unknown_types_fall_back_to_json() {
        let cfg = ClickHouseConfig::new("http://x", "db", "t");
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        let t = table(
            "CollapsingMergeTree(sign) ORDER BY k",
            &[("k", "UInt32", true), ("v", "Map(String, UInt32)", false), ("sign", "Int8", false)],
        );
        let mode = plan(&sink, &cfg, &t).unwrap();
        let mut enc = ClickHouseEncoder::<R>::new(&sink, &cfg, &TablePlan { table: t, mode, timezone: "UTC".into() });
        let mut out = enc.output();
        enc.encode(3, &[change(Some(R { k: 1, v: 1 }), Some(R { k: 1, v: 2 }))], &mut out).unwrap();
        assert_eq!(out.current.sql, "INSERT INTO `db`.`t` FORMAT JSONEachRow");
        assert_eq!(
            String::from_utf8(out.current.data.clone()).unwrap(),
            "{\"k\":1,\"v\":1,\"sign\":-1}\n{\"k\":1,\"v\":2,\"sign\":1}\n"
        );
    }

    /// Rows encoded where they were produced (described RowBinary rows) make the blocks typed rows
    /// make: the same values and suffixes, the columns named in table order, and a row with
    /// another set of columns starts a block of its own.
    #[test]
    fn rows_encoded_at_the_producer_make_the_blocks_typed_rows_make() {
        use crate::encoded_row::EncodedRows;
        let (cfg, sink, plan) = replacing();
        let mut producer = plan.rowbinary().unwrap();
        fn encode<T: Serialize>(producer: &mut RowBinaryEncoder, row: &T) -> EncodedRow {
            let mut rows = EncodedRows::default();
            let at = rows.push_with(|buf| producer.encode_described(row, buf).map_err(|e| e.to_string()));
            rows.finish().take(at)
        }
        let typed = [change(None, Some(R { k: 1, v: 2 })), change(Some(R { k: 3, v: 4 }), None)];
        let encoded: Vec<Change<Key, EncodedRow>> = typed
            .iter()
            .map(|c| Change {
                key: c.key.clone(),
                before: c.before.as_ref().map(|r| encode(&mut producer, r)),
                after: c.after.as_ref().map(|r| encode(&mut producer, r)),
            })
            .collect();
        let mut by_type = ClickHouseEncoder::<R>::new(&sink, &cfg, &plan);
        let mut by_bytes = ClickHouseEncoder::<EncodedRow>::new(&sink, &cfg, &plan);
        let (mut a, mut b) = (by_type.output(), by_bytes.output());
        by_type.encode(7, &typed, &mut a).unwrap();
        by_bytes.encode(7, &encoded, &mut b).unwrap();
        assert_eq!(b.current, a.current);

        // A map row without `v`: a block of its own, naming `k` and the sink's columns.
        let partial = encode(&mut producer, &std::collections::BTreeMap::from([("k", 5u32)]));
        let c = Change { key: Key::from_bytes(b"5".to_vec()), before: None, after: Some(partial) };
        by_bytes.encode(8, &[c], &mut b).unwrap();
        assert_eq!(b.done.len(), 1);
        assert_eq!(b.current.sql, "INSERT INTO `db`.`t` (`k`, `ver`, `del`) FORMAT RowBinary");
        assert_eq!(b.current.data, [&5u32.to_le_bytes()[..], &8u64.to_le_bytes(), &[0]].concat());

        // A row that did not fit its column at the producer is reported with its key.
        let bad = encode(&mut producer, &std::collections::BTreeMap::from([("k", -1i64)]));
        let c = Change { key: Key::from_bytes(b"9".to_vec()), before: None, after: Some(bad) };
        let e = by_bytes.encode(9, &[c], &mut b).unwrap_err().to_string();
        assert!(e.contains("with key") && e.contains("column `k` (UInt32): -1 is out of range"), "{e}");

        // A JSON-mode encoder (the table was altered since the rows were encoded) refuses them.
        let json_plan = TablePlan {
            table: table("MergeTree ORDER BY k", &[("k", "UInt32", true), ("v", "Map(String, UInt32)", false)]),
            mode: Mode::Plain,
            timezone: "UTC".into(),
        };
        let mut json = ClickHouseEncoder::<EncodedRow>::new(&sink, &cfg, &json_plan);
        let mut out = json.output();
        let e = json.encode(1, &encoded[..1], &mut out).unwrap_err().to_string();
        assert!(e.contains("columns have changed"), "{e}");
    }
}
