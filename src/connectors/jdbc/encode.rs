//! From rows to column values: a serde serializer that takes a row's top-level fields (a struct or
//! a map, such as [`JsonRow`](crate::JsonRow)) straight into text cells, one per written column,
//! rendered for the column's type and the dialect.
//!
//! Every value travels as text and the server parses it into the column's type, so numerics keep
//! every digit, and timestamps, JSON and enums need no client-side type code. The rules:
//!
//! | row value | column | cell |
//! |---|---|---|
//! | null / missing field | any | SQL NULL |
//! | boolean | boolean, integer | `t`/`f` (PostgreSQL), `1`/`0` (MySQL) |
//! | number | any | its decimal text (integers exact; `NaN`, `Infinity` for PostgreSQL floats) |
//! | integer | timestamp | microseconds since the Unix epoch, as a UTC timestamp |
//! | string | json / jsonb | the JSON string (`"abc"` is stored as the JSON text `"abc"`) |
//! | string | bytea / blob | base64, decoded |
//! | string | timestamp without zone; MySQL datetime / timestamp | RFC 3339 text with an offset is converted to UTC `YYYY-MM-DD HH:MM:SS.ffffff` (PostgreSQL would drop the offset); text without one is kept |
//! | string | anything else | the string |
//! | array / object | json, text | its JSON text |

use super::config::Dialect;
use super::table::{ColKind, TableColumn};
use crate::encode::civil::{self, civil_from_days};
use crate::encode::fields::{visit_fields, FieldVisitor, Shape};
use crate::error::{Error, Result};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::ser::{self, Impossible, Serialize};
use std::fmt::{self, Write as _};

/// A cell that is SQL NULL.
pub const NULL: (u32, u32) = (u32::MAX, 0);

/// Text cells of many rows, back to back.
#[derive(Clone, Debug, Default)]
pub struct Cells {
    /// All cell text.
    pub text: String,
    /// `(start, end)` into `text`, or [`NULL`].
    pub ranges: Vec<(u32, u32)>,
}

impl Cells {
    /// Cell `i`, `None` for NULL.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let (s, e) = self.ranges[i];
        if s == u32::MAX {
            None
        } else {
            Some(&self.text[s as usize..e as usize])
        }
    }
    /// Forgets every cell, keeping the allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ranges.clear();
    }
}

/// Encodes rows into [`Cells`] for a fixed list of columns.
#[derive(Clone, Debug)]
pub struct RowEncoder {
    dialect: Dialect,
    pub(super) names: Vec<String>,
    kinds: Vec<ColKind>,
    pub(super) table: String,
    slots: Vec<(u32, u32)>,
    /// Identifies the dialect and columns, for described rows (`described.rs`).
    pub(super) fingerprint: u32,
    /// While encoding a described row: note the first field naming no column, rather than fail.
    pub(super) noting: bool,
    pub(super) unknown: Option<String>,
    /// A described row's cells before they are written out, and a read row's cell ranges.
    pub(super) scratch: Cells,
    pub(super) places: Vec<Option<(usize, usize)>>,
}

#[derive(Debug)]
pub(crate) struct EncErr(pub String);
impl fmt::Display for EncErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for EncErr {}
impl ser::Error for EncErr {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncErr(msg.to_string())
    }
}

/// The sentinel a value serializer returns for arrays and objects, before writing anything.
const COMPOUND: &str = "\u{0}compound";

impl RowEncoder {
    /// An encoder for `columns` of `table` (for messages).
    pub fn new(dialect: Dialect, table: &str, columns: &[TableColumn]) -> Self {
        let mut hash = crate::stable_hash::Fnv64::default();
        hash.update(format!("{dialect:?}").as_bytes());
        for c in columns {
            for part in [c.name.as_str(), &format!("{:?}", c.kind)] {
                hash.update(&(part.len() as u64).to_le_bytes());
                hash.update(part.as_bytes());
            }
        }
        let h = hash.finish();
        RowEncoder {
            dialect,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            kinds: columns.iter().map(|c| c.kind).collect(),
            table: table.to_string(),
            slots: vec![NULL; columns.len()],
            // The first byte as written (little-endian) has the top bit set, as no JSON text's has.
            fingerprint: (h ^ (h >> 32)) as u32 | 0x80,
            noting: false,
            unknown: None,
            scratch: Cells::default(),
            places: Vec::new(),
        }
    }

