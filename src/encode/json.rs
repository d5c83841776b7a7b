//! JSON values: rows as JSON objects, and Debezium events with or without Kafka Connect's
//! `{schema, payload}` wrapper.
//!
//! A Debezium event is
//! `{"before":…,"after":…,"op":"c|u|d","ts_ms":…,"source":{"connector":"differential-sinks","name":<sink>,"ts":<logical time>}}`.
//! The constant parts are encoded once, when the encoder is built.

use crate::encoded_row::EncodedRow;
use crate::envelope::{Emission, Op};
use crate::error::{Error, Result};
use crate::json_row::JsonRow;
use crate::schema::{ColumnType, Schema};
use serde::Serialize;

/// Encodes values as JSON.
#[derive(Clone, Debug)]
pub struct JsonEncoder {
    /// `,"source":{"connector":"differential-sinks","name":"<sink>","ts":`
    source_prefix: Vec<u8>,
    /// `{"schema":<connect schema>,"payload":` when the Connect form is on.
    connect_prefix: Option<Vec<u8>>,
}

impl JsonEncoder {
    /// An encoder for sink `sink_name`; `connect_schema` turns on the `{schema, payload}` form for
    /// Debezium events.
    pub fn new(sink_name: &str, connect_schema: Option<&Schema>) -> Self {
        let mut source_prefix = br#","source":{"connector":"differential-sinks","name":"#.to_vec();
        serde_json::to_writer(&mut source_prefix, sink_name).expect("string encodes");
        source_prefix.extend_from_slice(br#","ts":"#);
        let connect_prefix = connect_schema.map(|s| {
            let mut p = br#"{"schema":"#.to_vec();
            serde_json::to_writer(&mut p, &connect_envelope_schema(sink_name, s)).expect("json encodes");
            p.extend_from_slice(br#","payload":"#);
            p
        });
        JsonEncoder { source_prefix, connect_prefix }
    }

    /// Writes `row` as JSON ([`encode_row`]).
    #[inline]
    pub fn row<V: Serialize + 'static>(&self, row: &V, out: &mut Vec<u8>) -> Result<()> {
        encode_row(row, out)
    }

    /// Writes the value of `emission` (which must not be a tombstone).
    #[inline]
    pub fn emission<V: Serialize + 'static>(
        &self,
        emission: &Emission<'_, V>,
        time: u64,
        ts_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match emission {
            Emission::Row { row, .. } => self.row(*row, out),
            Emission::Debezium { op, before, after } => self.debezium(*op, *before, *after, time, ts_ms, out),
            Emission::Tombstone => Err(Error::encode("a tombstone has no value to encode")),
        }
    }

