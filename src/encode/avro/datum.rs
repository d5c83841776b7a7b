//! An Avro datum from a JSON value, or streamed from JSON text without building one.

use super::AvroType;
use crate::encode::civil;
use crate::error::{Error, Result};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;

impl AvroType {
    /// Appends the Avro binary encoding of `v` (a JSON value of this schema's shape) to `out`.
    ///
    /// ```
    /// use differential_sinks::encode::avro::AvroType;
    /// let t = AvroType::Record { name: "r".into(), fields: vec![("id".into(), AvroType::Long), ("s".into(), AvroType::Nullable(Box::new(AvroType::String)))] };
    /// let mut out = Vec::new();
    /// t.encode(&serde_json::json!({"id": -2, "s": "hi"}), &mut out).unwrap();
    /// assert_eq!(out, [0x03, 0x02, 0x04, b'h', b'i']);
    /// ```
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<()> {
        self.encode_at(v, out, "")
    }

    fn encode_at(&self, v: &Value, out: &mut Vec<u8>, path: &str) -> Result<()> {
        let bad = |want: &str| {
            Error::encode(format!(
                "Avro: field `{}` should be {want} but is {v}",
                if path.is_empty() { "<value>" } else { path }
            ))
        };
        match self {
            AvroType::Null => {
                if !v.is_null() {
                    return Err(bad("null"));
                }
            }
            AvroType::Boolean => out.push(u8::from(v.as_bool().ok_or_else(|| bad("a boolean"))?)),
            AvroType::Int => {
                let i = v.as_i64().filter(|i| i32::try_from(*i).is_ok()).ok_or_else(|| bad("a 32-bit integer"))?;
                write_long(i, out);
            }
            AvroType::Long => write_long(v.as_i64().ok_or_else(|| bad("a 64-bit integer"))?, out),
            AvroType::Float => {
                let f = v.as_f64().ok_or_else(|| bad("a number"))? as f32;
                out.extend_from_slice(&f.to_le_bytes());
            }
            AvroType::Double => {
                let f = v.as_f64().ok_or_else(|| bad("a number"))?;
                out.extend_from_slice(&f.to_le_bytes());
            }
            AvroType::String => write_bytes(v.as_str().ok_or_else(|| bad("a string"))?.as_bytes(), out),
            AvroType::JsonText => {
                let s = v.to_string();
                write_bytes(s.as_bytes(), out);
            }
            AvroType::Bytes => {
                let s = v.as_str().ok_or_else(|| bad("base64 text"))?;
                let b = base64_decode(s).ok_or_else(|| bad("base64 text"))?;
                write_bytes(&b, out);
            }
            AvroType::Date => {
                let d = match v {
                    Value::String(s) => parse_date(s).ok_or_else(|| bad("a YYYY-MM-DD date"))?,
                    _ => v.as_i64().ok_or_else(|| bad("a YYYY-MM-DD date"))?,
                };
                write_long(d, out);
            }
            AvroType::TimestampMicros => {
                let t = match v {
                    Value::String(s) => parse_timestamp_micros(s).ok_or_else(|| bad("an RFC 3339 timestamp"))?,
                    _ => v.as_i64().ok_or_else(|| bad("an RFC 3339 timestamp or microseconds"))?,
                };
                write_long(t, out);
            }
            AvroType::Decimal { precision, scale } => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad("a decimal")),
                };
                let unscaled = parse_decimal(&text, *scale)
                    .filter(|u| u.unsigned_abs() < 10u128.pow(u32::from(*precision)))
                    .ok_or_else(|| bad(&format!("a decimal({precision},{scale})")))?;
                let bytes = unscaled.to_be_bytes();
                // Minimal two's complement: drop leading bytes that only repeat the sign.
                let mut start = 0;
                while start < 15 {
                    let (b, next) = (bytes[start], bytes[start + 1]);
                    if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                        start += 1;
                    } else {
                        break;
                    }
                }
                write_bytes(&bytes[start..], out);
            }
            AvroType::Nullable(t) => {
                if v.is_null() {
                    out.push(0);
                } else {
                    out.push(2);
                    t.encode_at(v, out, path)?;
                }
            }
            AvroType::Record { fields, .. } => {
                let obj = v.as_object().ok_or_else(|| bad("a record (JSON object)"))?;
                for (name, t) in fields {
                    let fv = obj.get(name).unwrap_or(&Value::Null);
                    let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    t.encode_at(fv, out, &p)?;
                }
            }
        }
        Ok(())
    }

    /// Appends the Avro encoding of the JSON text `json` without building a JSON value: the
    /// text is parsed and written by the schema in one pass (fields that arrive out of schema
    /// order are parsed into values and written in order). The same bytes as
    /// [`encode`](Self::encode) of the parsed value.
    ///
    /// ```
    /// use differential_sinks::encode::avro::AvroType;
    /// let t = AvroType::Record { name: "r".into(), fields: vec![("id".into(), AvroType::Long), ("s".into(), AvroType::Nullable(Box::new(AvroType::String)))] };
    /// let (mut a, mut b) = (Vec::new(), Vec::new());
    /// t.encode_json(br#"{"s":"hi","id":-2}"#, &mut a).unwrap();
    /// t.encode(&serde_json::json!({"id": -2, "s": "hi"}), &mut b).unwrap();
    /// assert_eq!(a, b);
    /// ```
    pub fn encode_json(&self, json: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let mut de = serde_json::Deserializer::from_slice(json);
        let r = serde::de::DeserializeSeed::deserialize(Seed { ty: self, out: &mut *out, path: "" }, &mut de)
            .and_then(|()| de.end());
        r.map_err(|e| {
            out.truncate(start);
            Error::encode(format!("Avro: {e}"))
        })
    }
}

