//! Reading an Avro datum back, and the Confluent wire format around one.

use super::datum::base64_encode;
use super::AvroType;
use crate::error::{Error, Result};
use serde_json::Value;

impl AvroType {
    /// Decodes one datum of this schema from `input` (advancing it) into JSON, for readers and
    /// tests: dates, timestamps and decimals come back as their encoded numbers / bytes (base64).
    pub fn decode(&self, input: &mut &[u8]) -> Result<Value> {
        let short = || Error::encode("Avro: datum ends early");
        Ok(match self {
            AvroType::Null => Value::Null,
            AvroType::Boolean => {
                let (b, rest) = input.split_first().ok_or_else(short)?;
                *input = rest;
                Value::Bool(*b != 0)
            }
            AvroType::Int | AvroType::Long | AvroType::Date | AvroType::TimestampMicros => {
                Value::from(read_long(input)?)
            }
            AvroType::Float => {
                let b: [u8; 4] = input.get(..4).ok_or_else(short)?.try_into().expect("4");
                *input = &input[4..];
                serde_json::Number::from_f64(f64::from(f32::from_le_bytes(b))).map_or(Value::Null, Value::Number)
            }
            AvroType::Double => {
                let b: [u8; 8] = input.get(..8).ok_or_else(short)?.try_into().expect("8");
                *input = &input[8..];
                serde_json::Number::from_f64(f64::from_le_bytes(b)).map_or(Value::Null, Value::Number)
            }
            AvroType::String => Value::String(
                String::from_utf8(read_bytes(input)?.to_vec())
                    .map_err(|_| Error::encode("Avro: string is not UTF-8"))?,
            ),
            AvroType::JsonText => serde_json::from_slice(read_bytes(input)?)
                .map_err(|e| Error::encode(format!("Avro: json field: {e}")))?,
            AvroType::Bytes | AvroType::Decimal { .. } => Value::String(base64_encode(read_bytes(input)?)),
            AvroType::Nullable(t) => match read_long(input)? {
                0 => Value::Null,
                1 => t.decode(input)?,
                i => return Err(Error::encode(format!("Avro: union index {i} out of range"))),
            },
            AvroType::Record { fields, .. } => {
                let mut m = serde_json::Map::new();
                for (name, t) in fields {
                    m.insert(name.clone(), t.decode(input)?);
                }
                Value::Object(m)
            }
        })
    }
}

pub(super) fn read_long(input: &mut &[u8]) -> Result<i64> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let (b, rest) = input.split_first().ok_or_else(|| Error::encode("Avro: datum ends early"))?;
        *input = rest;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(Error::encode("Avro: varint too long"));
        }
    }
    Ok((z >> 1) as i64 ^ -((z & 1) as i64))
}

fn read_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = usize::try_from(read_long(input)?).map_err(|_| Error::encode("Avro: negative length"))?;
    if input.len() < n {
        return Err(Error::encode("Avro: datum ends early"));
    }
    let (b, rest) = input.split_at(n);
    *input = rest;
    Ok(b)
}

/// Prepends the Confluent wire-format header (magic 0, big-endian schema id) to a datum.
pub fn wire_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a Confluent-framed message into schema id and datum.
///
/// ```
/// use differential_sinks::encode::avro::{split_wire, wire_header};
/// let mut m = Vec::new();
/// wire_header(7, &mut m);
/// m.push(0x02);
/// assert_eq!(split_wire(&m).unwrap(), (7, &[0x02u8][..]));
/// ```
pub fn split_wire(message: &[u8]) -> Result<(u32, &[u8])> {
    match message {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(Error::encode("not a Confluent-framed Avro message (magic byte 0 + 4-byte schema id)")),
    }
}
