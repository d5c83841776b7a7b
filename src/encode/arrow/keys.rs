//! Primary keys of a lakehouse table's rows as bytes: the key columns' values packed as
//! [`packed`](super::packed) packs them (in the declared key order, without a fingerprint).
//! Pure, no I/O.
//!
//! The same bytes come out of two places: where a row is produced, its key is packed from the
//! row's fields ([`KeyEncoder::row_key`]) — that is the key the sink routes, groups and
//! deletes by — and in the writer and at start, keys are packed from the key columns' arrays
//! ([`KeyEncoder::encode`]), of the batches a writer wrote or of Parquet files read back. So an
//! index of the keys read from a table matches the keys of later changes, and a key read back
//! from a data file routes to the worker its changes go to.

use super::packed::{Kind, PackedEncoder, PackedLayout};
use crate::encoded_row::RowEncoder;
use crate::envelope::Format;
use crate::error::{Error, Result};
use crate::settings::SinkSettings;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use serde::Serialize;
use std::sync::Arc;

/// The primary-key columns of a table's rows as bytes (see the [module docs](self)).
#[derive(Clone)]
pub struct KeyEncoder {
    names: Vec<String>,
    indices: Vec<usize>,
    types: Vec<DataType>,
    layout: Arc<PackedLayout>,
}

impl KeyEncoder {
    /// An encoder for `key` columns of rows of `schema`.
    pub fn new(schema: &SchemaRef, key: &[String], table: &str) -> Result<Self> {
        if key.is_empty() {
            return Err(Error::config(
                "option `type` = `upsert`: the sink finds a key's row by the primary key's columns — declare them with \
                 `primary_key` (a key function names no columns the table could be searched by)",
            ));
        }
        let mut indices = Vec::with_capacity(key.len());
        for name in key {
            let Ok(i) = schema.index_of(name) else {
                return Err(Error::schema(format!(
                    "option `primary_key`: column `{name}` is not a column of the table `{table}`; its columns are {}",
                    schema.fields().iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ")
                )));
            };
            indices.push(i);
        }
        let types: Vec<DataType> = indices.iter().map(|i| schema.field(*i).data_type().clone()).collect();
        let layout = Arc::new(PackedLayout::of_key(schema, key)?);
        Ok(KeyEncoder { names: key.to_vec(), indices, types, layout })
    }

    /// The key of every row of `batch`, a batch of the table's schema.
    pub fn encode_batch(&self, batch: &RecordBatch) -> Result<PackedKeys> {
        let columns: Vec<ArrayRef> = self.indices.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        self.encode(columns)
    }

    /// The keys of rows given as the key columns, in key order; they are cast to the table's
    /// types first (a Parquet file may store a column in a narrower or differently labelled
    /// type than the table's Arrow schema).
    pub fn encode(&self, columns: Vec<ArrayRef>) -> Result<PackedKeys> {
        let rows = columns.first().map_or(0, |c| c.len());
        let mut cast = Vec::with_capacity(columns.len());
        for (column, ty) in columns.into_iter().zip(&self.types) {
            let column = if column.data_type() == ty {
                column
            } else {
                arrow_cast::cast(&column, ty).map_err(|e| Error::schema(format!("a key column cannot be read: {e}")))?
            };
            if column.len() != rows {
                return Err(Error::schema("the key columns have different lengths"));
            }
            cast.push(column);
        }
        // Each key's length first, so that the keys are packed into one buffer, column by column.
        let mut at = vec![0usize; rows];
        for (column, c) in cast.iter().zip(self.layout.columns()) {
            add_lengths(column, c.kind, c.nullable, &mut at)
                .map_err(|e| Error::schema(format!("key column `{}`: {e}", c.name)))?;
        }
        let mut ends = Vec::with_capacity(rows);
        let mut total = 0usize;
        for len in at.iter_mut() {
            let start = total;
            total += *len;
            ends.push(total);
            *len = start;
        }
        let mut bytes = vec![0u8; total];
        for (column, c) in cast.iter().zip(self.layout.columns()) {
            let mut out = Cursor { bytes: &mut bytes, at: &mut at };
            pack_column(column, c.kind, c.nullable, &mut out)
                .map_err(|e| Error::schema(format!("key column `{}`: {e}", c.name)))?;
        }
        Ok(PackedKeys { bytes, ends })
    }