/// Streams a JSON value into Avro by a schema.
struct Seed<'a> {
    ty: &'a AvroType,
    out: &'a mut Vec<u8>,
    path: &'a str,
}

fn de_err<E: serde::de::Error>(e: Error) -> E {
    E::custom(e.message())
}

impl<'de> serde::de::DeserializeSeed<'de> for Seed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        match self.ty {
            AvroType::Nullable(inner) => {
                d.deserialize_option(NullableVisitor { inner, out: self.out, path: self.path })
            }
            AvroType::Record { fields, .. } => d.deserialize_map(RecordVisitor { fields, out: self.out }),
            AvroType::JsonText => {
                let v = <Value as serde::Deserialize>::deserialize(d)?;
                self.ty.encode_at(&v, self.out, self.path).map_err(de_err)
            }
            _ => d.deserialize_any(ScalarVisitor { ty: self.ty, out: self.out, path: self.path }),
        }
    }
}

struct NullableVisitor<'a> {
    inner: &'a AvroType,
    out: &'a mut Vec<u8>,
    path: &'a str,
}

impl<'de> serde::de::Visitor<'de> for NullableVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.out.push(0);
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.visit_none()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        self.out.push(2);
        serde::de::DeserializeSeed::deserialize(Seed { ty: self.inner, out: self.out, path: self.path }, d)
    }
}

struct RecordVisitor<'a> {
    fields: &'a [(String, AvroType)],
    out: &'a mut Vec<u8>,
}

impl<'de> serde::de::Visitor<'de> for RecordVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        // Fields in schema order are written as they come; others wait as values.
        let mut next = 0;
        let mut waiting: Vec<(usize, Value)> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.fields.iter().position(|(n, _)| n.as_str() == key.as_ref()) {
                Some(i) if i == next => {
                    let (name, ty) = &self.fields[i];
                    map.next_value_seed(Seed { ty, out: &mut *self.out, path: name })?;
                    next += 1;
                    while let Some(w) = waiting.iter().position(|(j, _)| *j == next) {
                        let (_, v) = waiting.swap_remove(w);
                        self.fields[next].1.encode_at(&v, self.out, &self.fields[next].0).map_err(de_err)?;
                        next += 1;
                    }
                }
                Some(i) if i > next => waiting.push((i, map.next_value::<Value>()?)),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        while next < self.fields.len() {
            let (name, ty) = &self.fields[next];
            let v = match waiting.iter().position(|(j, _)| *j == next) {
                Some(w) => waiting.swap_remove(w).1,
                None => Value::Null,
            };
            ty.encode_at(&v, self.out, name).map_err(de_err)?;
            next += 1;
        }
        Ok(())
    }
}

struct ScalarVisitor<'a> {
    ty: &'a AvroType,
    out: &'a mut Vec<u8>,
    path: &'a str,
}

impl ScalarVisitor<'_> {
    fn value<E: serde::de::Error>(self, v: Value) -> std::result::Result<(), E> {
        self.ty.encode_at(&v, self.out, self.path).map_err(de_err)
    }
}

impl<'de> serde::de::Visitor<'de> for ScalarVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a value of Avro type {:?}", self.ty)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<(), E> {
        self.value(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<(), E> {
        match self.ty {
            AvroType::Long => {
                write_long(v, self.out);
                Ok(())
            }
            _ => self.value(Value::from(v)),
        }
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<(), E> {
        match (self.ty, i64::try_from(v)) {
            (AvroType::Long, Ok(i)) => {
                write_long(i, self.out);
                Ok(())
            }
            _ => self.value(Value::from(v)),
        }
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<(), E> {
        self.value(Value::from(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<(), E> {
        match self.ty {
            AvroType::String => {
                write_bytes(v.as_bytes(), self.out);
                Ok(())
            }
            _ => self.value(Value::String(v.to_string())),
        }
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.value(Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.value(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> std::result::Result<(), A::Error> {
        let v = <Value as serde::Deserialize>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.value(v)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        let v = <Value as serde::Deserialize>::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.value(v)
    }
}

/// Zig-zag varint of a long.
#[inline]
pub fn write_long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(super) fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_long(b.len() as i64, out);
    out.extend_from_slice(b);
}

/// Standard-alphabet base64 that, like JSON producers do, may leave out the padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s).ok()
}

pub(super) fn base64_encode(b: &[u8]) -> String {
    BASE64.encode(b)
}

pub(super) fn parse_date(s: &str) -> Option<i64> {
    civil::parse_date(s).ok()
}

/// Microseconds since the epoch of `YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]` (no zone = UTC).
pub(super) fn parse_timestamp_micros(s: &str) -> Option<i64> {
    let dt = civil::parse_datetime(s).ok()?;
    dt.time?;
    Some(dt.utc_seconds() * 1_000_000 + i64::from(dt.fraction_micros()))
}

/// The unscaled integer of decimal text at `scale` (rounding is refused: extra digits must be 0).
pub(super) fn parse_decimal(s: &str, scale: u8) -> Option<i128> {
    civil::parse_decimal(s.trim(), u32::from(scale)).ok()
}
