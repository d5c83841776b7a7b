//! Dynamic rows: a JSON object that can flow through a dataflow and into any sink.
//!
//! `serde_json::Value` is neither ordered (needed to consolidate updates) nor encodable by the
//! binary format timely uses between processes. [`JsonRow`] adds a total order (structural:
//! null < bool < number < string < array < object, objects by sorted keys) and travels between
//! processes as JSON text, while encoding to JSON (and exposing its fields to key extraction) as
//! the object itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::cmp::Ordering;

/// A JSON value usable as a dataflow record and a sink row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonRow(pub Value);

impl From<Value> for JsonRow {
    fn from(v: Value) -> Self {
        JsonRow(v)
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i.cmp(&j),
                // Mixed or fractional: order by value, ties (1 vs 1.0) by text so that the order
                // agrees with equality.
                _ => {
                    let (fx, fy) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                    fx.total_cmp(&fy).then_with(|| x.to_string().cmp(&y.to_string()))
                }
            },
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp_values(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xi: Vec<_> = x.iter().collect();
            let mut yi: Vec<_> = y.iter().collect();
            xi.sort_by(|a, b| a.0.cmp(b.0));
            yi.sort_by(|a, b| a.0.cmp(b.0));
            for ((ka, va), (kb, vb)) in xi.iter().zip(&yi) {
                let o = ka.cmp(kb).then_with(|| cmp_values(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            xi.len().cmp(&yi.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for JsonRow {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_values(&self.0, &other.0)
    }
}

impl PartialOrd for JsonRow {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for JsonRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d).map(JsonRow)
        } else {
            let s = String::deserialize(d)?;
            serde_json::from_str(&s).map(JsonRow).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_agrees_with_equality() {
        let vals = [
            json!(null),
            json!(true),
            json!(1),
            json!(1.0),
            json!(-2),
            json!(u64::MAX),
            json!("a"),
            json!([1]),
            json!({"a": 1, "b": 2}),
            json!({"b": 2, "a": 1}),
        ];
        for a in &vals {
            for b in &vals {
                let (ra, rb) = (JsonRow(a.clone()), JsonRow(b.clone()));
                assert_eq!(ra.cmp(&rb) == Ordering::Equal, a == b, "{a} vs {b}");
                assert_eq!(ra.cmp(&rb), rb.cmp(&ra).reverse());
            }
        }
    }

    #[test]
    fn binary_round_trip_as_text() {
        // bincode is what timely uses between processes; Value alone cannot go through it.
        let row = JsonRow(json!({"id": 1, "name": "x", "tags": [1.5, null]}));
        let bytes = bincode::serialize(&row).unwrap();
        assert_eq!(bincode::deserialize::<JsonRow>(&bytes).unwrap(), row);
        assert!(bincode::deserialize::<Value>(&bincode::serialize(&row.0).unwrap()).is_err());
    }
}
