//! The Kafka connector's encoder: per-key changes of one time into the records the producer
//! sends, in their final bytes.
//!
//! The envelope (append-only, upsert, Debezium) is the message family's
//! [`RecordEncoder`](crate::encode::RecordEncoder): JSON keys and values. With `encode = avro`
//! each record is then transcoded by the schemas the registry knows ([`KafkaTable`]): the value's
//! JSON text is streamed into Avro by the value schema, a JSON key of primary-key columns into
//! Avro by the key schema, each framed in the Confluent wire format (byte 0, the big-endian
//! schema id, the datum). Tombstones stay null values. No I/O: the schema ids come with the
//! table, registered before the encoder is made.

use super::table::{AvroSchemas, KafkaTable};
use crate::encode::avro;
use crate::encode::{ChangeEncoder, RecordEncoder};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::record::RecordBatch;
use crate::settings::SinkSettings;
use differential_sinks_operators::Change;
use serde::Serialize;

/// Encodes changes as Kafka records: JSON, or Confluent-framed Avro with the table's schemas.
pub struct KafkaEncoder<V> {
    json: RecordEncoder<V>,
    avro: Option<AvroSchemas>,
    /// The JSON records of the changes being transcoded into Avro.
    scratch: RecordBatch,
    key_buf: Vec<u8>,
}

impl<V> KafkaEncoder<V> {
    /// The encoder of `sink`'s format, with the schemas of `table` (Avro) or none (JSON).
    pub fn new(sink: &SinkSettings, table: &KafkaTable) -> Self {
        KafkaEncoder {
            json: RecordEncoder::new(sink),
            avro: table.avro.clone(),
            scratch: RecordBatch::default(),
            key_buf: Vec::with_capacity(64),
        }
    }
}

impl<V: Serialize + 'static> ChangeEncoder<V> for KafkaEncoder<V> {
    type Output = RecordBatch;

    /// Consecutive calls for one time number its records on (see [`RecordBatch::first`]).
    fn encode(&mut self, time: u64, changes: &[Change<Key, V>], out: &mut RecordBatch) -> Result<()> {
        let KafkaEncoder { json, avro, scratch, key_buf } = self;
        let Some(schemas) = avro.as_ref() else {
            return json.encode(time, changes, out);
        };
        scratch.reset(time);
        json.encode(time, changes, scratch)?;
        out.continue_time(time);
        for r in scratch.iter() {
            let key: &[u8] = match &schemas.key {
                Some((id, schema)) if !r.key.is_empty() => {
                    let v: serde_json::Value = serde_json::from_slice(r.key).map_err(|e| {
                        Error::encode(format!("key {} is not JSON: {e}", String::from_utf8_lossy(r.key)))
                    })?;
                    key_buf.clear();
                    avro::wire_header(*id, key_buf);
                    schema.encode(&v, key_buf).map_err(|e| {
                        Error::encode(format!("key {}: {}", String::from_utf8_lossy(r.key), e.message()))
                    })?;
                    key_buf
                }
                _ => r.key,
            };
            let value = r.value.map(|json| {
                move |buf: &mut Vec<u8>| {
                    avro::wire_header(schemas.value_id, buf);
                    schemas
                        .value
                        .encode_json(json, buf)
                        .map_err(|e| Error::encode(format!("key {}: {}", String::from_utf8_lossy(r.key), e.message())))
                }
            });
            out.push(key, value, r.op)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Format, Op};
    use crate::schema::Schema;
    use serde_json::{json, Value};

    fn change(k: i64, before: Option<Value>, after: Option<Value>) -> Change<Key, Value> {
        Change { key: Key::from_bytes(json!({ "k": k }).to_string().into_bytes()), before, after }
    }

    fn changes() -> Vec<Change<Key, Value>> {
        vec![change(1, None, Some(json!({"k": 1, "name": "a"}))), change(2, Some(json!({"k": 2, "name": "b"})), None)]
    }

    #[test]
    fn json_records_are_the_envelope_s() {
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], None);
        let mut enc = KafkaEncoder::<Value>::new(&sink, &KafkaTable::default());
        let mut want = RecordBatch::default();
        RecordEncoder::<Value>::new(&sink).encode(5, &changes(), &mut want).unwrap();
        let mut got = RecordBatch::default();
        enc.encode(5, &changes(), &mut got).unwrap();
        let pairs =
            |b: &RecordBatch| b.iter().map(|r| (r.key.to_vec(), r.value.map(<[u8]>::to_vec))).collect::<Vec<_>>();
        assert_eq!(pairs(&got), pairs(&want));
    }

    #[test]
    fn avro_records_are_confluent_framed_by_the_table_s_schemas() {
        let schema: Schema = "k:int64!,name:string!".parse().unwrap();
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], Some(schema.clone()));
        let value = avro::row_schema("t_value", &schema);
        let key = avro::key_schema("t_key", &schema, &["k".to_string()]).unwrap();
        let table =
            KafkaTable { avro: Some(AvroSchemas { value_id: 7, value: value.clone(), key: Some((8, key.clone())) }) };
        let mut enc = KafkaEncoder::<Value>::new(&sink, &table);
        let mut out = RecordBatch::default();
        enc.encode(5, &changes()[..1], &mut out).unwrap();
        enc.encode(5, &changes()[1..], &mut out).unwrap();
        assert_eq!((out.time, out.first, out.len()), (5, 1, 1), "the second call continues the time");
        let mut out = RecordBatch::default();
        enc.encode(6, &changes(), &mut out).unwrap();
        let recs: Vec<_> = out.iter().collect();
        assert_eq!(recs.len(), 2);
        let (id, mut datum) = avro::split_wire(recs[0].key).unwrap();
        assert_eq!((id, key.decode(&mut datum).unwrap()), (8, json!({"k": 1})));
        let (id, mut datum) = avro::split_wire(recs[0].value.unwrap()).unwrap();
        assert_eq!((id, value.decode(&mut datum).unwrap()), (7, json!({"k": 1, "name": "a"})));
        assert_eq!((recs[1].value, recs[1].op), (None, Op::Delete), "a delete is a tombstone");
        let (id, mut datum) = avro::split_wire(recs[1].key).unwrap();
        assert_eq!((id, key.decode(&mut datum).unwrap()), (8, json!({"k": 2})));
    }

    #[test]
    fn a_value_the_schema_refuses_is_an_error_naming_the_key() {
        let schema: Schema = "k:int64!,name:string!".parse().unwrap();
        let sink = SinkSettings::for_test(Format::Upsert, &["k"], Some(schema.clone()));
        let table = KafkaTable {
            avro: Some(AvroSchemas { value_id: 1, value: avro::row_schema("t_value", &schema), key: None }),
        };
        let mut enc = KafkaEncoder::<Value>::new(&sink, &table);
        let mut out = RecordBatch::default();
        let bad = change(3, None, Some(json!({"k": 3, "name": 4})));
        let e = enc.encode(1, &[bad], &mut out).unwrap_err();
        assert!(e.to_string().contains("\"k\":3"), "{e}");
        assert!(out.is_empty());
    }
}
