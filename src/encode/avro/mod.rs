//! Avro for the Kafka sink: schemas derived from the sink's [`Schema`], a hand-rolled binary
//! encoder that writes a row's JSON form by that schema, and the Confluent wire format.
//!
//! The sink's envelope layer produces JSON (a row, or a Debezium event). In Avro mode the Kafka
//! writer transcodes each JSON value into Avro by the schema derived here, so the three formats
//! need no Avro-specific envelope code. Column types map as follows:
//!
//! | column type | Avro |
//! |---|---|
//! | boolean, int32, int64, float32, float64, string | boolean, int, long, float, double, string |
//! | bytes (base64 in JSON) | bytes |
//! | decimal(p,s) (JSON number or string) | bytes, logicalType decimal (two's complement, big-endian) |
//! | date (`YYYY-MM-DD`) | int, logicalType date (days since 1970-01-01) |
//! | timestamp / timestamptz (RFC 3339 text or integer microseconds) | long, logicalType timestamp-micros |
//! | json | string (the JSON text) |
//!
//! A nullable column is the union `["null", T]` with default null. A Debezium event is the record
//! `{before: ["null", Row], after: ["null", Row], op: string, ts_ms: ["null", long], source: {connector, name: string, ts: long}}`.
//!
//! Why hand-rolled: the writer receives the envelope's JSON text, and [`AvroType::encode_json`]
//! streams it into Avro in one pass without building a value (`benches/encode.rs` measures it).
//! The bytes are the same as apache-avro's: a module test compares one row byte for byte with
//! apache-avro's output, others check the specification's examples.
//!
//! * `schema` — Avro schemas from the row schema, and their JSON form;
//! * `datum` — encoding a JSON value or JSON text as an Avro datum (dates, timestamps and
//!   decimals read by [`crate::encode::civil`]);
//! * `wire` — decoding a datum, and the Confluent framing (magic byte + schema id).
//!
//! [`Schema`]: crate::schema::Schema

mod datum;
mod schema;
mod wire;

pub use datum::write_long;
pub use schema::{avro_name, debezium_schema, key_schema, row_schema};
pub use wire::{split_wire, wire_header};

/// An Avro schema (the subset the sink emits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AvroType {
    /// null
    Null,
    /// boolean
    Boolean,
    /// int
    Int,
    /// long
    Long,
    /// float
    Float,
    /// double
    Double,
    /// bytes
    Bytes,
    /// string
    String,
    /// int, logicalType date
    Date,
    /// long, logicalType timestamp-micros
    TimestampMicros,
    /// bytes, logicalType decimal
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// A JSON value carried as its text.
    JsonText,
    /// `["null", T]`
    Nullable(Box<AvroType>),
    /// A record.
    Record {
        /// Full name.
        name: String,
        /// Fields in order.
        fields: Vec<(String, AvroType)>,
    },
}

#[cfg(test)]
mod tests {
    use super::datum::{base64_decode, base64_encode, parse_date, parse_decimal, parse_timestamp_micros};
    use super::wire::read_long;
    use super::*;
    use crate::schema::Schema;
    use serde_json::json;
    use serde_json::Value;

    #[test]
    fn primitives_match_the_spec() {
        // Examples from the Avro specification's "Binary Encoding" section.
        let mut out = Vec::new();
        for (v, bytes) in
            [(0i64, vec![0x00]), (-1, vec![0x01]), (1, vec![0x02]), (-64, vec![0x7f]), (64, vec![0x80, 0x01])]
        {
            out.clear();
            write_long(v, &mut out);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(read_long(&mut &out[..]).unwrap(), v);
        }
        out.clear();
        AvroType::String.encode(&json!("foo"), &mut out).unwrap();
        assert_eq!(out, [0x06, b'f', b'o', b'o']);
    }

    #[test]
    fn same_bytes_as_apache_avro() {
        // apache-avro 0.22 `to_avro_datum` of this row under the same schema, in hex.
        let want = "0e14637573746f6d65722d3792e2065035333834353431323762303936343933353338343534313237623039363439333533383435343132";
        let schema: Schema = "id:int64!,name:string!,amount:int64!,note:string!".parse().unwrap();
        let note = format!("{:016x}", 7u64.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(3)[..40].to_string();
        let row = json!({"id": 7, "name": "customer-7", "amount": 55_433, "note": note});
        let mut out = Vec::new();
        row_schema("bench_value", &schema).encode_json(row.to_string().as_bytes(), &mut out).unwrap();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
    }

    #[test]
    fn logical_types() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_timestamp_micros("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(parse_timestamp_micros("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_decimal("12.30", 2), Some(1230));
        assert_eq!(parse_decimal("-0.5", 2), Some(-50));
        assert_eq!(parse_decimal("1.234", 2), None);
        let mut out = Vec::new();
        let d = AvroType::Decimal { precision: 10, scale: 2 };
        d.encode(&json!("-1.28"), &mut out).unwrap();
        assert_eq!(out, [0x02, 0x80]); // -128 in one byte
        out.clear();
        d.encode(&json!(1.28), &mut out).unwrap();
        assert_eq!(out, [0x04, 0x00, 0x80]); // 128 needs a sign byte
        assert!(d.encode(&json!("123456789.00"), &mut out).is_err());
        assert_eq!(base64_encode(&base64_decode("aGk=").unwrap()), "aGk=");
    }

    #[test]
    fn row_round_trip_and_schema_json() {
        let schema: Schema =
            "id:int64!,name:string,amount:decimal(10,2),day:date,at:timestamp,tags:json,raw:bytes,ok:boolean,f:float64"
                .parse()
                .unwrap();
        let t = row_schema("orders_value", &schema);
        let row = json!({"id": 7, "name": null, "amount": "3.50", "day": "2024-02-29", "at": 5, "tags": {"a": [1]}, "raw": "AAE=", "ok": true, "f": 0.25});
        let mut out = Vec::new();
        t.encode(&row, &mut out).unwrap();
        let back = t.decode(&mut &out[..]).unwrap();
        assert_eq!(back["id"], 7);
        assert_eq!(back["name"], Value::Null);
        assert_eq!(back["tags"], json!({"a": [1]}));
        assert_eq!(back["raw"], "AAE=");
        assert_eq!(back["f"], 0.25);
        assert_eq!(back["day"], 19_782);
        let js = t.to_json();
        assert_eq!(js["fields"][1]["type"], json!(["null", "string"]));
        assert_eq!(js["fields"][1]["default"], Value::Null);
        assert_eq!(js["fields"][2]["type"][1]["logicalType"], "decimal");
        let e = t.encode(&json!({"id": "x"}), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("`id`"), "{e}");
        // Streaming from JSON text gives the same bytes, whatever the field order.
        let mut streamed = Vec::new();
        let text = serde_json::to_vec(&row).unwrap();
        t.encode_json(&text, &mut streamed).unwrap();
        assert_eq!(streamed, out);
        let reordered =
            br#"{"f":0.25,"ok":true,"raw":"AAE=","tags":{"a":[1]},"at":5,"day":"2024-02-29","amount":"3.50","id":7}"#;
        streamed.clear();
        t.encode_json(reordered, &mut streamed).unwrap();
        assert_eq!(streamed, out);
        assert!(t.encode_json(br#"{"id":"x"}"#, &mut streamed).unwrap_err().to_string().contains("`id`"));
        // A Debezium envelope names its row record once and refers to it after.
        let env = debezium_schema("orders", t).to_json();
        assert_eq!(env["fields"][1]["type"][1], "orders_value");
    }
}