    /// Writes a Debezium event.
    ///
    /// ```
    /// use differential_sinks::encode::JsonEncoder;
    /// use differential_sinks::envelope::Op;
    /// let enc = JsonEncoder::new("orders", None);
    /// let mut out = Vec::new();
    /// enc.debezium(Op::Update, Some(&serde_json::json!({"id": 1, "n": 2})), Some(&serde_json::json!({"id": 1, "n": 3})), 7, 1000, &mut out).unwrap();
    /// let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    /// assert_eq!(v["op"], "u");
    /// assert_eq!(v["before"]["n"], 2);
    /// assert_eq!(v["source"]["ts"], 7);
    /// ```
    pub fn debezium<V: Serialize + 'static>(
        &self,
        op: Op,
        before: Option<&V>,
        after: Option<&V>,
        time: u64,
        ts_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(p) = &self.connect_prefix {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(br#"{"before":"#);
        match before {
            Some(v) => self.row(v, out)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","after":"#);
        match after {
            Some(v) => self.row(v, out)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","op":""#);
        out.extend_from_slice(op.code().as_bytes());
        out.extend_from_slice(br#"","ts_ms":"#);
        out.extend_from_slice(itoa(ts_ms).as_bytes());
        out.extend_from_slice(&self.source_prefix);
        out.extend_from_slice(itoa(time).as_bytes());
        out.extend_from_slice(b"}}");
        if self.connect_prefix.is_some() {
            out.push(b'}');
        }
        Ok(())
    }
}

fn itoa(v: u64) -> String {
    v.to_string()
}

/// Appends `value` as JSON to `out`.
///
/// Uses `sonic-rs`'s serializer: the same JSON as `serde_json` for serde data, about a third
/// faster on typical rows (`benches/pipeline.rs`, `raw_serde_json` vs `raw_sonic_rs`).
#[inline]
pub fn encode_json<V: Serialize + ?Sized>(value: &V, out: &mut Vec<u8>) -> Result<()> {
    sonic_rs::to_writer(out, value).map_err(|e| Error::encode(format!("a row cannot be encoded as JSON: {e}")))
}

/// Appends a row's JSON to `out`: an [`EncodedRow`]'s bytes (encoded where the row was produced)
/// and a [`JsonRow`]'s text as they are, any other row through [`encode_json`] — the same bytes
/// either way.
#[inline]
pub fn encode_row<V: Serialize + 'static>(row: &V, out: &mut Vec<u8>) -> Result<()> {
    let any = row as &dyn std::any::Any;
    if let Some(encoded) = any.downcast_ref::<EncodedRow>() {
        out.extend_from_slice(encoded.json()?);
    } else if let Some(json) = any.downcast_ref::<JsonRow>() {
        out.extend_from_slice(json.as_str().as_bytes());
    } else {
        encode_json(row, out)?;
    }
    Ok(())
}

fn connect_fields(schema: &Schema) -> serde_json::Value {
    schema
        .columns
        .iter()
        .map(|c| {
            let mut f = serde_json::json!({ "field": c.name, "type": c.ty.connect_type(), "optional": c.nullable });
            match c.ty {
                ColumnType::Decimal { precision, scale } => {
                    f["name"] = "differential_sinks.Decimal".into();
                    f["parameters"] =
                        serde_json::json!({ "precision": precision.to_string(), "scale": scale.to_string() });
                }
                ColumnType::Date => f["name"] = "io.debezium.time.Date".into(),
                ColumnType::Timestamp => f["name"] = "io.debezium.time.Timestamp".into(),
                ColumnType::Timestamptz => f["name"] = "io.debezium.time.ZonedTimestamp".into(),
                ColumnType::Json => f["name"] = "io.debezium.data.Json".into(),
                _ => {}
            }
            f
        })
        .collect::<Vec<_>>()
        .into()
}

/// The Kafka Connect schema of a Debezium envelope over rows of `schema`.
pub fn connect_envelope_schema(sink_name: &str, schema: &Schema) -> serde_json::Value {
    let row = |field: &str| serde_json::json!({ "type": "struct", "optional": true, "name": format!("{sink_name}.Value"), "field": field, "fields": connect_fields(schema) });
    serde_json::json!({
        "type": "struct",
        "optional": false,
        "name": format!("{sink_name}.Envelope"),
        "fields": [
            row("before"),
            row("after"),
            { "type": "string", "optional": false, "field": "op" },
            { "type": "int64", "optional": true, "field": "ts_ms" },
            { "type": "struct", "optional": false, "field": "source", "fields": [
                { "type": "string", "optional": false, "field": "connector" },
                { "type": "string", "optional": false, "field": "name" },
                { "type": "int64", "optional": false, "field": "ts" }
            ]}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Serialize, Debug)]
    struct Mixed {
        i: i64,
        u: u64,
        f: f64,
        s: String,
        b: bool,
        o: Option<f32>,
        v: Vec<u16>,
    }

    proptest! {
        /// The fast encoder writes exactly what serde_json writes.
        #[test]
        fn same_bytes_as_serde_json(i in any::<i64>(), u in any::<u64>(), f in -1e300f64..1e300, s in "\\PC*|[\\x00-\\x1f\"\\\\]*", b in any::<bool>(), o in prop::option::of(any::<f32>().prop_filter("finite", |x| x.is_finite())), v in prop::collection::vec(any::<u16>(), 0..4)) {
            let row = Mixed { i, u, f, s, b, o, v };
            let mut ours = Vec::new();
            encode_json(&row, &mut ours).unwrap();
            let theirs = serde_json::to_vec(&row).unwrap();
            let (a, b): (serde_json::Value, serde_json::Value) = (serde_json::from_slice(&ours).unwrap(), serde_json::from_slice(&theirs).unwrap());
            prop_assert_eq!(a, b);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
        }
    }

    #[test]
    fn rows_already_encoded_are_copied_as_the_rows_json() {
        let value =
            serde_json::json!({"b": [1, 2.5, -0.0, 1e300], "a": "zoë \"\n\u{1}", "c": null, "d": {"y": true, "x": -7}});
        let row = JsonRow::new(&value);
        let (mut copied, mut walked) = (Vec::new(), Vec::new());
        encode_row(&row, &mut copied).unwrap();
        encode_json(&row, &mut walked).unwrap();
        assert_eq!(String::from_utf8(copied).unwrap(), String::from_utf8(walked).unwrap());
        let (mut copied, mut walked) = (Vec::new(), Vec::new());
        encode_row(&EncodedRow::encode(&value), &mut copied).unwrap();
        encode_json(&value, &mut walked).unwrap();
        assert_eq!(copied, walked);
    }

    #[test]
    fn connect_form_wraps_payload() {
        let schema: Schema = "id:int64!,name:string".parse().unwrap();
        let enc = JsonEncoder::new("s", Some(&schema));
        let mut out = Vec::new();
        enc.debezium(Op::Create, None, Some(&serde_json::json!({"id": 1, "name": "a"})), 3, 9, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["payload"]["after"]["name"], "a");
        assert_eq!(v["payload"]["before"], serde_json::Value::Null);
        assert_eq!(v["schema"]["fields"][1]["fields"][0]["type"], "int64");
    }
}