    /// The key columns' positions in the table's schema, in key order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The key columns' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Packs a row's key from its fields, as [`encode`](Self::encode) packs it from arrays: what
    /// the sink keys a table's rows by where they are produced.
    pub fn row_key<V: Serialize + 'static>(&self) -> RowEncoder<V> {
        let mut encoder = PackedEncoder::new(Arc::clone(&self.layout));
        Box::new(move |row: &V, out: &mut Vec<u8>| encoder.encode_values(row, out))
    }
}

/// Keys packed one after the other in one buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedKeys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PackedKeys {
    /// Appends a key.
    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    /// Appends `other`'s keys.
    pub fn append(&mut self, other: &PackedKeys) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| base + e));
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, e)| &self.bytes[s..*e])
    }
}

/// Where each row's key is being written in a [`PackedKeys`] buffer.
struct Cursor<'a> {
    bytes: &'a mut [u8],
    at: &'a mut [usize],
}

impl Cursor<'_> {
    #[inline]
    fn put(&mut self, row: usize, value: &[u8]) {
        let at = self.at[row];
        self.bytes[at..at + value.len()].copy_from_slice(value);
        self.at[row] = at + value.len();
    }
}

/// Adds each row's length of `column`'s value (and null byte) to `lengths`.
fn add_lengths(
    column: &dyn Array,
    kind: Kind,
    nullable: bool,
    lengths: &mut [usize],
) -> std::result::Result<(), String> {
    let null_byte = usize::from(nullable);
    match kind.width() {
        Some(width) => {
            for (i, len) in lengths.iter_mut().enumerate() {
                *len += null_byte + if column.is_null(i) { 0 } else { width };
            }
        }
        None => {
            let array = column.as_string_opt::<i32>().ok_or_else(|| wrong(column))?;
            for (i, len) in lengths.iter_mut().enumerate() {
                *len += null_byte + if array.is_null(i) { 0 } else { 4 + array.value(i).len() };
            }
        }
    }
    Ok(())
}

fn wrong(column: &dyn Array) -> String {
    format!("the array is {}, not the column's type", column.data_type())
}

/// Writes each row's value of `column` into its key.
fn pack_column(
    column: &dyn Array,
    kind: Kind,
    nullable: bool,
    out: &mut Cursor<'_>,
) -> std::result::Result<(), String> {
    // Each row: its null byte (nullable columns), then `$put` of its value.
    macro_rules! each {
        ($array:expr, |$i:ident, $v:ident| $put:expr) => {{
            let array = $array;
            for $i in 0..array.len() {
                if array.is_null($i) {
                    if !nullable {
                        return Err("a null in a column that is not nullable".into());
                    }
                    out.put($i, &[0]);
                    continue;
                }
                if nullable {
                    out.put($i, &[1]);
                }
                let $v = array.value($i);
                $put;
            }
        }};
    }
    macro_rules! le {
        ($ty:ty) => {
            each!(column.as_primitive_opt::<$ty>().ok_or_else(|| wrong(column))?, |i, v| out.put(i, &v.to_le_bytes()))
        };
    }
    match kind {
        Kind::Bool => each!(column.as_boolean_opt().ok_or_else(|| wrong(column))?, |i, v| out.put(i, &[u8::from(v)])),
        Kind::Int8 => le!(Int8Type),
        Kind::Int16 => le!(Int16Type),
        Kind::Int32 => le!(Int32Type),
        Kind::Int64 => le!(Int64Type),
        Kind::Float32 => le!(Float32Type),
        Kind::Float64 => le!(Float64Type),
        Kind::Decimal { .. } => le!(Decimal128Type),
        Kind::Date32 => le!(Date32Type),
        Kind::TimestampMicros => le!(TimestampMicrosecondType),
        Kind::Utf8 => each!(column.as_string_opt::<i32>().ok_or_else(|| wrong(column))?, |i, v| {
            out.put(i, &(v.len() as u32).to_le_bytes());
            out.put(i, v.as_bytes())
        }),
    }
    Ok(())
}

