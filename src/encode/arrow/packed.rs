//! Rows packed for a table's Arrow columns: the row form the lakehouse tables (Iceberg, Delta
//! Lake) take encoded where rows are produced, and what [`PackedColumns`](super::PackedColumns)
//! appends to Arrow builders column by column. Pure, no I/O.
//!
//! A packed row is a 4-byte fingerprint of the columns it was packed for (their names, types and
//! nullability; the first byte has its high bit set, so no JSON text starts the same way), then
//! every column of the table in the table's order: a nullable column starts with a byte, 0 for
//! null and 1 for a value; the value is the column's Arrow value in little-endian bytes (1 byte
//! for a boolean, 1–8 for integers and floats, 4 for a date's days, 8 for a timestamp's
//! microseconds, 16 for a decimal's unscaled `i128`), or, for text, a `u32` length and the UTF-8
//! bytes. A row is packed in the table's column order whatever the order of its fields, so two
//! rows with the same values pack to the same bytes.
//!
//! Values are converted as the library's JSON encoding would present them to the table: integer
//! columns take integers (and floats without a fraction, and integer text), float columns any
//! number (or numeric text), decimal columns numbers or exact decimal text (a digit past the
//! scale is refused, never rounded), dates `YYYY-MM-DD` text or days since the epoch, timestamps
//! RFC 3339 text (UTC when it has no offset; digits past the microsecond are dropped) or
//! microseconds since the epoch, text columns strings. A field that is not a column, a field
//! given twice, a null (or missing field) for a column that is not nullable, or a value that does
//! not fit its column is an error naming the column, and the row is not packed.
//!
//! ```
//! use arrow_schema::{DataType, Field, Schema};
//! use differential_sinks::encode::arrow::{PackedColumns, PackedEncoder, PackedLayout};
//! use std::sync::Arc;
//!
//! let schema = Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]);
//! let layout = Arc::new(PackedLayout::new(&schema).expect("columns of packable types"));
//! let mut enc = PackedEncoder::new(Arc::clone(&layout));
//! let mut row = Vec::new();
//! enc.encode(&serde_json::json!({"s": "x", "id": 7}), &mut row).unwrap();
//! let mut columns = PackedColumns::all(Arc::clone(&layout));
//! columns.push(layout.body(&row).unwrap()).unwrap();
//! assert_eq!(columns.finish().unwrap()[0].len(), 1);
//! ```

use crate::encode::civil;
use crate::encode::fields::{visit_fields, FieldVisitor, Shape};
use crate::encode::scalar::{with_scalar, Num, Scalar, TextError};
use crate::error::{Error, Result};
use arrow_schema::{DataType, Schema, TimeUnit};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The Arrow types a packed column may have (any other makes a schema unpackable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `Boolean`.
    Bool,
    /// `Int8`.
    Int8,
    /// `Int16`.
    Int16,
    /// `Int32`.
    Int32,
    /// `Int64`.
    Int64,
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `Decimal128(precision, scale)`, scale ≥ 0.
    Decimal {
        /// Digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `Utf8`.
    Utf8,
    /// `Date32`.
    Date32,
    /// `Timestamp(Microsecond, _)` (any time zone: the values are UTC instants either way).
    TimestampMicros,
}

impl Kind {
    /// The kind of an Arrow type, if it is one a packed column may have.
    pub fn of(ty: &DataType) -> Option<Kind> {
        Some(match ty {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 => Kind::Int8,
            DataType::Int16 => Kind::Int16,
            DataType::Int32 => Kind::Int32,
            DataType::Int64 => Kind::Int64,
            DataType::Float32 => Kind::Float32,
            DataType::Float64 => Kind::Float64,
            DataType::Decimal128(p, s) if *s >= 0 => Kind::Decimal { precision: *p, scale: *s as u8 },
            DataType::Utf8 => Kind::Utf8,
            DataType::Date32 => Kind::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, _) => Kind::TimestampMicros,
            _ => return None,
        })
    }

    /// The bytes of a value of this kind; `None` for text (a `u32` length, then the bytes).
    pub fn width(self) -> Option<usize> {
        match self {
            Kind::Bool | Kind::Int8 => Some(1),
            Kind::Int16 => Some(2),
            Kind::Int32 | Kind::Float32 | Kind::Date32 => Some(4),
            Kind::Int64 | Kind::Float64 | Kind::TimestampMicros => Some(8),
            Kind::Decimal { .. } => Some(16),
            Kind::Utf8 => None,
        }
    }
}

