//! Rows encoded once, where they are produced: the form in which a JSON target's rows travel
//! through the sink.
//!
//! A target whose records carry a row as its JSON (the message targets, Elasticsearch, Doris,
//! Cassandra; see [`Connector::JSON_ROWS`](crate::Connector::JSON_ROWS)) needs nothing else of a
//! row. For such a sink, each row is encoded into an [`EncodedRow`] on the worker that produced
//! it, right after its key is extracted: the exchange then moves the row's bytes (one allocation,
//! instead of the row with its own), consolidation orders and compares bytes, and the target's
//! encoder copies them into its records ([`crate::encode::json::encode_row`]) — no serde walk of
//! the row after the exchange.
//!
//! The bytes are exactly what [`encode_json`](crate::encode::json::encode_json) writes for the row, so records are byte for byte
//! what they were when rows were encoded at the target. Two rows are the same row to the sink
//! when their JSON is the same: an update and its retraction cancel when the row serializes the
//! same way twice, which holds for every `Serialize` that does not depend on anything but the
//! value (it does not hold for a `HashMap` field, whose order varies between maps: use a
//! `BTreeMap`).
//!
//! A row that cannot be encoded (say, a map with non-string keys) becomes an encoded row holding
//! the reason; the target's encoder reports it, naming the key, when it meets it, as it would have
//! reported the row's own encoding error.

use crate::error::{Error, Result};
use crate::json_row::JsonRow;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::any::Any;
use std::fmt;

/// A row's JSON, encoded where the row was produced (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncodedRow {
    /// The JSON text, or (when `invalid`) why the row has none.
    bytes: Box<[u8]>,
    invalid: bool,
}

impl EncodedRow {
    /// Encodes `row` as [`encode_json`](crate::encode::json::encode_json) does (a [`JsonRow`]'s text is copied: it is what
    /// `encode_json` writes for it); a row that cannot be encoded keeps the reason.
    pub fn encode<V: Serialize + 'static>(row: &V) -> Self {
        let any = row as &dyn Any;
        if let Some(encoded) = any.downcast_ref::<EncodedRow>() {
            return encoded.clone();
        }
        if let Some(json) = any.downcast_ref::<JsonRow>() {
            return EncodedRow { bytes: json.as_str().as_bytes().into(), invalid: false };
        }
        // Encoded into a reused buffer, then copied into an allocation of its exact size (one
        // allocation per row, not a growing buffer shrunk afterwards).
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let encode = |out: &mut Vec<u8>| {
            out.clear();
            sonic_rs::to_writer(&mut *out, row).map(|()| Box::<[u8]>::from(&out[..]))
        };
        // (A row whose `Serialize` encodes another row meanwhile gets a buffer of its own.)
        let encoded = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut out) => encode(&mut out),
            Err(_) => encode(&mut Vec::new()),
        });
        match encoded {
            Ok(bytes) => EncodedRow { bytes, invalid: false },
            Err(e) => EncodedRow {
                bytes: format!("a row cannot be encoded as JSON: {e}").into_bytes().into_boxed_slice(),
                invalid: true,
            },
        }
    }

    /// The row's JSON text, or the error its encoding met.
    pub fn json(&self) -> Result<&[u8]> {
        if self.invalid {
            Err(Error::encode(String::from_utf8_lossy(&self.bytes).into_owned()))
        } else {
            Ok(&self.bytes)
        }
    }
}

impl fmt::Debug for EncodedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.invalid {
            write!(f, "<row that cannot be encoded: {}>", String::from_utf8_lossy(&self.bytes))
        } else {
            write!(f, "{}", String::from_utf8_lossy(&self.bytes))
        }
    }
}

/// Between processes and in spill files (binary serializers) an encoded row travels as its bytes;
/// to a human-readable serializer (a target's own, say a key extractor reading its fields) it is
/// the value its JSON holds.
impl Serialize for EncodedRow {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return (self.invalid, &*self.bytes).serialize(s);
        }
        let json = self.json().map_err(|e| serde::ser::Error::custom(e.to_string()))?;
        let mut de = serde_json::Deserializer::from_slice(json);
        serde_transcode::transcode(&mut de, s)
    }
}

impl<'de> Deserialize<'de> for EncodedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if !d.is_human_readable() {
            let (invalid, bytes) = <(bool, Vec<u8>)>::deserialize(d)?;
            return Ok(EncodedRow { bytes: bytes.into_boxed_slice(), invalid });
        }
        // A human-readable form (a row read back from JSON) is the JSON value itself, read
        // through a `serde_json` value (so an object's members come back in name order).
        let value = serde_json::Value::deserialize(d)?;
        Ok(EncodedRow::encode(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
    struct Row {
        id: u64,
        name: String,
        amount: f64,
        tags: Vec<String>,
        note: Option<String>,
    }

    fn row() -> Row {
        Row { id: 7, name: "zoë \"q\"\n".into(), amount: -0.5, tags: vec!["a".into()], note: None }
    }

    #[test]
    fn its_bytes_are_the_rows_json_in_field_order() {
        let e = EncodedRow::encode(&row());
        assert_eq!(e.json().unwrap(), serde_json::to_vec(&row()).unwrap().as_slice());
        assert!(std::str::from_utf8(e.json().unwrap()).unwrap().starts_with(r#"{"id":7,"name":"#));
    }

    #[test]
    fn equal_rows_are_equal_and_travel_through_binary_serializers() {
        let (a, b) = (EncodedRow::encode(&row()), EncodedRow::encode(&row().clone()));
        assert_eq!(a, b);
        let mut other = row();
        other.amount = 0.5;
        assert_ne!(a, EncodedRow::encode(&other));
        let bytes = bincode::serialize(&a).unwrap();
        assert_eq!(bincode::deserialize::<EncodedRow>(&bytes).unwrap(), a);
    }

    #[test]
    fn to_a_human_readable_serializer_it_is_its_value() {
        let e = EncodedRow::encode(&row());
        assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::to_value(row()).unwrap());
        // Read back from a human-readable form, it is the same value (its members in name order).
        let back: EncodedRow = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(row()).unwrap());
    }

    #[test]
    fn a_row_that_cannot_be_encoded_keeps_the_reason() {
        let mut m = std::collections::BTreeMap::new();
        m.insert((1, 2), "pair keys are not JSON object keys");
        let e = EncodedRow::encode(&m);
        let err = e.json().unwrap_err().to_string();
        assert!(err.contains("key must be a string") || err.contains("cannot be encoded"), "{err}");
        assert!(format!("{e:?}").starts_with("<row that cannot be encoded"));
        let bytes = bincode::serialize(&e).unwrap();
        assert!(bincode::deserialize::<EncodedRow>(&bytes).unwrap().json().is_err(), "invalid survives the exchange");
    }
}