    /// The column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Appends the cells of `row` for the columns `pick` (indices into this encoder's columns),
    /// in that order. With `strict`, a field that names no column is an error.
    pub fn encode<V: Serialize + ?Sized>(
        &mut self,
        row: &V,
        pick: Option<&[usize]>,
        strict: bool,
        out: &mut Cells,
    ) -> Result<()> {
        for s in self.slots.iter_mut() {
            *s = NULL;
        }
        let mut cap = Capture { enc: self, text: &mut out.text, strict };
        visit_fields(row, &mut cap).map_err(|e| Error::schema(e.0))?;
        match pick {
            Some(p) => out.ranges.extend(p.iter().map(|&i| self.slots[i])),
            None => out.ranges.extend_from_slice(&self.slots),
        }
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        text: &mut String,
        name: &str,
        value: &T,
        strict: bool,
    ) -> std::result::Result<(), EncErr> {
        let Some(i) = self.names.iter().position(|n| n == name) else {
            if strict || (self.noting && self.unknown.is_none()) {
                let reason = format!(
                    "the row has field `{name}`, which table {} has no column for (its columns: {}); add the column \
                     to the table, or declare a schema without it",
                    self.table,
                    self.names.join(", ")
                );
                if strict {
                    return Err(EncErr(reason));
                }
                self.unknown = Some(reason);
            }
            return Ok(());
        };
        let kind = self.kinds[i];
        let start = text.len();
        if start > u32::MAX as usize - (1 << 24) {
            return Err(EncErr(
                "a transaction holds more than 4 GB of cell text: bound it lower (transaction.max.bytes)".into(),
            ));
        }
        let r = value.serialize(ValueSer { text, kind, dialect: self.dialect });
        self.slots[i] = match r {
            Ok(true) => (start as u32, text.len() as u32),
            Ok(false) => NULL,
            // (A value encoded from JSON text reports it with the text position appended.)
            Err(e) if e.0.starts_with(COMPOUND) => {
                text.truncate(start);
                let v = serde_json::to_value(value).map_err(|e| EncErr(e.to_string()))?;
                match (kind, &v) {
                    (ColKind::Bytes, serde_json::Value::Array(items)) => {
                        let bytes: Option<Vec<u8>> =
                            items.iter().map(|x| x.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
                        let bytes =
                            bytes.ok_or_else(|| EncErr(format!("column `{name}` takes bytes, but the row has {v}")))?;
                        push_hex(text, &bytes, self.dialect);
                    }
                    _ => {
                        serde_json::to_writer(unsafe_string_writer(text), &v).map_err(|e| EncErr(e.to_string()))?;
                    }
                }
                (start as u32, text.len() as u32)
            }
            Err(e) => return Err(EncErr(format!("column `{name}`: {}", e.0))),
        };
        Ok(())
    }
}

/// A `std::io::Write` over a `String` that receives only UTF-8 (serde_json writes UTF-8).
fn unsafe_string_writer(s: &mut String) -> impl std::io::Write + '_ {
    struct W<'a>(&'a mut String);
    impl std::io::Write for W<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match std::str::from_utf8(buf) {
                Ok(s) => {
                    self.0.push_str(s);
                    Ok(buf.len())
                }
                Err(_) => Err(std::io::Error::other("not UTF-8")),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    W(s)
}

fn push_hex(text: &mut String, bytes: &[u8], dialect: Dialect) {
    if dialect == Dialect::Postgres {
        text.push_str("\\x");
    }
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
}

/// Base64 in either alphabet: standard (`+/`) and URL-safe (`-_`) letters may mix, padding may
/// be left out, and `=` and line breaks anywhere are skipped.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let plain = !s.bytes().any(|c| matches!(c, b'-' | b'_' | b'=' | b'\n' | b'\r'));
    if plain {
        return LENIENT.decode(s).ok();
    }
    let normal: Vec<u8> = s
        .bytes()
        .filter(|c| !matches!(c, b'=' | b'\n' | b'\r'))
        .map(|c| match c {
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        })
        .collect();
    LENIENT.decode(normal).ok()
}

/// Writes `micros` since the Unix epoch as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
pub fn push_micros(text: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let _ = write!(text, "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}", sod / 3600, sod / 60 % 60, sod % 60);
}

/// Converts RFC 3339 / ISO 8601 text to UTC `YYYY-MM-DD HH:MM:SS[.f]`, as MySQL's datetime and
/// PostgreSQL's `timestamp` take it. Text without a zone is kept (with `T` turned into a space).
pub fn utc_datetime(s: &str) -> Option<String> {
    let dt = civil::parse_datetime(s).ok()?;
    dt.time?;
    let t = dt.utc_seconds();
    let (days, sod) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut out = String::with_capacity(26);
    let _ = write!(out, "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if !dt.fraction.is_empty() {
        out.push('.');
        out.push_str(dt.fraction.get(..6).unwrap_or(dt.fraction));
    }
    Some(out)
}

