//! Packed rows into Arrow arrays: one typed builder per column, each row's values appended
//! column by column straight from its bytes (no per-row allocation, no field names, no parsing).
//! Pure, no I/O.
//!
//! A [`PackedColumns`] builds all of a layout's columns ([`PackedColumns::all`]): a batch of rows
//! to write. Text columns are built as bytes and checked as UTF-8 once per array. A packed row
//! that does not match its layout (truncated or overlong) is an error, and the rows pushed since
//! the last [`finish`](PackedColumns::finish) are dropped with it. Each batch's builders start
//! with the previous batch's room.

use super::packed::{Kind, PackedColumn, PackedLayout};
use crate::error::{Error, Result};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, Int8Builder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::{DataType, TimeUnit};
use std::sync::Arc;

/// One column's builder.
enum Builder {
    Bool(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder),
    Text(BinaryBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

/// Reads a packed row's values in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(malformed)?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    #[inline]
    fn text(&mut self) -> Result<&'a [u8]> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }
}

fn malformed() -> Error {
    Error::encode("a packed row does not match the table's columns (it is truncated or too long)")
}

impl Builder {
    /// An empty builder with room for `rows` values and, for text, `bytes` bytes of them.
    fn with_capacity(column: &PackedColumn, rows: usize, bytes: usize) -> Builder {
        match column.kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Int8 => Builder::Int8(Int8Builder::with_capacity(rows)),
            Kind::Int16 => Builder::Int16(Int16Builder::with_capacity(rows)),
            Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(rows)),
            Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            Kind::Float32 => Builder::Float32(Float32Builder::with_capacity(rows)),
            Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
            Kind::Decimal { .. } => Builder::Decimal(Decimal128Builder::with_capacity(rows)),
            Kind::Utf8 => Builder::Text(BinaryBuilder::with_capacity(rows, bytes)),
            Kind::Date32 => Builder::Date32(Date32Builder::with_capacity(rows)),
            Kind::TimestampMicros => Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows)),
        }
    }

    /// Bytes of text values appended since the last finish (0 for other columns).
    fn text_bytes(&self) -> usize {
        match self {
            Builder::Text(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    #[inline]
    fn append(&mut self, r: &mut Reader<'_>) -> Result<()> {
        match self {
            Builder::Bool(b) => b.append_value(r.array::<1>()?[0] != 0),
            Builder::Int8(b) => b.append_value(i8::from_le_bytes(r.array()?)),
            Builder::Int16(b) => b.append_value(i16::from_le_bytes(r.array()?)),
            Builder::Int32(b) => b.append_value(i32::from_le_bytes(r.array()?)),
            Builder::Int64(b) => b.append_value(i64::from_le_bytes(r.array()?)),
            Builder::Float32(b) => b.append_value(f32::from_le_bytes(r.array()?)),
            Builder::Float64(b) => b.append_value(f64::from_le_bytes(r.array()?)),
            Builder::Decimal(b) => b.append_value(i128::from_le_bytes(r.array()?)),
            Builder::Text(b) => b.append_value(r.text()?),
            Builder::Date32(b) => b.append_value(i32::from_le_bytes(r.array()?)),
            Builder::Timestamp(b) => b.append_value(i64::from_le_bytes(r.array()?)),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int8(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Date32(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    /// The array built so far, of exactly the column's Arrow type; the builder starts over.
    fn finish(&mut self, column: &PackedColumn) -> Result<ArrayRef> {
        let bad = |e: arrow_schema::ArrowError| Error::encode(format!("column `{}`: {e}", column.name));
        Ok(match (self, &column.data_type) {
            (Builder::Bool(b), _) => Arc::new(b.finish()),
            (Builder::Int8(b), _) => Arc::new(b.finish()),
            (Builder::Int16(b), _) => Arc::new(b.finish()),
            (Builder::Int32(b), _) => Arc::new(b.finish()),
            (Builder::Int64(b), _) => Arc::new(b.finish()),
            (Builder::Float32(b), _) => Arc::new(b.finish()),
            (Builder::Float64(b), _) => Arc::new(b.finish()),
            (Builder::Decimal(b), DataType::Decimal128(p, s)) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s).map_err(bad)?)
            }
            (Builder::Text(b), _) => Arc::new(StringArray::try_from_binary(b.finish()).map_err(bad)?),
            (Builder::Date32(b), _) => Arc::new(b.finish()),
            (Builder::Timestamp(b), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
                Arc::new(b.finish().with_timezone_opt(tz.clone()))
            }
            (_, ty) => return Err(Error::encode(format!("column `{}`: no builder for {ty}", column.name))),
        })
    }
}

/// Builds Arrow arrays of packed rows' columns (see the [module docs](self)).
pub struct PackedColumns {
    layout: Arc<PackedLayout>,
    /// A builder for each column, in the table's order.
    builders: Vec<Builder>,
    rows: usize,
}

impl PackedColumns {
    /// Builds every column of `layout`, in the table's order.
    pub fn all(layout: Arc<PackedLayout>) -> PackedColumns {
        let builders = layout.columns().iter().map(|c| Builder::with_capacity(c, 0, 0)).collect();
        PackedColumns { layout, builders, rows: 0 }
    }

    /// Rows pushed since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row's values (a packed row's [`body`](PackedLayout::body)).
    #[inline]
    pub fn push(&mut self, body: &[u8]) -> Result<()> {
        let r = self.push_values(body);
        if r.is_err() {
            // A malformed row may have filled some columns and not others.
            self.reset();
        } else {
            self.rows += 1;
        }
        r
    }

    fn push_values(&mut self, body: &[u8]) -> Result<()> {
        let mut r = Reader { bytes: body, at: 0 };
        for (c, b) in self.layout.columns().iter().zip(self.builders.iter_mut()) {
            let present = !c.nullable || r.array::<1>()?[0] != 0;
            if present {
                b.append(&mut r)?;
            } else {
                b.append_null();
            }
        }
        if r.at != body.len() {
            return Err(malformed());
        }
        Ok(())
    }

    /// The arrays of the columns, holding the rows pushed since the last call; the builders
    /// start over.
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>> {
        let rows = std::mem::take(&mut self.rows);
        let columns = self.layout.columns();
        let mut out = Vec::with_capacity(columns.len());
        for (c, b) in columns.iter().zip(self.builders.iter_mut()) {
            // The next batch is most likely sized like this one: its builder starts with this
            // one's room, instead of growing (and copying) its buffers from nothing.
            let next = Builder::with_capacity(c, rows, b.text_bytes());
            let array = std::mem::replace(b, next).finish(c)?;
            if !c.nullable && array.null_count() > 0 {
                return Err(Error::encode(format!("column `{}` is not nullable", c.name)));
            }
            out.push(array);
        }
        Ok(out)
    }

    fn reset(&mut self) {
        let columns = self.layout.columns();
        for (c, b) in columns.iter().zip(self.builders.iter_mut()) {
            *b = Builder::with_capacity(c, 0, 0);
        }
        self.rows = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::packed::PackedEncoder;
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_schema::{Field, Schema};
    use serde_json::json;

    fn layout() -> Arc<PackedLayout> {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true),
        ]);
        Arc::new(PackedLayout::new(&schema).unwrap())
    }

    fn packed(rows: &[serde_json::Value]) -> Vec<Vec<u8>> {
        let mut e = PackedEncoder::new(layout());
        rows.iter()
            .map(|r| {
                let mut out = Vec::new();
                e.encode(r, &mut out).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn all_columns_of_exactly_the_tables_types() {
        let l = layout();
        let rows = packed(&[json!({"id": 1, "n": "é", "t": 5}), json!({"id": 2})]);
        let mut c = PackedColumns::all(Arc::clone(&l));
        for r in &rows {
            c.push(l.body(r).unwrap()).unwrap();
        }
        assert_eq!(c.rows(), 2);
        let arrays = c.finish().unwrap();
        assert_eq!(arrays[0].as_primitive::<Int64Type>().values().to_vec(), vec![1, 2]);
        assert_eq!(arrays[1].as_string::<i32>().value(0), "é");
        assert!(arrays[1].is_null(1));
        assert_eq!(arrays[2].data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
        assert_eq!(arrays[2].as_primitive::<TimestampMicrosecondType>().value(0), 5);
        assert_eq!(c.rows(), 0);
        assert_eq!(c.finish().unwrap()[0].len(), 0);
    }

    #[test]
    fn a_malformed_row_is_an_error_and_drops_the_partial_rows() {
        let l = layout();
        let rows = packed(&[json!({"id": 1, "n": "abc"})]);
        let body = l.body(&rows[0]).unwrap();
        let mut c = PackedColumns::all(Arc::clone(&l));
        c.push(body).unwrap();
        for bad in [&body[..body.len() - 1], &[body, &[0]].concat()[..], &[][..]] {
            assert_eq!(c.push(bad).unwrap_err().kind(), crate::ErrorKind::Encode);
            assert_eq!(c.rows(), 0);
        }
        c.push(body).unwrap();
        assert_eq!(c.finish().unwrap()[0].len(), 1);
    }

    /// A row of every packable kind but the narrow integers, in the forms both ways accept.
    #[derive(Debug, Clone, serde::Serialize)]
    struct Wide {
        id: i64,
        n: Option<String>,
        price: Option<String>,
        day: Option<String>,
        at: Option<i64>,
        f: f64,
        ok: Option<bool>,
        small: i32,
    }

    fn wide_schema() -> arrow_schema::SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(12, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("f", DataType::Float64, false),
            Field::new("ok", DataType::Boolean, true),
            Field::new("small", DataType::Int32, false),
        ]))
    }

    fn wide() -> impl proptest::strategy::Strategy<Value = Wide> {
        use proptest::prelude::*;
        let price = (-99_999_999_999i64..99_999_999_999).prop_map(|c| {
            let sign = if c < 0 { "-" } else { "" };
            format!("{sign}{}.{:02}", c.unsigned_abs() / 100, c.unsigned_abs() % 100)
        });
        // Years 1000–9999: four digits, as dates are written.
        let day = (-354_285i64..2_932_896).prop_map(|d| {
            let (y, m, dd) = crate::encode::civil::civil_from_days(d);
            format!("{y:04}-{m:02}-{dd:02}")
        });
        (
            any::<i64>(),
            proptest::option::of(".{0,12}"),
            proptest::option::of(price),
            proptest::option::of(day),
            proptest::option::of(-(1i64 << 50)..(1i64 << 50)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            proptest::option::of(any::<bool>()),
            any::<i32>(),
        )
            .prop_map(|(id, n, price, day, at, f, ok, small)| Wide { id, n, price, day, at, f, ok, small })
    }

    proptest::proptest! {
        /// Packed rows built into arrays equal what `arrow-json` (an independent implementation
        /// of the same forms) builds from the same rows.
        #[test]
        fn packed_arrays_equal_arrow_jsons(rows in proptest::collection::vec(wide(), 1..40)) {
            let schema = wide_schema();
            let layout = Arc::new(PackedLayout::new(&schema).unwrap());
            let mut e = PackedEncoder::new(Arc::clone(&layout));
            let mut c = PackedColumns::all(Arc::clone(&layout));
            let mut buf = Vec::new();
            for r in &rows {
                buf.clear();
                e.encode(r, &mut buf).unwrap();
                c.push(layout.body(&buf).unwrap()).unwrap();
            }
            let packed = arrow_array::RecordBatch::try_new(Arc::clone(&schema), c.finish().unwrap()).unwrap();
            let json = super::super::RowBatcher::new(schema).unwrap().batch(&rows).unwrap().unwrap();
            proptest::prop_assert_eq!(packed, json);
        }
    }
}
