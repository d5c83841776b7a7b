//! The lakehouse tables' encoder: one time's per-key changes → Arrow record batches of the
//! table's schema, plus, for an upsert sink, the primary keys the changes delete. Pure, no I/O;
//! the Delta Lake and Iceberg writers ship its batches as Parquet data files.
//!
//! ```text
//!   where rows are produced:  row ──► PackedEncoder ──► packed row (the table's columns, in order)
//!                      (upserts) └──► KeyEncoder::row_key ──► key (the key columns, packed)
//!                                                          │ exchanged, buffered, consolidated
//!   the writer's encoder:     append-only: the envelope's rows ─┐
//!                             upsert: new rows ─────────────────┴► PackedColumns ──► RecordBatch
//!                                     deleted rows ──────────────► their keys
//! ```
//!
//! * [`packed`] — [`PackedEncoder`]: a row's values converted to its table's Arrow column types
//!   and packed in column order (the forms a column's value may take are listed there);
//!   [`ArrowTable::row_encoder`] is the sink's encoder where rows are produced.
//! * [`columns`] — [`PackedColumns`]: packed rows appended to typed Arrow builders, all columns
//!   or only the key columns.
//! * [`keys`] — [`KeyEncoder`]: primary keys as bytes, packed from a row's fields where it is
//!   produced, or from key columns' arrays (written batches, Parquet files read back).
//! * [`rows`] — [`RowBatcher`]: rows through `arrow-json`, for a table with a column of a type
//!   rows cannot be packed for (nested types); the sink then moves rows as JSON.
//!
//! A typed row (the dead-letter policy keeps rows typed) is packed on the writer's worker by the
//! same encoder, so both ways give the same arrays. An upsert sink keys every row by its key
//! columns packed where the row is produced ([`KeyEncoder::row_key`]); its writer learns where
//! each new row lands (data file and position) only when it writes the batch, and takes the keys
//! of the rows it wrote from the written arrays through [`ArrowEncoder::keys`], which packs them
//! to the same bytes.
//!
//! ```
//! use arrow_schema::{DataType, Field, Schema};
//! use differential_sinks::encode::arrow::{ArrowChanges, ArrowEncoder, ArrowTable};
//! use differential_sinks::encode::ChangeEncoder;
//! use differential_sinks::{Change, SinkSettings};
//! use std::sync::Arc;
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
//! let table = ArrowTable { schema, name: "t".into() };
//! let sink = SinkSettings::new("s"); // append-only
//! let mut encoder = ArrowEncoder::<serde_json::Value>::new(&sink, &table).unwrap();
//! let mut out = ArrowChanges::default();
//! let key = differential_sinks::key::Key::from_bytes(b"1".to_vec());
//! encoder.encode(0, &[Change { key, before: None, after: Some(serde_json::json!({"id": 1})) }], &mut out).unwrap();
//! assert_eq!(out.rows(), 1);
//! ```

pub mod columns;
pub mod keys;
pub mod packed;
pub mod rows;

pub use columns::PackedColumns;
pub use keys::{upsert_keys, KeyEncoder, PackedKeys};
pub use packed::{PackedEncoder, PackedLayout};
pub use rows::RowBatcher;

use crate::encode::ChangeEncoder;
use crate::encoded_row::{json_encoder, prefetch, EncodedRow, RowEncoder, PREFETCH_AHEAD};
use crate::envelope::{Emission, Format};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use differential_sinks_operators::Change;
use serde::Serialize;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// What the encoder needs from a table: its Arrow schema as its writer expects batches, and its
/// name for messages.
#[derive(Clone, Debug)]
pub struct ArrowTable {
    /// The table's columns as Arrow fields.
    pub schema: SchemaRef,
    /// The table, as messages name it (a location, `namespace.table`).
    pub name: String,
}

impl ArrowTable {
    /// What the table's rows are encoded into where they are produced: packed for its columns
    /// ([`packed`]) when every column's type can be packed, else JSON. [`ArrowEncoder::new`]
    /// decides the same way for the same schema, and a packed row says which columns it was
    /// packed for, so a row packed for other columns is refused rather than misread.
    pub fn row_encoder<V: Serialize + 'static>(&self) -> RowEncoder<V> {
        match PackedLayout::new(&self.schema) {
            Some(layout) => {
                let mut encoder = PackedEncoder::new(Arc::new(layout));
                Box::new(move |row: &V, out: &mut Vec<u8>| encoder.encode(row, out))
            }
            None => json_encoder(),
        }
    }
}