/// Serializes one field's value into text; `Ok(false)` for NULL.
struct ValueSer<'a> {
    text: &'a mut String,
    kind: ColKind,
    dialect: Dialect,
}

impl ValueSer<'_> {
    fn int(self, v: impl fmt::Display + Into<i128>) -> std::result::Result<bool, EncErr> {
        let wide: i128 = v.into();
        match self.kind {
            ColKind::Timestamp | ColKind::Timestamptz => {
                let m = i64::try_from(wide).map_err(|_| EncErr(format!("timestamp {wide} µs is out of range")))?;
                push_micros(self.text, m);
            }
            _ => {
                let _ = write!(self.text, "{wide}");
            }
        }
        Ok(true)
    }
    fn float(self, v: f64) -> std::result::Result<bool, EncErr> {
        if v.is_finite() {
            let _ = write!(self.text, "{v}");
        } else if v.is_nan() {
            self.text.push_str("NaN");
        } else if v > 0.0 {
            self.text.push_str("Infinity");
        } else {
            self.text.push_str("-Infinity");
        }
        Ok(true)
    }
    fn string(self, s: &str) -> std::result::Result<bool, EncErr> {
        match (self.kind, self.dialect) {
            (ColKind::Json, _) => {
                serde_json::to_writer(unsafe_string_writer(self.text), s).map_err(|e| EncErr(e.to_string()))?;
            }
            (ColKind::Bytes, d) => {
                let bytes =
                    base64_decode(s).ok_or_else(|| EncErr(format!("`{s}` is not base64, as a bytes column needs")))?;
                push_hex(self.text, &bytes, d);
            }
            (ColKind::Timestamp | ColKind::Timestamptz, Dialect::Mysql) | (ColKind::Timestamp, Dialect::Postgres) => {
                match utc_datetime(s) {
                    Some(t) => self.text.push_str(&t),
                    None => self.text.push_str(s),
                }
            }
            _ => self.text.push_str(s),
        }
        Ok(true)
    }
}

macro_rules! compound {
    ($($f:ident($($a:ty),*) -> $r:ty;)*) => {$(
        fn $f(self, $(_: $a),*) -> std::result::Result<$r, EncErr> { Err(EncErr(COMPOUND.into())) }
    )*};
}