/// The key encoder of an upsert sink (`None` for append-only) over the table's Arrow schema.
pub fn upsert_keys(spec: &SinkSettings, schema: &SchemaRef, table: &str) -> Result<Option<KeyEncoder>> {
    if !matches!(spec.format(), Format::Upsert) {
        return Ok(None);
    }
    KeyEncoder::new(schema, spec.primary_key().unwrap_or_default(), table).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::arrow::{PackedColumns, PackedEncoder};
    use arrow_schema::{Field, Schema};
    use proptest::prelude::*;
    use serde_json::json;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("v", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("day", DataType::Date32, false),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("at", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("ok", DataType::Boolean, false),
            Field::new("small", DataType::Int16, true),
        ]))
    }

    const KEY: [&str; 7] = ["region", "id", "day", "amount", "at", "ok", "small"];

    fn row() -> impl Strategy<Value = serde_json::Value> {
        (
            any::<i64>(),
            proptest::option::of("\\PC{0,6}"),
            -100_000i64..100_000,
            proptest::option::of(-99_999_999_999i64..99_999_999_999),
            -1i64 << 50..1i64 << 50,
            any::<bool>(),
            proptest::option::of(any::<i16>()),
        )
            .prop_map(|(id, region, day, cents, at, ok, small)| {
                let amount = cents.map(|c| {
                    format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.unsigned_abs() / 100, c.unsigned_abs() % 100)
                });
                // Fields out of the table's order, and a field that is not a key column.
                json!({"small": small, "ok": ok, "at": at, "amount": amount, "day": day, "region": region, "id": id, "v": "x"})
            })
    }

    proptest! {
        /// A key packed from a row's fields equals the key packed from the arrays the row
        /// became, whatever the field order, nulls and text.
        #[test]
        fn row_keys_equal_array_keys(rows in proptest::collection::vec(row(), 1..40)) {
            let schema = schema();
            let key: Vec<String> = KEY.iter().map(|s| s.to_string()).collect();
            let keys = KeyEncoder::new(&schema, &key, "t").unwrap();
            let layout = Arc::new(PackedLayout::new(&schema).unwrap());
            let mut encoder = PackedEncoder::new(Arc::clone(&layout));
            let mut columns = PackedColumns::all(Arc::clone(&layout));
            let mut row_key = keys.row_key::<serde_json::Value>();
            let mut from_rows = Vec::new();
            for row in &rows {
                let mut k = Vec::new();
                row_key(row, &mut k).unwrap();
                let mut packed = Vec::new();
                encoder.encode(row, &mut packed).unwrap();
                columns.push(layout.body(&packed).unwrap()).unwrap();
                from_rows.push(k);
            }
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns.finish().unwrap()).unwrap();
            let from_arrays: Vec<Vec<u8>> = keys.encode_batch(&batch).unwrap().iter().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(from_rows, from_arrays);
        }
    }

    #[test]
    fn a_key_column_of_an_unpackable_type_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, false)]));
        let err = KeyEncoder::new(&schema, &["b".to_string()], "t").err().unwrap();
        assert!(err.to_string().contains("primary_key"), "{err}");
    }

    #[test]
    fn a_row_without_a_key_value_has_no_key() {
        let keys = KeyEncoder::new(&schema(), &["id".to_string()], "t").unwrap();
        let mut row_key = keys.row_key::<serde_json::Value>();
        let err = row_key(&json!({"v": "x"}), &mut Vec::new()).unwrap_err();
        assert!(err.contains("`id`"), "{err}");
    }
}