/// One time's changes, encoded: the rows to write, and the keys an upsert deletes.
#[derive(Clone, Debug, Default)]
pub struct ArrowChanges {
    /// The rows to write (append-only: the envelope's rows; upsert: every key's new row), one
    /// batch per encoded chunk.
    pub batches: Vec<RecordBatch>,
    /// Upserts: the keys (packed, see [`KeyEncoder`]) whose rows are deleted.
    pub deleted: PackedKeys,
}

impl ArrowChanges {
    /// Rows in [`batches`](Self::batches).
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

/// Encodes a lakehouse sink's changes as Arrow (see the [module docs](self)).
pub struct ArrowEncoder<V> {
    format: Format,
    schema: SchemaRef,
    rows: Rows,
    /// Upserts: the primary key's encoder; `None` for append-only.
    keys: Option<KeyEncoder>,
    _row: PhantomData<fn(&V)>,
}

/// How rows become arrays.
enum Rows {
    /// Packed rows into typed builders (every column's type can be packed).
    Packed(Box<Packed>),
    /// Rows through `arrow-json` (a column of a type rows cannot be packed for).
    Json(RowBatcher),
}

struct Packed {
    encoder: PackedEncoder,
    columns: PackedColumns,
    /// A typed row's packed bytes.
    scratch: Vec<u8>,
}

impl<V> ArrowEncoder<V> {
    /// The encoder of `sink`'s format for batches of `table`'s schema; an upsert sink's primary
    /// key must name columns of the table.
    pub fn new(sink: &SinkSettings, table: &ArrowTable) -> Result<Self> {
        let keys = upsert_keys(sink, &table.schema, &table.name)?;
        let rows = match PackedLayout::new(&table.schema) {
            Some(layout) => {
                let layout = Arc::new(layout);
                Rows::Packed(Box::new(Packed {
                    encoder: PackedEncoder::new(Arc::clone(&layout)),
                    columns: PackedColumns::all(Arc::clone(&layout)),
                    scratch: Vec::new(),
                }))
            }
            None => Rows::Json(RowBatcher::new(Arc::clone(&table.schema))?),
        };
        Ok(ArrowEncoder {
            format: sink.format().clone(),
            schema: Arc::clone(&table.schema),
            rows,
            keys,
            _row: PhantomData,
        })
    }

    /// The Arrow schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Upserts: the primary key's encoder (`None` for append-only), for the keys of written rows.
    pub fn keys(&self) -> Option<&KeyEncoder> {
        self.keys.as_ref()
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for ArrowEncoder<V> {
    type Output = ArrowChanges;

    /// Appends one batch of new rows (if any) and, for upserts, the deleted keys.
    fn encode(&mut self, _time: u64, changes: &[Change<Key, V>], out: &mut ArrowChanges) -> Result<()> {
        let ArrowEncoder { format, schema, rows: how, keys, .. } = self;
        let mut rows: Vec<&V> = Vec::with_capacity(changes.len());
        match keys {
            Some(_) => {
                // Every key, the deleted ones' included, must be the table's key packed from
                // the row ([`KeyEncoder::row_key`]): a key that could not be packed names why.
                let deleted = out.deleted.len();
                for change in changes {
                    let key = change.key.bytes();
                    match (&change.before, &change.after) {
                        (_, Some(after)) => {
                            key?;
                            rows.push(after)
                        }
                        (Some(_), None) => out.deleted.push(key?),
                        (None, None) => {}
                    }
                }
                if rows.is_empty() && out.deleted.len() == deleted {
                    return Ok(());
                }
            }
            None => {
                for change in changes {
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row);
                        }
                    })?;
                }
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        match how {
            Rows::Json(batcher) => out.batches.extend(batcher.batch(&rows)?),
            Rows::Packed(p) => {
                for (i, &row) in rows.iter().enumerate() {
                    prefetch(rows.get(i + PREFETCH_AHEAD).copied());
                    p.columns.push(body_of(row, &mut p.encoder, &mut p.scratch)?)?;
                }
                let arrays = p.columns.finish()?;
                let batch = RecordBatch::try_new(Arc::clone(schema), arrays)
                    .map_err(|e| Error::encode(format!("a batch does not fit the table's schema: {e}")))?;
                out.batches.push(batch);
            }
        }
        Ok(())
    }
}

/// A row's packed values: an encoded row's own (checked against the layout), or a typed row's,
/// packed into `scratch`.
#[inline]
fn body_of<'a, V: Serialize + 'static>(
    row: &'a V,
    encoder: &mut PackedEncoder,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8]> {
    let bytes: &[u8] = match (row as &dyn Any).downcast_ref::<EncodedRow>() {
        Some(encoded) => encoded.encoded().map_err(|e| does_not_fit(e.message()))?,
        None => {
            scratch.clear();
            encoder.encode(row, scratch).map_err(does_not_fit)?;
            scratch
        }
    };
    encoder.layout().body(bytes)
}

fn does_not_fit(reason: impl std::fmt::Display) -> Error {
    Error::encode(format!("a row does not fit the table's schema: {reason}"))
}

/// What one time's changes of an upsert sink write: the new rows (inserts, and the new values of
/// updates), and the rows whose keys are deleted (their last values, to find the keys by).
pub fn split_changes<K, V>(changes: &[Change<K, V>]) -> (Vec<&V>, Vec<&V>) {
    let mut rows = Vec::with_capacity(changes.len());
    let mut gone = Vec::new();
    for change in changes {
        match (&change.before, &change.after) {
            (_, Some(after)) => rows.push(after),
            (Some(before), None) => gone.push(before),
            (None, None) => {}
        }
    }
    (rows, gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_schema::{DataType, Field, Schema};
    use serde_json::{json, Value};

    fn table() -> ArrowTable {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("n", DataType::Utf8, true)]);
        ArrowTable { schema: Arc::new(schema), name: "t".into() }
    }