impl ser::Serializer for ValueSer<'_> {
    type Ok = bool;
    type Error = EncErr;
    type SerializeSeq = Impossible<bool, EncErr>;
    type SerializeTuple = Impossible<bool, EncErr>;
    type SerializeTupleStruct = Impossible<bool, EncErr>;
    type SerializeTupleVariant = Impossible<bool, EncErr>;
    type SerializeMap = Impossible<bool, EncErr>;
    type SerializeStruct = Impossible<bool, EncErr>;
    type SerializeStructVariant = Impossible<bool, EncErr>;

    fn serialize_bool(self, v: bool) -> std::result::Result<bool, EncErr> {
        let s = match (self.kind, self.dialect, v) {
            (ColKind::Json | ColKind::Text, _, v) => {
                if v {
                    "true"
                } else {
                    "false"
                }
            }
            (_, Dialect::Mysql, v) | (ColKind::Int | ColKind::Numeric, Dialect::Postgres, v) => {
                if v {
                    "1"
                } else {
                    "0"
                }
            }
            (_, Dialect::Postgres, v) => {
                if v {
                    "t"
                } else {
                    "f"
                }
            }
        };
        self.text.push_str(s);
        Ok(true)
    }
    fn serialize_i8(self, v: i8) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_i16(self, v: i16) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_i32(self, v: i32) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_i64(self, v: i64) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_i128(self, v: i128) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_u16(self, v: u16) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_u32(self, v: u32) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_u64(self, v: u64) -> std::result::Result<bool, EncErr> {
        self.int(v)
    }
    fn serialize_u128(self, v: u128) -> std::result::Result<bool, EncErr> {
        let _ = write!(self.text, "{v}");
        Ok(true)
    }
    fn serialize_f32(self, v: f32) -> std::result::Result<bool, EncErr> {
        // Through the shortest decimal form of the f32, so 0.1f32 stays 0.1.
        let s = v.to_string();
        if v.is_finite() {
            self.text.push_str(&s);
            Ok(true)
        } else {
            self.float(v as f64)
        }
    }
    fn serialize_f64(self, v: f64) -> std::result::Result<bool, EncErr> {
        self.float(v)
    }
    fn serialize_char(self, v: char) -> std::result::Result<bool, EncErr> {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> std::result::Result<bool, EncErr> {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> std::result::Result<bool, EncErr> {
        push_hex(self.text, v, self.dialect);
        Ok(true)
    }
    fn serialize_none(self) -> std::result::Result<bool, EncErr> {
        Ok(false)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> std::result::Result<bool, EncErr> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<bool, EncErr> {
        Ok(false)
    }
    fn serialize_unit_struct(self, _: &'static str) -> std::result::Result<bool, EncErr> {
        Ok(false)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> std::result::Result<bool, EncErr> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> std::result::Result<bool, EncErr> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> std::result::Result<bool, EncErr> {
        Err(EncErr(COMPOUND.into()))
    }
    compound! {
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

/// Hands each field of a struct or map row to the encoder.
struct Capture<'a> {
    enc: &'a mut RowEncoder,
    text: &'a mut String,
    strict: bool,
}

impl FieldVisitor for Capture<'_> {
    type Error = EncErr;
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> std::result::Result<(), EncErr> {
        self.enc.field(self.text, name, value, self.strict)
    }
    fn not_a_row(&self, shape: Shape) -> EncErr {
        EncErr(format!(
            "a row serializes as {}, not as a struct or map, so it has no named columns for a table",
            shape.describe()
        ))
    }
}

/// Appends `s` to `out` escaped for PostgreSQL's `COPY … FROM STDIN` text format.
#[inline]
pub fn copy_escape(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !b.iter().any(|c| matches!(c, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.extend_from_slice(b);
        return;
    }
    for &c in b {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(name: &str, kind: ColKind) -> TableColumn {
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

    #[test]
    fn cells_by_kind() {
        let cols = [
            col("id", ColKind::Int),
            col("ok", ColKind::Bool),
            col("j", ColKind::Json),
            col("ts", ColKind::Timestamptz),
            col("b", ColKind::Bytes),
            col("n", ColKind::Text),
        ];
        let row = json!({"id": 7, "ok": true, "j": {"a": [1, "x"]}, "ts": "2024-03-01T01:30:00+02:00", "b": "AQI=", "n": null});
        let mut cells = Cells::default();
        let mut pg = RowEncoder::new(Dialect::Postgres, "t", &cols);
        pg.encode(&row, None, true, &mut cells).unwrap();
        let got: Vec<Option<&str>> = (0..6).map(|i| cells.get(i)).collect();
        assert_eq!(
            got,
            [Some("7"), Some("t"), Some(r#"{"a":[1,"x"]}"#), Some("2024-03-01T01:30:00+02:00"), Some("\\x0102"), None]
        );
        let mut my = RowEncoder::new(Dialect::Mysql, "t", &cols);
        cells.clear();
        my.encode(&row, Some(&[1, 3, 4]), true, &mut cells).unwrap();
        assert_eq!(cells.get(0), Some("1"));
        assert_eq!(cells.get(1), Some("2024-02-29 23:30:00"));
        assert_eq!(cells.get(2), Some("0102"));
        let e = pg.encode(&json!({"id": 1, "zzz": 2}), None, true, &mut cells).unwrap_err();
        assert!(e.to_string().contains("`zzz`"), "{e}");
    }

    #[test]
    fn micros_and_datetimes() {
        let mut s = String::new();
        push_micros(&mut s, 1_700_000_000_123_456);
        assert_eq!(s, "2023-11-14 22:13:20.123456");
        s.clear();
        push_micros(&mut s, -1);
        assert_eq!(s, "1969-12-31 23:59:59.999999");
        assert_eq!(utc_datetime("2024-01-01T00:00:00.5Z").unwrap(), "2024-01-01 00:00:00.5");
        assert_eq!(utc_datetime("2024-01-01 00:00:00").unwrap(), "2024-01-01 00:00:00");
        assert_eq!(utc_datetime("2024-01-01T00:00:00-0130").unwrap(), "2024-01-01 01:30:00");
    }

    #[test]
    fn base64_in_either_alphabet() {
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("AQ\r\nI=").unwrap(), [1, 2]);
        assert_eq!(base64_decode("AQ=I"), base64_decode("AQI"));
        assert!(base64_decode("A*").is_none() && base64_decode("é").is_none());
    }

    #[test]
    fn copy_escaping() {
        let mut out = Vec::new();
        copy_escape(&mut out, "a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
    }
}
