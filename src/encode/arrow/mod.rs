//! The lakehouse tables' encoder: one time's per-key changes → Arrow record batches of the
//! table's schema, plus, for an upsert sink, the primary keys the changes delete. Pure, no I/O;
//! the Delta Lake and Iceberg writers ship its batches as Parquet data files.
//!
//! ```text
//!   changes of a time ── append-only: the envelope's rows ──► RowBatcher ──► RecordBatch
//!                      └─ upsert: new rows ──────────────────► RowBatcher ──► RecordBatch
//!                                 deleted keys' last rows ───► KeyEncoder ──► deleted keys
//! ```
//!
//! * [`rows`] — [`RowBatcher`]: rows into batches of one Arrow schema (the forms a column's value
//!   may take are listed there).
//! * [`keys`] — [`KeyEncoder`]: primary keys as comparable bytes, for the upserts' key index.
//!
//! An upsert sink's writer learns where each new row lands (data file and position) only when it
//! writes the batch; it takes the keys of the rows it wrote from [`ArrowEncoder::keys`], the same
//! encoder that encoded the deleted keys.
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

pub mod keys;
pub mod rows;

pub use keys::{upsert_keys, KeyEncoder};
pub use rows::RowBatcher;

use crate::encode::ChangeEncoder;
use crate::envelope::{Emission, Format};
use crate::error::Result;
use crate::key::Key;
use crate::settings::SinkSettings;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use differential_sinks_operators::Change;
use serde::Serialize;
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

/// One time's changes, encoded: the rows to write, and the keys an upsert deletes.
#[derive(Clone, Debug, Default)]
pub struct ArrowChanges {
    /// The rows to write (append-only: the envelope's rows; upsert: every key's new row), one
    /// batch per encoded chunk.
    pub batches: Vec<RecordBatch>,
    /// Upserts: the keys (see [`KeyEncoder`]) whose rows are deleted.
    pub deleted: Vec<Vec<u8>>,
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
    batcher: RowBatcher,
    /// Upserts: the primary key's encoder; `None` for append-only.
    keys: Option<KeyEncoder>,
    _row: PhantomData<fn(&V)>,
}

impl<V> ArrowEncoder<V> {
    /// The encoder of `sink`'s format for batches of `table`'s schema; an upsert sink's primary
    /// key must name columns of the table.
    pub fn new(sink: &SinkSettings, table: &ArrowTable) -> Result<Self> {
        Ok(ArrowEncoder {
            format: sink.format().clone(),
            batcher: RowBatcher::new(Arc::clone(&table.schema))?,
            keys: upsert_keys(sink, &table.schema, &table.name)?,
            _row: PhantomData,
        })
    }

    /// The Arrow schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        self.batcher.schema()
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
        let ArrowEncoder { format, batcher, keys, .. } = self;
        let rows = match keys {
            Some(keys) => {
                let (rows, gone) = split_changes(changes);
                out.deleted.extend(keys.keys_of_rows(batcher, &gone)?);
                rows
            }
            None => {
                let mut rows: Vec<&V> = Vec::with_capacity(changes.len());
                for change in changes {
                    format.emit(change, |e| {
                        if let Emission::Row { row, .. } = e {
                            rows.push(row);
                        }
                    })?;
                }
                rows
            }
        };
        out.batches.extend(batcher.batch(&rows)?);
        Ok(())
    }
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
        let keys = e.keys().unwrap();
        let written = keys.encode_batch(&out.batches[0]).unwrap();
        let deleted_row = json!({"id": 3, "n": null});
        let mut batcher = RowBatcher::new(Arc::clone(e.schema())).unwrap();
        assert_eq!(out.deleted, keys.keys_of_rows(&mut batcher, &[&deleted_row]).unwrap());
        assert_ne!(out.deleted[0], written[0]);
        assert_ne!(out.deleted[0], written[1]);
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