    fn change(id: i64, before: Option<&str>, after: Option<&str>) -> Change<Key, Value> {
        let row = |n: &str| json!({"id": id, "n": n});
        Change { key: Key::from_bytes(id.to_string().into_bytes()), before: before.map(row), after: after.map(row) }
    }

    fn ids(out: &ArrowChanges) -> Vec<i64> {
        out.batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    #[test]
    fn append_only_writes_the_envelopes_rows() {
        let sink = SinkSettings::for_test(Format::AppendOnly { force: false }, &[], None);
        let mut e = ArrowEncoder::<Value>::new(&sink, &table()).unwrap();
        let mut out = ArrowChanges::default();
        e.encode(1, &[change(1, None, Some("a")), change(2, None, Some("b"))], &mut out).unwrap();
        e.encode(1, &[change(3, None, Some("c"))], &mut out).unwrap();
        assert_eq!((out.batches.len(), out.rows(), ids(&out)), (2, 3, vec![1, 2, 3]));
        assert!(out.deleted.is_empty());
        assert!(e.keys().is_none());
    }

    #[test]
    fn upserts_write_new_rows_and_name_deleted_keys() {
        let sink = SinkSettings::for_test(Format::Upsert, &["id"], None);
        let mut e = ArrowEncoder::<Value>::new(&sink, &table()).unwrap();
        let mut out = ArrowChanges::default();
        let changes = [change(1, None, Some("a")), change(2, Some("b"), Some("c")), change(3, Some("d"), None)];
        e.encode(1, &changes, &mut out).unwrap();
        assert_eq!(ids(&out), vec![1, 2]);
        // A deleted key is the change's key, as the sink keyed the row where it was produced.
        assert_eq!(out.deleted.iter().collect::<Vec<_>>(), vec![b"3".as_slice()]);
    }

    #[test]
    fn a_row_that_does_not_fit_is_an_encode_error() {
        let sink = SinkSettings::for_test(Format::AppendOnly { force: false }, &[], None);
        let mut e = ArrowEncoder::<Value>::new(&sink, &table()).unwrap();
        let bad = Change { key: Key::from_bytes(b"x".to_vec()), before: None, after: Some(json!({"id": "x"})) };
        let err = e.encode(1, &[bad], &mut ArrowChanges::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Encode);
        // The encoder goes on after the error.
        let mut out = ArrowChanges::default();
        e.encode(1, &[change(4, None, Some("d"))], &mut out).unwrap();
        assert_eq!(ids(&out), vec![4]);
    }

    #[test]
    fn an_upsert_key_must_name_table_columns() {
        let sink = SinkSettings::for_test(Format::Upsert, &["nope"], None);
        let err = ArrowEncoder::<Value>::new(&sink, &table()).err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Schema);
    }
}