/// One column of a packed row.
#[derive(Clone, Debug)]
pub struct PackedColumn {
    /// The column's name.
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Whether it may be null.
    pub nullable: bool,
    /// The Arrow type, as the table's schema has it.
    pub data_type: DataType,
}

/// The columns rows are packed for, and their fingerprint (see the [module docs](self)).
#[derive(Debug)]
pub struct PackedLayout {
    columns: Vec<PackedColumn>,
    index: HashMap<String, usize>,
    fingerprint: [u8; 4],
    /// A layout of some columns only ([`of_key`](Self::of_key)): a row's other fields are
    /// passed over instead of refused.
    partial: bool,
}

impl PackedLayout {
    /// The layout of `schema`'s columns; `None` if a column's type cannot be packed (the rows
    /// then take the JSON way).
    pub fn new(schema: &Schema) -> Option<PackedLayout> {
        let columns = schema.fields().iter().map(|f| f.as_ref()).collect::<Vec<_>>();
        Self::of_fields(&columns, false)
    }

    /// The layout of a primary key: the columns `key` names, in that order; a row's other
    /// fields are passed over. A packed key is what [`KeyEncoder`](super::KeyEncoder) computes
    /// from the same columns' arrays (without the fingerprint). Refused when a key column is not
    /// a column of `schema` or of a type that cannot be packed.
    pub fn of_key(schema: &Schema, key: &[String]) -> Result<PackedLayout> {
        let fields = key
            .iter()
            .map(|name| schema.field_with_name(name).map_err(|_| Error::schema(format!("`{name}` is not a column"))))
            .collect::<Result<Vec<_>>>()?;
        Self::of_fields(&fields, true).ok_or_else(|| {
            Error::schema(format!(
                "option `primary_key`: a key column's type cannot be a key ({}); key columns are booleans, \
                 integers, floats, decimals, text, dates or timestamps",
                fields.iter().map(|f| format!("`{}` {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    fn of_fields(fields: &[&arrow_schema::Field], partial: bool) -> Option<PackedLayout> {
        let columns = fields
            .iter()
            .map(|f| {
                let kind = Kind::of(f.data_type())?;
                Some(PackedColumn {
                    name: f.name().clone(),
                    kind,
                    nullable: f.is_nullable(),
                    data_type: f.data_type().clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let mut h = crate::stable_hash::Fnv64::default();
        if partial {
            h.update(b"key\0");
        }
        for c in &columns {
            h.update(c.name.as_bytes());
            h.update(format!("\0{:?}\0{}\0", c.kind, c.nullable).as_bytes());
        }
        let mut fingerprint = (h.finish() as u32).to_le_bytes();
        fingerprint[0] |= 0x80;
        let index = columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        Some(PackedLayout { columns, index, fingerprint, partial })
    }

    /// The columns, in the table's order.
    pub fn columns(&self) -> &[PackedColumn] {
        &self.columns
    }

    /// The values of a packed row (what follows its fingerprint), or an error if the row was
    /// packed for other columns.
    pub fn body<'a>(&self, row: &'a [u8]) -> Result<&'a [u8]> {
        match row.split_first_chunk::<4>() {
            Some((f, body)) if *f == self.fingerprint => Ok(body),
            _ => Err(Error::schema(
                "a row was packed for other columns than the table's (the table's schema changed while the sink \
                 started): restart the sink",
            )),
        }
    }
}

/// Packs rows for one layout (see the [module docs](self)); keeps the scratch space a row with
/// fields out of the table's order needs.
pub struct PackedEncoder {
    layout: Arc<PackedLayout>,
    slots: Vec<(u32, u32)>,
    scratch: Vec<u8>,
}

/// A slot no field filled.
const EMPTY: (u32, u32) = (u32::MAX, u32::MAX);

impl PackedEncoder {
    /// An encoder of rows for `layout`.
    pub fn new(layout: Arc<PackedLayout>) -> PackedEncoder {
        let slots = vec![EMPTY; layout.columns.len()];
        PackedEncoder { layout, slots, scratch: Vec::new() }
    }

    /// The layout rows are packed for.
    pub fn layout(&self) -> &Arc<PackedLayout> {
        &self.layout
    }

    /// Appends `row`'s values packed to `out`, without the layout's fingerprint (a primary
    /// key's bytes); on an error `out` is as it was.
    pub fn encode_values<V: Serialize + ?Sized>(
        &mut self,
        row: &V,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let start = out.len();
        self.encode(row, out)?;
        out.drain(start..start + 4);
        Ok(())
    }

    /// Appends `row` packed to `out`; on an error `out` is as it was.
    pub fn encode<V: Serialize + ?Sized>(&mut self, row: &V, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let start = out.len();
        let r = self.encode_at(row, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn encode_at<V: Serialize + ?Sized>(&mut self, row: &V, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let PackedEncoder { layout, slots, scratch } = self;
        out.extend_from_slice(&layout.fingerprint);
        let body = out.len();
        slots.fill(EMPTY);
        let mut packer = Packer { layout, slots, out, next: 0, in_order: true };
        visit_fields(row, &mut packer).map_err(|e| e.0)?;
        if packer.in_order && packer.next == layout.columns.len() {
            return Ok(());
        }
        // Fields out of the table's order, or missing: lay the values out in column order.
        scratch.clear();
        scratch.extend_from_slice(&out[body..]);
        out.truncate(body);
        for (c, &(s, e)) in layout.columns.iter().zip(slots.iter()) {
            if (s, e) != EMPTY {
                out.extend_from_slice(&scratch[(s as usize - body)..(e as usize - body)]);
            } else if c.nullable {
                out.push(0);
            } else {
                return Err(format!("column `{}` is not nullable, and the row has no value for it", c.name));
            }
        }
        Ok(())
    }
}

/// Packs one row's fields as they come.
struct Packer<'a> {
    layout: &'a PackedLayout,
    slots: &'a mut [(u32, u32)],
    out: &'a mut Vec<u8>,
    /// The column after the last field's.
    next: usize,
    /// Whether every field so far was the column after the one before it.
    in_order: bool,
}

impl FieldVisitor for Packer<'_> {
    type Error = TextError;

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> std::result::Result<(), TextError> {
        let columns = &self.layout.columns;
        let i = match columns.get(self.next) {
            Some(c) if c.name == name => self.next,
            _ => match self.layout.index.get(name) {
                Some(&i) => {
                    self.in_order = false;
                    i
                }
                None if self.layout.partial => return Ok(()),
                None => {
                    return Err(TextError(format!("the row has field `{name}`, which is not a column of the table")))
                }
            },
        };
        if self.slots[i] != EMPTY {
            return Err(TextError(format!("the row has field `{name}` twice")));
        }
        let col = &columns[i];
        let start = self.out.len();
        with_scalar(value, |s| put(col, s, self.out))
            .map_err(|reason| TextError(format!("column `{}` ({}): {reason}", col.name, col.data_type)))?;
        if self.out.len() > u32::MAX as usize {
            return Err(TextError("a row's values are larger than the 4 GiB a packed row may be".into()));
        }
        self.slots[i] = (start as u32, self.out.len() as u32);
        self.next = i + 1;
        Ok(())
    }

    fn not_a_row(&self, shape: Shape) -> TextError {
        TextError(format!("a row must be a struct or a map of its columns, not {}", shape.describe()))
    }
}

/// Appends `s` as a value of `col` (with its null byte, for a nullable column).
#[inline]
fn put(col: &PackedColumn, s: Scalar<'_>, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    if let Scalar::Null = s {
        if col.nullable {
            out.push(0);
            return Ok(());
        }
        return Err("null in a column that is not nullable".into());
    }
    if col.nullable {
        out.push(1);
    }
    match (col.kind, s) {
        (Kind::Bool, Scalar::Bool(b)) => out.push(u8::from(b)),
        (Kind::Int8, s) => out.extend_from_slice(&(integer(s, i8::MIN.into(), i8::MAX.into())? as i8).to_le_bytes()),
        (Kind::Int16, s) => {
            out.extend_from_slice(&(integer(s, i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes())
        }
        (Kind::Int32, s) => {
            out.extend_from_slice(&(integer(s, i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes())
        }
        (Kind::Int64, s) => {
            out.extend_from_slice(&(integer(s, i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes())
        }
        (Kind::Float32, s) => {
            let v = match s {
                Scalar::Num(Num::F32(v)) => v,
                _ => {
                    let f = float(s)?;
                    let v = f as f32;
                    if v.is_infinite() && f.is_finite() {
                        return Err(format!("{f} is out of range"));
                    }
                    v
                }
            };
            out.extend_from_slice(&v.to_le_bytes())
        }
        (Kind::Float64, s) => out.extend_from_slice(&float(s)?.to_le_bytes()),
        (Kind::Decimal { precision, scale }, s) => out.extend_from_slice(&decimal(s, precision, scale)?.to_le_bytes()),
        (Kind::Utf8, Scalar::Str(t)) => put_text(t.as_bytes(), out)?,
        (Kind::Utf8, Scalar::Bytes(b)) => match std::str::from_utf8(b) {
            Ok(_) => put_text(b, out)?,
            Err(_) => return Err("bytes that are not UTF-8 text".into()),
        },
        (Kind::Date32, Scalar::Str(t)) => {
            let days = civil::parse_date(t).map_err(|e| e.to_string())?;
            out.extend_from_slice(&fit_i32(days, t)?.to_le_bytes())
        }
        (Kind::Date32, s @ Scalar::Num(_)) => {
            out.extend_from_slice(&(integer(s, i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes())
        }
        (Kind::TimestampMicros, Scalar::Str(t)) => out.extend_from_slice(&timestamp_micros(t)?.to_le_bytes()),
        (Kind::TimestampMicros, s @ Scalar::Num(_)) => {
            out.extend_from_slice(&(integer(s, i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes())
        }
        (_, s) => return Err(format!("{} cannot be written to it", describe(s))),
    }
    Ok(())
}

fn put_text(b: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let n = u32::try_from(b.len()).map_err(|_| format!("a text of {} bytes is too long", b.len()))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn describe(s: Scalar<'_>) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => format!("the boolean {b}"),
        Scalar::Num(n) => format!("the number {n}"),
        Scalar::Str(t) => format!("the string {t:?}"),
        Scalar::Bytes(b) => format!("{} bytes", b.len()),
    }
}

fn fit_i32(v: i64, what: &str) -> std::result::Result<i32, String> {
    i32::try_from(v).map_err(|_| format!("{what} is out of range"))
}

/// An integer in `[lo, hi]` from a number or integer text.
#[inline]
fn integer(s: Scalar<'_>, lo: i128, hi: i128) -> std::result::Result<i128, String> {
    let v = match s {
        Scalar::Num(n) => n.integer().ok_or_else(|| format!("{n} is not an integer"))?,
        Scalar::Str(t) => t.trim().parse::<i128>().map_err(|_| format!("`{t}` is not an integer"))?,
        s => return Err(format!("{} cannot be written to it", describe(s))),
    };
    if v < lo || v > hi {
        return Err(format!("{v} is out of range"));
    }
    Ok(v)
}

fn float(s: Scalar<'_>) -> std::result::Result<f64, String> {
    match s {
        Scalar::Num(n) => Ok(n.float()),
        Scalar::Str(t) => t.trim().parse::<f64>().map_err(|_| format!("`{t}` is not a number")),
        s => Err(format!("{} cannot be written to it", describe(s))),
    }
}

fn decimal(s: Scalar<'_>, precision: u8, scale: u8) -> std::result::Result<i128, String> {
    let scale = u32::from(scale);
    let v = match s {
        Scalar::Num(n @ (Num::F(_) | Num::F32(_))) if !n.float().is_finite() => {
            return Err(format!("{n} is not a finite number"))
        }
        Scalar::Num(Num::F(v)) => civil::parse_decimal(&v.to_string(), scale).map_err(|e| e.to_string())?,
        Scalar::Num(Num::F32(v)) => civil::parse_decimal(&v.to_string(), scale).map_err(|e| e.to_string())?,
        Scalar::Num(n) => n
            .integer()
            .and_then(|i| i.checked_mul(10i128.checked_pow(scale)?))
            .ok_or_else(|| format!("{n} is too large"))?,
        Scalar::Str(t) => civil::parse_decimal(t.trim(), scale).map_err(|e| e.to_string())?,
        s => return Err(format!("{} cannot be written to it", describe(s))),
    };
    match 10u128.checked_pow(u32::from(precision)) {
        Some(limit) if v.unsigned_abs() >= limit => Err(format!("{v} (unscaled) has more than {precision} digits")),
        _ => Ok(v),
    }
}

/// RFC 3339 text (or `YYYY-MM-DD[ hh:mm:ss[.f]]`, read as UTC) as microseconds since the epoch.
fn timestamp_micros(t: &str) -> std::result::Result<i64, String> {
    let dt = civil::parse_datetime(t).map_err(|e| e.to_string())?;
    dt.utc_seconds()
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(i64::from(dt.fraction_micros())))
        .ok_or_else(|| format!("`{t}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use serde_json::json;

    fn layout() -> Arc<PackedLayout> {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Utf8, true),
            Field::new("d", DataType::Decimal128(5, 2), true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]);
        Arc::new(PackedLayout::new(&schema).unwrap())
    }

    fn pack(v: &serde_json::Value) -> std::result::Result<Vec<u8>, String> {
        let mut out = vec![9];
        PackedEncoder::new(layout()).encode(v, &mut out).map(|()| out.split_off(1))
    }

    #[test]
    fn field_order_does_not_change_the_bytes() {
        let a = pack(&json!({"id": 1, "n": "x", "d": "1.5", "t": "1970-01-01T00:00:01Z"})).unwrap();
        #[derive(Serialize)]
        struct R {
            t: i64,
            d: f64,
            n: &'static str,
            id: u8,
        }
        let mut b = Vec::new();
        PackedEncoder::new(layout()).encode(&R { t: 1_000_000, d: 1.5, n: "x", id: 1 }, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(layout().body(&a).unwrap().len(), 8 + (1 + 4 + 1) + (1 + 16) + (1 + 8));
    }

    #[test]
    fn missing_nullable_columns_are_null_and_others_refused() {
        let a = pack(&json!({"id": 2})).unwrap();
        assert_eq!(layout().body(&a).unwrap(), &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            pack(&json!({"n": "x"})).unwrap_err(),
            "column `id` is not nullable, and the row has no value for it"
        );
        assert_eq!(
            pack(&json!({"id": null})).unwrap_err(),
            "column `id` (Int64): null in a column that is not nullable"
        );
    }

    #[test]
    fn bad_values_name_their_column_and_leave_nothing() {
        let mut out = vec![7];
        let mut e = PackedEncoder::new(layout());
        let cases = [
            (json!({"id": 1.5}), "column `id` (Int64): 1.5 is not an integer"),
            (json!({"id": 1, "d": "1.234"}), "column `d` (Decimal128(5, 2)): 1.234 has more than 2 decimal places"),
            (json!({"id": 1, "d": 1000}), "column `d` (Decimal128(5, 2)): 100000 (unscaled) has more than 5 digits"),
            (json!({"id": 1, "n": 3}), "column `n` (Utf8): the number 3 cannot be written to it"),
            (json!({"id": 1, "x": 3}), "the row has field `x`, which is not a column of the table"),
            (json!({"id": 1, "t": "yesterday"}), "column `t` (Timestamp(µs, \"UTC\")): `yesterday` is not a date-time (YYYY-MM-DD hh:mm:ss[.f], optionally with T, Z or ±hh:mm)"),
            (json!([1]), "a row must be a struct or a map of its columns, not a sequence"),
        ];
        for (row, why) in cases {
            assert_eq!(e.encode(&row, &mut out).unwrap_err(), why);
            assert_eq!(out, [7]);
        }
    }

    #[test]
    fn rows_packed_for_other_columns_are_refused() {
        let other = PackedLayout::new(&Schema::new(vec![Field::new("id", DataType::Int32, false)])).unwrap();
        let mut row = Vec::new();
        PackedEncoder::new(Arc::new(other)).encode(&json!({"id": 1}), &mut row).unwrap();
        assert_eq!(layout().body(&row).unwrap_err().kind(), crate::ErrorKind::Schema);
        assert!(layout().body(b"{\"id\":1}").is_err());
    }

    #[test]
    fn unpackable_types_make_no_layout() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert!(PackedLayout::new(&Schema::new(vec![Field::new("l", list, true)])).is_none());
    }
}
